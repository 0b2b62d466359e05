// Errors: each error class, its name and its fields.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as asyncio from "../mod.ts";
import { ExceptionGroup } from "../mod.ts";

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
