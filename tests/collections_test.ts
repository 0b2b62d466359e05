// The internal collections, seen through what uses them: the binary heap
// behind PriorityQueue and behind the event loop's timers, and the privacy
// of the timer handles kept in it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { EventLoop, PriorityQueue, TimerHandle } from "../mod.ts";

test("timers: equal deadlines run in the order they were scheduled", async () => {
  const loop = new EventLoop({ virtualTime: true });
  const ran: number[] = [];
  for (let i = 0; i < 20; i++) loop.callAt(100 + (i % 3), () => ran.push(i));
  const done = loop.createFuture<void>();
  loop.callAt(200, () => done.setResult());
  await loop.runUntilComplete(done);
  loop.close();
  const expected = [...Array(20).keys()].sort((a, b) => a % 3 - b % 3);
  assert.deepEqual(ran, expected);
});

test("timers: after most are cancelled (the heap is rebuilt), the rest run in deadline then scheduling order", async () => {
  const loop = new EventLoop({ virtualTime: true });
  const ran: number[] = [];
  const handles: TimerHandle[] = [];
  // 300 timers on 5 deadlines, scheduled latest first.
  for (let i = 0; i < 300; i++) {
    handles.push(loop.callLater(50 - (i % 5) * 10, () => ran.push(i)));
  }
  // Cancel 250 of them: far more than half, so the heap is rebuilt.
  for (let i = 0; i < 300; i++) if (i % 6 !== 0) handles[i].cancel();
  const done = loop.createFuture<void>();
  loop.callLater(100, () => done.setResult());
  await loop.runUntilComplete(done);
  loop.close();
  const live = [...Array(300).keys()].filter((i) => i % 6 === 0);
  const expected = live.sort((a, b) =>
    (50 - (a % 5) * 10) - (50 - (b % 5) * 10)
  );
  assert.deepEqual(ran, expected);
});

test("timers: a timer cancelled after it ran, or in its own callback, changes nothing", async () => {
  const loop = new EventLoop({ virtualTime: true });
  const ran: string[] = [];
  const self: TimerHandle = loop.callLater(10, () => {
    ran.push("self");
    self.cancel();
  });
  loop.callLater(10, () => ran.push("next"));
  const done = loop.createFuture<void>();
  loop.callLater(20, () => done.setResult());
  await loop.runUntilComplete(done);
  self.cancel();
  assert.deepEqual(ran, ["self", "next"]);
  loop.close();
});

test("timers: a handle exposes no heap internals", () => {
  const loop = new EventLoop({ virtualTime: true });
  const handle = loop.callLater(10, () => {});
  assert.equal("sequence" in handle, false);
  assert.equal("unschedule" in TimerHandle, false);
  handle.cancel();
  loop.close();
});

test("priorityQueue: a compare that throws while an item is taken leaves the queue as it was", () => {
  let failing = false;
  const queue = new PriorityQueue<number>(0, {
    compare: (a, b) => {
      if (failing) throw new Error("compare failed");
      return a - b;
    },
  });
  const items = [5, 3, 8, 1, 9, 2, 7, 3, 6, 4, 1];
  for (const item of items) queue.putNowait(item);
  failing = true;
  assert.throws(() => queue.getNowait(), /compare failed/);
  assert.throws(() => queue.putNowait(0), /compare failed/);
  failing = false;
  assert.equal(queue.qsize(), items.length);
  const out: number[] = [];
  while (!queue.empty()) out.push(queue.getNowait());
  assert.deepEqual(out, [...items].sort((a, b) => a - b));
});

test("priorityQueue: equal items come out in the order they were put", () => {
  const queue = new PriorityQueue<{ p: number; id: number }>(0, {
    compare: (a, b) => a.p - b.p,
  });
  for (let id = 0; id < 50; id++) queue.putNowait({ p: id % 4, id });
  const ids: number[] = [];
  while (!queue.empty()) ids.push(queue.getNowait().id);
  const expected = [...Array(50).keys()].sort((a, b) => a % 4 - b % 4);
  assert.deepEqual(ids, expected);
});
