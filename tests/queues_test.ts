// Queues: Queue, PriorityQueue and LifoQueue.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  gather,
  getRunningLoop,
  LifoQueue,
  PriorityQueue,
  Queue,
  QueueEmpty,
  QueueFull,
  QueueShutDown,
  run,
  sleep,
  type Task,
} from "../mod.ts";
import { seededRandom, steps } from "./helpers.ts";

test("queue: first in first out, with qsize, empty, full and the nowait errors", () => {
  const queue = new Queue<string>(2);
  assert.equal(queue.maxsize, 2);
  assert.equal(queue.empty(), true);
  assert.throws(() => queue.getNowait(), QueueEmpty);
  queue.putNowait("a");
  queue.putNowait("b");
  assert.equal(queue.qsize(), 2);
  assert.equal(queue.full(), true);
  assert.throws(() => queue.putNowait("c"), QueueFull);
  assert.equal(queue.getNowait(), "a");
  assert.equal(queue.getNowait(), "b");
  assert.equal(queue.empty(), true);
});

test("queue: maxsize 0 or less is unbounded; a maxsize not a number is TypeError", () => {
  for (const maxsize of [0, -1]) {
    const queue = new Queue<number>(maxsize);
    for (let i = 0; i < 1000; i++) queue.putNowait(i);
    assert.equal(queue.full(), false);
  }
  assert.throws(() => new Queue(NaN), TypeError);
  assert.throws(() => new Queue("10" as unknown as number), /maxsize/);
  assert.throws(() => new PriorityQueue("1" as unknown as number), TypeError);
});

test("queue: put() waits for room (maxsize backpressure)", async () => {
  await run(async () => {
    const queue = new Queue<number>(2);
    const loop = getRunningLoop();
    const putAt: number[] = [];
    const producer = createTask(async () => {
      for (let i = 0; i < 5; i++) {
        await queue.put(i);
        putAt.push(loop.time());
      }
    });
    const got: number[] = [];
    for (let i = 0; i < 5; i++) {
      await sleep(100);
      assert.ok(queue.qsize() <= 2);
      got.push(await queue.get());
    }
    await producer;
    assert.deepEqual(got, [0, 1, 2, 3, 4]);
    assert.deepEqual(putAt, [0, 0, 100, 200, 300]);
  }, { virtualTime: true });
});

test("queue: join() waits for every taskDone(); one too many is RangeError", async () => {
  await run(async () => {
    const queue = new Queue<number>();
    assert.throws(() => queue.taskDone(), RangeError);
    await queue.join(); // nothing put: at once
    queue.putNowait(1);
    queue.putNowait(2);
    const joined = createTask(() => queue.join());
    await steps();
    await queue.get();
    queue.taskDone();
    await steps();
    assert.equal(joined.done(), false);
    await queue.get();
    queue.taskDone();
    await joined;
    assert.throws(() => queue.taskDone(), RangeError);
  });
});

test("queue: shutdown() lets queued items out, then QueueShutDown; blocked tasks wake", async () => {
  await run(async () => {
    const full = new Queue<number>(1);
    full.putNowait(1);
    const putter = createTask(() => full.put(2));
    const empty = new Queue<number>();
    const getter = createTask(() => empty.get());
    await steps();
    full.shutdown();
    empty.shutdown();
    await assert.rejects(putter, QueueShutDown);
    await assert.rejects(getter, QueueShutDown);
    await assert.rejects(full.put(3), QueueShutDown);
    assert.throws(() => full.putNowait(3), QueueShutDown);
    assert.equal(await full.get(), 1); // still comes out
    await assert.rejects(full.get(), QueueShutDown);
    assert.throws(() => full.getNowait(), QueueShutDown);
  });
});

test("queue: shutdown(true) drops the items and releases join()", async () => {
  await run(async () => {
    const queue = new Queue<number>();
    queue.putNowait(1);
    queue.putNowait(2);
    const joined = createTask(() => queue.join());
    await steps();
    assert.equal(joined.done(), false);
    queue.shutdown(true);
    await joined;
    assert.equal(queue.qsize(), 0);
    await assert.rejects(queue.get(), QueueShutDown);
  });
});

test("queue: for await takes items until shutdown", async () => {
  await run(async () => {
    const queue = new Queue<number>();
    const consumer = createTask(async () => {
      const seen: number[] = [];
      for await (const item of queue) seen.push(item);
      return seen;
    });
    for (let i = 0; i < 3; i++) {
      await sleep(10);
      await queue.put(i);
    }
    queue.shutdown();
    assert.deepEqual(await consumer, [0, 1, 2]);
  }, { virtualTime: true });
});

test("queue: a get() cancelled after an item was handed to it leaves the item for the next", async () => {
  await run(async () => {
    const queue = new Queue<string>();
    const a = createTask(() => queue.get());
    const b = createTask(() => queue.get());
    await steps();
    queue.putNowait("item"); // wakes a ...
    a.cancel(); // ... which is cancelled before it runs
    await assert.rejects(a, CancelledError);
    assert.equal(await b, "item");
    assert.equal(queue.empty(), true);
  });
});

test("queue: a cancelled put() never enqueues its item, and passes the room on", async () => {
  await run(async () => {
    const queue = new Queue<string>(1);
    queue.putNowait("first");
    const a = createTask(() => queue.put("a"));
    const b = createTask(() => queue.put("b"));
    const c = createTask(() => queue.put("c"));
    await steps();
    a.cancel(); // while waiting
    await steps();
    assert.equal(queue.getNowait(), "first"); // wakes b ...
    b.cancel(); // ... which is cancelled before it runs: c gets the room
    await assert.rejects(a, CancelledError);
    await assert.rejects(b, CancelledError);
    await c;
    assert.equal(queue.getNowait(), "c");
    assert.equal(queue.empty(), true);
  });
});

