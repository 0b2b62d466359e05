/**
 * The one harness every benchmark in `bench/` uses: the runtime and the
 * command line, the workloads and their sizes, timing (a warm-up, then the
 * median of a few runs, as ops/s of wall and of CPU time), and the output
 * (numbers and ratios formatted alike, markdown tables, JSON).
 *
 * Sizes are those of `core_asyncio.py` and `sync_asyncio.py`, so the columns
 * of one table measure the same work. Runs on Deno, Bun and Node 24 (which
 * strips the types), with no flags beyond the one that exposes the garbage
 * collector. Tools are not searched for here: `scripts/tools.sh` finds them
 * and exports their paths (`env("AIO_PYTHON")`).
 */

import { readFileSync } from "node:fs";
import process from "node:process";

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
const host = globalThis as unknown as Globals;

/** "deno", "bun" or "node": the key of this runtime in the JSON. */
export const runtimeKey: "deno" | "bun" | "node" = host.Bun
  ? "bun"
  : host.Deno
  ? "deno"
  : "node";

/** The runtime and its version, for table headings. */
export const runtimeName: string = host.Bun
  ? `Bun ${host.Bun.version}`
  : host.Deno
  ? `Deno ${host.Deno.version.deno}`
  : `Node ${host.process?.versions.node ?? "?"}`;

/** The command-line arguments after the script. */
export const argv: string[] = host.Deno?.args ??
  host.process?.argv.slice(2) ?? [];

