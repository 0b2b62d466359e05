/**
 * Core benchmark for `@aio/asyncio`: our event loop against bare promises.
 *
 * Runs under both runtimes, with no flags needed:
 *
 *     deno run -A bench/core.ts [--json] [--quick] [--runs N]
 *     bun bench/core.ts [--json] [--quick] [--runs N]
 *
 * Three workloads, each done twice in the same process: (a) with the library
 * imported from `../mod.ts` ("ours") and (b) with bare hand-written promises
 * (the "floor": the least work any promise-based design must do for the same
 * result). The ratio ours/floor is ops/s of ours divided by ops/s of the
 * floor, so 1.0 means "as fast as bare promises" and 0.1 means "10x slower".
 *
 * - tasks: create N = 100,000 tasks and gather them. Each task does one
 *   `await sleep(0)` and returns 1. Floor: `Promise.all` of N async
 *   functions each doing `await null` and returning 1. ops = tasks.
 * - switches: W = 10 tasks each doing 10,000 `await sleep(0)`, i.e. 100,000
 *   context switches through the loop. Floor: a tiny cooperative FIFO
 *   scheduler (see `makeBareScheduler`): yielding pushes the task's resolver
 *   on a ready queue; a microtask drains the queue batch by batch, in FIFO
 *   order, like one asyncio loop iteration. ops = switches.
 * - timers: N = 100,000 concurrent tasks each doing `await sleep(d)` with
 *   d in 1..10 ms, from a fixed pseudo-random sequence (32-bit LCG, the same
 *   one `core_asyncio.py` uses). Floor: N `new Promise(r => setTimeout(r, d))`
 *   with the same delays. ops = timers completed per second of wall time,
 *   from creating the first one to the last one firing. The delays are kept
 *   small on purpose: the longest is 10 ms, so wall time is dominated by the
 *   per-timer cost of creating, ordering and firing 100k timers, not by
 *   waiting.
 *
 * Method: `performance.now()`; one warm-up run, then up to `--runs` (5)
 * measured runs, fewer once a measurement has used its time budget (4 s, or
 * 12 s if that leaves fewer than 3 runs); we report
 * the median run. Each run of ours is a whole `run(...)` call: a fresh event
 * loop, the work, and closing the loop. If the runtime exposes a GC (Bun
 * always; Deno with `--v8-flags=--expose-gc`), it is forced before each run.
 * Each run is checked for the right result and has a watchdog, so a wrong
 * result or a hang is reported in the table instead of hanging the bench.
 *
 * `--asyncio JSON` and `--uvloop JSON` (the output of `core_asyncio.py`) add
 * CPython columns to the table; `bench/run.sh` uses them.
 */
import { bareScheduler } from "./floor.ts";

// ---------------------------------------------------------------- runtime

type Globals = {
  Deno?: {
    version: { deno: string; v8: string };
    args: string[];
    exit(code?: number): never;
  };
  Bun?: { version: string; gc(force: boolean): void };
  process?: {
    argv: string[];
    versions: Record<string, string | undefined>;
    exit(code?: number): never;
  };
  gc?: () => void;
};
const g = globalThis as unknown as Globals;

function runtimeName(): string {
  if (g.Bun) return `Bun ${g.Bun.version}`;
  if (g.Deno) return `Deno ${g.Deno.version.deno} (V8 ${g.Deno.version.v8})`;
  return `unknown runtime`;
}

function args(): string[] {
  if (g.Deno) return g.Deno.args;
  return g.process ? g.process.argv.slice(2) : [];
}

function exit(code: number): never {
  if (g.Deno) g.Deno.exit(code);
  if (g.process) g.process.exit(code);
  throw new Error(`exit ${code}`);
}

function forceGc(): void {
  if (g.Bun) g.Bun.gc(true);
  else if (typeof g.gc === "function") g.gc();
}

// ---------------------------------------------------------------- options

const argv = args();
function flagValue(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}
const asJson = argv.includes("--json");
const quick = argv.includes("--quick");
const maxRuns = Number(flagValue("--runs") ?? 5);
if (!Number.isInteger(maxRuns) || maxRuns < 1) {
  throw new RangeError(`--runs must be a positive integer`);
}
const scale = quick ? 10 : 1;

const N_TASKS = 100_000 / scale;
const SWITCH_TASKS = 10;
const SWITCHES_PER_TASK = 10_000 / scale;
const N_TIMERS = 100_000 / scale;
/**
 * Stop measuring once this much time went into one measurement (warm-up
 * included) and at least 3 runs were measured; stop anyway at 3x this.
 */
const BUDGET_MS = 4_000;
/** A single run taking longer than this is reported as a hang. */
const WATCHDOG_MS = 30_000;

