// Tests of mod.ts. They use node:test and node:assert/strict only, so the
// same file runs unchanged under `deno test` (sanitizers on) and `bun test`.
// Timing is checked under virtual time, where it is exact and instant.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  getRunningLoop,
  run,
  sleep,
} from "./mod.ts";

// ---------------------------------------------------------------------------
// The tutorial
// ---------------------------------------------------------------------------

async function sayAfter(ms: number, what: string, said: string[]) {
  await sleep(ms);
  said.push(what);
}

test("tutorial: sequential awaits take 3000 ms of loop time", async () => {
  const said: string[] = [];
  const elapsed = await run(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    await sayAfter(1000, "hello", said);
    await sayAfter(2000, "world", said);
    return loop.time() - start;
  }, { virtualTime: true });
  assert.equal(elapsed, 3000);
  assert.deepEqual(said, ["hello", "world"]);
});

test("tutorial: two tasks take 2000 ms of loop time", async () => {
  const said: string[] = [];
  const elapsed = await run(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    const task1 = createTask(() => sayAfter(1000, "hello", said));
    const task2 = createTask(() => sayAfter(2000, "world", said));
    await task1;
    await task2;
    return loop.time() - start;
  }, { virtualTime: true });
  assert.equal(elapsed, 2000);
  assert.deepEqual(said, ["hello", "world"]);
});

test("tutorial: a cancelled sleep raises CancelledError at the await", async () => {
  await run(async () => {
    const task = createTask(() => sleep(60_000));
    await sleep(0);
    task.cancel("stop");
    await assert.rejects(
      task,
      (e) => e instanceof CancelledError && e.message === "stop",
    );
  });
});

// ---------------------------------------------------------------------------
// Event loop
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Futures
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Runners
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Waiting and timeouts
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Task groups
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Synchronization primitives
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Transports and protocols
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Subprocesses
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Timelines
// ---------------------------------------------------------------------------
// Node modules are imported inside the tests that use them, so that no
// name here can collide with the imports of other sections.
import { Timeline, type TimelineEvent } from "./mod.ts";

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

// Throws unless `xml` is well-formed: tags balanced and properly nested,
// attributes quoted, `&` only in entities, `<` only in markup, one root.
// Returns the element names in document order. (DOMParser is in neither
// Deno nor Bun.)
function parseXmlElements(xml: string): string[] {
  const token =
    /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*"[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|([^<]+)|(<)/g;
  const badAmpersand = /&(?!#\d+;|#x[\da-fA-F]+;|amp;|lt;|gt;|quot;|apos;)/;
  const stack: string[] = [];
  const names: string[] = [];
  let roots = 0;
  for (const m of xml.matchAll(token)) {
    const [, slash, name, attributes, selfClosing, text, stray] = m;
    if (stray !== undefined) throw new Error(`stray "<" at ${m.index}`);
    if (text !== undefined) {
      if (badAmpersand.test(text)) throw new Error(`bare "&" at ${m.index}`);
      if (stack.length === 0 && text.trim() !== "") {
        throw new Error(`text outside the root at ${m.index}`);
      }
      continue;
    }
    if (name === undefined) continue; // a comment
    if (attributes !== undefined && badAmpersand.test(attributes)) {
      throw new Error(`bare "&" in the attributes of <${name}>`);
    }
    if (slash) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
      continue;
    }
    if (stack.length === 0) roots++;
    names.push(name);
    if (!selfClosing) stack.push(name);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join("> <")}>`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return names;
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

// Each example runs as its own program under the current runtime, the
// tutorial's two with --virtual so they take no real seconds.
async function runExample(file: string, ...args: string[]): Promise<string> {
  const { execFileSync } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const process = (await import("node:process")).default;
  const path = fileURLToPath(new URL(`./examples/${file}`, import.meta.url));
  const argv = "Deno" in globalThis
    ? ["run", "-A", path, ...args]
    : [path, ...args];
  return execFileSync(process.execPath, argv, {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, NO_COLOR: "1" },
  });
}

function secondsOfDay(clock: string): number {
  const [h, m, s] = clock.split(":").map(Number);
  return h * 3600 + m * 60 + s;
}

test("timeline: examples/ programs run and print what they should", async () => {
  for (
    const [file, seconds] of [["async_await_demo.ts", 3], [
      "async_task_demo.ts",
      2,
    ]] as const
  ) {
    const out = await runExample(file, "--virtual");
    const m = out.match(
      /^started at (\d\d:\d\d:\d\d)\nhello\nworld\nfinished at (\d\d:\d\d:\d\d)\nelapsed (\S+) s\n$/,
    );
    assert.ok(m, `${file} printed:\n${out}`);
    assert.equal(
      (secondsOfDay(m[2]) - secondsOfDay(m[1]) + 86400) % 86400,
      seconds,
    );
    assert.equal(m[3], `${seconds}.000`);
  }
  assert.equal(
    await runExample("timeouts.ts", "--virtual"),
    [
      "waitFor(slow job, 100 ms)",
      "  report: cleaned up at 100 ms",
      "  TimeoutError at 100 ms",
      "timeout(100 ms) on a block, moved 100 ms later once",
      "  block: cleaned up at 300 ms",
      "  TimeoutError at 300 ms",
      "wait([fast, slow], { timeout: 100 })",
      "  at 400 ms: 1 done, 1 pending",
      "  slow: cleaned up at 400 ms",
      "",
    ].join("\n"),
  );
  assert.equal(
    await runExample("task_group.ts", "--virtual"),
    [
      "three fetches in a group",
      "  fetchUser(1) ended at 100 ms",
      "  fetchUser(3) ended at 150 ms",
      "  fetchUser(2) ended at 200 ms",
      "  got user1, user2, user3 at 200 ms",
      "one fetch fails: the others are cancelled",
      "  fetchUser(-1) ended at 50 ms",
      "  fetchUser(4) ended at 50 ms",
      "  fetchUser(5) ended at 50 ms",
      "  ExceptionGroup at 50 ms: RangeError: no user -1",
      "",
    ].join("\n"),
  );
  const out = await runExample("timeline.ts");
  assert.match(out, /^hello\nworld\ntwo tasks/);
  assert.match(out, /\nhello +\|#-+# +\| 1000 ms\n/);
  assert.match(out, /\nworld +\|#-+#\| 2000 ms\n/);
  const written = out.match(/wrote (.+timeline\.svg)\n$/);
  assert.ok(written, out);
  const { readFileSync, rmSync } = await import("node:fs");
  const { dirname } = await import("node:path");
  try {
    assert.equal(parseXmlElements(readFileSync(written[1], "utf8"))[0], "svg");
  } finally {
    rmSync(dirname(written[1]), { recursive: true, force: true });
  }
});