/** The value after `name` on the command line, if any. */
export function flag(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/**
 * Collects garbage now, where the runtime lets us (see the module doc).
 * `measure` does before each run unless `--no-gc`, so a CPU profile shows
 * only the collections the workload itself causes.
 */
export function forceGc(): void {
  if (host.Bun) host.Bun.gc(true);
  else host.gc?.();
}

/** Whether a forced collection is possible, so memory figures are exact. */
export const canGc: boolean = Boolean(host.Bun) ||
  typeof host.gc === "function";

/** An environment variable, or "" (`scripts/tools.sh` exports the tools'). */
export function env(name: string): string {
  return process.env[name] ?? "";
}

export function exit(code: number): never {
  if (host.Deno) host.Deno.exit(code);
  if (host.process) host.process.exit(code);
  throw new Error(`exit ${code}`);
}

// ---------------------------------------------------------------- sizes

/** `--quick` divides every size by 10, for a smoke test. */
export const SCALE: number = argv.includes("--quick") ? 10 : 1;

/**
 * How much work each workload does (one object, so an implementation
 * imports it in one name).
 */
export const size = {
  /** tasks gathered, each one sleep(0) */
  tasks: 100_000 / SCALE,
  switchTasks: 10,
  /** sleep(0) calls of each of the `switchTasks` */
  switchesPerTask: 10_000 / SCALE,
  /** concurrent sleeps of 1..10 ms (`DELAYS`) */
  timers: 100_000 / SCALE,
  /** items through a Queue(1) */
  pingpongItems: 200_000 / SCALE,
  /** items through an unbounded queue, from `mpmcSides` producers to as many consumers */
  mpmcItems: 1_000_000 / SCALE,
  mpmcSides: 4,
  lockTasks: 100,
  /** acquisitions by each of the `lockTasks`, a sleep(0) inside each */
  lockRounds: 2000 / SCALE,
  /** tasks woken by one event */
  eventTasks: 100_000 / SCALE,
} as const;

/** The same delays as core_asyncio.py: a 32-bit LCG, 1..10 ms. */
export const DELAYS: number[] = (() => {
  const out = new Array<number>(size.timers);
  let x = 12345;
  for (let i = 0; i < size.timers; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    out[i] = 1 + ((x >>> 16) % 10);
  }
  return out;
})();

export const WORKLOADS = [
  "tasks",
  "switches",
  "timers",
  "lock",
  "event",
  "pingpong",
  "mpmc",
] as const;
export type Workload = typeof WORKLOADS[number];

/** What each workload counts, and so what a run must return. */
export const OPS: Record<Workload, number> = {
  tasks: size.tasks,
  switches: size.switchTasks * size.switchesPerTask,
  timers: size.timers,
  lock: size.lockTasks * size.lockRounds,
  event: size.eventTasks,
  pingpong: size.pingpongItems,
  mpmc: size.mpmcItems,
};

/**
 * The pingpong workload on a queue of maxsize 1: a producer, started by
 * `start`, puts every item while this function gets them; returns how many
 * it got. The floor and ours run it on their own queue and task.
 */
export async function pingpong(
  queue: { put(item: number): Promise<void>; get(): Promise<number> },
  start: (producer: () => Promise<void>) => PromiseLike<void>,
): Promise<number> {
  const producer = start(async () => {
    for (let i = 0; i < size.pingpongItems; i++) await queue.put(i);
  });
  let received = 0;
  for (let i = 0; i < size.pingpongItems; i++) {
    await queue.get();
    received++;
  }
  await producer;
  return received;
}

/**
 * One implementation's version of the workloads it can express: each
 * function does the whole workload once and returns its op count.
 */
export type Workloads = Partial<Record<Workload, () => Promise<number>>>;

// ---------------------------------------------------------------- timing

/**
 * Milliseconds the thread running JavaScript has spent on a CPU (Linux:
 * the first field of /proc/thread-self/schedstat, in ns), or NaN. On a
 * machine whose cores other processes share, wall time grows with their
 * load and this does not; it leaves out the runtime's helper threads
 * (concurrent GC marking, JIT compilation), which run beside the main one.
 */
export function threadCpuMs(): number {
  try {
    const text = readFileSync("/proc/thread-self/schedstat", "utf8");
    return Number(text.slice(0, text.indexOf(" "))) / 1e6;
  } catch {
    return NaN;
  }
}

export type Measurement = {
  /** ops per second of wall time, of the median run */
  ops: number;
  medianMs: number;
  /** ops per second of main-thread CPU time (`threadCpuMs`), median run */
  cpuOps: number;
  /** every measured run, in order, in ms (the warm-up is not among them) */
  runsMs: number[];
  /** the main thread's CPU time of each of those runs, in ms */
  runsCpuMs: number[];
  warmUpMs: number;
};

/** The middle value, or the mean of the two middle ones. */
export function median(xs: readonly number[]): number {
  const sorted = xs.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** How `measure` samples; the defaults come from the command line. */
export type MeasureOptions = {
  /** stop after this long on one workload once 3 runs are in (`--budget-ms`, 3000) */
  budgetMs?: number;
  /** runs after the warm-up at the most (`--runs`, 5) */
  maxRuns?: number;
  /** whether a first run is made and left out (true) */
  warmUp?: boolean;
  /** whether to collect garbage before each run (unless `--no-gc`: true) */
  gc?: boolean;
};

/** A run taking longer than this is reported as a hang. */
const WATCHDOG_MS = 120_000;

async function once(
  fn: () => Promise<number>,
  expected: number,
  what: string,
  gc: boolean,
): Promise<[wallMs: number, cpuMs: number]> {
  if (gc) forceGc();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const dog = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what}: no result after ${WATCHDOG_MS} ms`)),
      WATCHDOG_MS,
    );
  });
  const cpuStart = threadCpuMs();
  const start = performance.now();
  try {
    const got = await Promise.race([fn(), dog]);
    const ms = performance.now() - start;
    const cpuMs = threadCpuMs() - cpuStart;
    if (got !== expected) {
      throw new Error(`${what}: got ${got}, expected ${expected}`);
    }
    return [ms, cpuMs];
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One warm-up run, then up to `maxRuns` runs, fewer once `budgetMs` is spent
 * and 3 are in; the median run, by wall time and by main-thread CPU time.
 * A warm-up slower than 3x the budget is the only sample. Each run must
 * return `expected` (its op count) within the watchdog's time.
 */
export async function measure(
  fn: () => Promise<number>,
  expected: number,
  what: string,
  options: MeasureOptions = {},
): Promise<Measurement> {
  const budgetMs = options.budgetMs ?? Number(flag("--budget-ms") ?? 3000);
  const maxRuns = options.maxRuns ?? Number(flag("--runs") ?? 5);
  const gc = options.gc ?? !argv.includes("--no-gc");
  const began = performance.now();
  let warmUpMs = NaN;
  let warmUpCpuMs = NaN;
  if (options.warmUp ?? true) {
    [warmUpMs, warmUpCpuMs] = await once(fn, expected, what, gc);
  }
  const runsMs: number[] = [];
  const runsCpuMs: number[] = [];
  if (!(warmUpMs >= 3 * budgetMs)) {
    while (runsMs.length < maxRuns) {
      const [ms, cpuMs] = await once(fn, expected, what, gc);
      runsMs.push(ms);
      runsCpuMs.push(cpuMs);
      const spent = performance.now() - began;
      if (spent > 3 * budgetMs) break;
      if (spent > budgetMs && runsMs.length >= Math.min(3, maxRuns)) break;
    }
  }
  const medianMs = median(runsMs.length ? runsMs : [warmUpMs]);
  const medianCpuMs = median(runsCpuMs.length ? runsCpuMs : [warmUpCpuMs]);
  return {
    ops: expected / (medianMs / 1000),
    medianMs,
    cpuOps: expected / (medianCpuMs / 1000),
    runsMs,
    runsCpuMs,
    warmUpMs,
  };
}

export const sumOf = (xs: readonly number[]): number =>
  xs.reduce((a, b) => a + b, 0);

// ---------------------------------------------------------------- output

/** ops/s as a whole number with thousands separators, or n/a. */
export function fmtOps(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x)
    ? "n/a"
    : Math.round(x).toLocaleString("en-US");
}

/** A ratio to two or three significant digits, or n/a. */
export function fmtRatio(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "n/a";
  return x >= 10 ? x.toFixed(1) : x >= 0.1 ? x.toFixed(2) : x.toPrecision(2);
}

/**
 * A markdown table's lines: the head, then each row; every column but the
 * first is right-aligned (numbers).
 */
export function table(
  head: readonly string[],
  rows: readonly string[][],
): string[] {
  return [
    `| ${head.join(" | ")} |`,
    `| --- |${" ---: |".repeat(head.length - 1)}`,
    ...rows.map((cells) => `| ${cells.join(" | ")} |`),
  ];
}

/**
 * Prints a result as one line of JSON on stdout (what `bench/all.sh`
 * collects), then exits: the timers or fibers a peer leaves behind must
 * not keep the process alive, and the numbers are out.
 */
export function printJsonAndExit(result: unknown): never {
  console.log(JSON.stringify(result));
  exit(0);
}
