// Event loop: callbacks, timers, running and closing, virtual time.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createTask,
  type EventLoop,
  type ExceptionContext,
  getEventLoop,
  getRunningLoop,
  newEventLoop,
  run,
  RuntimeError,
  sleep,
  wrapFuture,
} from "../mod.ts";
import { steps, vrun } from "./helpers.ts";

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
