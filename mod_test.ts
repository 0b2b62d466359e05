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
