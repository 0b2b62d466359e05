// Futures: results, done callbacks, cancellation, unretrieved errors.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  type ExceptionContext,
  Future,
  getRunningLoop,
  InvalidStateError,
  isFuture,
} from "../mod.ts";
import { steps, vrun } from "./helpers.ts";

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
