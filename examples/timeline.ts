// A picture of who ran when: the tutorial's two tasks recorded by a
// Timeline, printed as an ASCII chart and written as an SVG Gantt chart.
//
//   deno run -A examples/timeline.ts          # under virtual time: instant
//   deno run -A examples/timeline.ts --real   # the real 2 seconds
import process from "node:process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createTask, currentTask, run, sleep, Timeline } from "../mod.ts";

async function sayAfter(ms: number, what: string): Promise<void> {
  await sleep(ms);
  console.log(what);
}

const timeline = new Timeline({
  title: "two tasks: hello after 1 s, world after 2 s",
});
await run(async () => {
  currentTask()?.setName("main");
  const task1 = createTask(() => sayAfter(1000, "hello"), { name: "hello" });
  const task2 = createTask(() => sayAfter(2000, "world"), { name: "world" });
  await task1;
  await task2;
}, { timeline, virtualTime: !process.argv.includes("--real") });

console.log(timeline.toText());
const file = join(mkdtempSync(join(tmpdir(), "aio-timeline-")), "timeline.svg");
writeFileSync(file, timeline.toSVG());
console.log(`wrote ${file}`);
