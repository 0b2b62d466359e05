// Tests of mod.ts. They use node:test and node:assert/strict only, so the
// same file runs unchanged under `deno test` (sanitizers on), `bun test` and
// `node --test` (Node 22, which cannot parse `using`, runs a copy without
// the tests written with it: see scripts/without_using.ts).
// Timing is checked under virtual time, where it is exact and instant.
import { TEST_CERT, TEST_KEY } from "./tests/tls_certificate.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ALL_COMPLETED,
  allTasks,
  asCompleted,
  CancelledError,
  createTask,
  currentTask,
  ensureFuture,
  type EventLoop,
  type ExceptionContext,
  ExceptionGroup,
  FIRST_COMPLETED,
  FIRST_EXCEPTION,
  Future,
  gather,
  getEventLoop,
  getRunningLoop,
  InvalidStateError,
  isFuture,
  newEventLoop,
  run,
  Runner,
  RuntimeError,
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
} from "./mod.ts";

// Runs `main` on a virtual clock: timing is exact and instant.
function vrun<T>(main: () => Promise<T>): Promise<T> {
  return run(main, { virtualTime: true });
}

// Resolves after `steps` loop steps: enough for tasks to reach their awaits.
async function steps(count = 1): Promise<void> {
  for (let i = 0; i < count; i++) await sleep(0);
}

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
// Errors
// ---------------------------------------------------------------------------

import * as asyncio from "./mod.ts";

test("errors: each is an Error with its own name, and carries its fields", () => {
  for (
    const name of [
      "CancelledError",
      "TimeoutError",
      "InvalidStateError",
      "RuntimeError",
      "QueueEmpty",
      "QueueFull",
      "QueueShutDown",
      "BrokenBarrierError",
    ] as const
  ) {
    const error = new asyncio[name]("why", { cause: 1 });
    assert.ok(error instanceof Error);
    assert.equal(error.name, name);
    assert.equal(String(error), `${name}: why`);
    assert.equal(error.cause, 1);
  }
  const incomplete = new asyncio.IncompleteReadError(new Uint8Array(2), 4);
  assert.deepEqual([
    incomplete.name,
    incomplete.partial.length,
    incomplete.expected,
  ], [
    "IncompleteReadError",
    2,
    4,
  ]);
  const overrun = new asyncio.LimitOverrunError("too long", 7);
  assert.deepEqual([overrun.name, overrun.consumed], ["LimitOverrunError", 7]);
  const group = new ExceptionGroup("two", [
    new RangeError("a"),
    new TypeError("b"),
  ]);
  assert.ok(group instanceof AggregateError);
  assert.equal(group.exceptions.length, 2);
  assert.deepEqual(
    group.subgroup((e) => e instanceof TypeError)?.exceptions.length,
    1,
  );
  assert.equal(group.split((e) => e instanceof SyntaxError)[0], null);
});

// ---------------------------------------------------------------------------
// Event loop
// ---------------------------------------------------------------------------

test("loop: callSoon runs callbacks in order, on a later step, with their arguments", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    const calls: string[] = [];
    loop.callSoon((a: string) => calls.push(a), "first");
    loop.callSoon((a: string, b: string) => calls.push(a + b), "sec", "ond");
    assert.deepEqual(calls, []);
    await sleep(0);
    assert.deepEqual(calls, ["first", "second"]);
  });
});

test("loop: a cancelled handle never runs", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    let ran = false;
    const handle = loop.callSoon(() => ran = true);
    handle.cancel();
    assert.equal(handle.cancelled(), true);
    await steps(2);
    assert.equal(ran, false);
  });
});

test("loop: timers fire in deadline order, ties in scheduling order", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    const fired: [string, number][] = [];
    const record = (name: string) => fired.push([name, loop.time() - start]);
    loop.callLater(30, record, "c");
    loop.callLater(10, record, "a");
    loop.callAt(start + 10, record, "b");
    const late = loop.callLater(20, record, "cancelled");
    assert.equal(late.when(), start + 20);
    late.cancel();
    loop.callLater(-5, record, "asap");
    await sleep(40);
    assert.deepEqual(fired, [["asap", 0], ["a", 10], ["b", 10], ["c", 30]]);
  });
});

test("loop: a callback that throws goes to the exception handler", async () => {
  const contexts: ExceptionContext[] = [];
  await vrun(async () => {
    const loop = getRunningLoop();
    loop.setExceptionHandler((_loop, context) => contexts.push(context));
    loop.callSoon(function explode() {
      throw new Error("bang");
    });
    await steps(2);
  });
  assert.equal(contexts.length, 1);
  assert.match(contexts[0].message, /explode/);
  assert.equal((contexts[0].exception as Error).message, "bang");
});

test("loop: bad arguments are a TypeError naming the argument, at once", () => {
  const loop = newEventLoop();
  try {
    assert.throws(() => sleep(NaN), { name: "TypeError", message: /ms/ });
    assert.throws(
      () => sleep("10" as unknown as number),
      /ms must be a number/,
    );
    assert.throws(
      () => createTask(42 as unknown as () => Promise<void>),
      { name: "TypeError", message: /coro/ },
    );
    assert.throws(
      () => loop.callLater("x" as unknown as number, () => {}),
      { name: "TypeError", message: /delay/ },
    );
    assert.throws(
      () => loop.callSoon("not a function" as unknown as () => void),
      { name: "TypeError", message: /callback/ },
    );
    assert.throws(
      () => loop.callAt(NaN, () => {}),
      { name: "TypeError", message: /when/ },
    );
  } finally {
    loop.close();
  }
});

test("loop: getRunningLoop outside a task is a RuntimeError", () => {
  assert.throws(() => getRunningLoop(), RuntimeError);
});

test("loop: getRunningLoop inside a callback is the loop running it", async () => {
  const loop = newEventLoop({ virtualTime: true });
  const seen = loop.createFuture<EventLoop>();
  loop.callSoon(() => seen.setResult(getRunningLoop()));
  assert.equal(await loop.runUntilComplete(seen), loop);
  loop.close();
});

test("loop: runForever runs until stop()", async () => {
  const loop = newEventLoop({ virtualTime: true });
  loop.callLater(500, () => loop.stop());
  assert.equal(loop.isRunning(), false);
  const running = loop.runForever();
  assert.equal(loop.isRunning(), true);
  await running;
  assert.equal(loop.isRunning(), false);
  assert.equal(loop.time(), 500);
  loop.close();
});

test("loop: runUntilComplete stopped early is a RuntimeError", async () => {
  const loop = newEventLoop({ virtualTime: true });
  const never = loop.createFuture();
  loop.callSoon(() => loop.stop());
  await assert.rejects(loop.runUntilComplete(never), {
    name: "RuntimeError",
    message: /stopped before Future completed/,
  });
  loop.close();
});

test("loop: a closed loop refuses work; closing a running one is an error", async () => {
  const loop = newEventLoop({ virtualTime: true });
  const running = loop.runForever();
  assert.throws(() => loop.close(), RuntimeError);
  loop.stop();
  await running;
  loop.close();
  assert.equal(loop.isClosed(), true);
  assert.throws(() => loop.callSoon(() => {}), {
    name: "RuntimeError",
    message: /closed/,
  });
  assert.throws(() => loop.createTask(() => sleep(1)), RuntimeError);
  assert.throws(
    () => loop.runUntilComplete(loop.createFuture()),
    RuntimeError,
  );
});

test("loop: getEventLoop outside a task gives a default loop that runs tasks", async () => {
  const loop = getEventLoop();
  assert.equal(getEventLoop(), loop);
  const result = await createTask(() => sleep(1, "default loop"));
  assert.equal(result, "default loop");
  const fresh = newEventLoop();
  assert.notEqual(fresh, loop);
  fresh.close();
});

test("loop: a loop of sleep(0) does not starve host timers", async () => {
  let hostTimerFired = false;
  const hostTimer = setTimeout(() => hostTimerFired = true, 1);
  const switches = await run(async () => {
    let count = 0;
    while (!hostTimerFired) {
      await sleep(0);
      count++;
    }
    return count;
  });
  clearTimeout(hostTimer);
  assert.equal(hostTimerFired, true);
  assert.ok(switches > 0);
});

