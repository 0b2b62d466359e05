// Work on other cores: the wall time of CPU-bound jobs (fib(32), 8 of them
// by default) on a WorkerPoolExecutor of N workers against one worker.
// `deno run -A bench/executor.ts [--jobs 8] [--n 32] [--workers N]`, or the
// same with `bun` / `node`. N defaults to the number of cores; the speed-up
// approaches N on an idle machine.
import { availableParallelism } from "node:os";
import { gather, run, WorkerPoolExecutor } from "../mod.ts";
import type * as Work from "../tests/executor_work.ts";
import { flag, table } from "./harness.ts";

const jobs = Number(flag("--jobs") ?? 8);
const n = Number(flag("--n") ?? 32);
const workers = Number(flag("--workers") ?? availableParallelism());
const WORK = new URL("../tests/executor_work.ts", import.meta.url);

async function wallTime(maxWorkers: number): Promise<number> {
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, { maxWorkers });
  try {
    // Warm-up: start every worker, load the module and warm its JIT in each.
    await run(() =>
      gather(
        Array.from({ length: maxWorkers }, () => () => pool.run("fib", 27)),
      )
    );
    const started = performance.now();
    await run(() =>
      gather(Array.from({ length: jobs }, () => () => pool.run("fib", n)))
    );
    return performance.now() - started;
  } finally {
    await pool[Symbol.asyncDispose]();
  }
}

const one = await wallTime(1);
const many = await wallTime(workers);
console.log(
  table(["workers", `wall ms (${jobs} x fib(${n}))`, "speed-up"], [
    ["1", one.toFixed(0), "1.00"],
    [String(workers), many.toFixed(0), (one / many).toFixed(2)],
  ]).join("\n"),
);
