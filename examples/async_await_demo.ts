// The asyncio tutorial's first program: two awaits, one after the other.
// `say_after(1, 'hello')` then `say_after(2, 'world')`: 3 seconds in all,
// because an `await` waits for its coroutine to finish before going on.
//
//   deno run examples/async_await_demo.ts            # 3 real seconds
//   deno run examples/async_await_demo.ts --virtual  # the same, instantly
import process from "node:process";
import { getRunningLoop, run, sleep } from "../mod.ts";

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
  console.log(`started at ${clock()}`);
  await sayAfter(1000, "hello");
  await sayAfter(2000, "world");
  console.log(`finished at ${clock()}`);
  const elapsed = (getRunningLoop().time() - loopStart) / 1000;
  console.log(`elapsed ${elapsed.toFixed(virtualTime ? 3 : 2)} s`);
}, { virtualTime });