test("loop: virtual time jumps over an hour instantly and reports it exactly", async () => {
  const wallStart = performance.now();
  const elapsed = await vrun(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    await sleep(3_600_000);
    return loop.time() - start;
  });
  assert.equal(elapsed, 3_600_000);
  assert.ok(performance.now() - wallStart < 1000);
});

test("loop: virtual time does not hang on a bare promise resolved by a loop timer", async () => {
  const elapsed = await vrun(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    // The loop cannot see this promise: it jumps after a short idle wait.
    await new Promise<void>((resolve) => loop.callLater(1000, resolve));
    return loop.time() - start;
  });
  assert.equal(elapsed, 1000);
});

test("loop: virtual time waits for a wrapped foreign promise before jumping", async () => {
  const order = await vrun(async () => {
    const order: string[] = [];
    const foreign = new Promise<void>((resolve) => setTimeout(resolve, 5));
    const timer = createTask(async () => {
      await sleep(1000);
      order.push("timer");
    });
    await wrapFuture(foreign);
    order.push("foreign");
    await timer;
    return order;
  });
  assert.deepEqual(order, ["foreign", "timer"]);
});

// ---------------------------------------------------------------------------
// Futures
// ---------------------------------------------------------------------------

test("future: result() before done, and setting twice, are InvalidStateError", async () => {
  await vrun(async () => {
    const future = new Future<number>();
    assert.equal(future.done(), false);
    assert.throws(() => future.result(), InvalidStateError);
    assert.throws(() => future.exception(), InvalidStateError);
    future.setResult(1);
    assert.throws(() => future.setResult(2), InvalidStateError);
    assert.throws(
      () => future.setException(new Error("late")),
      InvalidStateError,
    );
    assert.equal(future.cancel(), false);
    assert.equal(future.result(), 1);
    assert.equal(future.exception(), null);
  });
});

test("future: done callbacks run on the loop, never inline", async () => {
  await vrun(async () => {
    const future = getRunningLoop().createFuture<string>();
    const seen: string[] = [];
    future.addDoneCallback((f) => seen.push(f.result()));
    future.setResult("value");
    assert.equal(seen.length, 0);
    await steps(1);
    assert.deepEqual(seen, ["value"]);
    // Added after it is done: still scheduled, not called inline.
    future.addDoneCallback((f) => seen.push(`late ${f.result()}`));
    assert.deepEqual(seen, ["value"]);
    await steps(1);
    assert.deepEqual(seen, ["value", "late value"]);
  });
});

test("future: removeDoneCallback removes every registration", async () => {
  await vrun(async () => {
    const future = new Future<void>();
    let calls = 0;
    const callback = () => calls++;
    future.addDoneCallback(callback);
    future.addDoneCallback(callback);
    assert.equal(future.removeDoneCallback(callback), 2);
    future.setResult();
    await steps(2);
    assert.equal(calls, 0);
  });
});

test("future: works with await, Promise.all, then and catch", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    const a = loop.createFuture<number>();
    const b = loop.createFuture<number>();
    const failed = loop.createFuture<number>();
    loop.callLater(10, () => a.setResult(1));
    loop.callLater(20, () => b.setResult(2));
    loop.callLater(5, () => failed.setException(new RangeError("no")));
    assert.deepEqual(await Promise.all([a, b]), [1, 2]);
    assert.equal(await a.then((x) => x * 10), 10);
    assert.equal(await failed.catch((e) => (e as Error).message), "no");
    await assert.rejects(failed, RangeError);
    assert.equal(isFuture(a), true);
    assert.equal(isFuture(Promise.resolve()), false);
  });
});

test("future: a cancelled future raises CancelledError with its message", async () => {
  await vrun(async () => {
    const future = new Future<void>();
    assert.equal(future.cancel("why"), true);
    assert.equal(future.cancelled(), true);
    assert.throws(() => future.result(), {
      name: "CancelledError",
      message: "why",
    });
    await assert.rejects(
      future,
      (e) => e instanceof CancelledError && e.message === "why",
    );
  });
});

test("future: an error nobody retrieved goes to the exception handler at close", async () => {
  const contexts: ExceptionContext[] = [];
  await vrun(async () => {
    getRunningLoop().setExceptionHandler((_loop, context) =>
      contexts.push(context)
    );
    const ignored = new Future<void>();
    ignored.setException(new Error("unseen"));
    const seen = new Future<void>();
    seen.setException(new Error("seen"));
    await seen.catch(() => {});
  });
  assert.equal(contexts.length, 1);
  assert.match(contexts[0].message, /Future exception was never retrieved/);
  assert.equal((contexts[0].exception as Error).message, "unseen");
});

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

test("task: createTask is lazy; eagerStart runs up to the first await", async () => {
  await vrun(async () => {
    const log: string[] = [];
    const lazy = createTask(async () => {
      log.push("lazy started");
      await sleep(1);
    });
    const eager = createTask(async () => {
      log.push("eager started");
      await sleep(1);
      log.push("eager resumed");
    }, { eagerStart: true });
    assert.deepEqual(log, ["eager started"]);
    await steps(1);
    assert.deepEqual(log, ["eager started", "lazy started"]);
    await gather([lazy, eager]);
    assert.deepEqual(log, ["eager started", "lazy started", "eager resumed"]);
  });
});

test("task: cancelled before its first step, its function never runs", async () => {
  await vrun(async () => {
    let ran = false;
    const task = createTask(async () => {
      ran = true;
    });
    assert.equal(task.cancel("too early"), true);
    await assert.rejects(
      task,
      (e) => e instanceof CancelledError && e.message === "too early",
    );
    assert.equal(ran, false);
    assert.equal(task.cancelled(), true);
  });
});

test("task: cancel() is a request; a task that catches it may return a value", async () => {
  await vrun(async () => {
    const task = createTask(async () => {
      try {
        await sleep(10_000);
        return "slept";
      } catch (e) {
        assert.ok(e instanceof CancelledError);
        return "caught";
      }
    });
    await steps(1);
    task.cancel();
    assert.equal(await task, "caught");
    assert.equal(task.cancelled(), false);
    assert.equal(task.cancel(), false);
  });
});

test("task: cancelling() counts requests and uncancel() takes one back", async () => {
  await vrun(async () => {
    const task = createTask(() => sleep(10_000));
    await steps(1);
    assert.equal(task.cancelling(), 0);
    task.cancel();
    task.cancel();
    assert.equal(task.cancelling(), 2);
    assert.equal(task.uncancel(), 1);
    assert.equal(task.cancelling(), 1);
    await assert.rejects(task, CancelledError);
  });
});

test("task: cancelling a task cancels the task or future it awaits", async () => {
  await vrun(async () => {
    const inner = createTask(() => sleep(10_000));
    const future = new Future<void>();
    const outer = createTask(async () => {
      await inner;
    });
    const other = createTask(async () => {
      await future;
    });
    await steps(1);
    outer.cancel();
    other.cancel();
    await assert.rejects(outer, CancelledError);
    await assert.rejects(other, CancelledError);
    assert.equal(inner.cancelled(), true);
    assert.equal(future.cancelled(), true);
  });
});

test("task: must-cancel: a cancel after the future settled is seen at that await", async () => {
  await vrun(async () => {
    const future = new Future<string>();
    const seen: string[] = [];
    const task = createTask(async () => {
      try {
        seen.push(await future);
      } catch (e) {
        seen.push(e instanceof CancelledError ? "cancelled" : "other");
        // The value was handed over: it is still readable, so not lost.
        seen.push(future.result());
      }
    });
    await steps(1);
    future.setResult("item");
    task.cancel();
    await task;
    assert.deepEqual(seen, ["cancelled", "item"]);
  });
});

