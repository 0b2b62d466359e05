// run() and Runner: Ctrl-C cancels the main task, as asyncio's Runner does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  createTask,
  type EventLoop,
  getRunningLoop,
  run,
  Runner,
  RuntimeError,
  sleep,
  type Task,
} from "../mod.ts";
import { vrun } from "./helpers.ts";

// The command that runs a TypeScript file on the runtime running this test.
function runtimeCommand(script: string): [string, string[]] {
  const runtime = globalThis as { Deno?: unknown; Bun?: unknown };
  if (runtime.Deno) return [process.execPath, ["run", "-A", script]];
  return [process.execPath, [script]];
}

test("run: the first Ctrl-C cancels the main task, its finally runs, and run() throws KeyboardInterrupt", async () => {
  const script = fileURLToPath(
    new URL("./fixtures/ctrl_c.ts", import.meta.url),
  );
  const [command, args] = runtimeCommand(script);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  // "close": the child has exited and its output is all read.
  const closed = new Promise<[number | null, string | null]>((resolve) =>
    child.on("close", (code, signal) => resolve([code, signal]))
  );
  await new Promise<void>((resolve) => {
    child.stdout!.on("data", (chunk) => {
      output += String(chunk);
      if (output.includes("ready")) resolve();
    });
  });
  child.kill("SIGINT");
  const [code, signal] = await closed;
  assert.deepEqual(output.trim().split("\n"), [
    "ready",
    "finally ran",
    "KeyboardInterrupt",
  ]);
  // The script sets exit code 3; Deno, like CPython, ends a process that
  // got SIGINT by SIGINT, so that its parent sees the interrupt.
  assert.ok(code === 3 || signal === "SIGINT", `exit ${code} ${signal}`);
});

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
