// The I/O objects users get expose no internals: Server and Process are
// made only by the library, and a timeline, a child's transport and its
// pipes offer only their public methods.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  createSubprocessShell,
  getRunningLoop,
  PIPE,
  Process,
  run,
  Server,
  startServer,
  SubprocessProtocol,
  type SubprocessTransport,
  Timeline,
} from "../mod.ts";

test("new Server() from outside the library throws TypeError", () => {
  const Made = Server as unknown as new (...args: unknown[]) => Server;
  assert.throws(
    () => new Made(Symbol("made inside @aio/asyncio"), null, () => {}, {}, {}),
    (error: unknown) =>
      error instanceof TypeError && /startServer\(\)/.test(error.message),
  );
});

test("new Process() from outside the library throws TypeError", () => {
  const Made = Process as unknown as new (...args: unknown[]) => Process;
  assert.throws(
    () => new Made(Symbol("made inside @aio/asyncio"), null, null, null, null),
    (error: unknown) =>
      error instanceof TypeError &&
      /createSubprocessExec\(\)/.test(error.message),
  );
});

test("a server made by startServer() still serves", async () => {
  await run(async () => {
    const server = await startServer(() => {}, "127.0.0.1", 0);
    assert.equal(server.isServing(), true);
    server.close();
    await server.waitClosed();
  });
});

test("a timeline has no start, stop or record for users to call", async () => {
  const timeline = new Timeline();
  for (const name of ["start", "stop", "record"]) {
    assert.equal(name in timeline, false, name);
  }
  await run(async () => {}, { timeline });
  assert.ok(timeline.events.length > 0); // the loop still records
});

test("a child's transport and its pipes offer no internal methods", async () => {
  await run(async () => {
    const [transport] = await getRunningLoop().subprocessShell(
      () => new SubprocessProtocol(),
      "cat",
      { stdin: PIPE, stdout: PIPE },
    );
    const internals = [
      "start",
      "whenStarted",
      "pipeData",
      "pipeLost",
      "pipeEnded",
      "protocol",
    ];
    for (const name of internals) {
      assert.equal(name in transport, false, `transport.${name}`);
    }
    const stdin = transport.getPipeTransport(0)!;
    const stdout = transport.getPipeTransport(1)!;
    assert.equal("lost" in stdin, false, "stdin.lost");
    assert.equal("start" in stdout, false, "stdout.start");
    assert.equal("ended" in stdout, false, "stdout.ended");
    stdin.close(); // cat exits at the end of its input
    assert.equal(await (transport as SubprocessTransport).wait(), 0);
    transport.close();
  });
});

test("a Process still comes from createSubprocessShell()", async () => {
  await run(async () => {
    const child = await createSubprocessShell("exit 0");
    assert.ok(child instanceof Process);
    assert.equal(await child.wait(), 0);
  });
});
