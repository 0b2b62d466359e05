// The tests whose code uses `using` declarations: a lock, semaphore or
// condition held for a block, and `await using` on a Runner. They live in a
// file of their own because Node 22 cannot parse `using` at all, so
// scripts/test.sh leaves this file out there; the library itself never needs
// `using` (each acquire() also has release(), and each Runner close()).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  Condition,
  createTask,
  type EventLoop,
  gather,
  getRunningLoop,
  Lock,
  run,
  Runner,
  Semaphore,
  sleep,
  type Task,
} from "../mod.ts";

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

test("runner: await using closes it", async () => {
  let loop: EventLoop;
  {
    await using runner = new Runner({ virtualTime: true });
    loop = runner.getLoop();
    await runner.run(() => sleep(1));
  }
  assert.equal(loop.isClosed(), true);
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