test("task: a cancel while running is delivered at the next await", async () => {
  await vrun(async () => {
    const log: string[] = [];
    const task = createTask(async () => {
      currentTask()!.cancel("self");
      log.push("still running");
      try {
        await sleep(0);
      } catch (e) {
        log.push((e as Error).message);
        throw e;
      }
    });
    await assert.rejects(task, CancelledError);
    assert.deepEqual(log, ["still running", "self"]);
  });
});

test("task: signal is aborted when the task is cancelled", async () => {
  await vrun(async () => {
    let signal: AbortSignal | null = null;
    const task = createTask(async () => {
      signal = currentTask()!.signal;
      await sleep(10_000);
    });
    await steps(1);
    assert.equal(signal!.aborted, false);
    task.cancel("abort it");
    assert.equal(signal!.aborted, true);
    assert.ok(signal!.reason instanceof CancelledError);
    await assert.rejects(task, CancelledError);
  });
});

test("task: names, currentTask, allTasks", async () => {
  await vrun(async () => {
    const task = createTask(() => sleep(5), { name: "sleeper" });
    assert.equal(task.getName(), "sleeper");
    task.setName("renamed");
    assert.equal(task.getName(), "renamed");
    assert.match(String(task), /<Task pending name='renamed'>/);
    await steps(1);
    const tasks = allTasks();
    assert.ok(tasks.has(task));
    assert.ok(tasks.has(currentTask()!));
    await task;
    assert.equal(allTasks().has(task), false);
    assert.throws(() => task.setResult(undefined), RuntimeError);
  });
  assert.equal(currentTask(), null);
});

test("task: a task cannot await itself", async () => {
  await vrun(async () => {
    const task: Task<void> = createTask(async () => {
      await task;
    });
    await assert.rejects(task, RuntimeError);
  });
});

test("task: a failed task nobody awaits goes to the exception handler", async () => {
  const contexts: ExceptionContext[] = [];
  await vrun(async () => {
    getRunningLoop().setExceptionHandler((_loop, context) =>
      contexts.push(context)
    );
    createTask(async () => {
      await sleep(1);
      throw new Error("forgotten");
    }, { name: "orphan" });
    await sleep(10);
  });
  assert.equal(contexts.length, 1);
  assert.match(contexts[0].message, /Task exception was never retrieved/);
  assert.match(contexts[0].message, /orphan/);
  assert.equal((contexts[0].exception as Error).message, "forgotten");
});

// Garbage collection on demand: Bun has it, Deno with --v8-flags=--expose-gc
// (scripts/test.sh passes it).
const collectGarbage: (() => void) | undefined =
  (globalThis as { gc?: () => void }).gc ??
    (globalThis as { Bun?: { gc(full: boolean): void } }).Bun?.gc.bind(
      null,
      true,
    );

test(
  "task: a forgotten failed task is reported once garbage-collected, while the loop runs",
  { skip: collectGarbage === undefined ? "needs --expose-gc" : false },
  async () => {
    const reported: string[] = [];
    await run(async () => {
      const loop = getRunningLoop();
      loop.setExceptionHandler((_loop, context) =>
        reported.push(context.message)
      );
      (() => {
        createTask(() => Promise.reject(new Error("forgotten")), {
          name: "orphan",
        });
      })();
      await sleep(1);
      // Finalizers run in host turns of their own after a collection.
      for (let turn = 0; turn < 50 && reported.length === 0; turn++) {
        collectGarbage!();
        await wrapFuture(new Promise((resolve) => setTimeout(resolve, 0)));
      }
      assert.deepEqual(reported, [
        'Task exception was never retrieved (task "orphan")',
      ]);
    });
    assert.equal(reported.length, 1); // not reported again at close
  },
);

test("task: the default exception handler writes one line naming the task", async () => {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.join(" "));
  try {
    await vrun(async () => {
      createTask(() => Promise.reject(new Error("nobody listens")), {
        name: "lonely",
      });
      await sleep(1);
    });
  } finally {
    console.error = original;
  }
  assert.equal(lines.length, 1);
  assert.match(lines[0], /lonely/);
  assert.match(lines[0], /Error: nobody listens/);
  assert.doesNotMatch(lines[0], /\n/);
});

test("task: uncancel() back to zero renews the signal and drops a pending cancel", async () => {
  await vrun(async () => {
    const task = currentTask()!;
    const first = task.signal;
    task.cancel(); // not waiting on anything: delivered at the next await
    assert.equal(first.aborted, true);
    assert.equal(task.uncancel(), 0);
    const renewed = task.signal;
    assert.notEqual(renewed, first);
    assert.equal(renewed.aborted, false);
    await sleep(10); // the dropped cancel is not delivered here
    assert.equal(task.cancelling(), 0);
  });
});

test("task: a promise handed to createTask can be stopped being waited for", async () => {
  await vrun(async () => {
    let resolveForeign!: (value: string) => void;
    const foreign = new Promise<string>((resolve) => resolveForeign = resolve);
    const task = createTask(foreign);
    await sleep(0);
    task.cancel();
    await assert.rejects(task, CancelledError);
    resolveForeign("too late"); // nothing waits for it any more
    assert.equal(await createTask(Promise.resolve("direct")), "direct");
  });
});

// ---------------------------------------------------------------------------
// Runners
// ---------------------------------------------------------------------------

test("run: cancels what main left running, lets finally blocks finish, closes the loop", async () => {
  const log: string[] = [];
  let loop: EventLoop | null = null;
  await vrun(async () => {
    loop = getRunningLoop();
    createTask(async () => {
      try {
        await sleep(10_000);
      } finally {
        await sleep(5);
        log.push("cleaned up");
      }
    });
    await sleep(1);
  });
  assert.deepEqual(log, ["cleaned up"]);
  assert.equal(loop!.isClosed(), true);
});

test("run: inside a running task is a RuntimeError", async () => {
  await vrun(async () => {
    await assert.rejects(run(() => sleep(1)), RuntimeError);
  });
});

test("run: returns main's result and throws main's error", async () => {
  assert.equal(await vrun(() => sleep(10, "result")), "result");
  await assert.rejects(
    vrun(async () => {
      await sleep(1);
      throw new RangeError("main failed");
    }),
    RangeError,
  );
});

test("runner: several runs share one loop; close() cancels leftovers", async () => {
  const runner = new Runner({ virtualTime: true });
  let leftover: Task<void> | null = null;
  await runner.run(async () => {
    leftover = createTask(() => sleep(100_000));
    await sleep(1000);
  });
  await runner.run(() => sleep(1000));
  assert.equal(runner.getLoop().time(), 2000);
  assert.equal(leftover!.done(), false);
  await runner.close();
  assert.equal(leftover!.cancelled(), true);
  assert.throws(() => runner.getLoop(), RuntimeError);
});

test("runner: await using closes it", async () => {
  let loop: EventLoop;
  {
    await using runner = new Runner({ virtualTime: true });
    loop = runner.getLoop();
    await runner.run(() => sleep(1));
  }
  assert.equal(loop.isClosed(), true);
});

// ---------------------------------------------------------------------------
// Waiting and timeouts
// ---------------------------------------------------------------------------

test("gather: results in the order given, whatever the finishing order", async () => {
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
  });
});

test("gather: the same future given twice fills both slots", async () => {
  await vrun(async () => {
    const future = new Future<string>();
    getRunningLoop().callLater(5, () => future.setResult("twice"));
    assert.deepEqual(await gather([future, future, () => sleep(1, "once")]), [
      "twice",
      "twice",
      "once",
    ]);
  });
});

test("gather: the first error propagates while the other children keep running", async () => {
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
  });
});

test("gather: returnExceptions returns errors and cancellations as values", async () => {
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
  });
});

test("gather: a cancelled child fails the gather with CancelledError", async () => {
  await vrun(async () => {
    const child = createTask(() => sleep(100));
    const gathered = gather([child, () => sleep(200)]);
    await steps(1);
    child.cancel();
    await assert.rejects(gathered, CancelledError);
  });
});

