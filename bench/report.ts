/**
 * Puts the JSON that `bench/all.sh` collected side by side as markdown
 * tables: throughput of every implementation on every runtime, the ratios
 * the performance goal is stated in, and bytes per pending task.
 *
 *     deno run -A bench/report.ts DIR
 *
 * DIR holds `<runtime>-<impl>.json` (from `suite.ts`), `<runtime>-memory.json`
 * (from `memory.ts`), `py-core.json` and `py-sync.json` (from
 * `core_asyncio.py --both` and `sync_asyncio.py --both`), and
 * `py-memory-asyncio.json`, `py-memory-uvloop.json` (from
 * `memory_asyncio.py`). Anything missing shows as n/a.
 */
import { fmtOps, fmtRatio as ratioText, table, WORKLOADS } from "./harness.ts";

const dir = Deno.args[0];
if (dir === undefined) {
  throw new TypeError("usage: report.ts DIR [--clock cpu|wall] [--summary]");
}
const clockAt = Deno.args.indexOf("--clock");
/**
 * cpu: ops per second of the main thread's CPU time (the default: on a
 * shared machine wall time measures the neighbours' load); wall: per second
 * of wall time. The timers workload is always per second of wall time, as
 * its waiting is part of it.
 */
const clock = clockAt >= 0 ? Deno.args[clockAt + 1] : "cpu";
if (clock !== "cpu" && clock !== "wall") {
  throw new RangeError("--clock must be cpu or wall");
}
const summaryOnly = Deno.args.includes("--summary");

const RUNTIMES = ["deno", "bun", "node"] as const;
const IMPLS = [
  "floor",
  "ours",
  "effect",
  "effection",
  "async-mutex",
  "p-limit",
];
const PEERS = ["effect", "effection", "async-mutex", "p-limit"];
const LABEL: Record<string, string> = {
  floor: "floor",
  ours: "ours",
  effect: "Effect",
  effection: "Effection",
  "async-mutex": "async-mutex",
  "p-limit": "p-limit",
};
const GOAL = { floor: 0.5, uvloop: 2, peer: 1 };

type Outcome = { ops: number; cpuOps?: number; runsMs: number[] } | {
  error: string;
};
type Suite = {
  runtimeName: string;
  scale: number;
  results: Record<string, Outcome>;
};

function read<T>(name: string): T | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${dir}/${name}`)) as T;
  } catch {
    return undefined;
  }
}

const suites: Record<string, Record<string, Suite | undefined>> = {};
for (const rt of RUNTIMES) {
  suites[rt] = {};
  for (const impl of IMPLS) {
    suites[rt][impl] = read<Suite>(`${rt}-${impl}.json`);
  }
}
type Py = Record<string, Record<string, number> | undefined>;
const pyCore = read<Py>("py-core.json") ?? {};
const pySync = read<Py>("py-sync.json") ?? {};
const byClock = (loop: string): Record<string, number> => {
  const wall = { ...pyCore[loop], ...pySync[loop] };
  const cpu = { ...pyCore[`${loop}_cpu`], ...pySync[`${loop}_cpu`] };
  if (clock === "wall") return wall;
  return { ...wall, ...cpu, timers: wall.timers };
};
const python = { asyncio: byClock("asyncio"), uvloop: byClock("uvloop") };

const errors = new Set<string>();
function opsOf(rt: string, impl: string, w: string): number | undefined {
  const r = suites[rt][impl]?.results[w];
  if (r === undefined) return undefined;
  if ("error" in r) {
    errors.add(`${LABEL[impl]} on ${rt}: ${r.error}`);
    return undefined;
  }
  return clock === "cpu" && w !== "timers" && Number.isFinite(r.cpuOps)
    ? r.cpuOps
    : r.ops;
}
function cellOf(rt: string, impl: string, w: string): string {
  const r = suites[rt][impl]?.results[w];
  if (r !== undefined && "error" in r) {
    opsOf(rt, impl, w);
    return "error";
  }
  return fmtOps(opsOf(rt, impl, w));
}

/** A ratio, in bold when it is below the goal. */
function fmtRatio(x: number | undefined, goal?: number): string {
  const s = ratioText(x);
  return goal !== undefined && x !== undefined && x < goal ? `**${s}**` : s;
}
const div = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? undefined : a / b;

const present = RUNTIMES.filter((rt) =>
  IMPLS.some((impl) => suites[rt][impl] !== undefined)
);
const nameOf = (rt: string) =>
  IMPLS.map((impl) => suites[rt][impl]?.runtimeName).find(Boolean) ?? rt;
const scale = IMPLS.map((impl) => suites[present[0]]?.[impl]?.scale).find(
  Boolean,
) ?? 1;

const out: string[] = [];
out.push(
  `## Side by side, ${
    clock === "cpu"
      ? "per second of main-thread CPU time"
      : "per second of wall time"
  }${scale > 1 ? ` (quick: sizes / ${scale})` : ""}`,
  "",
  "Ours divided by the other, in ops/s (above 1: ours is faster). In bold: below the goal " +
    `(${GOAL.floor}x the floor, ${GOAL.uvloop}x uvloop, ahead of every peer). ` +
    "The peer column is the fastest peer that expresses the workload.",
  "",
);
{
  const head = ["workload"];
  for (const rt of present) {
    head.push(`${nameOf(rt)}: /floor`, "/uvloop", "/best peer");
  }
  const rows: string[][] = [];
  for (const w of WORKLOADS) {
    const cells: string[] = [w];
    for (const rt of present) {
      const ours = opsOf(rt, "ours", w);
      cells.push(fmtRatio(div(ours, opsOf(rt, "floor", w)), GOAL.floor));
      cells.push(fmtRatio(div(ours, python.uvloop[w]), GOAL.uvloop));
      let best: string | undefined;
      let bestOps = 0;
      for (const p of PEERS) {
        const o = opsOf(rt, p, w);
        if (o !== undefined && o > bestOps) {
          bestOps = o;
          best = p;
        }
      }
      cells.push(
        best === undefined || ours === undefined
          ? "n/a"
          : `${fmtRatio(div(ours, bestOps), GOAL.peer)} (${LABEL[best]})`,
      );
    }
    rows.push(cells);
  }
  out.push(...table(head, rows));
}

for (const rt of summaryOnly ? [] : present) {
  out.push(
    "",
    `### ${nameOf(rt)}, ops/s`,
    "",
  );
  const rows: string[][] = [];
  for (const w of WORKLOADS) {
    const ours = opsOf(rt, "ours", w);
    const cells = [
      w,
      cellOf(rt, "floor", w),
      cellOf(rt, "ours", w),
      fmtRatio(div(ours, opsOf(rt, "floor", w))),
      fmtOps(python.asyncio[w]),
      fmtOps(python.uvloop[w]),
      fmtRatio(div(ours, python.uvloop[w])),
    ];
    for (const p of PEERS) {
      const o = opsOf(rt, p, w);
      cells.push(
        o === undefined
          ? cellOf(rt, p, w)
          : `${fmtOps(o)} (${fmtRatio(div(ours, o))})`,
      );
    }
    rows.push(cells);
  }
  out.push(
    ...table([
      "workload",
      "floor",
      "ours",
      "ours/floor",
      "CPython asyncio",
      "uvloop",
      "ours/uvloop",
      ...PEERS.map((p) => LABEL[p]),
    ], rows),
    "",
    "Peer cells: ops/s (ours divided by the peer). n/a: the peer cannot express the workload.",
  );
}

