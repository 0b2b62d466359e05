// Subprocesses: exec and shell, pipes, exit codes, signals.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createSubprocessExec,
  createSubprocessShell,
  createTask,
  DEVNULL,
  getRunningLoop,
  PIPE,
  run,
  STDOUT,
  SubprocessProtocol,
  type Transport,
  waitFor,
} from "../mod.ts";
import { steps, textOf } from "./helpers.ts";

test("subprocesses: communicate with cat", async () => {
  await run(async () => {
    const cat = await createSubprocessExec("cat", [], {
      stdin: PIPE,
      stdout: PIPE,
    });
    assert.equal(typeof cat.pid, "number");
    assert.equal(cat.returncode, null);
    const [out, err] = await cat.communicate("meow\n".repeat(50_000));
    assert.equal(out!.length, 250_000);
    assert.equal(err, null);
    assert.equal(cat.returncode, 0);
  });
});

test("subprocesses: exit codes and stderr", async () => {
  await run(async () => {
    const child = await createSubprocessShell(
      "echo out; echo oops >&2; exit 3",
      {
        stdout: PIPE,
        stderr: PIPE,
      },
    );
    const [out, err] = await child.communicate();
    assert.equal(textOf(out), "out\n");
    assert.equal(textOf(err), "oops\n");
    assert.equal(child.returncode, 3);
    const merged = await createSubprocessShell("echo out; echo err >&2", {
      stdout: PIPE,
      stderr: STDOUT,
    });
    const [both, none] = await merged.communicate();
    assert.deepEqual(textOf(both).split("\n").sort(), ["", "err", "out"]);
    assert.equal(none, null);
    const quiet = await createSubprocessExec("echo", ["unseen"], {
      stdout: DEVNULL,
    });
    assert.equal(quiet.stdout, null);
    assert.equal(await quiet.wait(), 0);
  });
});

test("subprocesses: a child done before its start is confirmed is still waited for", async () => {
  await run(async () => {
    for (let i = 0; i < 5; i++) {
      const child = await createSubprocessExec("true", [], {
        stdin: PIPE,
        stdout: PIPE,
      });
      assert.equal(await waitFor(child.wait(), 5000), 0);
      assert.equal((await child.stdout!.read()).length, 0);
    }
  });
});

test("subprocesses: reading a child's output line by line while it runs", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const child = await createSubprocessExec("sh", [
      "-c",
      "for i in 1 2 3; do echo line $i; sleep 0.05; done",
    ], { stdout: PIPE });
    const seen: Array<[string, number | null]> = [];
    const start = loop.time();
    for await (const line of child.stdout!) {
      seen.push([textOf(line), child.returncode]);
    }
    assert.deepEqual(seen.map(([line]) => line), [
      "line 1\n",
      "line 2\n",
      "line 3\n",
    ]);
    assert.equal(seen[0][1], null, "the first line came while it ran");
    assert.ok(loop.time() - start >= 90);
    assert.equal(await child.wait(), 0);
  });
});

test("subprocesses: kill and terminate", async () => {
  await run(async () => {
    const first = await createSubprocessExec("sleep", ["10"]);
    first.terminate();
    assert.equal(await first.wait(), -15);
    const second = await createSubprocessExec("sleep", ["10"]);
    second.kill();
    assert.equal(await second.wait(), -9);
    second.kill(); // exited: nothing to do, no error
    const third = await createSubprocessExec("sleep", ["10"]);
    third.sendSignal("SIGINT");
    assert.equal(await third.wait(), -2);
    assert.throws(() => third.sendSignal("SIGNOPE"), RangeError);
  });
});

test("subprocesses: a cancelled wait() leaves the process manageable", async () => {
  await run(async () => {
    const child = await createSubprocessExec("sleep", ["10"]);
    const waiting = createTask(() => child.wait());
    await steps(); // waiting for the exit
    waiting.cancel();
    await assert.rejects(waiting, CancelledError);
    assert.equal(child.returncode, null);
    const again = createTask(() => child.wait());
    await steps();
    assert.equal(again.done(), false);
    child.terminate();
    assert.equal(await again, -15);
    assert.equal(await child.wait(), -15);
  });
});

test("subprocesses: a missing program fails at the await with ENOENT naming it", async () => {
  await run(async () => {
    await assert.rejects(
      createSubprocessExec("no-such-program-here", ["x"]),
      (e: Error & { code?: string }) =>
        e.code === "ENOENT" && e.message.includes("no-such-program-here"),
    );
    assert.throws(
      () => createSubprocessExec("ls", [], { stdout: 99.5 }),
      RangeError,
    );
  });
});

test("subprocesses: a SubprocessProtocol gets pipes, exit and connection lost", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const events: string[] = [];
    let output = "";
    const [transport] = await loop.subprocessShell(
      () =>
        new class extends SubprocessProtocol {
          override connectionMade() {
            events.push("made");
          }
          override pipeDataReceived(fd: number, data: Uint8Array) {
            if (fd === 1) output += textOf(data);
          }
          override pipeConnectionLost(fd: number) {
            events.push(`pipe ${fd} lost`);
          }
          override processExited() {
            events.push("exited");
          }
          override connectionLost() {
            events.push("lost");
          }
        }(),
      "read x; echo got $x",
      { stdin: PIPE, stdout: PIPE },
    );
    const stdin = transport.getPipeTransport(0) as Transport;
    stdin.write("it\n");
    stdin.close();
    assert.equal(await transport.wait(), 0);
    assert.equal(output, "got it\n");
    assert.equal(events[0], "made");
    assert.equal(events.at(-1), "lost");
    assert.ok(events.includes("exited"));
    assert.ok(events.includes("pipe 1 lost"));
    transport.close();
  });
});