/** The same delays as core_asyncio.py: 32-bit LCG, d = 1 + (x >>> 16) % 10. */
function timerDelays(n: number): number[] {
  const out = new Array<number>(n);
  let x = 12345;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = 1 + ((x >>> 16) % 10);
  }
  return out;
}
const DELAYS = timerDelays(N_TIMERS);

// ---------------------------------------------------------------- the floor

const sumOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

const floor = {
  async tasks(): Promise<number> {
    const results = await Promise.all(
      Array.from({ length: N_TASKS }, () =>
        (async () => {
          await null;
          return 1;
        })()),
    );
    return sumOf(results);
  },
  async switches(): Promise<number> {
    const yieldNow = bareScheduler();
    const worker = async () => {
      for (let i = 0; i < SWITCHES_PER_TASK; i++) await yieldNow();
      return SWITCHES_PER_TASK;
    };
    return sumOf(
      await Promise.all(Array.from({ length: SWITCH_TASKS }, worker)),
    );
  },
  async timers(): Promise<number> {
    const results = await Promise.all(
      DELAYS.map((d) =>
        new Promise<number>((resolve) => setTimeout(() => resolve(1), d))
      ),
    );
    return sumOf(results);
  },
};

// ---------------------------------------------------------------- ours

type Aio = typeof import("../mod.ts");

function makeOurs(aio: Aio) {
  const { run, sleep, gather, createTask } = aio;
  return {
    tasks(): Promise<number> {
      return run(async () => {
        const results = await gather(
          Array.from({ length: N_TASKS }, () => async () => {
            await sleep(0);
            return 1;
          }),
        );
        return sumOf(results as number[]);
      });
    },
    switches(): Promise<number> {
      return run(async () => {
        const worker = async () => {
          for (let i = 0; i < SWITCHES_PER_TASK; i++) await sleep(0);
          return SWITCHES_PER_TASK;
        };
        const tasks = Array.from(
          { length: SWITCH_TASKS },
          () => createTask(worker),
        );
        let total = 0;
        for (const t of tasks) total += await t;
        return total;
      });
    },
    timers(): Promise<number> {
      return run(async () => {
        const results = await gather(
          DELAYS.map((d) => async () => {
            await sleep(d);
            return 1;
          }),
        );
        return sumOf(results as number[]);
      });
    },
  };
}

// ---------------------------------------------------------------- harness

const WORKLOADS = ["tasks", "switches", "timers"] as const;
type Workload = typeof WORKLOADS[number];
const OPS: Record<Workload, number> = {
  tasks: N_TASKS,
  switches: SWITCH_TASKS * SWITCHES_PER_TASK,
  timers: N_TIMERS,
};

type Result =
  | {
    opsPerSec: number;
    medianMs: number;
    bestMs: number;
    runs: number;
    error?: undefined;
  }
  | { error: string; opsPerSec?: undefined };

async function withWatchdog<T>(p: Promise<T>, what: string): Promise<T> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const dog = new Promise<never>((_, reject) => {
    id = setTimeout(
      () => reject(new Error(`${what}: no result after ${WATCHDOG_MS} ms`)),
      WATCHDOG_MS,
    );
  });
  try {
    return await Promise.race([p, dog]);
  } finally {
    clearTimeout(id);
  }
}

async function once(
  fn: () => Promise<number>,
  expected: number,
  what: string,
): Promise<number> {
  forceGc();
  const t0 = performance.now();
  const got = await withWatchdog(fn(), what);
  const ms = performance.now() - t0;
  if (got !== expected) {
    throw new Error(`${what}: wrong result ${got}, expected ${expected}`);
  }
  return ms;
}

async function measure(
  fn: () => Promise<number>,
  workload: Workload,
  label: string,
): Promise<Result> {
  const expected = OPS[workload];
  const what = `${label}/${workload}`;
  try {
    const start = performance.now();
    const warmUp = await once(fn, expected, what);
    const times: number[] = [];
    // So slow that measuring again would blow the budget: the warm-up is the
    // only sample (reported as runs: 0).
    if (warmUp > 3 * BUDGET_MS) {
      return {
        opsPerSec: expected / (warmUp / 1000),
        medianMs: warmUp,
        bestMs: warmUp,
        runs: 0,
      };
    }
    while (times.length < maxRuns) {
      times.push(await once(fn, expected, what));
      const spent = performance.now() - start;
      if (spent > 3 * BUDGET_MS) break;
      if (spent > BUDGET_MS && times.length >= Math.min(3, maxRuns)) break;
    }
    times.sort((a, b) => a - b);
    const mid = times.length >> 1;
    const medianMs = times.length % 2
      ? times[mid]
      : (times[mid - 1] + times[mid]) / 2;
    return {
      opsPerSec: expected / (medianMs / 1000),
      medianMs,
      bestMs: times[0],
      runs: times.length,
    };
  } catch (e) {
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return { error: msg };
  }
}

