// asyncio's step semantics, exact cancellation and the loop's order, each
// checked against CPython 3.14: the expected traces in these tests are what
// the same program prints there (run through pyodide with a virtual-time
// loop, 1 unit = 1 ms).
import { test } from "node:test";
import assert from "node:assert/strict";
import { setImmediate } from "node:timers";
import {
  CancelledError,
  createTask,
  currentTask,
  Event,
  EventLoop,
  type ExceptionContext,
  ExceptionGroup,
  gather,
  getRunningLoop,
  run,
  shield,
  sleep,
  taskGroup,
  timeout,
  TimeoutError,
  waitFor,
} from "../mod.ts";

const virtual = { virtualTime: true };

function now(): number {
  return getRunningLoop().time();
}

// --- Run to suspension -----------------------------------------------------

test("scheduling: a woken task runs past a coroutine that does not suspend before sleep(0) returns", async () => {
  const log: string[] = [];
  await run(async () => {
    const ev = new Event();
    const nested = async () => {
      log.push("nested");
      return 1;
    };
    const task = createTask(async () => {
      await ev.wait();
      log.push("woke");
      await nested();
      log.push("after nested");
      await sleep(5);
    });
    await sleep(0);
    ev.set();
    await sleep(0);
    log.push("main after sleep0");
    await task;
  }, virtual);
  assert.deepEqual(log, [
    "woke",
    "nested",
    "after nested",
    "main after sleep0",
  ]);
});

test("scheduling: awaiting a done future or finished task is not a task switch", async () => {
  const log: string[] = [];
  await run(async () => {
    const done = getRunningLoop().createFuture<number>();
    done.setResult(1);
    const finished = createTask(async () => 2);
    await finished;
    const a = createTask(async () => {
      log.push("a1");
      await done;
      await finished;
      log.push("a2");
      await sleep(0);
      log.push("a3");
    });
    const b = createTask(async () => {
      log.push("b");
    });
    await gather([a, b]);
  }, virtual);
  assert.deepEqual(log, ["a1", "a2", "b", "a3"]);
});

test("scheduling: sleep(0) lets every ready task run to its next suspension", async () => {
  const log: string[] = [];
  await run(async () => {
    const worker = (name: string) => async () => {
      for (let round = 0; round < 3; round++) {
        log.push(`${name}${round}`);
        await Promise.resolve(); // a foreign promise already settled
        await (async () => {})(); // a coroutine that does not suspend
        await sleep(0);
      }
    };
    await gather([worker("x"), worker("y"), worker("z")]);
  }, virtual);
  assert.deepEqual(log, [
    "x0",
    "y0",
    "z0",
    "x1",
    "y1",
    "z1",
    "x2",
    "y2",
    "z2",
  ]);
});

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* real time passes, virtual does not */ }
}

// A program whose steps interleave tightly; `slowness` makes some steps
// take real time, which must change nothing under virtual time.
async function interleaving(slowness: number): Promise<string[]> {
  const log: string[] = [];
  await run(async () => {
    const ev = new Event();
    const tasks = [];
    for (let i = 0; i < 6; i++) {
      tasks.push(createTask(async () => {
        for (let round = 0; round < 20; round++) {
          if ((i + round) % 3 === 0) busyWait(slowness);
          log.push(`${i}.${round}@${now()}`);
          if (round % 5 === 4) await ev.wait();
          else if (round % 2) await sleep(i % 3);
          else await sleep(0);
        }
      }));
    }
    for (let k = 0; k < 8; k++) {
      await sleep(3);
      ev.set();
      await sleep(0);
      ev.clear();
    }
    ev.set();
    await gather(tasks);
  }, virtual);
  return log;
}

test("scheduling: under virtual time the same program gives the same trace, however slow its steps", async () => {
  const plain = await interleaving(0);
  assert.ok(plain.length === 120);
  assert.deepEqual(await interleaving(0), plain);
  assert.deepEqual(await interleaving(2), plain);
});

// --- Waiting -----------------------------------------------------------------

test("waitFor: with ms <= 0 it returns what the work ends with after the cancel", async () => {
  await run(async () => {
    const stubborn = createTask(async () => {
      try {
        await sleep(10);
      } catch {
        return "kept";
      }
      return "slept";
    });
    await sleep(0);
    assert.equal(await waitFor(stubborn, 0), "kept");

    const failing = createTask(async () => {
      try {
        await sleep(10);
      } catch {
        throw new RangeError("own");
      }
    });
    await sleep(0);
    await assert.rejects(waitFor(failing, 0), RangeError);

    let started = false;
    await assert.rejects(
      waitFor(async () => {
        started = true;
      }, 0),
      TimeoutError,
    );
    assert.equal(started, false, "a coroutine function is never started");
  }, virtual);
});

