// Queues: Queue, PriorityQueue and LifoQueue. The tests after the banner
// "As CPython 3.14.2 runs them" each mirror a Python program that was run
// on CPython 3.14.2 (pyodide 314.0.8, on a loop whose clock is virtual,
// like CPython's test_utils.TestLoop); the program and what it printed are
// in the comment above the test, and the test expects the same lines. Then
// a seeded random cancellation storm checks the invariants: no item lost,
// duplicated or reordered, never more than maxsize.

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
  TimeoutError,
} from "../mod.ts";
import {
  cancelLater,
  cancelOneOf,
  forEachSeed,
  maybeTimed,
  seededRandom,
  steps,
  virtual,
} from "./helpers.ts";

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
function queueTraffic(seed: number, N: number) {
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
    const { sent, received, left, cancelledIn } = await queueTraffic(seed, N);
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

// ---------------------------------------------------------------------------
// As CPython 3.14.2 runs them
// ---------------------------------------------------------------------------

// async def main():
//     q = asyncio.Queue(1)
//     g = create_task(q.get())
//     await sleep(0)
//     q.put_nowait(1)
//     print("qsize with getter woken:", q.qsize(), "full:", q.full())
//     try:
//         q.put_nowait(2)
//         print("second put accepted")
//     except asyncio.QueueFull:
//         print("QueueFull")
//     g.cancel()
//     try:
//         await g
//     except asyncio.CancelledError:
//         print("getter cancelled")
//     print("qsize", q.qsize(), "items", [q.get_nowait() for _ in range(q.qsize())])
//
// CPython 3.14.2 prints:
//     qsize with getter woken: 1 full: True
//     QueueFull
//     getter cancelled
//     qsize 1 items [1]
test("queue: a woken getter cancelled before it runs never makes the queue hold more than maxsize", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const queue = new Queue<number>(1);
    const getter = createTask(() => queue.get());
    await steps();
    queue.putNowait(1);
    log.push(`qsize with getter woken: ${queue.qsize()} full: ${queue.full()}`);
    try {
      queue.putNowait(2);
      log.push("second put accepted");
    } catch (e) {
      assert.ok(e instanceof QueueFull);
      log.push("QueueFull");
    }
    getter.cancel();
    await assert.rejects(getter, CancelledError);
    log.push("getter cancelled");
    const items: number[] = [];
    const size = queue.qsize();
    for (let i = 0; i < size; i++) items.push(queue.getNowait());
    log.push(`qsize ${size} items ${items}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "qsize with getter woken: 1 full: true",
    "QueueFull",
    "getter cancelled",
    "qsize 1 items 1",
  ]);
});

// async def main(kind):
//     q = kind()
//     got = []
//     async def getter():
//         got.append(await q.get())
//     g1 = create_task(getter())
//     g2 = create_task(getter())
//     await sleep(0)
//     for i in (3, 1, 2) if kind is asyncio.PriorityQueue else (1, 2, 3):
//         q.put_nowait(i)
//     print("qsize", q.qsize())
//     g1.cancel()
//     await gather(g1, g2, return_exceptions=True)
//     while not q.empty():
//         got.append(q.get_nowait())
//     print(kind.__name__, got)
//
// CPython 3.14.2 prints, for Queue, LifoQueue and PriorityQueue:
//     qsize 3
//     Queue [1, 2, 3]
//     qsize 3
//     LifoQueue [3, 2, 1]
//     qsize 3
//     PriorityQueue [1, 2, 3]
test("queue: a woken getter cancelled before it runs reorders nothing (FIFO, LIFO, priority)", async () => {
  const kinds = [
    ["Queue", () => new Queue<number>(), [1, 2, 3], [1, 2, 3]],
    ["LifoQueue", () => new LifoQueue<number>(), [1, 2, 3], [3, 2, 1]],
    ["PriorityQueue", () => new PriorityQueue<number>(), [3, 1, 2], [1, 2, 3]],
  ] as const;
  for (const [name, make, put, expected] of kinds) {
    const [qsize, got] = await run(async () => {
      const queue = make();
      const got: number[] = [];
      const getter = async () => {
        got.push(await queue.get());
      };
      const g1 = createTask(getter);
      const g2 = createTask(getter);
      await steps();
      for (const item of put) queue.putNowait(item);
      const qsize = queue.qsize();
      g1.cancel();
      await gather([g1, g2], { returnExceptions: true });
      while (!queue.empty()) got.push(queue.getNowait());
      return [qsize, got] as const;
    }, virtual);
    assert.equal(qsize, 3, name);
    assert.deepEqual(got, expected, name);
  }
});

// async def main():
//     q = asyncio.Queue()
//     g = create_task(q.get())
//     await sleep(0)
//     q.put_nowait("x")
//     print("qsize", q.qsize(), "empty", q.empty())
//     print("newcomer gets", q.get_nowait())
//     await sleep(0)
//     print("getter done", g.done())
//     q.put_nowait("y")
//     print("got", await g, "qsize", q.qsize())
//
// CPython 3.14.2 prints:
//     qsize 1 empty False
//     newcomer gets x
//     getter done False
//     got y qsize 0
test("queue: an item put while a getter waits counts in qsize() until the getter runs", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const queue = new Queue<string>();
    const getter = createTask(() => queue.get());
    await steps();
    queue.putNowait("x");
    log.push(`qsize ${queue.qsize()} empty ${queue.empty()}`);
    log.push(`newcomer gets ${queue.getNowait()}`);
    await steps();
    log.push(`getter done ${getter.done()}`); // it waits again
    queue.putNowait("y");
    log.push(`got ${await getter} qsize ${queue.qsize()}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "qsize 1 empty false",
    "newcomer gets x",
    "getter done false",
    "got y qsize 0",
  ]);
});

