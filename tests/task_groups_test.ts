// Task groups: waiting for children, failures, cancellation.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  currentTask,
  ExceptionGroup,
  getRunningLoop,
  RuntimeError,
  sleep,
  type Task,
  taskGroup,
} from "../mod.ts";
import { TASK_STARTS, vrun } from "./helpers.ts";

for (const { eager, suffix } of TASK_STARTS) {
  test(`taskGroup: waits for every task and returns the body's value${suffix}`, async () => {
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
    }, { eager });
  });

  test(`taskGroup: a failing child cancels siblings and the body; errors are grouped${suffix}`, async () => {
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
    }, { eager });
  });

  test(`taskGroup: a failing child cancels the body, not the parent's code beside the group${suffix}`, async () => {
    await vrun(async () => {
      const loop = getRunningLoop();
      const task = currentTask()!;
      const outcome: string[] = [];
      // The group runs in a race branch that loses; its child fails later,
      // while the parent's own code sleeps outside the group.
      await Promise.race([
        taskGroup(async (tg) => {
          tg.createTask(async () => {
            await sleep(5);
            throw new Error("child failed");
          });
          try {
            await sleep(100);
          } catch (e) {
            outcome.push(`body ${(e as Error).name} at ${loop.time()}`);
            throw e;
          }
        }).catch((e) => outcome.push(`group ${(e as Error).name}`)),
        sleep(1),
      ]);
      assert.equal(await sleep(10, "slept"), "slept");
      assert.deepEqual(outcome, [
        "body CancelledError at 5",
        "group ExceptionGroup",
      ]);
      assert.equal(task.cancelling(), 0);
    }, { eager });
  });

  test(`taskGroup: the body's own error is in the group${suffix}`, async () => {
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
    }, { eager });
  });

  test(`taskGroup: createTask after the group finished is a RuntimeError${suffix}`, async () => {
    await vrun(async () => {
      let saved: { createTask(c: () => Promise<void>): unknown } | null = null;
      await taskGroup(async (tg) => {
        saved = tg;
        tg.createTask(() => sleep(1));
      });
      assert.throws(() => saved!.createTask(() => sleep(1)), RuntimeError);
    }, { eager });
  });

  test(`taskGroup: an outer cancel cancels the children and propagates${suffix}`, async () => {
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
    }, { eager });
  });
}
