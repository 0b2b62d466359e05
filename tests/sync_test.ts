// Locks, semaphores, events, conditions and barriers as asyncio 3.14 has
// them. Each behaviour test mirrors a Python program that was run on
// CPython 3.14.2 (pyodide 314.0.8, on a loop whose clock is virtual, like
// CPython's test_utils.TestLoop); the program and what it printed are in
// the comment above the test, and the test expects the same lines. Then
// seeded random cancellation storms check the invariants: never two lock
// holders, never more semaphore holders than its value, no wake-up lost,
// and a barrier that never hangs and stays usable.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  CancelledError,
  Condition,
  createTask,
  Event,
  gather,
  getRunningLoop,
  Lock,
  run,
  RuntimeError,
  Semaphore,
  sleep,
  type Task,
  TimeoutError,
  waitFor,
} from "../mod.ts";
import {
  cancelLater,
  cancelOneOf,
  forEachSeed,
  maybeTimed,
  seededRandom,
  steps,
  until,
  virtual,
} from "./helpers.ts";

const now = () => getRunningLoop().time();

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

// async def main():
//     lock = asyncio.Lock()
//     await lock.acquire()
//     holders = []
//     async def waiter(name):
//         await lock.acquire()
//         holders.append(name)
//         print(name, "holds; locked:", lock.locked())
//     w = create_task(waiter("w"))
//     await sleep(0)
//     lock.release()
//     print("after release, locked:", lock.locked())
//     try:
//         lock.release()
//         print("second release accepted")
//     except RuntimeError as e:
//         print("second release: RuntimeError", e)
//     await w
//     print("holders", holders, "locked:", lock.locked())
//
// CPython 3.14.2 prints:
//     after release, locked: False
//     second release: RuntimeError Lock is not acquired.
//     w holds; locked: True
//     holders ['w'] locked: True
test("lock: a second release() while the woken waiter has not run is RuntimeError", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const lock = new Lock();
    await lock.acquire();
    const holders: string[] = [];
    const waiter = createTask(async () => {
      await lock.acquire();
      holders.push("w");
      log.push(`w holds; locked: ${lock.locked()}`);
    });
    await steps();
    lock.release();
    log.push(`after release, locked: ${lock.locked()}`);
    try {
      lock.release();
      log.push("second release accepted");
    } catch (e) {
      assert.ok(e instanceof RuntimeError);
      log.push(`second release: RuntimeError`);
    }
    await waiter;
    log.push(`holders ${holders} locked: ${lock.locked()}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "after release, locked: false",
    "second release: RuntimeError",
    "w holds; locked: true",
    "holders w locked: true",
  ]);
});

// async def main():
//     lock = asyncio.Lock()
//     order = []
//     await lock.acquire()
//     async def worker(name):
//         await lock.acquire()
//         order.append(name)
//         await sleep(0)
//         lock.release()
//     w = create_task(worker("waiter"))
//     await sleep(0)
//     lock.release()
//     print("locked after release:", lock.locked())
//     n = create_task(worker("newcomer"))
//     await lock.acquire()
//     order.append("releaser")
//     lock.release()
//     await gather(w, n)
//     print(order)
//
// CPython 3.14.2 prints:
//     locked after release: False
//     ['waiter', 'releaser', 'newcomer']
test("lock: locked() is false right after release(), yet newcomers queue behind the woken waiter", async () => {
  const [lockedAfterRelease, order] = await run(async () => {
    const lock = new Lock();
    const order: string[] = [];
    await lock.acquire();
    const worker = (name: string) => async () => {
      await lock.acquire();
      order.push(name);
      await steps();
      lock.release();
    };
    const waiter = createTask(worker("waiter"));
    await steps();
    lock.release();
    const lockedAfterRelease = lock.locked();
    const newcomer = createTask(worker("newcomer"));
    await lock.acquire();
    order.push("releaser");
    lock.release();
    await gather([waiter, newcomer]);
    return [lockedAfterRelease, order] as const;
  }, virtual);
  assert.equal(lockedAfterRelease, false);
  assert.deepEqual(order, ["waiter", "releaser", "newcomer"]);
});

// ---------------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------------

// async def main():
//     sem = asyncio.Semaphore(0)
//     order = []
//     async def worker(name):
//         await sem.acquire()
//         order.append(name)
//     w1 = create_task(worker("w1"))
//     w2 = create_task(worker("w2"))
//     await sleep(0)
//     sem.release()
//     sem.release()
//     late = create_task(worker("late"))
//     sem.release()
//     print("locked:", sem.locked())
//     await gather(w1, w2, late)
//     print(order, "locked:", sem.locked())
//
// CPython 3.14.2 prints:
//     locked: True
//     ['w1', 'w2', 'late'] locked: True
test("semaphore: a late newcomer never jumps ahead of woken waiters", async () => {
  const [lockedBefore, order, lockedAfter] = await run(async () => {
    const semaphore = new Semaphore(0);
    const order: string[] = [];
    const worker = (name: string) => async () => {
      await semaphore.acquire();
      order.push(name);
    };
    const w1 = createTask(worker("w1"));
    const w2 = createTask(worker("w2"));
    await steps();
    semaphore.release();
    semaphore.release();
    const late = createTask(worker("late"));
    semaphore.release();
    const lockedBefore = semaphore.locked();
    await gather([w1, w2, late]);
    return [lockedBefore, order, semaphore.locked()] as const;
  }, virtual);
  assert.equal(lockedBefore, true);
  assert.deepEqual(order, ["w1", "w2", "late"]);
  assert.equal(lockedAfter, true);
});

// async def main():
//     sem = asyncio.BoundedSemaphore(1)
//     try:
//         sem.release()
//     except ValueError as e:
//         print("ValueError", e)
//
// CPython 3.14.2 prints:
//     ValueError BoundedSemaphore released too many times
test("boundedSemaphore: an over-release is RangeError (asyncio: ValueError)", async () => {
  await run(async () => {
    const semaphore = new BoundedSemaphore(1);
    assert.throws(() => semaphore.release(), {
      name: "RangeError",
      message: "BoundedSemaphore released too many times",
    });
    const held = await semaphore.acquire();
    held[Symbol.dispose]();
    assert.throws(() => semaphore.release(), RangeError);
    await semaphore.acquire();
    semaphore.release();
    assert.equal(semaphore.locked(), false);
  }, virtual);
});

// ---------------------------------------------------------------------------
// Condition
// ---------------------------------------------------------------------------

// async def main():
//     c = asyncio.Condition()
//     async def t1():
//         await c.acquire()
//         await c.wait()
//         print("t1 woken at", ms())
//         c.release()
//     async def t2():
//         await c.acquire()
//         try:
//             await asyncio.wait_for(c.wait(), 0.001)
//             print("t2 notified at", ms())
//         except TimeoutError:
//             print("t2 timed out at", ms())
//         c.release()
//     a = create_task(t1())
//     b = create_task(t2())
//     await sleep(0.050)
//     async with c:
//         c.notify()
//         print("notify at", ms())
//     await gather(a, b)
//
// CPython 3.14.2 prints:
//     t2 timed out at 1
//     t1 woken at 1
//     notify at 50
test("condition: a waiter that times out wakes the next one in its place (gh-112202)", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const condition = new Condition();
    const t1 = createTask(async () => {
      await condition.acquire();
      await condition.wait();
      log.push(`t1 woken at ${now()}`);
      condition.release();
    });
    const t2 = createTask(async () => {
      await condition.acquire();
      try {
        await waitFor(() => condition.wait(), 1);
        log.push(`t2 notified at ${now()}`);
      } catch (e) {
        assert.ok(e instanceof TimeoutError);
        log.push(`t2 timed out at ${now()}`);
      }
      condition.release();
    });
    await sleep(50);
    {
      using _ = await condition.acquire();
      condition.notify();
      log.push(`notify at ${now()}`);
    }
    await gather([t1, t2]);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "t2 timed out at 1",
    "t1 woken at 1",
    "notify at 50",
  ]);
});

// async def main():
//     c = asyncio.Condition()
//     async def t2():
//         await c.acquire()
//         try:
//             await asyncio.wait_for(c.wait(), 0.001)
//             print("t2 returned at", ms())
//         except TimeoutError:
//             print("t2 timed out at", ms(), "locked:", c.locked())
//         c.release()
//     async def t1():
//         await c.acquire()
//         await c.wait()
//         print("t1 woken at", ms())
//         c.release()
//     b = create_task(t2())
//     a = create_task(t1())
//     await sleep(0)
//     await c.acquire()
//     c.notify()
//     await sleep(0.005)
//     c.release()
//     await gather(a, b)
//
// CPython 3.14.2 prints:
//     t2 timed out at 5 locked: True
//     t1 woken at 5
test("condition: a notified waiter that times out passes the notification on", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const condition = new Condition();
    const t2 = createTask(async () => {
      await condition.acquire();
      try {
        await waitFor(() => condition.wait(), 1);
        log.push(`t2 returned at ${now()}`);
      } catch (e) {
        assert.ok(e instanceof TimeoutError);
        log.push(`t2 timed out at ${now()} locked: ${condition.locked()}`);
      }
      condition.release();
    });
    const t1 = createTask(async () => {
      await condition.acquire();
      await condition.wait();
      log.push(`t1 woken at ${now()}`);
      condition.release();
    });
    await steps();
    await condition.acquire();
    condition.notify(); // t2, first in line; it times out re-acquiring
    await sleep(5);
    condition.release();
    await gather([t1, t2]);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "t2 timed out at 5 locked: true",
    "t1 woken at 5",
  ]);
});

// ---------------------------------------------------------------------------
// Barrier
// ---------------------------------------------------------------------------

// async def main():
//     b = asyncio.Barrier(2)
//     async def party(name, abort_after):
//         try:
//             i = await b.wait()
//             print(name, "passed with", i, "n_waiting", b.n_waiting)
//             if abort_after:
//                 await b.abort()
//                 print(name, "aborted; broken", b.broken)
//         except asyncio.BrokenBarrierError:
//             print(name, "BrokenBarrierError")
//     t1 = create_task(party("a", False))
//     t2 = create_task(party("b", True))
//     await gather(t1, t2)
//     print("broken", b.broken)
//
// CPython 3.14.2 prints:
//     b passed with 1 n_waiting 0
//     b aborted; broken True
//     a BrokenBarrierError
//     broken True
test("barrier: abort() while a filled round drains breaks the draining waiters", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const barrier = new Barrier(2);
    const party = (name: string, abortAfter: boolean) => async () => {
      try {
        const index = await barrier.wait();
        log.push(`${name} passed with ${index} n_waiting ${barrier.nWaiting}`);
        if (abortAfter) {
          // a, notified as b filled the round, has not run yet: draining.
          await barrier.abort();
          log.push(`${name} aborted; broken ${barrier.broken}`);
        }
      } catch (e) {
        assert.ok(e instanceof BrokenBarrierError);
        log.push(`${name} BrokenBarrierError`);
      }
    };
    await gather([party("a", false), party("b", true)]);
    log.push(`broken ${barrier.broken}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "b passed with 1 n_waiting 0",
    "b aborted; broken true",
    "a BrokenBarrierError",
    "broken true",
  ]);
});

