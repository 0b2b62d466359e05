// Waiting and timeouts: gather, waitFor, timeout, wait, asCompleted,
// shield, ensureFuture.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_COMPLETED,
  asCompleted,
  CancelledError,
  createTask,
  currentTask,
  ensureFuture,
  FIRST_COMPLETED,
  FIRST_EXCEPTION,
  Future,
  gather,
  getRunningLoop,
  isFuture,
  run,
  shield,
  sleep,
  Task,
  taskGroup,
  timeout,
  timeoutAt,
  TimeoutError,
  wait,
  waitFor,
  wrapFuture,
} from "../mod.ts";
import { steps, TASK_STARTS, vrun } from "./helpers.ts";

for (const { eager, suffix } of TASK_STARTS) {
  test(`gather: results in the order given, whatever the finishing order${suffix}`, async () => {
    await vrun(async () => {
      const loop = getRunningLoop();
      const future = loop.createFuture<string>();
      loop.callLater(5, () => future.setResult("future"));
      const results = await gather([
        () => sleep(30, "slow"),
        () => sleep(10, 1),
        future,
        Promise.resolve(true),
      ]);
      assert.deepEqual(results, ["slow", 1, "future", true]);
      assert.deepEqual(await gather([]), []);
    }, { eager });
  });

  test(`gather: the same future given twice fills both slots${suffix}`, async () => {
    await vrun(async () => {
      const future = new Future<string>();
      getRunningLoop().callLater(5, () => future.setResult("twice"));
      assert.deepEqual(await gather([future, future, () => sleep(1, "once")]), [
        "twice",
        "twice",
        "once",
      ]);
    }, { eager });
  });

  test(`gather: the first error propagates while the other children keep running${suffix}`, async () => {
    await vrun(async () => {
      let finished = false;
      const slow = createTask(async () => {
        await sleep(50);
        finished = true;
      });
      const failing = async () => {
        await sleep(10);
        throw new RangeError("first");
      };
      await assert.rejects(gather([slow, failing]), RangeError);
      assert.equal(slow.done(), false);
      await slow;
      assert.equal(finished, true);
    }, { eager });
  });

  test(`gather: returnExceptions returns errors and cancellations as values${suffix}`, async () => {
    await vrun(async () => {
      const cancelled = createTask(() => sleep(100));
      const gathered = gather([
        () => sleep(10, "ok"),
        () => Promise.reject(new TypeError("bad")),
        cancelled,
      ], { returnExceptions: true });
      await steps(1);
      cancelled.cancel();
      const results = await gathered;
      assert.equal(results[0], "ok");
      assert.ok(results[1] instanceof TypeError);
      assert.ok(results[2] instanceof CancelledError);
    }, { eager });
  });

  test(`gather: a cancelled child fails the gather with CancelledError${suffix}`, async () => {
    await vrun(async () => {
      const child = createTask(() => sleep(100));
      const gathered = gather([child, () => sleep(200)]);
      await steps(1);
      child.cancel();
      await assert.rejects(gathered, CancelledError);
    }, { eager });
  });

  test(`gather: cancelling the gather cancels every child${suffix}`, async () => {
    await vrun(async () => {
      const a = createTask(() => sleep(100));
      const b = createTask(() => sleep(200));
      const gathered = gather([a, b]);
      await steps(1);
      assert.equal(gathered.cancel(), true);
      await assert.rejects(gathered, CancelledError);
      assert.equal(a.cancelled(), true);
      assert.equal(b.cancelled(), true);
    }, { eager });
  });

  test(`gather: cancel() after all children finished returns false${suffix}`, async () => {
    await vrun(async () => {
      const a = createTask(() => sleep(1, "a"));
      const gathered = gather([a]);
      await a;
      assert.equal(gathered.cancel(), false);
      assert.deepEqual(await gathered, ["a"]);
    }, { eager });
  });

  test(`gather: a task awaiting a gather cancels its children when cancelled${suffix}`, async () => {
    await vrun(async () => {
      const a = createTask(() => sleep(100));
      const parent = createTask(() => gather([a, () => sleep(100)]));
      await steps(2);
      parent.cancel();
      await assert.rejects(parent, CancelledError);
      assert.equal(a.cancelled(), true);
    }, { eager });
  });
}