test("gather: cancelling the gather cancels every child", async () => {
  await vrun(async () => {
    const a = createTask(() => sleep(100));
    const b = createTask(() => sleep(200));
    const gathered = gather([a, b]);
    await steps(1);
    assert.equal(gathered.cancel(), true);
    await assert.rejects(gathered, CancelledError);
    assert.equal(a.cancelled(), true);
    assert.equal(b.cancelled(), true);
  });
});

test("gather: cancel() after all children finished returns false", async () => {
  await vrun(async () => {
    const a = createTask(() => sleep(1, "a"));
    const gathered = gather([a]);
    await a;
    assert.equal(gathered.cancel(), false);
    assert.deepEqual(await gathered, ["a"]);
  });
});

test("gather: a task awaiting a gather cancels its children when cancelled", async () => {
  await vrun(async () => {
    const a = createTask(() => sleep(100));
    const parent = createTask(() => gather([a, () => sleep(100)]));
    await steps(2);
    parent.cancel();
    await assert.rejects(parent, CancelledError);
    assert.equal(a.cancelled(), true);
  });
});

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

test("timeout: expires into TimeoutError, and the task is not left cancelled", async () => {
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
  });
});

test("timeout: a cancellation from outside passes through as CancelledError", async () => {
  await vrun(async () => {
    const task = createTask(() => timeout(1000, () => sleep(10_000)));
    await sleep(10);
    task.cancel();
    await assert.rejects(
      task,
      (e) => e instanceof CancelledError && !(e instanceof TimeoutError),
    );
  });
});

test("timeout: nested scopes report the one that expired", async () => {
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
  });
});

test("timeout: reschedule moves the deadline; null never expires", async () => {
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
  });
});

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

// ---------------------------------------------------------------------------
// Task groups
// ---------------------------------------------------------------------------

test("taskGroup: waits for every task and returns the body's value", async () => {
  await vrun(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    const results: string[] = [];
    const value = await taskGroup(async (tg) => {
      tg.createTask(async () => results.push(await sleep(30, "slow")));
      tg.createTask(async () => results.push(await sleep(10, "fast")));
      return "body";
    });
    assert.equal(value, "body");
    assert.deepEqual(results, ["fast", "slow"]);
    assert.equal(loop.time() - start, 30);
  });
});

test("taskGroup: a failing child cancels siblings and the body; errors are grouped", async () => {
  await vrun(async () => {
    const log: string[] = [];
    let group: unknown = null;
    try {
      await taskGroup(async (tg) => {
        tg.createTask(async () => {
          try {
            await sleep(1000);
          } catch (e) {
            log.push(e instanceof CancelledError ? "sibling cancelled" : "?");
            throw e;
          }
        });
        tg.createTask(async () => {
          await sleep(10);
          throw new RangeError("child one");
        });
        tg.createTask(async () => {
          await sleep(10);
          throw new TypeError("child two");
        });
        try {
          await sleep(5000);
        } catch (e) {
          log.push(e instanceof CancelledError ? "body cancelled" : "?");
          throw e;
        }
      });
    } catch (e) {
      group = e;
    }
    assert.ok(group instanceof ExceptionGroup);
    const errors = (group as ExceptionGroup).exceptions;
    assert.equal(errors.length, 2);
    assert.ok(errors[0] instanceof RangeError);
    assert.ok(errors[1] instanceof TypeError);
    assert.deepEqual(log.sort(), ["body cancelled", "sibling cancelled"]);
    assert.equal(currentTask()!.cancelling(), 0);
  });
});

test("taskGroup: the body's own error is in the group", async () => {
  await vrun(async () => {
    await assert.rejects(
      taskGroup(async (tg) => {
        tg.createTask(() => sleep(1000));
        await sleep(1);
        throw new Error("body failed");
      }),
      (e) =>
        e instanceof ExceptionGroup && e.exceptions.length === 1 &&
        (e.exceptions[0] as Error).message === "body failed",
    );
  });
});

test("taskGroup: createTask after the group finished is a RuntimeError", async () => {
  await vrun(async () => {
    let saved: { createTask(c: () => Promise<void>): unknown } | null = null;
    await taskGroup(async (tg) => {
      saved = tg;
      tg.createTask(() => sleep(1));
    });
    assert.throws(() => saved!.createTask(() => sleep(1)), RuntimeError);
  });
});

test("taskGroup: an outer cancel cancels the children and propagates", async () => {
  await vrun(async () => {
    let child: Task<void> | null = null;
    const task = createTask(() =>
      taskGroup(async (tg) => {
        child = tg.createTask(() => sleep(1000));
      })
    );
    await sleep(10);
    task.cancel();
    await assert.rejects(task, CancelledError);
    assert.equal(child!.cancelled(), true);
  });
});

// ---------------------------------------------------------------------------
// Synchronization primitives
// ---------------------------------------------------------------------------

import {
  Barrier,
  BoundedSemaphore,
  BrokenBarrierError,
  Condition,
  Event,
  Lock,
  Semaphore,
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

test("lock: a newcomer does not jump ahead of a woken waiter, though locked() is false", async () => {
  const order = await run(async () => {
    const lock = new Lock();
    const order: string[] = [];
    await lock.acquire();
    const waiter = createTask(async () => {
      using _ = await lock.acquire();
      order.push("waiter");
    });
    await step();
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
    // As on CPython 3.14: indexes count the parties inside, and a left.
    assert.deepEqual(indexes, [1, 1, 2]);
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

import {
  BufferedProtocol,
  createSubprocessExec,
  createSubprocessShell,
  DatagramProtocol,
  type DatagramTransport,
  DEVNULL,
  IncompleteReadError,
  LimitOverrunError,
  openConnection,
  openUnixConnection,
  PIPE,
  Protocol,
  type Server,
  type SocketAddress,
  startServer,
  startUnixServer,
  STDOUT,
  StreamReader,
  SubprocessProtocol,
  type Transport,
  type WriteTransport,
} from "./mod.ts";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

const bytesOf = (text: string) => new TextEncoder().encode(text);
const textOf = (bytes: Uint8Array | null) => new TextDecoder().decode(bytes!);

// Writes to a peer that does not read until the transport's own buffer
// holds megabytes; returns the bytes written.
async function fillUntilBuffered(transport: WriteTransport): Promise<number> {
  const chunk = new Uint8Array(1 << 20);
  let size = 0;
  while (transport.getWriteBufferSize() < (2 << 20)) {
    assert.ok(size < (256 << 20), "the peer's kernel never fills up");
    transport.write(chunk);
    size += chunk.length;
    await sleep(5);
  }
  return size;
}

function serverAddress(server: Server): [string, number] {
  return server.sockets[0].getsockname() as [string, number];
}

// A protocol that records what happens to it, in order.
class RecordingProtocol extends Protocol {
  events: string[] = [];
  received = "";
  transport: Transport | null = null;
  lost = Promise.withResolvers<Error | null>();
  override connectionMade(transport: Transport) {
    this.transport = transport;
    this.events.push("made");
  }
  override dataReceived(data: Uint8Array) {
    this.received += textOf(data);
  }
  override eofReceived() {
    this.events.push("eof");
  }
  override connectionLost(exc: Error | null) {
    this.events.push("lost");
    this.lost.resolve(exc);
  }
}

class EchoProtocol extends Protocol {
  #transport: Transport | null = null;
  override connectionMade(transport: Transport) {
    this.#transport = transport;
  }
  override dataReceived(data: Uint8Array) {
    this.#transport!.write(data);
  }
  override eofReceived() {
    this.#transport!.writeEof();
    return true;
  }
}

test("transports: a protocol echo server and client over TCP", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const server = await loop.createServer(
      () => new EchoProtocol(),
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const [transport, client] = await loop.createConnection(
      () => new RecordingProtocol(),
      host,
      port,
    );
    assert.deepEqual(client.events, ["made"]);
    assert.deepEqual(transport.getExtraInfo("peername"), [host, port]);
    const [localHost] = transport.getExtraInfo("sockname") as [string, number];
    assert.equal(localHost, "127.0.0.1");
    assert.equal(transport.canWriteEof(), true);
    transport.write("hello ");
    transport.writelines([bytesOf("wor"), "ld"]);
    transport.writeEof();
    assert.equal(await client.lost.promise, null);
    assert.equal(client.received, "hello world");
    assert.deepEqual(client.events, ["made", "eof", "lost"]);
    assert.equal(transport.isClosing(), true);
    server.close();
    await server.waitClosed();
  });
});

test("transports: write flow control pauses and resumes the protocol", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    let serverSide: Transport | null = null;
    const server = await loop.createServer(
      () =>
        new class extends Protocol {
          override connectionMade(transport: Transport) {
            serverSide = transport;
            transport.pauseReading(); // a peer that does not read
          }
        }(),
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const flow: string[] = [];
    const resumed = loop.createFuture<void>();
    const [transport] = await loop.createConnection(
      () =>
        new class extends Protocol {
          override pauseWriting() {
            flow.push("pause");
          }
          override resumeWriting() {
            flow.push("resume");
            if (serverSide?.isReading()) resumed.setResult();
          }
        }(),
      host,
      port,
    );
    transport.setWriteBufferLimits(64 * 1024);
    assert.deepEqual(transport.getWriteBufferLimits(), [16 * 1024, 64 * 1024]);
    assert.throws(() => transport.setWriteBufferLimits(10, 20), RangeError);
    // Fill until writing stays paused: the peer's kernel takes in a lot.
    do {
      flow.length = 0;
      await fillUntilBuffered(transport);
      assert.equal(flow[0], "pause");
      await sleep(100);
    } while (flow.length > 1);
    assert.deepEqual(flow, ["pause"], "still paused: the peer reads nothing");
    assert.equal(serverSide!.isReading(), false);
    serverSide!.resumeReading();
    await resumed;
    assert.deepEqual(flow, ["pause", "resume"]);
    transport.close();
    server.close();
    server.closeClients();
    await server.waitClosed();
  });
});

test("transports: a BufferedProtocol receives into its own buffer", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const server = await loop.createServer(
      () => new EchoProtocol(),
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const buffer = new Uint8Array(3); // small, to be refilled many times
    let text = "";
    const done = loop.createFuture<void>();
    const [transport] = await loop.createConnection(
      () =>
        new class extends BufferedProtocol {
          override getBuffer() {
            return buffer;
          }
          override bufferUpdated(nbytes: number) {
            text += textOf(buffer.slice(0, nbytes));
          }
          override connectionLost() {
            done.setResult();
          }
        }(),
      host,
      port,
    );
    transport.write("buffered protocols save a copy");
    transport.writeEof();
    await done;
    assert.equal(text, "buffered protocols save a copy");
    server.close();
    await server.waitClosed();
  });
});