test("timeout: TimeoutError says how long, and cm.signal is aborted at the deadline", async () => {
  await run(async () => {
    let signal: AbortSignal | null = null;
    const error = await timeout(50, async (cm) => {
      signal = cm.signal;
      assert.equal(signal.aborted, false);
      await sleep(1000);
    }).catch((e) => e);
    assert.ok(error instanceof TimeoutError);
    assert.equal(error.message, "timed out after 50 ms");
    assert.ok(error.cause instanceof CancelledError);
    assert.equal(signal!.aborted, true);
    assert.ok(signal!.reason instanceof TimeoutError);
    assert.equal(now(), 50);
  }, virtual);
});

test("gather: over futures that are all done already, it is done at once", async () => {
  await run(async () => {
    const done = getRunningLoop().createFuture<number>();
    done.setResult(1);
    const gathered = gather([done, done]);
    assert.equal(gathered.done(), true);
    assert.deepEqual(await gathered, [1, 1]);
  }, virtual);
});

test("future: removeDoneCallback after completion is too late: 0, and the callback still runs", async () => {
  const log: string[] = [];
  await run(async () => {
    const future = getRunningLoop().createFuture<number>();
    const callback = () => log.push("ran");
    future.addDoneCallback(callback);
    future.setResult(1);
    assert.equal(future.removeDoneCallback(callback), 0);
    await sleep(0);
  }, virtual);
  assert.deepEqual(log, ["ran"]);
});

test("shield: an inner failure after the outer was cancelled goes to the exception handler at once", async () => {
  const reports: ExceptionContext[] = [];
  await run(async () => {
    getRunningLoop().setExceptionHandler((_loop, context) =>
      reports.push(context)
    );
    const inner = createTask(async () => {
      await sleep(10);
      throw new RangeError("inner failed");
    });
    const outer = shield(inner);
    outer.cancel();
    await sleep(20);
    assert.equal(reports.length, 1);
    assert.equal(reports[0].message, "RangeError exception in shielded future");
    assert.equal(reports[0].future, inner);
  }, virtual);
});

// --- Cancellation that arrives ----------------------------------------------

test("cancel: a task whose coroutine has returned cannot be cancelled, and keeps its result", async () => {
  await run(async () => {
    const quick = createTask(async () => 42);
    let cancelled: boolean | null = null;
    await createTask(async () => {
      cancelled = quick.cancel();
    });
    assert.equal(cancelled, false);
    assert.equal(quick.result(), 42);
  }, virtual);
});

test("cancel: a cancel issued in the loop turn that woke the target is raised at the target's await", async () => {
  const log: string[] = [];
  await run(async () => {
    const target = createTask(async () => {
      await sleep(2);
      log.push(`slept 2 at ${now()}`);
      await sleep(1);
      log.push(`slept 1 at ${now()}`);
    });
    await sleep(1);
    const canceller = createTask(async () => {
      await sleep(2);
      target.cancel();
    });
    await canceller;
    await target.catch((e) =>
      log.push(`${(e as Error).constructor.name} at ${now()}`)
    );
  }, virtual);
  assert.deepEqual(log, ["slept 2 at 2", "CancelledError at 3"]);
});

test("cancel: an await registers its wait before any other step, so a queued cancel finds it", async () => {
  const log: string[] = [];
  await run(async () => {
    const helper = async () => {
      log.push("helper ran");
    };
    await timeout(0, async () => {
      await gather([createTask(helper)]);
    }).catch((e) => log.push((e as Error).constructor.name));
  }, virtual);
  assert.deepEqual(log, ["TimeoutError"]);
});

test("cancel: the first cancel's message wins, and every request counts", async () => {
  await run(async () => {
    let seen: [string, number] | null = null;
    const target = createTask(async () => {
      try {
        await sleep(100);
      } catch (e) {
        seen = [(e as Error).message, currentTask()!.cancelling()];
      }
    });
    await sleep(1);
    await createTask(async () => {
      target.cancel();
      target.cancel("m14");
    });
    await target;
    assert.deepEqual(seen, ["", 2]);
  }, virtual);
});

test("cancel: one that arrives during a foreign await stays a cancellation at timeout(0)", async () => {
  await run(async () => {
    // The foreign promise settles only after the cancel: no race with time.
    const foreign = Promise.withResolvers<void>();
    const target = createTask(async () => {
      await foreign.promise;
      await timeout(0, () => sleep(1));
    });
    await sleep(0); // target starts and awaits the foreign promise
    target.cancel();
    foreign.resolve();
    await assert.rejects(target, CancelledError);
    assert.equal(target.cancelled(), true);
  });
});

test("cancel: code in the context of a finished task runs as outside any task", async () => {
  let seen: unknown = "unset";
  await run(async () => {
    const landed = getRunningLoop().createFuture<void>();
    await createTask(async () => {
      setTimeout(() => {
        seen = currentTask();
        landed.setResult();
      }, 0);
    });
    await landed;
  });
  assert.equal(seen, null);
});