test("waitFor: on timeout cancels the work, waits for it to finish, throws TimeoutError", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    const log: string[] = [];
    const start = loop.time();
    await assert.rejects(
      waitFor(async () => {
        try {
          await sleep(1000);
        } finally {
          await sleep(50); // slow cleanup: waitFor must wait for it
          log.push("cleanup done");
        }
      }, 100),
      TimeoutError,
    );
    assert.deepEqual(log, ["cleanup done"]);
    assert.equal(loop.time() - start, 150);
  });
});

test("waitFor: returns the value when the work suppresses the cancellation", async () => {
  await vrun(async () => {
    const value = await waitFor(async () => {
      try {
        await sleep(1000);
        return "finished";
      } catch {
        return "suppressed";
      }
    }, 100);
    assert.equal(value, "suppressed");
    assert.equal(currentTask()!.cancelling(), 0);
  });
});

test("waitFor: in time returns the value; null waits forever; a task is cancelled on timeout", async () => {
  await vrun(async () => {
    assert.equal(await waitFor(() => sleep(10, "quick"), 100), "quick");
    assert.equal(
      await waitFor(() => sleep(100_000, "patient"), null),
      "patient",
    );
    const task = createTask(() => sleep(1000));
    await assert.rejects(waitFor(task, 10), TimeoutError);
    assert.equal(task.cancelled(), true);
  });
});

test("waitFor: with a timeout of 0 or less a coroutine function never starts", async () => {
  await vrun(async () => {
    let started = false;
    const work = async () => {
      started = true;
      await sleep(1);
    };
    await assert.rejects(waitFor(work, 0), TimeoutError);
    await assert.rejects(waitFor(work, -5), TimeoutError);
    assert.equal(started, false);
    const done = new Future<string>();
    done.setResult("already");
    assert.equal(await waitFor(done, 0), "already");
  });
});

