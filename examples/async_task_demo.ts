// The asyncio tutorial's second program: the same two coroutines as tasks.
// `createTask` starts each at once, so they wait at the same time: 2
// seconds in all, the longer of the two, instead of 3.
//
//   deno run examples/async_task_demo.ts            # 2 real seconds
//   deno run examples/async_task_demo.ts --virtual  # the same, instantly
import process from "node:process";
import { createTask, getRunningLoop, run, sleep } from "../mod.ts";

const virtualTime = process.argv.includes("--virtual");

async function sayAfter(ms: number, what: string): Promise<void> {
  await sleep(ms);
  console.log(what);
}

// Python's time.strftime('%X'): the wall clock as HH:MM:SS. Under virtual
// time the clock is the start time plus the loop's virtual milliseconds.
const wallStart = Date.now();
let loopStart = 0;
function clock(): string {
  const now = new Date(wallStart + getRunningLoop().time() - loopStart);
  return [now.getHours(), now.getMinutes(), now.getSeconds()]
    .map((n) => String(n).padStart(2, "0"))
    .join(":");
}

await run(async () => {
  loopStart = getRunningLoop().time();
  // Pass a function, not `sayAfter(…)` called: the task calls it, so the
  // task owns (and can cancel) every await inside it.
  const task1 = createTask(() => sayAfter(1000, "hello"));
  const task2 = createTask(() => sayAfter(2000, "world"));

  console.log(`started at ${clock()}`);
  await task1;
  await task2;
  console.log(`finished at ${clock()}`);
  const elapsed = (getRunningLoop().time() - loopStart) / 1000;
  console.log(`elapsed ${elapsed.toFixed(virtualTime ? 3 : 2)} s`);
}, { virtualTime });
