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

import {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  Event,
  gather,
  Lock,
  RuntimeError,
  Semaphore,
  type Task,
} from "./mod.ts";

// A seeded PRNG (mulberry32), so that random storms replay exactly.
function seededRandom(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// One loop step: tasks created or woken before it have run up to their
// next await when it returns.
const step = () => sleep(0);

// Steps the loop until `done()` holds; fails rather than hang.
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (done()) return;
    await step();
  }
  assert.fail("the condition never held");
}

test("lock: acquire without contention resolves at once, using releases", async () => {
  await run(async () => {
    const lock = new Lock();
    assert.equal(lock.locked(), false);
    {
      using _ = await lock.acquire();
      assert.equal(lock.locked(), true);
    }
    assert.equal(lock.locked(), false);
    const held = await lock.acquire();
    assert.equal(typeof held[Symbol.dispose], "function");
    assert.equal("then" in held, false);
    lock.release();
    assert.equal(lock.locked(), false);
  });
});

test("lock: waiters get the lock in arrival order", async () => {
  const order = await run(async () => {
    const lock = new Lock();
    const order: string[] = [];
    const worker = (name: string) => async () => {
      using _ = await lock.acquire();
      order.push(name);
      await sleep(10);
    };
    await gather(["a", "b", "c", "d"].map(worker));
    return order;
  }, { virtualTime: true });
  assert.deepEqual(order, ["a", "b", "c", "d"]);
});

test("lock: a newcomer does not jump ahead of a woken waiter; locked() stays true", async () => {
  const order = await run(async () => {
    const lock = new Lock();
    const order: string[] = [];
    await lock.acquire();
    const waiter = createTask(async () => {
      using _ = await lock.acquire();
      order.push("waiter");
    });
    await step();
    lock.release(); // hands the lock to the waiter, which has not run yet
    assert.equal(lock.locked(), true);
    const newcomer = createTask(async () => {
      using _ = await lock.acquire();
      order.push("newcomer");
    });
    await gather([waiter, newcomer]);
    assert.equal(lock.locked(), false);
    return order;
  });
  assert.deepEqual(order, ["waiter", "newcomer"]);
});

test("lock: a waiter cancelled while waiting is skipped", async () => {
  await run(async () => {
    const lock = new Lock();
    await lock.acquire();
    const a = createTask(() => lock.acquire());
    const b = createTask(async () => {
      using _ = await lock.acquire();
      return "b";
    });
    await step();
    a.cancel();
    await step();
    lock.release();
    assert.equal(await b, "b");
    await assert.rejects(a, CancelledError);
    assert.equal(lock.locked(), false);
  });
});

test("lock: a waiter cancelled right after release() passes the lock on", async () => {
  await run(async () => {
    const lock = new Lock();
    await lock.acquire();
    const a = createTask(async () => {
      using _ = await lock.acquire();
      return "a";
    });
    const b = createTask(async () => {
      using _ = await lock.acquire();
      return "b";
    });
    await step();
    lock.release(); // handed to a ...
    a.cancel(); // ... which is cancelled before it runs
    await assert.rejects(a, CancelledError);
    assert.equal(await b, "b");
    assert.equal(lock.locked(), false);
  });
});

test("lock: releasing an unlocked lock is RuntimeError", () => {
  const lock = new Lock();
  assert.throws(() => lock.release(), RuntimeError);
});

test("lock: storm of cancelled waiters keeps mutual exclusion and loses no wake-up", async () => {
  const random = seededRandom(7);
  await run(async () => {
    const lock = new Lock();
    let inside = 0;
    let maxInside = 0;
    let rounds = 0;
    const tasks: Task<void>[] = [];
    for (let i = 0; i < 300; i++) {
      const pause = Math.floor(random() * 3);
      tasks.push(createTask(async () => {
        for (let r = 0; r < 5; r++) {
          using _ = await lock.acquire();
          inside++;
          maxInside = Math.max(maxInside, inside);
          try {
            await sleep(pause);
          } finally {
            inside--;
          }
          rounds++;
        }
      }));
    }
    // Cancelled by tasks woken in the same loop steps as the lock's
    // hand-overs, so that some land between a hand-over and its waiter
    // running.
    const doomed = tasks.filter(() => random() < 1 / 3);
    for (const task of doomed) {
      const delay = Math.floor(random() * 600);
      createTask(async () => {
        await sleep(delay);
        task.cancel();
      });
    }
    const outcomes = await gather(tasks, { returnExceptions: true });
    const cancelled = outcomes.filter((o) => o instanceof CancelledError);
    assert.equal(maxInside, 1);
    assert.equal(lock.locked(), false);
    assert.ok(cancelled.length > 50, `only ${cancelled.length} cancelled`);
    assert.equal(
      outcomes.filter((o) => o === undefined).length,
      tasks.length - cancelled.length,
    );
    assert.ok(rounds >= (tasks.length - cancelled.length) * 5);
  }, { virtualTime: true });
});