// async def main():
//     b = asyncio.Barrier(2)
//     log = []
//     async def party(name):
//         i = await b.wait()
//         log.append((name, i))
//     ts = [create_task(party(n)) for n in ("a", "b", "c", "d")]
//     await gather(*ts)
//     print(log)
//
// CPython 3.14.2 prints:
//     [('b', 1), ('a', 0), ('d', 1), ('c', 0)]
test("barrier: parties arriving while a round drains wait for the next round", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const barrier = new Barrier(2);
    const party = (name: string) => async () => {
      const index = await barrier.wait();
      log.push(`${name} ${index}`);
    };
    await gather(["a", "b", "c", "d"].map(party));
    return log;
  }, virtual);
  assert.deepEqual(log, ["b 1", "a 0", "d 1", "c 0"]);
});

// async def main():
//     b = asyncio.Barrier(3)
//     a = create_task(b.wait())
//     bb = create_task(b.wait())
//     await sleep(0)
//     print("n_waiting", b.n_waiting)
//     a.cancel()
//     try:
//         await a
//     except asyncio.CancelledError:
//         print("a cancelled")
//     print("n_waiting", b.n_waiting)
//     c = create_task(b.wait())
//     await sleep(0)
//     print("c done", c.done())
//     d = create_task(b.wait())
//     print("indexes", await gather(bb, c, d))
//
// CPython 3.14.2 prints:
//     n_waiting 2
//     a cancelled
//     n_waiting 1
//     c done False
//     indexes [1, 1, 2]
test("barrier: a party cancelled while it fills leaves; indexes count those there", async () => {
  const log = await run(async () => {
    const log: string[] = [];
    const barrier = new Barrier(3);
    const a = createTask(() => barrier.wait());
    const b = createTask(() => barrier.wait());
    await steps();
    log.push(`n_waiting ${barrier.nWaiting}`);
    a.cancel();
    await assert.rejects(a, CancelledError);
    log.push("a cancelled");
    log.push(`n_waiting ${barrier.nWaiting}`);
    const c = createTask(() => barrier.wait());
    await steps();
    log.push(`c done ${c.done()}`);
    const d = createTask(() => barrier.wait());
    log.push(`indexes ${await gather([b, c, d])}`);
    return log;
  }, virtual);
  assert.deepEqual(log, [
    "n_waiting 2",
    "a cancelled",
    "n_waiting 1",
    "c done false",
    "indexes 1,1,2",
  ]);
});

