// run() and Runner: Ctrl-C cancels the main task, as asyncio's Runner does.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";

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