test("semaphore: the value limits how many hold it at once", async () => {
  await run(async () => {
    const semaphore = new Semaphore(3);
    let inside = 0;
    let maxInside = 0;
    const worker = async () => {
      using _ = await semaphore.acquire();
      maxInside = Math.max(maxInside, ++inside);
      await sleep(10);
      inside--;
    };
    const start = getRunningLoop().time();
    await gather(Array.from({ length: 9 }, () => worker));
    assert.equal(maxInside, 3);
    assert.equal(getRunningLoop().time() - start, 30);
    assert.equal(semaphore.locked(), false);
  }, { virtualTime: true });
});

test("semaphore: waiters are served in order; a newcomer waits behind a woken one", async () => {
  const order = await run(async () => {
    const semaphore = new Semaphore(1);
    const order: string[] = [];
    await semaphore.acquire();
    const waiter = (name: string) =>
      createTask(async () => {
        using _ = await semaphore.acquire();
        order.push(name);
      });
    const first = waiter("first");
    const second = waiter("second");
    await step();
    semaphore.release(); // handed to "first"
    assert.equal(semaphore.locked(), true);
    const newcomer = waiter("newcomer");
    await gather([first, second, newcomer]);
    return order;
  });
  assert.deepEqual(order, ["first", "second", "newcomer"]);
});

test("semaphore: a waiter cancelled right after release() passes the unit on", async () => {
  await run(async () => {
    const semaphore = new Semaphore(0);
    const a = createTask(() => semaphore.acquire());
    const b = createTask(() => semaphore.acquire());
    await step();
    semaphore.release();
    a.cancel();
    await assert.rejects(a, CancelledError);
    await b;
    assert.equal(semaphore.locked(), true);
    semaphore.release();
    assert.equal(semaphore.locked(), false);
  });
});

test("semaphore: a negative value is RangeError, a non-number TypeError", () => {
  assert.throws(() => new Semaphore(-1), RangeError);
  assert.throws(() => new Semaphore(1.5), RangeError);
  assert.throws(() => new Semaphore(NaN), /value/);
  assert.throws(() => new Semaphore(NaN), TypeError);
  assert.throws(() => new Semaphore("2" as unknown as number), TypeError);
  assert.equal(new Semaphore(0).locked(), true);
  assert.equal(new Semaphore().locked(), false);
});

test("boundedSemaphore: releasing more than acquired is RangeError", async () => {
  await run(async () => {
    const semaphore = new BoundedSemaphore(2);
    assert.throws(() => semaphore.release(), RangeError);
    const held = await semaphore.acquire();
    held[Symbol.dispose]();
    assert.throws(() => semaphore.release(), RangeError);
    assert.throws(() => new BoundedSemaphore(-1), RangeError);
    const plain = new Semaphore(1);
    plain.release(); // an unbounded one may grow
    await plain.acquire();
    assert.equal(plain.locked(), false);
  });
});

test("event: set() wakes every waiter; a clear() right after does not un-wake them", async () => {
  await run(async () => {
    const event = new Event();
    const waiters = Array.from(
      { length: 5 },
      () => createTask(() => event.wait()),
    );
    await step();
    assert.equal(event.isSet(), false);
    event.set();
    event.clear();
    assert.deepEqual(await gather(waiters), [true, true, true, true, true]);
    assert.equal(event.isSet(), false);
    const late = createTask(() => event.wait());
    await step();
    assert.equal(late.done(), false);
    event.set();
    assert.equal(await late, true);
    assert.equal(await event.wait(), true); // set: at once
  });
});

test("event: a waiter cancelled as set() happens does not stop the others", async () => {
  await run(async () => {
    const event = new Event();
    const a = createTask(() => event.wait());
    const b = createTask(() => event.wait());
    const c = createTask(() => event.wait());
    await step();
    a.cancel(); // before set: skipped
    event.set();
    b.cancel(); // after set, before it runs
    await assert.rejects(a, CancelledError);
    await assert.rejects(b, CancelledError);
    assert.equal(await c, true);
  });
});

test("condition: notify(n) wakes n waiters in order, notifyAll() the rest", async () => {
  await run(async () => {
    const condition = new Condition();
    const woken: number[] = [];
    const waiters = [0, 1, 2, 3, 4].map((i) =>
      createTask(async () => {
        using _ = await condition.acquire();
        await condition.wait();
        assert.equal(condition.locked(), true);
        woken.push(i);
      })
    );
    await step();
    {
      using _ = await condition.acquire();
      condition.notify(2);
    }
    await until(() => woken.length >= 2);
    for (let i = 0; i < 5; i++) await step();
    assert.deepEqual(woken, [0, 1]);
    {
      using _ = await condition.acquire();
      condition.notify();
    }
    await until(() => woken.length >= 3);
    for (let i = 0; i < 5; i++) await step();
    assert.deepEqual(woken, [0, 1, 2]);
    {
      using _ = await condition.acquire();
      condition.notifyAll();
    }
    await gather(waiters);
    assert.deepEqual(woken, [0, 1, 2, 3, 4]);
  });
});