// ---------------------------------------------------------------- memory

type Memory = {
  runtimeName: string;
  tasks: number;
  bytesPerTask: Record<string, Record<string, number | string>>;
};
const mem: Record<string, Memory | undefined> = {};
for (const rt of RUNTIMES) mem[rt] = read<Memory>(`${rt}-memory.json`);
const pyMem = {
  asyncio: read<Record<string, number>>("py-memory-asyncio.json"),
  uvloop: read<Record<string, number>>("py-memory-uvloop.json"),
};
const memRuntimes = RUNTIMES.filter((rt) => mem[rt] !== undefined);
if (!summaryOnly && (memRuntimes.length || pyMem.asyncio)) {
  const head = ["a task waiting on"];
  for (const rt of memRuntimes) head.push(`ours, ${mem[rt]!.runtimeName}`);
  for (const rt of memRuntimes) head.push(`floor, ${mem[rt]!.runtimeName}`);
  head.push("CPython asyncio", "uvloop");
  out.push(
    "",
    "### Bytes per pending task",
    "",
  );
  const rows: string[][] = [];
  const fmtBytes = (x: number | string | undefined) =>
    typeof x === "number" ? Math.round(x).toLocaleString("en-US") : "n/a";
  for (
    const [kind, label] of [
      ["queue", "`queue.get()`"],
      ["lock", "`lock.acquire()`"],
      ["sleep", "`sleep(1 hour)`"],
    ]
  ) {
    const cells = [label];
    for (const rt of memRuntimes) {
      const v = mem[rt]!.bytesPerTask.ours?.[kind];
      if (typeof v === "string") errors.add(`ours memory on ${rt}: ${v}`);
      cells.push(fmtBytes(v));
    }
    for (const rt of memRuntimes) {
      cells.push(fmtBytes(mem[rt]!.bytesPerTask.floor?.[kind]));
    }
    cells.push(fmtBytes(pyMem.asyncio?.[kind]), fmtBytes(pyMem.uvloop?.[kind]));
    rows.push(cells);
  }
  out.push(
    ...table(head, rows),
    "",
    `Heap growth per task with ${
      (mem[memRuntimes[0]]?.tasks ?? 0).toLocaleString("en-US")
    } tasks waiting, after a forced GC (JS: used heap; CPython: tracemalloc). ` +
      "Floor: a bare async function waiting on the bare queue, lock, or a setTimeout promise.",
  );
}

if (!summaryOnly) {
  out.push(
    "",
    "Method: each implementation runs in a process of its own on each runtime; a workload is one " +
      "warm-up run, then up to 5 runs (fewer past 3 s), the median reported. Sizes: tasks 100,000 " +
      "gathered, each sleep(0); switches 10 tasks x 10,000 sleep(0); timers 100,000 concurrent " +
      "sleeps of 1..10 ms; lock 100 tasks x 2,000 acquisitions with a sleep(0) inside; event " +
      "100,000 tasks woken by one Event (making them included); pingpong 200,000 items through " +
      "Queue(1); mpmc 4 producers and 4 consumers, 1,000,000 items, unbounded queue. " +
      "See bench/harness.ts, bench/impl/ and bench/peers/. " +
      (clock === "cpu"
        ? "ops/s are per second of the main thread's CPU time (Linux schedstat; CPython: " +
          "time.thread_time()), except timers, per second of wall time: on this shared " +
          "machine wall time measures the neighbours' load. Helper threads (concurrent GC, " +
          "JIT compilation) are not counted."
        : "ops/s are per second of wall time."),
  );
}
if (errors.size) {
  out.push("", "Errors:", "", ...[...errors].map((e) => `- ${e}`));
}
console.log(out.join("\n"));