test("transports: UDP echo through createDatagramEndpoint", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const [serverTransport] = await loop.createDatagramEndpoint(
      () =>
        new class extends DatagramProtocol {
          #transport: DatagramTransport | null = null;
          override connectionMade(transport: DatagramTransport) {
            this.#transport = transport;
          }
          override datagramReceived(data: Uint8Array, addr: SocketAddress) {
            this.#transport!.sendto(
              bytesOf(textOf(data).toUpperCase()),
              addr as [string, number],
            );
          }
        }(),
      { localAddr: ["127.0.0.1", 0] },
    );
    const serverAddr = serverTransport.getExtraInfo("sockname") as [
      string,
      number,
    ];
    const replies: Array<[string, SocketAddress]> = [];
    const gotTwo = loop.createFuture<void>();
    const [client] = await loop.createDatagramEndpoint(
      () =>
        new class extends DatagramProtocol {
          override datagramReceived(data: Uint8Array, addr: SocketAddress) {
            replies.push([textOf(data), addr]);
            if (replies.length === 2) gotTwo.setResult();
          }
        }(),
      { remoteAddr: serverAddr },
    );
    assert.deepEqual(client.getExtraInfo("peername"), serverAddr);
    assert.throws(() => client.sendto("x", ["127.0.0.1", 9]), RangeError);
    client.sendto("ping");
    client.sendto("pong", serverAddr);
    await gotTwo;
    assert.deepEqual(replies.map(([text]) => text).sort(), ["PING", "PONG"]);
    assert.deepEqual(replies[0][1], serverAddr);
    client.close();
    serverTransport.close();
    assert.equal(client.isClosing(), true);
    await sleep(10); // connectionLost runs on the loop
  });
});

test("transports: TLS echo with the tls option", async () => {
  await run(async () => {
    const server = await startServer(
      async (reader, writer) => {
        writer.write(await reader.readline());
        await writer.drain();
        writer.close();
      },
      "127.0.0.1",
      0,
      { tls: { cert: TEST_CERT, key: TEST_KEY } },
    );
    const [host, port] = serverAddress(server);
    const [reader, writer] = await openConnection(host, port, {
      tls: { ca: TEST_CERT, serverHostname: "localhost" },
    });
    assert.equal(writer.canWriteEof(), false);
    assert.ok(writer.getExtraInfo("cipher"));
    writer.write("secret\n");
    assert.equal(textOf(await reader.readline()), "secret\n");
    assert.equal(textOf(await reader.read()), "");
    writer.close();
    await writer.waitClosed();
    // An untrusted certificate fails at the await, with the TLS error.
    await assert.rejects(
      openConnection(host, port, { tls: true }),
      (e: Error & { code?: string }) => typeof e.code === "string",
    );
    server.close();
    await server.waitClosed();
  });
});

test("transports: refused, unresolvable and in-use addresses fail at the await with the system's code", async () => {
  await run(async () => {
    const server = await startServer(() => {}, "127.0.0.1", 0);
    const [host, port] = serverAddress(server);
    await assert.rejects(
      startServer(() => {}, host, port),
      (e: Error & { code?: string }) =>
        e.code === "EADDRINUSE" && e.message.includes(String(port)),
    );
    server.close();
    await server.waitClosed();
    await assert.rejects(
      openConnection(host, port),
      (e: Error & { code?: string }) =>
        e.code === "ECONNREFUSED" && e.message.includes(String(port)),
    );
    await assert.rejects(
      openConnection("no-such-host.invalid", 80),
      (e: Error & { code?: string }) =>
        /^(ENOTFOUND|EAI_AGAIN|EAI_FAIL)$/.test(e.code ?? "") &&
        e.message.includes("no-such-host.invalid"),
    );
    assert.throws(() => openConnection(host, 70000), RangeError);
    assert.throws(
      () => getRunningLoop().createConnection(() => new Protocol(), host, -1),
      RangeError,
    );
  });
});

test("transports: a cancelled connect leaves nothing behind", async () => {
  await run(async () => {
    // 192.0.2.0/24 is TEST-NET-1: connects there hang until cancelled
    // (or fail at once with no route); either way nothing may leak.
    const attempt = createTask(() => openConnection("192.0.2.1", 9));
    await sleep(20);
    attempt.cancel();
    await assert.rejects(attempt);
  });
});

test("transports: a signal handler runs its callback on the loop", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const got = loop.createFuture<string>();
    loop.addSignalHandler("SIGUSR2", (what: string) => {
      assert.equal(getRunningLoop(), loop);
      got.setResult(what);
    }, "caught");
    try {
      process.kill(process.pid, "SIGUSR2");
      assert.equal(await waitFor(got, 5000), "caught");
    } finally {
      assert.equal(loop.removeSignalHandler("SIGUSR2"), true);
    }
    assert.equal(loop.removeSignalHandler("SIGUSR2"), false);
    assert.throws(() => loop.addSignalHandler("SIGNOPE", () => {}), RangeError);
    assert.throws(
      () => loop.addSignalHandler("SIGKILL", () => {}),
      RuntimeError,
    );
  });
});

test("transports: closing a loop removes its signal handlers", () => {
  const loop = newEventLoop();
  const before = process.listenerCount("SIGUSR2");
  loop.addSignalHandler("SIGUSR2", () => {});
  assert.equal(process.listenerCount("SIGUSR2"), before + 1);
  loop.close();
  assert.equal(process.listenerCount("SIGUSR2"), before);
});

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