for (const { eager, suffix } of TASK_STARTS) {
  test(`timeout: expires into TimeoutError, and the task is not left cancelled${suffix}`, async () => {
    await vrun(async () => {
      const loop = getRunningLoop();
      const start = loop.time();
      let cm: unknown = null;
      await assert.rejects(
        timeout(100, async (scope) => {
          cm = scope;
          await sleep(10_000);
        }),
        (e) => e instanceof TimeoutError && e.cause instanceof CancelledError,
      );
      assert.equal(loop.time() - start, 100);
      assert.equal((cm as { expired(): boolean }).expired(), true);
      assert.equal(currentTask()!.cancelling(), 0);
      await sleep(10); // the task still works normally
      assert.equal(await timeout(100, () => sleep(10, "in time")), "in time");
    }, { eager });
  });

  test(`timeout: a cancellation from outside passes through as CancelledError${suffix}`, async () => {
    await vrun(async () => {
      const task = createTask(() => timeout(1000, () => sleep(10_000)));
      await sleep(10);
      task.cancel();
      await assert.rejects(
        task,
        (e) => e instanceof CancelledError && !(e instanceof TimeoutError),
      );
    }, { eager });
  });

  test(`timeout: nested scopes report the one that expired${suffix}`, async () => {
    await vrun(async () => {
      const outcome: string[] = [];
      await assert.rejects(
        timeout(50, async () => {
          try {
            await timeout(1000, () => sleep(10_000));
          } catch (e) {
            outcome.push(
              e instanceof TimeoutError ? "inner timed out" : "inner cancelled",
            );
            throw e;
          }
        }),
        TimeoutError,
      );
      assert.deepEqual(outcome, ["inner cancelled"]);
      const inner = await timeout(1000, async () => {
        try {
          await timeout(50, () => sleep(10_000));
        } catch (e) {
          return e instanceof TimeoutError ? "inner timed out" : "other";
        }
      });
      assert.equal(inner, "inner timed out");
    }, { eager });
  });

  test(`timeout: a scope in a race branch that lost cancels only its own body when it expires${suffix}`, async () => {
    await vrun(async () => {
      const loop = getRunningLoop();
      const task = currentTask()!;
      let branch = "running";
      let cancellingInside = -1;
      await Promise.race([
        timeout(5, async () => {
          try {
            await sleep(100);
          } finally {
            cancellingInside = task.cancelling();
          }
        }).then(() => branch = "finished", (e) => branch = e.name),
        sleep(1),
      ]);
      // The main code goes on while the branch's scope expires at 5 ms.
      assert.equal(await sleep(10, "slept"), "slept");
      assert.equal(loop.time(), 11);
      assert.equal(branch, "TimeoutError");
      // asyncio counts a scope's cancel: the body saw it while unwinding.
      assert.equal(cancellingInside, 1);
      assert.equal(task.cancelling(), 0);
      assert.equal(task.signal.aborted, false);
    }, { eager });
  });

  test(`timeout: an expired scope cancels a helper its body started, not the code around it${suffix}`, async () => {
    await vrun(async () => {
      const outcome: string[] = [];
      let helper: Promise<void> | null = null;
      const around = sleep(20).then(() => outcome.push("around slept"));
      await assert.rejects(
        timeout(5, async () => {
          helper = (async () => {
            try {
              await sleep(100);
            } catch (e) {
              outcome.push(`helper ${(e as Error).name}`);
            }
          })();
          await sleep(100);
        }),
        TimeoutError,
      );
      await helper;
      await around;
      assert.deepEqual(outcome, ["helper CancelledError", "around slept"]);
    }, { eager });
  });

  test(`timeout: the cancel of an expired scope is delivered once; a finally may await${suffix}`, async () => {
    await vrun(async () => {
      const loop = getRunningLoop();
      let cleanedUpAt = -1;
      await assert.rejects(
        timeout(5, async () => {
          try {
            await sleep(100);
          } finally {
            await sleep(3);
            cleanedUpAt = loop.time();
          }
        }),
        TimeoutError,
      );
      assert.equal(cleanedUpAt, 8);
    }, { eager });
  });

  test(`timeout: a body that returns a future has it cancelled at the deadline${suffix}`, async () => {
    await vrun(async () => {
      const future = getRunningLoop().createFuture<string>();
      await assert.rejects(timeout(5, () => future), TimeoutError);
      assert.equal(future.cancelled(), true);
    }, { eager });
  });

  test(`timeout: reschedule moves the deadline; null never expires${suffix}`, async () => {
    await vrun(async () => {
      const loop = getRunningLoop();
      const start = loop.time();
      await timeout(100, async (cm) => {
        cm.reschedule(loop.time() + 500);
        assert.equal(cm.when(), start + 500);
        await sleep(300);
      });
      await assert.rejects(
        timeout(1000, async (cm) => {
          cm.reschedule(loop.time() + 10);
          await sleep(300);
        }),
        TimeoutError,
      );
      await timeout(null, async (cm) => {
        assert.equal(cm.when(), null);
        await sleep(100_000);
      });
      const deadline = loop.time() + 20;
      await assert.rejects(timeoutAt(deadline, () => sleep(100)), TimeoutError);
      assert.equal(loop.time(), deadline);
    }, { eager });
  });
}

test("wait: FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED and a timeout that cancels nothing", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    const fast = createTask(() => sleep(10, "fast"));
    const failing = createTask(async () => {
      await sleep(20);
      throw new Error("failed");
    });
    const slow = createTask(() => sleep(30, "slow"));
    const all = [fast, failing, slow] as Future<unknown>[];

    let [done, pending] = await wait(all, { returnWhen: FIRST_COMPLETED });
    assert.deepEqual([...done], [fast]);
    assert.equal(pending.size, 2);
    assert.equal(loop.time(), 10);

    [done, pending] = await wait(all, { returnWhen: FIRST_EXCEPTION });
    assert.ok(done.has(failing) && done.has(fast));
    assert.deepEqual([...pending], [slow]);

    [done, pending] = await wait([slow], { timeout: 5 });
    assert.equal(done.size, 0);
    assert.equal(slow.cancelled(), false);

    [done, pending] = await wait(all, { returnWhen: ALL_COMPLETED });
    assert.equal(done.size, 3);
    assert.equal(pending.size, 0);
    assert.equal(failing.exception() instanceof Error, true);
    assert.throws(() => wait([]), RangeError);
    assert.throws(
      () => wait([(() => sleep(1)) as unknown as Future<void>]),
      TypeError,
    );
  });
});

