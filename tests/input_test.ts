// Bad input fails at the call, with an error that names the argument,
// before anything is changed: every row of README's "Bad input and misuse".
import { test } from "node:test";
import assert from "node:assert/strict";
import { MISUSE } from "./input_cases.ts";
import { run } from "../mod.ts";

for (const misuse of MISUSE) {
  test(`misuse: ${misuse.call} throws ${misuse.error.name} at the call`, async () => {
    await run(async () => {
      let result: unknown;
      assert.throws(
        () => {
          result = misuse.attempt();
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