// The python3 peer tests need python3; outside CI, they are skipped without.
const python3 = spawnSync("python3", ["--version"]).status === 0;
const skipPython = !python3 && process.env.CI !== "true"
  ? "python3 not found: skipping the tests against a real python3 peer"
  : false;
if (skipPython) console.warn(skipPython);

async function lineEchoServer(): Promise<Server> {
  return await startServer(
    async (reader, writer) => {
      for await (const line of reader) {
        writer.write(line);
        await writer.drain();
      }
      writer.close();
    },
    "127.0.0.1",
    0,
  );
}

test("streams: echo over TCP", async () => {
  await run(async () => {
    const server = await lineEchoServer();
    assert.equal(server.isServing(), true);
    const [host, port] = serverAddress(server);
    const [reader, writer] = await openConnection(host, port);
    writer.write("hello\n");
    writer.writelines(["wor", bytesOf("ld\n")]);
    await writer.drain();
    assert.equal(textOf(await reader.readline()), "hello\n");
    assert.equal(textOf(await reader.readuntil("\n")), "world\n");
    writer.write("no newline at the end");
    writer.writeEof();
    assert.equal(textOf(await reader.read()), "no newline at the end");
    assert.equal(reader.atEof(), true);
    writer.close();
    assert.equal(writer.isClosing(), true);
    await writer.waitClosed();
    server.close();
    assert.equal(server.isServing(), false);
    assert.deepEqual(server.sockets, []);
    await server.waitClosed();
  });
});

test("streams: echo over a Unix socket", async () => {
  const dir = mkdtempSync(join(tmpdir(), "aio-"));
  try {
    await run(async () => {
      const path = join(dir, "echo.sock");
      const server = await startUnixServer(async (reader, writer) => {
        assert.equal(writer.getExtraInfo("sockname"), path);
        writer.write(await reader.readexactly(5));
        writer.close();
      }, path);
      assert.equal(server.sockets[0].getsockname(), path);
      const [reader, writer] = await openUnixConnection(path);
      assert.equal(writer.getExtraInfo("peername"), path);
      writer.write("howdy");
      assert.equal(textOf(await reader.read()), "howdy");
      writer.close();
      await server[Symbol.asyncDispose]();
      // A stale socket file does not stop a new server.
      const again = await startUnixServer(() => {}, path);
      await again[Symbol.asyncDispose]();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("streams: 200 concurrent clients each get their own answer", async () => {
  await run(async () => {
    const server = await lineEchoServer();
    const [host, port] = serverAddress(server);
    const answers = await gather(
      Array.from({ length: 200 }, (_, i) => async () => {
        const [reader, writer] = await openConnection(host, port);
        writer.write(`client ${i}\n`);
        const answer = textOf(await reader.readline());
        writer.close();
        await writer.waitClosed();
        return answer;
      }),
    );
    assert.deepEqual(answers, answers.map((_, i) => `client ${i}\n`));
    server.close();
    await server.waitClosed();
  });
});

test("streams: our server answers a real python3 socket client", {
  skip: skipPython,
}, async () => {
  await run(async () => {
    const server = await startServer(
      async (reader, writer) => {
        const line = textOf(await reader.readline());
        writer.write(line.toUpperCase());
        await writer.drain();
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const client = await createSubprocessExec("python3", [
      "-c",
      `
import socket
with socket.create_connection((${JSON.stringify(host)}, ${port})) as s:
    s.sendall(b"hello from python\\n")
    data = b""
    while chunk := s.recv(100):
        data += chunk
    print(data.decode(), end="")
`,
    ], { stdout: PIPE });
    const [out] = await client.communicate();
    assert.equal(textOf(out), "HELLO FROM PYTHON\n");
    assert.equal(client.returncode, 0);
    server.close();
    await server.waitClosed();
  });
});

test("streams: our client talks to a real python3 server", {
  skip: skipPython,
}, async () => {
  await run(async () => {
    const pythonServer = await createSubprocessExec("python3", [
      "-u",
      "-c",
      `
import socket
with socket.create_server(("127.0.0.1", 0)) as server:
    print(server.getsockname()[1])
    conn, _ = server.accept()
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(line[::-1].strip() + b"\\n")
`,
    ], { stdout: PIPE });
    const port = Number(textOf(await pythonServer.stdout!.readline()));
    const [reader, writer] = await openConnection("127.0.0.1", port);
    for (const word of ["stressed", "drawer"]) {
      writer.write(`${word}\n`);
      await writer.drain();
    }
    assert.equal(textOf(await reader.readline()), "desserts\n");
    assert.equal(textOf(await reader.readline()), "reward\n");
    writer.close();
    await writer.waitClosed();
    assert.equal(await pythonServer.wait(), 0);
  });
});

test("streams: readexactly at EOF raises IncompleteReadError with partial and expected", async () => {
  await run(async () => {
    const reader = new StreamReader();
    reader.feedData(bytesOf("abc"));
    reader.feedEof();
    await assert.rejects(reader.readexactly(5), (e) => {
      assert.ok(e instanceof IncompleteReadError);
      assert.equal(textOf(e.partial), "abc");
      assert.equal(e.expected, 5);
      return true;
    });
    assert.equal(reader.atEof(), true);
    assert.equal((await reader.readexactly(0)).length, 0);
    assert.throws(() => reader.readexactly(-1), RangeError);
  });
});

test("streams: readuntil over the limit raises LimitOverrunError and leaves the buffer intact", async () => {
  await run(async () => {
    const reader = new StreamReader(8);
    reader.feedData(bytesOf("0123456789abc;rest"));
    await assert.rejects(reader.readuntil(";"), (e) => {
      assert.ok(e instanceof LimitOverrunError);
      assert.equal(e.consumed, 13);
      return true;
    });
    assert.equal(textOf(await reader.readexactly(14)), "0123456789abc;");
    // Without the separator yet, past the limit.
    reader.feedData(bytesOf("0123456789"));
    await assert.rejects(reader.readuntil(";"), LimitOverrunError);
    reader.feedEof();
    assert.equal(textOf(await reader.read()), "rest0123456789");
    assert.throws(() => reader.readuntil(""), RangeError);
    // Multi-byte separators, at the end of the stream.
    const r2 = new StreamReader();
    r2.feedData(bytesOf("a\r\nb"));
    r2.feedEof();
    assert.equal(textOf(await r2.readuntil("\r\n")), "a\r\n");
    await assert.rejects(
      r2.readuntil("\r\n"),
      (e) => e instanceof IncompleteReadError && textOf(e.partial) === "b",
    );
  });
});

test("streams: readline over the limit raises and discards the line", async () => {
  await run(async () => {
    const reader = new StreamReader(4);
    reader.feedData(bytesOf("much too long\nok\n"));
    await assert.rejects(reader.readline(), RangeError);
    assert.equal(textOf(await reader.readline()), "ok\n");
    reader.feedData(bytesOf("longer than four, and no newline"));
    await assert.rejects(reader.readline(), RangeError);
    reader.feedData(bytesOf("x\n"));
    reader.feedEof();
    assert.equal(textOf(await reader.readline()), "x\n");
    assert.equal(textOf(await reader.readline()), "");
  });
});

test("streams: a cancelled read loses no bytes", async () => {
  await run(async () => {
    const reader = new StreamReader();
    const first = createTask(() => reader.readexactly(6));
    await sleep(0);
    reader.feedData(bytesOf("abc"));
    await sleep(0);
    first.cancel();
    await assert.rejects(first, CancelledError);
    reader.feedData(bytesOf("def"));
    assert.equal(textOf(await reader.readexactly(6)), "abcdef");
    // Two readers at once is a mistake, reported at once.
    const waiting = createTask(() => reader.read(1));
    await sleep(0);
    await assert.rejects(reader.read(1), RuntimeError);
    reader.feedEof();
    assert.equal((await waiting).length, 0);
    assert.throws(() => reader.feedData(bytesOf("late")), RuntimeError);
  });
});

test("streams: async iteration over lines", async () => {
  await run(async () => {
    const reader = new StreamReader();
    reader.feedData(bytesOf("one\ntwo\nthree"));
    reader.feedEof();
    const lines: string[] = [];
    for await (const line of reader) lines.push(textOf(line));
    assert.deepEqual(lines, ["one\n", "two\n", "three"]);
  });
});

test("streams: drain() blocks while the peer does not read, and resumes when it does", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const startReading = loop.createFuture<void>();
    const received = loop.createFuture<number>();
    const server = await startServer(
      async (reader, writer) => {
        await startReading;
        received.setResult((await reader.read()).length);
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const [, writer] = await openConnection(host, port);
    // The peer's kernel (and runtime) may take in tens of MiB before
    // pushing back, so fill until a drain() is still blocked 200 ms later;
    // each drain() that does finish must have seen the buffer drained.
    let size = 0;
    let drained: Task<void>;
    for (;;) {
      size += await fillUntilBuffered(writer.transport);
      drained = createTask(() => writer.drain());
      await sleep(200);
      if (!drained.done()) break;
      assert.ok(writer.transport.getWriteBufferSize() <= 16 * 1024);
      assert.ok(size < (256 << 20), "the peer never pushes back");
    }
    startReading.setResult();
    await drained;
    writer.writeEof();
    assert.equal(await received, size);
    writer.close();
    await writer.waitClosed();
    server.close();
    await server.waitClosed();
  });
});

test("streams: under virtual time, the clock holds still while I/O is pending", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const server = await startServer(
      async (_reader, writer) => {
        await sleep(0);
        writer.write("late\n"); // real time passes before this arrives
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [reader, writer] = await openConnection(...serverAddress(server));
    const start = loop.time();
    const line = await waitFor(reader.readline(), 60_000);
    assert.equal(textOf(line), "late\n");
    assert.equal(loop.time() - start, 0, "no virtual jump during the read");
    writer.close();
    server.close();
    await server.waitClosed();
  }, { virtualTime: true });
});

test("streams: server close, closeClients, abortClients and serveForever", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const connected: Array<Promise<unknown>> = [];
    const server = await startServer(
      async (reader) => {
        await reader.read(); // until the client or the server ends it
      },
      "127.0.0.1",
      0,
      { startServing: false },
    );
    assert.equal(server.isServing(), false);
    const forever = createTask(() => server.serveForever());
    await sleep(10);
    assert.equal(server.isServing(), true);
    await assert.rejects(server.serveForever(), RuntimeError);
    const [host, port] = serverAddress(server);
    const [r1] = await openConnection(host, port);
    const [r2] = await openConnection(host, port);
    connected.push(r1.read(), r2.read());
    await sleep(10);
    // close() stops listening, but waitClosed() waits for the clients.
    server.close();
    const closed = createTask(() => server.waitClosed());
    await sleep(10);
    assert.equal(closed.done(), false);
    server.closeClients();
    await closed;
    await assert.rejects(forever, CancelledError);
    await Promise.all(connected);
    // abortClients() ends connections at once.
    const second = await startServer(
      async (reader) => {
        await reader.read();
      },
      "127.0.0.1",
      0,
    );
    const [r3, w3] = await openConnection(...serverAddress(second));
    await sleep(10);
    second.abortClients();
    await r3.read();
    w3.close();
    await second[Symbol.asyncDispose]();
    assert.equal(loop.isClosed(), false);
  });
});

test("streams: a failing client handler is reported and its connection closed", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const reported = loop.createFuture<unknown>();
    loop.setExceptionHandler((_loop, context) => {
      reported.setResult(context.exception);
    });
    const server = await startServer(
      () => {
        throw new Error("handler bug");
      },
      "127.0.0.1",
      0,
    );
    const [reader, writer] = await openConnection(...serverAddress(server));
    assert.equal(((await reported) as Error).message, "handler bug");
    assert.equal((await reader.read()).length, 0); // closed by the server
    writer.close();
    server.close();
    await server.waitClosed();
  });
});