test("asCompleted: yields in completion order; times out with TimeoutError", async () => {
  await vrun(async () => {
    const slow = createTask(() => sleep(30, "slow"));
    const fast = createTask(() => sleep(10, "fast"));
    const middle = createTask(() => sleep(20, "middle"));
    const order: unknown[] = [];
    for await (const task of asCompleted([slow, fast, middle])) {
      order.push(await task);
    }
    assert.deepEqual(order, ["fast", "middle", "slow"]);

    const results: string[] = [];
    for (
      const next of asCompleted([() => sleep(20, "b"), () => sleep(10, "a")])
    ) {
      results.push(await next);
    }
    assert.deepEqual(results, ["a", "b"]);

    const late = createTask(() => sleep(1000));
    await assert.rejects(async () => {
      for await (const _ of asCompleted([late], { timeout: 10 })) {
        assert.fail("nothing completes in time");
      }
    }, TimeoutError);
    late.cancel();
  });
});

test("shield: cancelling the waiter leaves the inner work running", async () => {
  await vrun(async () => {
    const inner = createTask(() => sleep(50, "saved"));
    const waiter = createTask(() => shield(inner));
    await sleep(10);
    waiter.cancel();
    await assert.rejects(waiter, CancelledError);
    assert.equal(inner.cancelled(), false);
    assert.equal(await inner, "saved");
  });
});

test("waitFor: a cancel from outside while waiting is a CancelledError, not a timeout", async () => {
  await vrun(async () => {
    const outer = createTask(() => waitFor(() => sleep(1000), 500));
    await sleep(10);
    outer.cancel();
    await assert.rejects(
      outer,
      (e) => e instanceof CancelledError && !(e instanceof TimeoutError),
    );
  });
});

test("waitFor: a foreign promise is wrapped so that the deadline can end the wait", async () => {
  await run(async () => {
    let resolveForeign!: () => void;
    const foreign = new Promise<void>((resolve) => resolveForeign = resolve);
    // Real time: under virtual time the clock would wait for the promise.
    const timer = setTimeout(() => resolveForeign(), 500);
    try {
      await assert.rejects(waitFor(foreign, 10), TimeoutError);
    } finally {
      clearTimeout(timer);
      resolveForeign();
    }
  });
});

test("timeout and taskGroup work outside any task, on the default loop", async () => {
  assert.equal(currentTask(), null);
  assert.equal(
    await timeout(1000, () => sleep(1, "in a task of its own")),
    "in a task of its own",
  );
  const [child] = await taskGroup(async (tg) => {
    // In an array: an async function would await a task it returns.
    return [tg.createTask(() => sleep(1, 7))];
  });
  assert.equal(child.result(), 7);
});

test("shield: the inner work's error still reaches whoever awaits the shield", async () => {
  await vrun(async () => {
    const failing = async () => {
      await sleep(5);
      throw new RangeError("inner");
    };
    await assert.rejects(shield(failing), RangeError);
  });
});

test("ensureFuture and wrapFuture: a future stays itself, a function becomes a task", async () => {
  await vrun(async () => {
    const future = new Future<number>();
    assert.equal(ensureFuture(future), future);
    const task = ensureFuture(() => sleep(1, "task"));
    assert.ok(task instanceof Task);
    assert.equal(await task, "task");
    const wrapped = wrapFuture(Promise.resolve(5));
    assert.ok(isFuture(wrapped));
    assert.equal(await wrapped, 5);
    assert.throws(
      () => wrapFuture(42 as unknown as Promise<number>),
      TypeError,
    );
  });
});
