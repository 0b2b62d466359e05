/**
 * Why Bun's lock workload reads differently in different benches: the lock
 * workload (100 tasks x 2,000 acquisitions with a sleep(0) inside) run one
 * way at a time, in a fresh process, printing every run's ops/s so JIT
 * warm-up shows.
 *
 *     bun bench/lock_study.ts VARIANT [--runs 8] [--no-gc] [--after event]
 *     deno run -A --v8-flags=--expose-gc bench/lock_study.ts VARIANT
 *
 * VARIANT:
 * - ours-using: `using _ = await lock.acquire()` in createTask tasks (the
 *   lock workload of impl/ours.ts);
 * - ours-try: `await lock.acquire()` then try/finally `lock.release()`;
 * - ours-gather: try/finally, the tasks made by gather from functions;
 * - floor: the bare lock, sleep(0) through the FIFO scheduler of floor.ts
 *   (the lock workload of impl/floor.ts);
 * - floor-microtask: the bare lock, sleep(0) as `await null`, one microtask
 *   with no scheduler at all.
 * `--no-gc`: no forced collection before each run. `--after event`: first
 * run ours' event workload (100,000 tasks) once in the same process, to see
 * what a big earlier heap and JIT feedback from other code do.
 */
import {
  argv,
  flag,
  measure,
  median,
  OPS,
  runtimeName,
  size,
} from "./harness.ts";
import { lockWith, workloads as floor } from "./impl/floor.ts";
import { workloads as ours } from "./impl/ours.ts";
import { createTask, gather, Lock, run, sleep } from "../mod.ts";

/** One task's acquisitions, the lock released in a `finally`. */
function rounds(lock: Lock, count: () => void): () => Promise<void> {
  return async () => {
    for (let i = 0; i < size.lockRounds; i++) {
      await lock.acquire();
      try {
        count();
        await sleep(0);
      } finally {
        lock.release();
      }
    }
  };
}

/** Ours with try/finally, the tasks made by createTask or by gather. */
function oursTry(makeTasks: "createTask" | "gather"): Promise<number> {
  return run(async () => {
    const lock = new Lock();
    let n = 0;
    const body = rounds(lock, () => n++);
    const bodies = Array.from({ length: size.lockTasks }, () => body);
    await gather(
      makeTasks === "gather" ? bodies : bodies.map((b) => createTask(b)),
    );
    return n;
  });
}

const VARIANTS: Record<string, () => Promise<number>> = {
  "ours-using": ours.lock!,
  "ours-try": () => oursTry("createTask"),
  "ours-gather": () => oursTry("gather"),
  floor: floor.lock!,
  "floor-microtask": () => lockWith(() => Promise.resolve()),
};

const variant = argv[0];
const fn = VARIANTS[variant];
if (fn === undefined) {
  throw new RangeError(
    `variant must be one of ${Object.keys(VARIANTS).join(", ")}`,
  );
}
const runs = Number(flag("--runs") ?? 8);
if (flag("--after") === "event") await ours.event!();
// Every run counts, the first included: the JIT's warm-up is what is studied.
const m = await measure(fn, OPS.lock, variant, {
  warmUp: false,
  maxRuns: runs,
  budgetMs: Infinity,
});
const ops = m.runsMs.map((ms) => OPS.lock / (ms / 1000));
const cpuOps = m.runsCpuMs.map((ms) => OPS.lock / (ms / 1000));
// From the fourth run on, ours on Bun has finished tiering up.
const steadyCpuMs = m.runsCpuMs.slice(3).reduce((a, b) => a + b, 0);
const steady = runs > 3 ? OPS.lock * (runs - 3) / (steadyCpuMs / 1000) : NaN;
const mops = (x: number) => (x / 1e6).toFixed(2);
console.log(
  `${runtimeName} ${variant}${argv.includes("--no-gc") ? " --no-gc" : ""}${
    flag("--after") ? ` --after ${flag("--after")}` : ""
  }: wall ${ops.map(mops).join(" ")} M ops/s, median after the first ${
    mops(median(ops.slice(1)))
  }M; per main-thread CPU s: ${cpuOps.map(mops).join(" ")} M ops/s, runs 4 on ${
    mops(steady)
  }M`,
);
