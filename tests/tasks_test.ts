// Tasks: creation, cancellation, names, failures nobody awaits.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  allTasks,
  CancelledError,
  createTask,
  currentTask,
  type ExceptionContext,
  Future,
  gather,
  getRunningLoop,
  run,
  RuntimeError,
  sleep,
  type Task,
  wrapFuture,
} from "../mod.ts";
import { steps, vrun } from "./helpers.ts";

// Garbage collection on demand: Bun has it, Deno with --v8-flags=--expose-gc
// (scripts/test.sh passes it).
const collectGarbage: (() => void) | undefined =
  (globalThis as { gc?: () => void }).gc ??
    (globalThis as { Bun?: { gc(full: boolean): void } }).Bun?.gc.bind(
      null,
      true,
    );

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
