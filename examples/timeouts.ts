// Three ways to stop waiting, each with asyncio's behaviour: the slow work
// is cancelled (its `finally` runs) and you get a TimeoutError.
//
//   deno run examples/timeouts.ts            # about half a second
//   deno run examples/timeouts.ts --virtual  # exact times, instantly
import process from "node:process";
import {
  createTask,
  getRunningLoop,
  run,
  sleep,
  timeout,
  TimeoutError,
  wait,
  waitFor,
} from "../mod.ts";

const virtualTime = process.argv.includes("--virtual");

// Loop time since the start, rounded: real timers fire a little late.
let start = 0;
const now = () =>
  `${Math.round((getRunningLoop().time() - start) / 10) * 10} ms`;

async function slowJob(what: string, ms: number): Promise<string> {
  try {
    await sleep(ms);
    return what;
  } finally {
    console.log(`  ${what}: cleaned up at ${now()}`);
  }
}

await run(async () => {
  start = getRunningLoop().time();

  // waitFor: one awaitable, one deadline.
  console.log("waitFor(slow job, 100 ms)");
  try {
    await waitFor(() => slowJob("report", 1000), 100);
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    console.log(`  TimeoutError at ${now()}`);
  }

  // timeout: a deadline on a whole block, which it can move.
  console.log("timeout(100 ms) on a block, moved 100 ms later once");
  try {
    await timeout(100, async (cm) => {
      await sleep(50);
      cm.reschedule(cm.when()! + 100);
      await slowJob("block", 1000);
    });
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    console.log(`  TimeoutError at ${now()}`);
  }

  // wait with a timeout: nothing is cancelled, you get what is done.
  console.log("wait([fast, slow], { timeout: 100 })");
  const fast = createTask(() => sleep(50, "fast"));
  const slow = createTask(() => slowJob("slow", 1000));
  const [done, pending] = await wait([fast, slow], { timeout: 100 });
  console.log(`  at ${now()}: ${done.size} done, ${pending.size} pending`);
  slow.cancel();
  await wait([slow]);
}, { virtualTime });