// --- Task groups (gh-116720, gh-128550) -------------------------------------

test("taskGroup: an outside cancel survives a failing child: ExceptionGroup, then CancelledError at the next await", async () => {
  const log: unknown[] = [];
  await run(async () => {
    const parent = createTask(async () => {
      try {
        await taskGroup(async (tg) => {
          tg.createTask(async () => {
            await sleep(1);
            throw new RangeError("boom");
          });
          tg.createTask(async () => {
            try {
              await sleep(10);
            } catch (e) {
              await shield(createTask(() => sleep(3)));
              throw e;
            }
          });
          await sleep(5);
        });
      } catch (e) {
        assert.ok(e instanceof ExceptionGroup);
        log.push(["group", now(), currentTask()!.cancelling()]);
      }
      try {
        await sleep(0);
        log.push("no cancel");
      } catch (e) {
        log.push(["cancelled at next await", now()]);
        throw e;
      }
    });
    await sleep(2);
    parent.cancel();
    await parent.catch((e) => log.push((e as Error).constructor.name));
  }, virtual);
  assert.deepEqual(log, [
    ["group", 4, 1],
    ["cancelled at next await", 4],
    "CancelledError",
  ]);
});

test("taskGroup: an eager child that fails at once is handled on the loop, not inside createTask", async () => {
  const log: string[] = [];
  await run(async () => {
    await taskGroup(async (tg) => {
      tg.createTask(async () => {
        throw new RangeError("at once");
      }, { eagerStart: true });
      log.push("after createTask");
      try {
        // An eager task's end is seen a microtask after createTask() (a
        // JavaScript promise cannot be read synchronously), one step later
        // than in asyncio: the body is cancelled at its next real wait.
        await sleep(5);
        log.push("not cancelled");
      } catch {
        log.push("body cancelled");
      }
    }).catch((e) => log.push((e as Error).constructor.name));
  }, virtual);
  assert.deepEqual(log, [
    "after createTask",
    "body cancelled",
    "ExceptionGroup",
  ]);
});

// --- Loops ---------------------------------------------------------------------

test("loop: a done future gives its result though its loop is closed", async () => {
  const finished = await run(async () => createTask(async () => "kept"));
  await run(async () => {
    assert.equal(await finished, "kept");
  });
});

test("loop: awaiting a pending future of another loop is a RuntimeError at the await", async () => {
  const other = new EventLoop();
  try {
    await run(async () => {
      await assert.rejects(
        async () => await other.createFuture(),
        /attached to a different loop/,
      );
    });
  } finally {
    other.close();
  }
});

test("loop: nothing runs while the loop is stopped, and the virtual clock stands still", async () => {
  const loop = new EventLoop({ virtualTime: true });
  const log: string[] = [];
  loop.callLater(10, () => log.push(`timer at ${loop.time()}`));
  loop.callSoon(() => loop.stop());
  loop.callSoon(() => log.push("same iteration"));
  await loop.runForever();
  loop.callSoon(() => log.push("after stop"));
  // Turns of the host, in which a running virtual loop would run the step
  // and jump its clock: a stopped one must not.
  for (let turn = 0; turn < 5; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.deepEqual(log, ["same iteration"]);
  assert.equal(loop.time(), 0);
  const done = loop.createFuture<void>();
  loop.callLater(20, () => done.setResult());
  await loop.runUntilComplete(done);
  assert.deepEqual(log, ["same iteration", "after stop", "timer at 10"]);
  loop.close();
});

// --- run() always ends ------------------------------------------------------

test("run: a leftover task stuck on a promise nobody settles is reported, and run() returns", async () => {
  const reports: ExceptionContext[] = [];
  await run(async () => {
    getRunningLoop().setExceptionHandler((_loop, context) =>
      reports.push(context)
    );
    createTask(async () => {
      await new Promise(() => {});
    }, { name: "stuck" });
    await sleep(0);
  });
  assert.equal(reports.length, 1);
  assert.match(reports[0].message, /task "stuck"/);
  assert.match(reports[0].message, /task\.signal/);
});

test("cancel: in debug mode, a cancellation a foreign await holds back is reported with the task's name", async () => {
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (message: string) => warnings.push(message);
  try {
    await run(async () => {
      const loop = getRunningLoop();
      loop.slowCallbackDuration = 10;
      const foreign = Promise.withResolvers<void>();
      const target = createTask(async () => {
        await foreign.promise;
        await sleep(0);
      }, { name: "fetcher" });
      await sleep(0);
      target.cancel();
      // The report is due 10 ms (loop time) after the cancel.
      await sleep(20);
      foreign.resolve();
      await assert.rejects(target, CancelledError);
    }, { debug: true });
  } finally {
    console.warn = warn;
  }
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /task "fetcher"/);
  assert.match(warnings[0], /task\.signal/);
});