// ---------------------------------------------------------------------------
// Cancellation storms
//
// Seeded random programs under virtual time: workers through a lock, a
// semaphore or a barrier, cancelled at random moments by other tasks (often
// in the same loop step as a wake-up) or timed out by waitFor(). A failure
// names its seed; SYNC_STORM_SEEDS=N runs N seeds of each (default 30).
// ---------------------------------------------------------------------------

// Workers take `semaphore` (or `lock`) in rounds, holding it a random time;
// the most holders at once must not exceed `limit`, and once the
// cancellers are done every worker must finish its rounds (no wake-up
// lost).
async function holdersStorm(
  seed: number,
  make: (random: () => number) => {
    limit: number;
    acquire(): Promise<Disposable>;
    idle(): boolean;
  },
): Promise<void> {
  const random = seededRandom(seed);
  await run(async () => {
    const primitive = make(random);
    let holders = 0;
    let most = 0;
    const doomed: Task<void>[] = [];
    const worker = async (rounds: number, cancellable: boolean) => {
      for (let r = 0; r < rounds; r++) {
        let held: Disposable;
        try {
          held = await (cancellable
            ? maybeTimed(random, () =>
              primitive.acquire())
            : primitive.acquire());
        } catch (e) {
          if (e instanceof TimeoutError) continue;
          throw e;
        }
        holders++;
        most = Math.max(most, holders);
        assert.ok(holders <= primitive.limit, `${holders} holders`);
        try {
          const pause = Math.floor(random() * 3);
          if (pause > 0 || random() < 0.5) await sleep(pause);
        } finally {
          holders--;
          held[Symbol.dispose]();
        }
        if (random() < 0.5) cancelOneOf(random, doomed);
      }
    };
    const survivors: Task<void>[] = [];
    for (let i = 0; i < 40; i++) {
      const rounds = 1 + Math.floor(random() * 4);
      if (random() < 0.5) {
        const task = createTask(() => worker(rounds, true));
        doomed.push(task);
        if (random() < 0.5) cancelLater(random, task);
      } else {
        survivors.push(createTask(() => worker(rounds, false)));
      }
    }
    await sleep(40);
    for (const task of doomed) task.cancel();
    const cancelled = await gather(doomed, { returnExceptions: true });
    for (const outcome of cancelled) {
      if (outcome !== undefined && !(outcome instanceof CancelledError)) {
        throw outcome;
      }
    }
    // Every survivor finishes: a lost wake-up would leave one waiting.
    try {
      await waitFor(gather(survivors), 10_000);
    } catch (e) {
      if (e instanceof TimeoutError) assert.fail("a wake-up was lost");
      throw e;
    }
    assert.equal(holders, 0);
    assert.ok(most >= 1);
    assert.ok(primitive.idle(), "not back to its initial state");
  }, virtual);
}

