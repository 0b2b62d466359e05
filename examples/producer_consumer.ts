// Producer and consumer with backpressure: a bounded Queue holds at most
// two items, so the fast producer waits in `put()` for the slow consumer
// instead of piling items up. `shutdown()` then ends the consumer's
// `for await` loop once it has taken what is left.
//
//   deno run examples/producer_consumer.ts            # about 1.3 s
//   deno run examples/producer_consumer.ts --virtual  # exact times, instantly
import process from "node:process";
import { createTask, getRunningLoop, Queue, run, sleep } from "../mod.ts";

const virtualTime = process.argv.includes("--virtual");

// Loop time since the start, rounded: real timers fire a little late.
let start = 0;
const time = () => Math.round((getRunningLoop().time() - start) / 10) * 10;

await run(async () => {
  start = getRunningLoop().time();
  const queue = new Queue<number>(2); // room for two: put() waits when full

  const consumer = createTask(async () => {
    for await (const item of queue) { // ends at shutdown, once empty
      await sleep(200); // using an item takes 200 ms
      console.log(`${time()} ms: consumer used ${item}`);
    }
    console.log(`${time()} ms: consumer: no more items`);
  });

  for (let item = 1; item <= 6; item++) {
    await sleep(50); // making an item takes 50 ms
    const before = time();
    await queue.put(item);
    const waited = time() - before;
    console.log(`${time()} ms: producer put ${item}, waited ${waited} ms`);
  }
  queue.shutdown(); // nothing more will come
  console.log(`${time()} ms: producer done, ${queue.qsize()} items queued`);
  await consumer;
}, { virtualTime });