// async def main():
//     q = asyncio.Queue()
//     g = create_task(q.get())
//     await sleep(0)
//     q.put_nowait("x")
//     print("newcomer gets", q.get_nowait())
//     await sleep(0)
//     print("getter waits again", not g.done())
//     g.cancel()
//     try:
//         await g
//     except asyncio.CancelledError:
//         print("getter cancelled")
//     q.put_nowait("y")
//     print("qsize", q.qsize(), q.get_nowait())
//
// CPython 3.14.2 prints:
//     newcomer gets x
//     getter waits again True
//     getter cancelled
//     qsize 1 y
test("queue: a getter waiting again after a newcomer took its item can still be cancelled", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const queue = new Queue<string>();
    const getter = createTask(() => queue.get());
    await steps();
    queue.putNowait("x");
    log.push(`newcomer gets ${queue.getNowait()}`);
    await steps();
    log.push(`getter waits again ${!getter.done()}`);
    getter.cancel();
    await assert.rejects(getter, CancelledError);
    log.push("getter cancelled");
    queue.putNowait("y");
    log.push(`qsize ${queue.qsize()} ${queue.getNowait()}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "newcomer gets x",
    "getter waits again true",
    "getter cancelled",
    "qsize 1 y",
  ]);
});

// async def main():
//     q = asyncio.Queue(1)
//     q.put_nowait("first")
//     async def putter(x):
//         await q.put(x)
//         return x
//     a = create_task(putter("a"))
//     b = create_task(putter("b"))
//     await sleep(0)
//     print(q.get_nowait(), "full", q.full())
//     a.cancel()
//     print("b put", await b, "a cancelled", a.cancelled(), "qsize", q.qsize())
//     print(q.get_nowait())
//     # a newcomer fills the slot freed for a woken putter, which waits again
//     q.put_nowait("x")
//     c = create_task(putter("c"))
//     await sleep(0)
//     print(q.get_nowait(), "full", q.full())
//     q.put_nowait("newcomer")
//     await sleep(0)
//     print("c done", c.done(), "qsize", q.qsize())
//     print(q.get_nowait())
//     print("c put", await c, q.get_nowait())
//
// CPython 3.14.2 prints:
//     first full False
//     b put b a cancelled True qsize 1
//     b
//     x full False
//     c done False qsize 1
//     newcomer
//     c put c c
test("queue: a woken putter cancelled before it runs passes the slot on; one a newcomer beat waits again", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const queue = new Queue<string>(1);
    queue.putNowait("first");
    const putter = (item: string) => async () => {
      await queue.put(item);
      return item;
    };
    const a = createTask(putter("a"));
    const b = createTask(putter("b"));
    await steps();
    log.push(`${queue.getNowait()} full ${queue.full()}`);
    a.cancel();
    const bPut = await b;
    log.push(
      `b put ${bPut} a cancelled ${a.cancelled()} qsize ${queue.qsize()}`,
    );
    log.push(queue.getNowait());
    queue.putNowait("x");
    const c = createTask(putter("c"));
    await steps();
    log.push(`${queue.getNowait()} full ${queue.full()}`);
    queue.putNowait("newcomer");
    await steps();
    log.push(`c done ${c.done()} qsize ${queue.qsize()}`);
    log.push(queue.getNowait());
    const cPut = await c;
    log.push(`c put ${cPut} ${queue.getNowait()}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "first full false",
    "b put b a cancelled true qsize 1",
    "b",
    "x full false",
    "c done false qsize 1",
    "newcomer",
    "c put c c",
  ]);
});

// ---------------------------------------------------------------------------
// Cancellation storm
//
// A seeded random program under virtual time: putters and getters through
// a FIFO, LIFO or priority queue, cancelled at random moments by other
// tasks (often in the same loop step as a wake-up) or timed out by
// waitFor(). A failure names its seed; SYNC_STORM_SEEDS=N runs N seeds
// (default 30).
// ---------------------------------------------------------------------------

const isCancellation = (e: unknown) =>
  e instanceof CancelledError || e instanceof TimeoutError;

type Item = [priority: number, id: number];

// What a queue of `kind` must give out next, from the items it holds.
function modelTake(kind: string, held: Item[]): Item {
  if (kind === "fifo") return held.shift()!;
  if (kind === "lifo") return held.pop()!;
  let best = 0;
  for (let i = 1; i < held.length; i++) {
    const [p, id] = held[i];
    if (p < held[best][0] || (p === held[best][0] && id < held[best][1])) {
      best = i;
    }
  }
  return held.splice(best, 1)[0];
}