test("storm: a lock never has two holders and loses no wake-up", async () => {
  await forEachSeed((seed) =>
    holdersStorm(seed, () => {
      const lock = new Lock();
      return {
        limit: 1,
        acquire: () => lock.acquire(),
        idle: () => !lock.locked(),
      };
    })
  );
});

test("storm: a semaphore never has more holders than its value and loses no wake-up", async () => {
  await forEachSeed((seed) =>
    holdersStorm(seed, (random) => {
      const value = 1 + Math.floor(random() * 3);
      const semaphore = random() < 0.5
        ? new BoundedSemaphore(value)
        : new Semaphore(value);
      return {
        limit: value,
        acquire: () => semaphore.acquire(),
        idle: () => {
          // All `value` units are free, and no more (bounded or not).
          for (let i = 0; i < value; i++) {
            if (semaphore.locked()) return false;
            void semaphore.acquire();
          }
          return semaphore.locked();
        },
      };
    })
  );
});

test("storm: a barrier under cancels, resets and aborts never hangs and stays usable", async () => {
  await forEachSeed(async (seed) => {
    const random = seededRandom(seed);
    const parties = 2 + Math.floor(random() * 3);
    await run(async () => {
      const barrier = new Barrier(parties);
      const passed: number[] = [];
      const worker = async (rounds: number) => {
        for (let r = 0; r < rounds; r++) {
          if (random() < 0.5) await sleep(Math.floor(random() * 3));
          try {
            const index = await barrier.wait();
            assert.ok(index >= 0 && index < parties, `index ${index}`);
            passed.push(index);
          } catch (e) {
            if (!(e instanceof BrokenBarrierError)) throw e;
          }
        }
      };
      const tasks: Task<void>[] = [];
      for (let i = 0; i < 24; i++) {
        const task = createTask(() => worker(1 + Math.floor(random() * 4)));
        tasks.push(task);
        if (random() < 0.3) cancelLater(random, task);
      }
      // Resets and aborts at random moments, some in the same steps as
      // rounds filling and draining.
      const controller = createTask(async () => {
        for (let i = 0; i < 6; i++) {
          await sleep(Math.floor(random() * 6));
          if (random() < 0.5) await barrier.reset();
          else {
            await barrier.abort();
            await steps();
            await barrier.reset();
          }
        }
      });
      await controller;
      await sleep(20);
      await barrier.abort(); // whoever still waits for a round to fill
      const outcomes = await waitFor(
        gather(tasks, { returnExceptions: true }),
        1000,
      );
      for (const outcome of outcomes) {
        if (outcome !== undefined && !(outcome instanceof CancelledError)) {
          throw outcome;
        }
      }
      assert.equal(barrier.nWaiting, 0);
      assert.ok(passed.length > 0, "no round ever passed");
      // Usable again after a reset: a full round gets every index once.
      await barrier.reset();
      const indexes = await gather(
        Array.from({ length: parties }, () => () => barrier.wait()),
      );
      assert.deepEqual(
        [...indexes].sort(),
        Array.from({ length: parties }, (_, i) => i),
      );
    }, virtual);
  });
});

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

