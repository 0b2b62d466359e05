// Introspection: the call graph.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  captureCallGraph,
  createTask,
  currentTask,
  formatCallGraph,
  gather,
  sleep,
  taskGroup,
} from "../mod.ts";
import { vrun } from "./helpers.ts";

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
