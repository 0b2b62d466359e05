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
 * - ours-using: `using _ = await lock.acquire()` in createTask tasks (as in
 *   sync.ts and impl/ours.ts);
 * - ours-try: `await lock.acquire()` then try/finally `lock.release()`;
 * - ours-gather: try/finally, the tasks made by gather from functions;
 * - floor: the bare lock, sleep(0) through the FIFO scheduler of floor.ts
 *   (as in sync.ts and impl/floor.ts);
 * - floor-microtask: the bare lock, sleep(0) as `await null`, one microtask
 *   with no scheduler at all.
 * `--no-gc`: no forced collection before each run. `--after event`: first
 * run ours' event workload (100,000 tasks) once in the same process, to see
 * what a big earlier heap and JIT feedback from other code do.
 */
import { argv, flag, forceGc, runtimeName, threadCpuMs } from "./harness.ts";
import { BareLock, bareScheduler } from "./floor.ts";
import {
  createTask,
  Event,
  gather,
  Lock,
  run,
  sleep,
  type Task,
} from "../mod.ts";

const TASKS = 100;
const ROUNDS = 2000;

async function floorWith(yieldNow: () => Promise<unknown>): Promise<number> {
  const lock = new BareLock();
  let n = 0;
  await Promise.all(Array.from({ length: TASKS }, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      await lock.acquire();
      try {
        n++;
        await yieldNow();
      } finally {
        lock.release();
      }
    }
  }));
  return n;
}

const VARIANTS: Record<string, () => Promise<number>> = {
  "ours-using": () =>
    run(async () => {
      const lock = new Lock();
      let n = 0;
      const tasks: Task<void>[] = [];
      for (let t = 0; t < TASKS; t++) {
        tasks.push(createTask(async () => {
          for (let i = 0; i < ROUNDS; i++) {
            using _ = await lock.acquire();
            n++;
            await sleep(0);
          }
        }));
      }
      await gather(tasks);
      return n;
    }),
  "ours-try": () =>
    run(async () => {
      const lock = new Lock();
      let n = 0;
      const tasks: Task<void>[] = [];
      for (let t = 0; t < TASKS; t++) {
        tasks.push(createTask(async () => {
          for (let i = 0; i < ROUNDS; i++) {
            await lock.acquire();
            try {
              n++;
              await sleep(0);
            } finally {
              lock.release();
            }
          }
        }));
      }
      await gather(tasks);
      return n;
    }),
  "ours-gather": () =>
    run(async () => {
      const lock = new Lock();
      let n = 0;
      await gather(Array.from({ length: TASKS }, () => async () => {
        for (let i = 0; i < ROUNDS; i++) {
          await lock.acquire();
          try {
            n++;
            await sleep(0);
          } finally {
            lock.release();
          }
        }
      }));
      return n;
    }),
  floor: () => floorWith(bareScheduler()),
  "floor-microtask": () => floorWith(() => Promise.resolve()),
};

const variant = argv[0];
const fn = VARIANTS[variant];
if (fn === undefined) {
  throw new RangeError(
    `variant must be one of ${Object.keys(VARIANTS).join(", ")}`,
  );
}
const runs = Number(flag("--runs") ?? 8);
const gc = !argv.includes("--no-gc");
if (flag("--after") === "event") {
  await run(async () => {
    const event = new Event();
    const waiters = Array.from(
      { length: 100_000 },
      () => createTask(() => event.wait()),
    );
    await sleep(0);
    event.set();
    await gather(waiters);
  });
}
const ops: number[] = [];
const cpuOps: number[] = [];
let steadyCpu = 0;
for (let r = 0; r < runs; r++) {
  if (gc) forceGc();
  const c0 = threadCpuMs() / 1000;
  const t0 = performance.now();
  const n = await fn();
  const ms = performance.now() - t0;
  const cpu = threadCpuMs() / 1000 - c0;
  if (n !== TASKS * ROUNDS) throw new Error(`got ${n}`);
  ops.push(TASKS * ROUNDS / (ms / 1000));
  cpuOps.push(TASKS * ROUNDS / cpu);
  if (r >= 3) steadyCpu += cpu;
}
// From the fourth run on, ours on Bun has finished tiering up.
const steady = runs > 3 ? TASKS * ROUNDS * (runs - 3) / steadyCpu : NaN;
const medianAfterFirst = (xs: number[]) => {
  const sorted = xs.slice(1).sort((a, b) => a - b);
  return sorted[sorted.length >> 1];
};
const m = (x: number) => (x / 1e6).toFixed(2);
console.log(
  `${runtimeName} ${variant}${gc ? "" : " --no-gc"}${
    flag("--after") ? ` --after ${flag("--after")}` : ""
  }: wall ${ops.map(m).join(" ")} M ops/s, median after the first ${
    m(medianAfterFirst(ops))
  }M; per main-thread CPU s: ${cpuOps.map(m).join(" ")} M ops/s, runs 4 on ${
    m(steady)
  }M`,
);