test("lock: a newcomer does not jump ahead of a woken waiter, though locked() is false", async () => {
  const order = await run(async () => {
    const lock = new Lock();
    const order: string[] = [];
    await lock.acquire();
    const waiter = createTask(async () => {
      using _ = await lock.acquire();
      order.push("waiter");
    });
    await steps();
    lock.release(); // wakes the waiter, which has not run yet
    assert.equal(lock.locked(), false); // as asyncio 3.14's
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
    await steps();
    a.cancel();
    await steps();
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
    await steps();
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
    await steps();
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
    await steps();
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
    await steps();
    assert.equal(event.isSet(), false);
    event.set();
    event.clear();
    assert.deepEqual(await gather(waiters), [true, true, true, true, true]);
    assert.equal(event.isSet(), false);
    const late = createTask(() => event.wait());
    await steps();
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
    await steps();
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
    await steps();
    {
      using _ = await condition.acquire();
      condition.notify(2);
    }
    await until(() => woken.length >= 2);
    for (let i = 0; i < 5; i++) await steps();
    assert.deepEqual(woken, [0, 1]);
    {
      using _ = await condition.acquire();
      condition.notify();
    }
    await until(() => woken.length >= 3);
    for (let i = 0; i < 5; i++) await steps();
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
    await steps();
    await lock.acquire(); // now the waiter cannot re-acquire at once
    waiter.cancel();
    await steps();
    await steps();
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
    await steps();
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
      await steps();
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
    await steps();
    assert.equal(barrier.nWaiting, 2);
    a.cancel();
    await assert.rejects(a, CancelledError);
    assert.equal(barrier.nWaiting, 1);
    const c = createTask(() => barrier.wait());
    await steps();
    assert.equal(c.done(), false); // only two live parties: not yet
    const d = createTask(() => barrier.wait());
    const indexes = await gather([b, c, d]);
    // As on CPython 3.14: indexes count the parties inside, and a left.
    assert.deepEqual(indexes, [1, 1, 2]);
    assert.equal(barrier.broken, false);
  });
});

test("barrier: reset() breaks current waiters but leaves it usable", async () => {
  await run(async () => {
    const barrier = new Barrier(2);
    const a = createTask(() => barrier.wait());
    await steps();
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
    await steps();
    await barrier.abort();
    await assert.rejects(a, BrokenBarrierError);
    assert.equal(barrier.broken, true);
    await assert.rejects(barrier.wait(), BrokenBarrierError);
    assert.throws(() => new Barrier(0), RangeError);
    assert.throws(() => new Barrier("2" as unknown as number), TypeError);
  });
});
