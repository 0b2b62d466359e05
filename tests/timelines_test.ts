// Timelines: what they record, and their text and SVG drawings.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  run,
  sleep,
  Timeline,
  type TimelineEvent,
} from "../mod.ts";
import { parseXmlElements } from "./helpers.ts";

// The tutorial's concurrent program, recorded: main, hello and world.
async function recordTwoTasks(): Promise<Timeline> {
  const timeline = new Timeline({ title: "two tasks" });
  await run(async () => {
    const hello = createTask(() => sleep(1000), { name: "hello" });
    const world = createTask(() => sleep(2000), { name: "world" });
    await hello;
    await world;
  }, { timeline, virtualTime: true });
  return timeline;
}

// The events of one task as "state@time" strings.
function lifeOf(events: TimelineEvent[], id: number): string[] {
  return events
    .filter((event) => event.id === id)
    .map((event) => `${event.state}@${event.time}`);
}

test("timeline: records the tutorial's sequential awaits, 3000 ms", async () => {
  const timeline = new Timeline();
  await run(async () => {
    await sleep(1000);
    await sleep(2000);
  }, { timeline, virtualTime: true });
  assert.deepEqual(lifeOf(timeline.events, 1), [
    "created@0",
    "running@0",
    "waiting@0",
    "running@1000",
    "waiting@1000",
    "running@3000",
    "done@3000",
  ]);
  assert.equal(timeline.duration(), 3000);
});

test("timeline: records the tutorial's two tasks in order, 2000 ms", async () => {
  const timeline = await recordTwoTasks();
  const { events } = timeline;
  assert.deepEqual(
    timeline.rows().map((row) => row.name),
    [events[0].task, "hello", "world"],
  );
  assert.deepEqual(lifeOf(events, 1), [
    "created@0",
    "running@0",
    "waiting@0",
    "running@1000",
    "waiting@1000",
    "running@2000",
    "done@2000",
  ]);
  assert.deepEqual(lifeOf(events, 2), [
    "created@0",
    "running@0",
    "waiting@0",
    "running@1000",
    "done@1000",
  ]);
  assert.deepEqual(lifeOf(events, 3), [
    "created@0",
    "running@0",
    "waiting@0",
    "running@2000",
    "done@2000",
  ]);
  // Time never goes back, and main wakes only after the task it awaits.
  const times = events.map((event) => event.time);
  assert.deepEqual(times, [...times].sort((a, b) => a - b));
  const index = (id: number, state: string, time: number) =>
    events.findIndex((e) =>
      e.id === id && e.state === state && e.time === time
    );
  assert.ok(index(2, "done", 1000) < index(1, "running", 1000));
  assert.ok(index(3, "done", 2000) < index(1, "running", 2000));
  assert.equal(timeline.duration(), 2000);
});

test("timeline: toText draws a row per task, running # and waiting -", async () => {
  const timeline = await recordTwoTasks();
  const lines = timeline.toText({ width: 20 }).split("\n");
  const main = timeline.rows()[0].name.padEnd(5);
  assert.deepEqual(lines.slice(0, 4), [
    "two tasks",
    `${main} |#---------#--------#| 2000 ms`,
    `${"hello".padEnd(main.length)} |#---------#         | 1000 ms`,
    `${"world".padEnd(main.length)} |#------------------#| 2000 ms`,
  ]);
  assert.match(lines[4], /0 ms +2000 ms$/);
  assert.match(lines[5], /# running {2}- waiting {2}\. scheduled/);
});

test("timeline: toSVG is well-formed XML with names, bars, axis, legend", async () => {
  const timeline = await recordTwoTasks();
  const svg = timeline.toSVG();
  const elements = parseXmlElements(svg);
  assert.equal(elements[0], "svg");
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  for (
    const text of ["two tasks", ">hello<", ">world<", ">0 ms<", ">2000 ms<"]
  ) {
    assert.ok(svg.includes(text), `missing ${text}`);
  }
  for (const text of [">running<", ">waiting<", ">scheduled<"]) {
    assert.ok(svg.includes(text), `legend lacks ${text}`);
  }
  // Running slices last no time at all here, yet each is drawn visibly.
  const running = [
    ...svg.matchAll(/width="([\d.]+)" height="18" fill="#e8590c"/g),
  ];
  assert.equal(running.length, 3 + 2 + 2);
  for (const [, width] of running) assert.ok(Number(width) >= 3);
  // An empty timeline draws an empty chart, not an error.
  assert.equal(parseXmlElements(new Timeline().toSVG())[0], "svg");
  assert.match(new Timeline().toText(), /0 ms/);
  assert.doesNotThrow(() =>
    parseXmlElements(Timeline.sideBySide([timeline, timeline]))
  );
});

test("timeline: escapes names, shows failures and cancellations", async () => {
  const timeline = new Timeline({ title: "<A & B>" });
  await run(async () => {
    const failing = createTask(async () => {
      await sleep(100);
      throw new RangeError("no");
    }, { name: `"quoted" <&>` });
    const sleeper = createTask(() => sleep(1000), { name: "sleeper" });
    await sleep(200);
    sleeper.setName("renamed");
    sleeper.cancel();
    await assert.rejects(failing, RangeError);
    await assert.rejects(sleeper, CancelledError);
  }, { timeline, virtualTime: true });
  const rows = timeline.rows();
  assert.deepEqual(
    rows.slice(1).map((row) => [row.name, row.outcome, row.end]),
    [[`"quoted" <&>`, "error", 100], ["renamed", "cancelled", 200]],
  );
  assert.equal(rows[0].outcome, "result");
  const svg = timeline.toSVG();
  parseXmlElements(svg);
  assert.ok(svg.includes("&#60;A &#38; B&#62;"));
  assert.ok(svg.includes("100 ms, failed"));
  assert.ok(svg.includes("200 ms, cancelled"));
  assert.match(timeline.toText(), /renamed +\|.*\| 200 ms, cancelled/);
});

test("timeline: Jupyter display gives the SVG and the text", async () => {
  const timeline = await recordTwoTasks();
  const display = Symbol.for("Jupyter.display");
  const show = (timeline as unknown as Record<symbol, () => unknown>)[display];
  assert.deepEqual(show.call(timeline), {
    "image/svg+xml": timeline.toSVG(),
    "text/plain": timeline.toText(),
  });
});
