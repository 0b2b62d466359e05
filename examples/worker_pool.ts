// The worker pool: jobs wait in a Queue, a few worker tasks take them one
// at a time, `join()` says when every job is done, and then the workers,
// which loop forever, are cancelled. A Timeline draws who worked when.
//
//   deno run examples/worker_pool.ts            # about 0.7 s
//   deno run examples/worker_pool.ts --virtual  # exact times, instantly
import process from "node:process";
import {
  CancelledError,
  createTask,
  currentTask,
  gather,
  getRunningLoop,
  Queue,
  run,
  sleep,
  Timeline,
} from "../mod.ts";

const virtualTime = process.argv.includes("--virtual");

// Loop time since the start, rounded: real timers fire a little late.
let start = 0;
const now = () =>
  `${Math.round((getRunningLoop().time() - start) / 10) * 10} ms`;

const timeline = new Timeline({ title: "three workers, nine jobs" });

await run(async () => {
  currentTask()?.setName("main");
  start = getRunningLoop().time();
  const queue = new Queue<number>();
  const jobs = [300, 100, 200, 400, 100, 200, 300, 100, 200];
  for (const ms of jobs) queue.putNowait(ms);

  async function worker(name: string): Promise<never> {
    for (;;) {
      const ms = await queue.get(); // waits while there is no job
      try {
        await sleep(ms); // the job
        console.log(`${now()}: ${name} finished a ${ms} ms job`);
      } finally {
        queue.taskDone(); // even a failed job counts as handled
      }
    }
  }

  const workers = ["w1", "w2", "w3"].map((name) =>
    createTask(() => worker(name), { name })
  );
  await queue.join(); // until taskDone() was called for every job
  const total = jobs.reduce((a, b) => a + b);
  console.log(`${now()}: all ${jobs.length} jobs (${total} ms of work) done`);
  for (const task of workers) task.cancel();
  const results = await gather(workers, { returnExceptions: true });
  const cancelled = results.filter((r) => r instanceof CancelledError).length;
  console.log(`${now()}: ${cancelled} workers cancelled`);
}, { virtualTime, timeline });

console.log(timeline.toText());