test("streams: what a read returned stays as it was, whatever is fed later", async () => {
  await vrun(async () => {
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    const reader = new StreamReader();
    const fed = encoder.encode("abc");
    reader.feedData(fed);
    fed[0] = 120; // feedData copied: the caller's array is the caller's
    const whole = await reader.read(100);
    reader.feedData(encoder.encode("defghi"));
    const part = await reader.read(2);
    reader.feedData(encoder.encode("jkl"));
    assert.deepEqual(
      [decoder.decode(whole), decoder.decode(part)],
      ["abc", "de"],
    );
    assert.equal(decoder.decode(await reader.read(100)), "fghijkl");
  });
});

// ---------------------------------------------------------------------------
// Subprocesses
// ---------------------------------------------------------------------------

test("subprocesses: communicate with cat", async () => {
  await run(async () => {
    const cat = await createSubprocessExec("cat", [], {
      stdin: PIPE,
      stdout: PIPE,
    });
    assert.equal(typeof cat.pid, "number");
    assert.equal(cat.returncode, null);
    const [out, err] = await cat.communicate("meow\n".repeat(50_000));
    assert.equal(out!.length, 250_000);
    assert.equal(err, null);
    assert.equal(cat.returncode, 0);
  });
});

test("subprocesses: exit codes and stderr", async () => {
  await run(async () => {
    const child = await createSubprocessShell(
      "echo out; echo oops >&2; exit 3",
      {
        stdout: PIPE,
        stderr: PIPE,
      },
    );
    const [out, err] = await child.communicate();
    assert.equal(textOf(out), "out\n");
    assert.equal(textOf(err), "oops\n");
    assert.equal(child.returncode, 3);
    const merged = await createSubprocessShell("echo out; echo err >&2", {
      stdout: PIPE,
      stderr: STDOUT,
    });
    const [both, none] = await merged.communicate();
    assert.deepEqual(textOf(both).split("\n").sort(), ["", "err", "out"]);
    assert.equal(none, null);
    const quiet = await createSubprocessExec("echo", ["unseen"], {
      stdout: DEVNULL,
    });
    assert.equal(quiet.stdout, null);
    assert.equal(await quiet.wait(), 0);
  });
});

test("subprocesses: a child done before its start is confirmed is still waited for", async () => {
  await run(async () => {
    for (let i = 0; i < 5; i++) {
      const child = await createSubprocessExec("true", [], {
        stdin: PIPE,
        stdout: PIPE,
      });
      assert.equal(await waitFor(child.wait(), 5000), 0);
      assert.equal((await child.stdout!.read()).length, 0);
    }
  });
});

test("subprocesses: reading a child's output line by line while it runs", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const child = await createSubprocessExec("sh", [
      "-c",
      "for i in 1 2 3; do echo line $i; sleep 0.05; done",
    ], { stdout: PIPE });
    const seen: Array<[string, number | null]> = [];
    const start = loop.time();
    for await (const line of child.stdout!) {
      seen.push([textOf(line), child.returncode]);
    }
    assert.deepEqual(seen.map(([line]) => line), [
      "line 1\n",
      "line 2\n",
      "line 3\n",
    ]);
    assert.equal(seen[0][1], null, "the first line came while it ran");
    assert.ok(loop.time() - start >= 90);
    assert.equal(await child.wait(), 0);
  });
});

test("subprocesses: kill and terminate", async () => {
  await run(async () => {
    const first = await createSubprocessExec("sleep", ["10"]);
    first.terminate();
    assert.equal(await first.wait(), -15);
    const second = await createSubprocessExec("sleep", ["10"]);
    second.kill();
    assert.equal(await second.wait(), -9);
    second.kill(); // exited: nothing to do, no error
    const third = await createSubprocessExec("sleep", ["10"]);
    third.sendSignal("SIGINT");
    assert.equal(await third.wait(), -2);
    assert.throws(() => third.sendSignal("SIGNOPE"), RangeError);
  });
});