test("condition: wait() re-acquires the lock before throwing when cancelled", async () => {
  await run(async () => {
    const lock = new Lock();
    const condition = new Condition(lock);
    let heldAtCatch: boolean | null = null;
    const waiter = createTask(async () => {
      await condition.acquire();
      try {
        await condition.wait();
      } catch (e) {
        heldAtCatch = lock.locked();
        condition.release();
        throw e;
      }
    });
    await step();
    await lock.acquire(); // now the waiter cannot re-acquire at once
    waiter.cancel();
    await step();
    await step();
    assert.equal(waiter.done(), false); // still re-acquiring
    lock.release();
    await assert.rejects(waiter, CancelledError);
    assert.equal(heldAtCatch, true);
    assert.equal(lock.locked(), false);
  });
});

test("condition: a waiter cancelled after notify() passes the notification on", async () => {
  await run(async () => {
    const condition = new Condition();
    const waiter = (name: string) =>
      createTask(async () => {
        using _ = await condition.acquire();
        await condition.wait();
        return name;
      });
    const a = waiter("a");
    const b = waiter("b");
    await step();
    await condition.acquire();
    condition.notify(); // a is notified ...
    a.cancel(); // ... and cancelled before it runs
    condition.release();
    await assert.rejects(a, CancelledError);
    assert.equal(await b, "b");
    assert.equal(condition.locked(), false);
  });
});

test("condition: notify() and notifyAll() without the lock are RuntimeError", async () => {
  await run(async () => {
    const condition = new Condition();
    assert.throws(() => condition.notify(), RuntimeError);
    assert.throws(() => condition.notifyAll(), RuntimeError);
    await assert.rejects(condition.wait(), RuntimeError);
    assert.throws(() => new Condition({} as Lock), TypeError);
  });
});

test("condition: waitFor(predicate) waits until the predicate holds", async () => {
  await run(async () => {
    const condition = new Condition();
    let count = 0;
    const checks: number[] = [];
    const waiter = createTask(async () => {
      using _ = await condition.acquire();
      return await condition.waitFor(() => {
        checks.push(count);
        return count >= 3 && `count is ${count}`;
      });
    });
    for (let i = 0; i < 3; i++) {
      await step();
      using _ = await condition.acquire();
      count++;
      condition.notifyAll();
    }
    assert.equal(await waiter, "count is 3");
    assert.deepEqual(checks, [0, 1, 2, 3]);
  });
});

test("barrier: every party gets a distinct index, round after round", async () => {
  await run(async () => {
    const barrier = new Barrier(4);
    assert.equal(barrier.parties, 4);
    for (let round = 0; round < 3; round++) {
      const parties = Array.from({ length: 4 }, () => () => barrier.wait());
      const indexes = await gather(parties);
      assert.deepEqual([...indexes].sort(), [0, 1, 2, 3]);
      assert.equal(barrier.nWaiting, 0);
    }
    assert.equal(barrier.broken, false);
  });
});

test("barrier: a waiter cancelled while it fills leaves it usable", async () => {
  await run(async () => {
    const barrier = new Barrier(3);
    const a = createTask(() => barrier.wait());
    const b = createTask(() => barrier.wait());
    await step();
    assert.equal(barrier.nWaiting, 2);
    a.cancel();
    await assert.rejects(a, CancelledError);
    assert.equal(barrier.nWaiting, 1);
    const c = createTask(() => barrier.wait());
    await step();
    assert.equal(c.done(), false); // only two live parties: not yet
    const d = createTask(() => barrier.wait());
    const indexes = await gather([b, c, d]);
    assert.deepEqual(indexes, [0, 1, 2]);
    assert.equal(barrier.broken, false);
  });
});

test("barrier: reset() breaks current waiters but leaves it usable", async () => {
  await run(async () => {
    const barrier = new Barrier(2);
    const a = createTask(() => barrier.wait());
    await step();
    await barrier.reset();
    await assert.rejects(a, BrokenBarrierError);
    assert.equal(barrier.broken, false);
    assert.equal(barrier.nWaiting, 0);
    const indexes = await gather([() => barrier.wait(), () => barrier.wait()]);
    assert.deepEqual([...indexes].sort(), [0, 1]);
  });
});

test("barrier: abort() leaves it broken", async () => {
  await run(async () => {
    const barrier = new Barrier(3);
    const a = createTask(() => barrier.wait());
    await step();
    await barrier.abort();
    await assert.rejects(a, BrokenBarrierError);
    assert.equal(barrier.broken, true);
    await assert.rejects(barrier.wait(), BrokenBarrierError);
    assert.throws(() => new Barrier(0), RangeError);
    assert.throws(() => new Barrier("2" as unknown as number), TypeError);
  });
});

// ---------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------

import {
  LifoQueue,
  PriorityQueue,
  Queue,
  QueueEmpty,
  QueueFull,
  QueueShutDown,
} from "./mod.ts";

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
    await step();
    await queue.get();
    queue.taskDone();
    await step();
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
    await step();
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
    await step();
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
    await step();
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
    await step();
    a.cancel(); // while waiting
    await step();
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
