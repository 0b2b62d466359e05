/**
 * What the side-by-side benchmark (`bench/suite.ts`) shares with its
 * implementations: the workloads and their sizes, the runtime, the command
 * line, and timing a workload as the median of a few short runs.
 *
 * Sizes are those of `core.ts` and `sync.ts` (and of `core_asyncio.py` and
 * `sync_asyncio.py`), so the columns of one table measure the same work.
 * Runs on Deno, Bun and Node 24 (which strips the types), with no flags
 * beyond the one that exposes the garbage collector.
 */

import { readFileSync } from "node:fs";

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
 * `--no-gc` turns it off, so a CPU profile shows only the collections the
 * workload itself causes.
 */
export function forceGc(): void {
  if (argv.includes("--no-gc")) return;
  if (host.Bun) host.Bun.gc(true);
  else host.gc?.();
}

/** Whether a forced collection is possible, so memory figures are exact. */
export const canGc: boolean = Boolean(host.Bun) ||
  typeof host.gc === "function";

export function exit(code: number): never {
  if (host.Deno) host.Deno.exit(code);
  if (host.process) host.process.exit(code);
  throw new Error(`exit ${code}`);
}

// ---------------------------------------------------------------- sizes

/** `--quick` divides every size by 10, for a smoke test. */
export const SCALE: number = argv.includes("--quick") ? 10 : 1;

export const N_TASKS = 100_000 / SCALE;
export const SWITCH_TASKS = 10;
export const SWITCHES_PER_TASK = 10_000 / SCALE;
export const N_TIMERS = 100_000 / SCALE;
export const PINGPONG_ITEMS = 200_000 / SCALE;
export const MPMC_ITEMS = 1_000_000 / SCALE;
export const MPMC_SIDES = 4;
export const LOCK_TASKS = 100;
export const LOCK_ROUNDS = 2000 / SCALE;
export const EVENT_TASKS = 100_000 / SCALE;

/** The same delays as core.ts and core_asyncio.py: a 32-bit LCG, 1..10 ms. */
export const DELAYS: number[] = (() => {
  const out = new Array<number>(N_TIMERS);
  let x = 12345;
  for (let i = 0; i < N_TIMERS; i++) {
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
  tasks: N_TASKS,
  switches: SWITCH_TASKS * SWITCHES_PER_TASK,
  timers: N_TIMERS,
  lock: LOCK_TASKS * LOCK_ROUNDS,
  event: EVENT_TASKS,
  pingpong: PINGPONG_ITEMS,
  mpmc: MPMC_ITEMS,
};

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

function median(xs: number[]): number {
  const sorted = xs.slice().sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Stop after this long on one workload once 3 runs are in. */
const BUDGET_MS = Number(flag("--budget-ms") ?? 3000);
const MAX_RUNS = Number(flag("--runs") ?? 5);
/** A run taking longer than this is reported as a hang. */
const WATCHDOG_MS = 120_000;

async function once(
  fn: () => Promise<number>,
  expected: number,
  what: string,
): Promise<[wallMs: number, cpuMs: number]> {
  forceGc();
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
 * One warm-up run, then up to `--runs` (5) runs, fewer once `--budget-ms`
 * (3000) is spent and 3 are in; the median run, by wall time and by
 * main-thread CPU time. A warm-up slower than 3x the budget is the only
 * sample.
 */
export async function measure(
  fn: () => Promise<number>,
  workload: Workload,
  what: string,
): Promise<Measurement> {
  const expected = OPS[workload];
  const began = performance.now();
  const [warmUpMs, warmUpCpuMs] = await once(fn, expected, what);
  const runsMs: number[] = [];
  const runsCpuMs: number[] = [];
  if (warmUpMs < 3 * BUDGET_MS) {
    while (runsMs.length < MAX_RUNS) {
      const [ms, cpuMs] = await once(fn, expected, what);
      runsMs.push(ms);
      runsCpuMs.push(cpuMs);
      const spent = performance.now() - began;
      if (spent > 3 * BUDGET_MS) break;
      if (spent > BUDGET_MS && runsMs.length >= Math.min(3, MAX_RUNS)) break;
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