// ---------------------------------------------------------------- main

type Row = { ours: Result; floor: Result; ratio: number | null };

async function main() {
  let ours: ReturnType<typeof makeOurs> | null = null;
  let importError = "";
  try {
    ours = makeOurs(await import("../mod.ts"));
  } catch (e) {
    importError = `import ../mod.ts failed: ${
      e instanceof Error ? e.message : String(e)
    }`;
  }

  const rows = {} as Record<Workload, Row>;
  for (const w of WORKLOADS) {
    const f = await measure(floor[w], w, "floor");
    const o: Result = ours
      ? await measure(ours[w], w, "ours")
      : { error: importError };
    const ratio = o.opsPerSec !== undefined && f.opsPerSec !== undefined
      ? o.opsPerSec / f.opsPerSec
      : null;
    rows[w] = { ours: o, floor: f, ratio };
    if (!asJson) {
      console.error(
        `# ${w}: ours ${fmtResult(o)}, floor ${fmtResult(f)}`,
      );
    }
  }

  if (asJson) {
    console.log(JSON.stringify(
      {
        runtime: runtimeName(),
        sizes: {
          tasks: N_TASKS,
          switches: OPS.switches,
          switchTasks: SWITCH_TASKS,
          timers: N_TIMERS,
          timerDelaysMs: "1..10",
        },
        workloads: rows,
      },
      null,
      2,
    ));
  } else {
    console.log(table(rows));
  }
  exit(0);
}

// ---------------------------------------------------------------- output

function fmtOps(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "n/a";
  return Math.round(x).toLocaleString("en-US");
}

function fmtRatio(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "n/a";
  if (x >= 10) return x.toFixed(1);
  return x >= 0.1 ? x.toFixed(2) : x.toPrecision(2);
}

function fmtResult(r: Result): string {
  return r.error !== undefined
    ? `ERROR (${r.error})`
    : r.runs === 0
    ? `${fmtOps(r.opsPerSec)} ops/s (one ${
      r.medianMs.toFixed(1)
    } ms run, too slow to repeat)`
    : `${fmtOps(r.opsPerSec)} ops/s (median ${
      r.medianMs.toFixed(1)
    } ms of ${r.runs} runs)`;
}

function cell(r: Result): string {
  return r.error !== undefined ? "error" : fmtOps(r.opsPerSec);
}

function parsePython(flag: string): Record<string, number> | null | string {
  const raw = flagValue(flag);
  if (raw === undefined) return null;
  try {
    return JSON.parse(raw);
  } catch {
    return `unparsable ${flag} value`;
  }
}

function table(rows: Record<Workload, Row>): string {
  const py = parsePython("--asyncio");
  const uv = parsePython("--uvloop");
  const withPython = py !== null || uv !== null;
  const pyOps = (src: typeof py, w: Workload) =>
    src && typeof src === "object" && typeof src[w] === "number"
      ? src[w]
      : undefined;

  const lines: string[] = [`### ${runtimeName()}`, ""];
  if (withPython) {
    lines.push(
      "| workload | ours | bare promises | ours/bare | CPython asyncio | uvloop | ours/uvloop |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
  } else {
    lines.push(
      "| workload | ours ops/s | floor ops/s | ours/floor |",
      "| --- | ---: | ---: | ---: |",
    );
  }
  const errors = new Set<string>();
  for (const w of WORKLOADS) {
    const { ours, floor: f, ratio } = rows[w];
    if (ours.error !== undefined) errors.add(`ours: ${ours.error}`);
    if (f.error !== undefined) errors.add(`floor: ${f.error}`);
    const cells = [w, cell(ours), cell(f), fmtRatio(ratio)];
    if (withPython) {
      const a = pyOps(py, w);
      const u = pyOps(uv, w);
      cells.push(
        fmtOps(a),
        fmtOps(u),
        fmtRatio(
          ours.opsPerSec !== undefined && u !== undefined
            ? ours.opsPerSec / u
            : null,
        ),
      );
    }
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push(
    "",
    `ops/s, median of up to ${maxRuns} runs after a warm-up. tasks: ${
      fmtOps(N_TASKS)
    } tasks gathered, each one sleep(0); switches: ${SWITCH_TASKS} tasks x ${
      fmtOps(SWITCHES_PER_TASK)
    } sleep(0); timers: ${
      fmtOps(N_TIMERS)
    } concurrent sleeps of 1..10 ms, per second of wall time.`,
  );
  if (errors.size) lines.push("", ...[...errors].map((e) => `- ${e}`));
  return lines.join("\n");
}

await main();