// Thousands of putters and getters through a small queue, a third of them
// cancelled at random moments; returns what went in and what came out.
function queueStorm(seed: number, N: number) {
  const random = seededRandom(seed);
  return run(async () => {
    const queue = new Queue<number>(4);
    const sent: number[] = [];
    const received: number[] = [];
    const cancelledIn = { put: 0, get: 0 };
    const tasks: Task<void>[] = [];
    const cancellable = async <T>(where: "put" | "get", op: Promise<T>) => {
      try {
        return await op;
      } catch (e) {
        if (e instanceof CancelledError) cancelledIn[where]++;
        throw e;
      }
    };
    // A third of them are cancelled at a random moment of their life: a few
    // ms after they start, by a task woken in the same loop steps as the
    // traffic, so that many cancellations land while blocked, and some
    // between a wake-up and the task running.
    const doomLater = (task: Task<void>, start: number) => {
      if (random() >= 1 / 3) return;
      const delay = start + 5 * Math.floor(random() * 3);
      createTask(async () => {
        await sleep(delay);
        task.cancel();
      });
    };
    for (let i = 0; i < N; i++) {
      // In bursts, putters then getters, so that many block at once on a
      // full or an empty queue.
      const putDelay = 10 * Math.floor(random() * 12) + 5;
      const getDelay = 10 * Math.floor(random() * 12);
      const putter = createTask(async () => {
        await sleep(putDelay);
        await cancellable("put", queue.put(i));
        sent.push(i);
      });
      const getter = createTask(async () => {
        await sleep(getDelay);
        received.push(await cancellable("get", queue.get()));
      });
      doomLater(putter, putDelay);
      doomLater(getter, getDelay);
      tasks.push(putter, getter);
    }
    await sleep(130);
    // Then whatever is still blocked (no room, or nothing to get) too.
    for (const task of tasks) task.cancel();
    await gather(tasks, { returnExceptions: true });
    const left: number[] = [];
    while (!queue.empty()) left.push(queue.getNowait());
    return { sent, received, left, cancelledIn };
  }, { virtualTime: true });
}

test("queue: storm of cancelled getters and putters loses and duplicates nothing", async () => {
  const N = 3000;
  for (const seed of [20240607, 1, 2]) {
    const { sent, received, left, cancelledIn } = await queueStorm(seed, N);
    const out = [...received, ...left];
    assert.equal(new Set(out).size, out.length, "an item came out twice");
    const byNumber = (a: number, b: number) => a - b;
    assert.deepEqual(out.sort(byNumber), [...sent].sort(byNumber));
    assert.ok(received.length > N / 3, `only ${received.length} received`);
    assert.ok(cancelledIn.put > 100, `${cancelledIn.put} puts cancelled`);
    assert.ok(cancelledIn.get > 100, `${cancelledIn.get} gets cancelled`);
  }
});

test("priorityQueue: numbers, strings and tuples in Python's order, ties in insertion order", async () => {
  const numbers = new PriorityQueue<number>();
  for (const n of [5, 1, 4, 2, 3, 0, -1]) numbers.putNowait(n);
  const outNumbers: number[] = [];
  while (!numbers.empty()) outNumbers.push(numbers.getNowait());
  assert.deepEqual(outNumbers, [-1, 0, 1, 2, 3, 4, 5]);

  const strings = new PriorityQueue<string>();
  for (const s of ["pear", "apple", "fig"]) await strings.put(s);
  assert.deepEqual(
    [await strings.get(), await strings.get(), await strings.get()],
    ["apple", "fig", "pear"],
  );

  const jobs = new PriorityQueue<[number, string]>();
  const order: [number, string][] = [
    [2, "b"],
    [1, "z"],
    [2, "a"],
    [1, "y"],
  ];
  for (const job of order) jobs.putNowait(job);
  assert.deepEqual(
    [jobs.getNowait(), jobs.getNowait(), jobs.getNowait(), jobs.getNowait()],
    [[1, "y"], [1, "z"], [2, "a"], [2, "b"]],
  );

  const task = { name: "same" };
  const ties = new PriorityQueue<[number, { name: string }]>();
  ties.putNowait([1, task]);
  ties.putNowait([1, task]); // equal elements are not compared further
  assert.equal(ties.qsize(), 2);
  const fifo = new PriorityQueue<{ p: number; id: string }>(0, {
    compare: (a, b) => a.p - b.p,
  });
  for (const id of ["first", "second", "third"]) fifo.putNowait({ p: 1, id });
  fifo.putNowait({ p: 0, id: "urgent" });
  const ids: string[] = [];
  while (!fifo.empty()) ids.push(fifo.getNowait().id);
  assert.deepEqual(ids, ["urgent", "first", "second", "third"]);
});

test("priorityQueue: items that cannot be ordered are TypeError and not enqueued", async () => {
  const queue = new PriorityQueue<unknown>();
  queue.putNowait(3);
  queue.putNowait(1);
  assert.throws(() => queue.putNowait("two"), TypeError);
  await assert.rejects(queue.put({}), TypeError);
  assert.equal(queue.qsize(), 2);
  assert.deepEqual([queue.getNowait(), queue.getNowait()], [1, 3]);
  assert.throws(
    () => new PriorityQueue(0, { compare: 1 as unknown as () => number }),
    TypeError,
  );
});

test("lifoQueue: last in, first out", async () => {
  const stack = new LifoQueue<number>(3);
  for (const n of [1, 2, 3]) await stack.put(n);
  assert.equal(stack.full(), true);
  assert.deepEqual([stack.getNowait(), await stack.get(), stack.getNowait()], [
    3,
    2,
    1,
  ]);
});