test("subprocesses: a cancelled wait() leaves the process manageable", async () => {
  await run(async () => {
    const child = await createSubprocessExec("sleep", ["10"]);
    const waiting = createTask(() => child.wait());
    await sleep(20);
    waiting.cancel();
    await assert.rejects(waiting, CancelledError);
    assert.equal(child.returncode, null);
    await assert.rejects(waitFor(child.wait(), 20), TimeoutError);
    child.terminate();
    assert.equal(await child.wait(), -15);
  });
});

test("subprocesses: a missing program fails at the await with ENOENT naming it", async () => {
  await run(async () => {
    await assert.rejects(
      createSubprocessExec("no-such-program-here", ["x"]),
      (e: Error & { code?: string }) =>
        e.code === "ENOENT" && e.message.includes("no-such-program-here"),
    );
    assert.throws(
      () => createSubprocessExec("ls", [], { stdout: 99.5 }),
      RangeError,
    );
  });
});

test("subprocesses: a SubprocessProtocol gets pipes, exit and connection lost", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const events: string[] = [];
    let output = "";
    const [transport] = await loop.subprocessShell(
      () =>
        new class extends SubprocessProtocol {
          override connectionMade() {
            events.push("made");
          }
          override pipeDataReceived(fd: number, data: Uint8Array) {
            if (fd === 1) output += textOf(data);
          }
          override pipeConnectionLost(fd: number) {
            events.push(`pipe ${fd} lost`);
          }
          override processExited() {
            events.push("exited");
          }
          override connectionLost() {
            events.push("lost");
          }
        }(),
      "read x; echo got $x",
      { stdin: PIPE, stdout: PIPE },
    );
    const stdin = transport.getPipeTransport(0) as Transport;
    stdin.write("it\n");
    stdin.close();
    assert.equal(await transport.wait(), 0);
    assert.equal(output, "got it\n");
    assert.equal(events[0], "made");
    assert.equal(events.at(-1), "lost");
    assert.ok(events.includes("exited"));
    assert.ok(events.includes("pipe 1 lost"));
    transport.close();
  });
});

// ---------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------

import { captureCallGraph, formatCallGraph } from "./mod.ts";

test("introspection: the call graph follows tasks, gather and task groups up", async () => {
  await vrun(async () => {
    const main = currentTask()!;
    main.setName("main");
    const leaf = createTask(() => sleep(100), { name: "leaf" });
    const middle = createTask(async () => {
      await gather([leaf, () => sleep(100)]);
    }, { name: "middle" });
    await sleep(1);
    const inGroup = taskGroup(async (tg) => {
      const child = tg.createTask(() => sleep(50), { name: "grouped" });
      await sleep(1);
      assert.equal(
        formatCallGraph(child),
        "* Task(name='grouped')\n+ Awaited by:\n   * Task(name='main')",
      );
    });
    await inGroup;
    const graph = captureCallGraph(leaf)!;
    assert.equal(graph.future, leaf);
    assert.deepEqual(graph.callStack, []);
    assert.equal(graph.awaitedBy.length, 1);
    const gathered = graph.awaitedBy[0];
    assert.equal(gathered.awaitedBy[0].future, middle);
    assert.match(
      formatCallGraph(leaf),
      /\* Future\(gather\)\n.*\+ Awaited by:\n +\* Task\(name='middle'\)/,
    );
    await middle;
  });
  assert.equal(captureCallGraph(), null);
});

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

// Whether this runtime parses `using` declarations (Node 22 does not).
const parsesUsing = (() => {
  try {
    new Function("{ using resource = null; }");
    return true;
  } catch {
    return false;
  }
})();

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

test("examples: the echo client talks to the echo server, each a program", async () => {
  const { spawn } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const process = (await import("node:process")).default;
  const path = fileURLToPath(
    new URL("./examples/echo_server.ts", import.meta.url),
  );
  const args = ["--port", "0", "--seconds", "60"];
  const server = spawn(
    process.execPath,
    "Deno" in globalThis ? ["run", "-A", path, ...args] : [path, ...args],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, NO_COLOR: "1" },
    },
  );
  const exited = new Promise((resolve) => server.on("exit", resolve));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let output = "";
      server.stdout!.on("data", (chunk) => {
        output += chunk;
        // Node prints the address in single quotes, Deno and Bun in double.
        const found = output.match(
          /serving on \[ ["']127\.0\.0\.1["'], (\d+) \]/,
        );
        if (found) resolve(Number(found[1]));
      });
      server.on("exit", () => reject(new Error(`server exited: ${output}`)));
    });
    const out = await runExample("echo_client.ts", "--port", String(port));
    assert.equal(
      out,
      [
        'sent "Hello World!" received "Hello World!"',
        'sent "Bonjour" received "Bonjour"',
        'sent "Hallo Welt" received "Hallo Welt"',
        "",
      ].join("\n"),
    );
  } finally {
    server.kill();
    await exited;
    server.stdout!.destroy();
  }
});

function secondsOfDay(clock: string): number {
  const [h, m, s] = clock.split(":").map(Number);
  return h * 3600 + m * 60 + s;
}

// Each example is a child process: allow for a loaded machine (Bun's
// default test timeout is 5 s).
test("timeline: examples/ programs run and print what they should", {
  timeout: 60_000,
}, async () => {
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
  const pool = await runExample("worker_pool.ts", "--virtual");
  const poolLines = pool.split("\n");
  assert.deepEqual(poolLines.slice(0, 11), [
    "100 ms: w2 finished a 100 ms job",
    "200 ms: w3 finished a 200 ms job",
    "300 ms: w1 finished a 300 ms job",
    "300 ms: w3 finished a 100 ms job",
    "500 ms: w2 finished a 400 ms job",
    "500 ms: w1 finished a 200 ms job",
    "600 ms: w3 finished a 300 ms job",
    "600 ms: w2 finished a 100 ms job",
    "700 ms: w1 finished a 200 ms job",
    "700 ms: all 9 jobs (1900 ms of work) done",
    "700 ms: 3 workers cancelled",
  ], pool);
  assert.match(pool, /\nthree workers, nine jobs\nmain +\|#-+#\| 700 ms\n/);
  for (const worker of ["w1", "w2", "w3"]) {
    assert.match(
      pool,
      new RegExp(`\n${worker} +\\|[#-]+\\| 700 ms, cancelled\n`),
    );
  }
  // rate_limit.ts shows `using`, which Node 22 cannot parse.
  if (parsesUsing) {
    assert.equal(
      await runExample("rate_limit.ts", "--virtual"),
      [
        "0 ms: start  file0 (1 at work)",
        "0 ms: start  file1 (2 at work)",
        "0 ms: start  file2 (3 at work)",
        "100 ms: start  file3 (3 at work)",
        "200 ms: start  file4 (2 at work)",
        "200 ms: start  file5 (3 at work)",
        "300 ms: start  file6 (2 at work)",
        "300 ms: start  file7 (3 at work)",
        "400 ms: start  file8 (2 at work)",
        "400 ms: start  file9 (3 at work)",
        "600 ms: 10 files, 16000 bytes, at most 3 at once",
        "",
      ].join("\n"),
    );
  }
  assert.equal(
    await runExample("producer_consumer.ts", "--virtual"),
    [
      "50 ms: producer put 1, waited 0 ms",
      "100 ms: producer put 2, waited 0 ms",
      "150 ms: producer put 3, waited 0 ms",
      "250 ms: consumer used 1",
      "250 ms: producer put 4, waited 50 ms",
      "450 ms: consumer used 2",
      "450 ms: producer put 5, waited 150 ms",
      "650 ms: consumer used 3",
      "650 ms: producer put 6, waited 150 ms",
      "650 ms: producer done, 2 items queued",
      "850 ms: consumer used 4",
      "1050 ms: consumer used 5",
      "1250 ms: consumer used 6",
      "1250 ms: consumer: no more items",
      "",
    ].join("\n"),
  );
  const pipeline = await runExample("subprocess_pipeline.ts");
  assert.match(
    pipeline,
    /^awk counted 100000 lines adding up to 5000050000\nexit codes: 0 0\nsleep 60 took too long; terminated: -15\nas expected: .*no-such-program.*\n$/,
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
