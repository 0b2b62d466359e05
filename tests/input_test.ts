// Bad input fails at the call, with an error that names the argument,
// before anything is changed: every row of README's "Bad input and misuse".
import { test } from "node:test";
import assert from "node:assert/strict";
import { MISUSE } from "./input_cases.ts";
import {
  createTask,
  getRunningLoop,
  Queue,
  run,
  sleep,
  waitFor,
} from "../mod.ts";

for (const misuse of MISUSE) {
  test(`misuse: ${misuse.call} throws ${misuse.error.name} at the call`, async () => {
    await run(async () => {
      const prepared = await misuse.prepare?.();
      let result: unknown;
      assert.throws(
        () => {
          result = misuse.attempt(prepared);
        },
        (error: unknown) => {
          assert.ok(
            error instanceof misuse.error,
            `${misuse.call}: got ${error}, want ${misuse.error.name}`,
          );
          assert.match((error as Error).message, misuse.names);
          return true;
        },
      );
      // Nothing came back, so there is nothing to reject later unseen.
      assert.equal(result, undefined);
    }, { virtualTime: true });
  });
}

test("huge numbers keep their meaning: a far deadline, forever, no limit", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const forever = createTask(() => sleep(Infinity));
    await sleep(1e12); // under virtual time, exactly then
    assert.equal(loop.time(), 1e12);
    assert.equal(forever.done(), false);
    forever.cancel();
    const queue = new Queue<number>(1e308);
    for (let i = 0; i < 1000; i++) queue.putNowait(i);
    assert.equal(queue.full(), false);
    assert.equal(await waitFor(() => sleep(5, "done"), Infinity), "done");
    assert.equal(await waitFor(() => sleep(5, "late"), 1e300), "late");
  }, { virtualTime: true });
});
