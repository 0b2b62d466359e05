// Limiting concurrency with a Semaphore: ten downloads start at once, but
// `using _ = await slots.acquire()` lets only three of them work at a time;
// each that finishes hands its slot to the next.
//
//   deno run examples/rate_limit.ts            # about 0.6 s
//   deno run examples/rate_limit.ts --virtual  # exact times, instantly
import process from "node:process";
import { gather, getRunningLoop, run, Semaphore, sleep } from "../mod.ts";

const virtualTime = process.argv.includes("--virtual");

// Loop time since the start, rounded: real timers fire a little late.
let start = 0;
const now = () =>
  `${Math.round((getRunningLoop().time() - start) / 10) * 10} ms`;

const slots = new Semaphore(3);
let active = 0;
let mostActive = 0;

async function download(file: string, ms: number): Promise<number> {
  using _ = await slots.acquire(); // released at the end of the block
  active++;
  mostActive = Math.max(mostActive, active);
  console.log(`${now()}: start  ${file} (${active} at work)`);
  try {
    await sleep(ms); // the download
    return ms * 10; // its size, say
  } finally {
    active--;
  }
}

await run(async () => {
  start = getRunningLoop().time();
  const times = [200, 100, 300, 100, 200, 100, 200, 100, 100, 200];
  const sizes = await gather(
    times.map((ms, i) => () => download(`file${i}`, ms)),
  );
  const bytes = sizes.reduce((a, b) => a + b);
  console.log(
    `${now()}: ${sizes.length} files, ${bytes} bytes, at most ${mostActive} at once`,
  );
}, { virtualTime });
