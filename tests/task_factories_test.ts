import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type Coro,
  createEagerTaskFactory,
  createTask,
  eagerTaskFactory,
  EventLoop,
  gather,
  getRunningLoop,
  run,
  sleep,
  Task,
  type TaskFactory,
  taskGroup,
  type TaskOptions,
} from "../mod.ts";

test("setTaskFactory: createTask goes through the factory, with the loop, coroutine and options", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const calls: Array<[EventLoop, string | undefined]> = [];
    const factory: TaskFactory = <T>(
      l: EventLoop,
      coro: Coro<T>,
      options: TaskOptions,
    ) => {
      calls.push([l, options.name]);
      return new Task(coro, { ...options, loop: l });
    };
    assert.equal(loop.getTaskFactory(), null);
    loop.setTaskFactory(factory);
    assert.equal(loop.getTaskFactory(), factory);
    const task = createTask(() => sleep(1, "done"), { name: "named" });
    assert.equal(await task, "done");
    assert.equal(task.getName(), "named");
    assert.deepEqual(calls, [[loop, "named"]]);
    loop.setTaskFactory(null);
    assert.equal(loop.getTaskFactory(), null);
    await createTask(() => sleep(0));
    assert.equal(calls.length, 1);
  });
});

test("setTaskFactory: anything but a function or null is a TypeError", async () => {
  const loop = new EventLoop();
  assert.throws(() => loop.setTaskFactory(42 as never), TypeError);
  assert.throws(() => createEagerTaskFactory(null as never), TypeError);
  loop.close();
});

test("eagerTaskFactory: tasks start at once, up to their first await", async () => {
  await run(async () => {
    getRunningLoop().setTaskFactory(eagerTaskFactory);
    const steps: string[] = [];
    const task = createTask(async () => {
      steps.push("started");
      await sleep(0);
      steps.push("resumed");
      return 1;
    });
    steps.push("created");
    assert.equal(await task, 1);
    assert.deepEqual(steps, ["started", "created", "resumed"]);
  });
});

test("eagerTaskFactory: a task may still ask for eagerStart: false", async () => {
  await run(async () => {
    getRunningLoop().setTaskFactory(eagerTaskFactory);
    let started = false;
    const task = createTask(async () => {
      started = true;
    }, { eagerStart: false });
    assert.equal(started, false);
    await task;
    assert.equal(started, true);
  });
});

test("eagerTaskFactory: task groups and gather make eager tasks too", async () => {
  await run(async () => {
    getRunningLoop().setTaskFactory(eagerTaskFactory);
    const order: string[] = [];
    await taskGroup(async (tg) => {
      tg.createTask(async () => {
        order.push("a");
        await sleep(1);
      });
      order.push("after a");
    });
    const results = await gather([
      async () => {
        order.push("b");
        return "b";
      },
    ]);
    assert.deepEqual(results, ["b"]);
    assert.deepEqual(order, ["a", "after a", "b"]);
  });
});

test("createEagerTaskFactory: tasks are made by the given class", async () => {
  class CountedTask<T> extends Task<T> {
    static made = 0;
    constructor(coro: Coro<T>, options: TaskOptions & { loop?: EventLoop }) {
      super(coro, options);
      CountedTask.made++;
    }
  }
  await run(async () => {
    getRunningLoop().setTaskFactory(createEagerTaskFactory(CountedTask));
    const task = createTask(async () => "x");
    assert.ok(task instanceof CountedTask);
    assert.equal(await task, "x");
    assert.equal(CountedTask.made, 1);
  });
});