async function queueStorm(seed: number): Promise<void> {
  const random = seededRandom(seed);
  const kind = ["fifo", "lifo", "priority"][Math.floor(random() * 3)];
  const maxsize = [1, 2, 3, 5][Math.floor(random() * 4)];
  await run(async () => {
    const queue = kind === "fifo"
      ? new Queue<Item>(maxsize)
      : kind === "lifo"
      ? new LifoQueue<Item>(maxsize)
      : new PriorityQueue<Item>(maxsize);
    // Follow what really goes in and out, and check each take against a
    // model of the store: no reordering, and never more than maxsize.
    const held: Item[] = [];
    const added = new Set<number>();
    const putNowait = queue.putNowait.bind(queue);
    const getNowait = queue.getNowait.bind(queue);
    queue.putNowait = (item: Item) => {
      putNowait(item);
      assert.ok(!added.has(item[1]), `item ${item[1]} added twice`);
      added.add(item[1]);
      held.push(item);
      assert.ok(queue.qsize() <= maxsize, `qsize ${queue.qsize()}`);
    };
    queue.getNowait = () => {
      const item = getNowait();
      assert.deepEqual(item, modelTake(kind, held), "taken out of order");
      return item;
    };
    const sent = new Set<number>();
    const notSent = new Set<number>();
    const received: number[] = [];
    const tasks: Task<void>[] = [];
    const getters: Task<void>[] = [];
    const putters: Task<void>[] = [];
    const doomedGetters: Task<void>[] = [];
    const doomedPutters: Task<void>[] = [];
    const doom = (task: Task<void>, doomed: Task<void>[]) => {
      if (random() < 0.35) {
        doomed.push(task);
        if (random() < 0.6) cancelLater(random, task);
      }
    };
    let nextId = 0;
    for (let round = 0; round < 12; round++) {
      const puts = Math.floor(random() * 6);
      const gets = Math.floor(random() * 6);
      for (let i = 0; i < puts; i++) {
        const item: Item = [Math.floor(random() * 4), nextId++];
        const nowait = random() < 0.15;
        const task = createTask(async () => {
          try {
            // Cancelling at once after putNowait() hits woken getters
            // before they run.
            if (nowait) queue.putNowait(item);
            else await maybeTimed(random, () => queue.put(item));
            sent.add(item[1]);
            if (random() < 0.5) cancelOneOf(random, doomedGetters);
          } catch (e) {
            if (!isCancellation(e) && !(e instanceof QueueFull)) throw e;
            notSent.add(item[1]);
            throw e;
          }
        });
        tasks.push(task);
        putters.push(task);
        doom(task, doomedPutters);
      }
      for (let i = 0; i < gets; i++) {
        const nowait = random() < 0.15;
        const task = createTask(async () => {
          const item = nowait
            ? queue.getNowait()
            : await maybeTimed(random, () => queue.get());
          received.push(item[1]);
          if (random() < 0.5) cancelOneOf(random, doomedPutters);
        });
        tasks.push(task);
        getters.push(task);
        doom(task, doomedGetters);
      }
      // Time moves on only once every woken task has run: a getter still
      // waits only on an empty queue, a putter only on a full one (else a
      // wake-up was lost). Tasks woken at this very time are only
      // cancelled, which changes neither.
      await sleep(1 + Math.floor(random() * 4));
      if (getters.some((task) => !task.done())) {
        assert.equal(queue.qsize(), 0, "an item waits while a getter waits");
      }
      if (putters.some((task) => !task.done())) {
        assert.ok(queue.full(), "room is free while a putter waits");
      }
    }
    await sleep(30);
    for (const task of tasks) task.cancel(); // whatever still waits
    const outcomes = await gather(tasks, { returnExceptions: true });
    for (const outcome of outcomes as unknown[]) {
      if (outcome === undefined || isCancellation(outcome)) continue;
      if (outcome instanceof QueueFull || outcome instanceof QueueEmpty) {
        continue;
      }
      throw outcome;
    }
    const left: number[] = [];
    while (!queue.empty()) left.push(queue.getNowait()[1]);
    // Exactly what was sent came out, once, or is still there.
    const out = [...received, ...left];
    assert.equal(new Set(out).size, out.length, "an item came out twice");
    assert.deepEqual(
      [...out].sort((a, b) => a - b),
      [...sent].sort((a, b) => a - b),
      "items lost or made up",
    );
    assert.deepEqual(
      [...added].sort((a, b) => a - b),
      [...sent].sort((a, b) => a - b),
    );
    for (const id of notSent) {
      assert.ok(!added.has(id), `failed put of ${id} enqueued it`);
    }
  }, virtual);
}

test("storm: queues (FIFO, LIFO, priority) lose, duplicate and reorder nothing, and never exceed maxsize", async () => {
  await forEachSeed(queueStorm);
});
