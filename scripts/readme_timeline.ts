// Draws docs/tutorial_timeline.svg, the picture README shows: the tutorial's
// sequential and concurrent programs side by side, under virtual time.
//
//   deno run -A scripts/readme_timeline.ts
import { writeFileSync } from "node:fs";
import { createTask, currentTask, run, sleep, Timeline } from "../mod.ts";

// The tutorial's coroutine, without the printing.
async function sayAfter(ms: number): Promise<void> {
  await sleep(ms);
}

const sequential = new Timeline({ title: "await, await: 3 s" });
await run(async () => {
  currentTask()?.setName("main");
  await sayAfter(1000);
  await sayAfter(2000);
}, { timeline: sequential, virtualTime: true });

const concurrent = new Timeline({ title: "two tasks: 2 s" });
await run(async () => {
  currentTask()?.setName("main");
  const task1 = createTask(() => sayAfter(1000), { name: "hello" });
  const task2 = createTask(() => sayAfter(2000), { name: "world" });
  await task1;
  await task2;
}, { timeline: concurrent, virtualTime: true });

const file = new URL("../docs/tutorial_timeline.svg", import.meta.url);
writeFileSync(
  file,
  Timeline.sideBySide([sequential, concurrent], { width: 420 }),
);
console.log(`wrote ${file.pathname}`);
