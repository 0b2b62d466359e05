// The order of a SubprocessProtocol's callbacks, the same on Deno, Bun and
// Node as in asyncio: the child's pipes are lost before its exit is told,
// and connectionLost comes last. (Node reports a child's exit before the
// end of its output, and closes its stdin only at the exit.)
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  getRunningLoop,
  PIPE,
  type ReadTransport,
  run,
  SubprocessProtocol,
  type SubprocessTransport,
  type Transport,
} from "../mod.ts";

// A protocol that records its callbacks, and the child's stdout.
class Recorder extends SubprocessProtocol {
  events: string[] = [];
  output = "";
  override connectionMade(_transport: SubprocessTransport) {
    this.events.push("made");
  }
  override pipeDataReceived(fd: number, data: Uint8Array) {
    if (fd === 1) this.output += new TextDecoder().decode(data);
  }
  override pipeConnectionLost(fd: number) {
    this.events.push(`pipe ${fd} lost`);
  }
  override processExited() {
    this.events.push("exited");
  }
  override connectionLost() {
    this.events.push("lost");
  }
}

async function spawnShell(
  script: string,
): Promise<[SubprocessTransport, Recorder]> {
  return await getRunningLoop().subprocessShell(
    () => new Recorder(),
    script,
    { stdin: PIPE, stdout: PIPE },
  );
}

test("subprocess protocol: stdin closed by us, then the child exits", async () => {
  await run(async () => {
    const [transport, protocol] = await spawnShell("read x; echo got $x");
    const stdin = transport.getPipeTransport(0) as Transport;
    stdin.write("it\n");
    stdin.close();
    assert.equal(await transport.wait(), 0);
    assert.equal(protocol.output, "got it\n");
    assert.deepEqual(protocol.events, [
      "made",
      "pipe 0 lost",
      "pipe 1 lost",
      "exited",
      "lost",
    ]);
    transport.close();
  });
});

test("subprocess protocol: a child that exits without reading its stdin", async () => {
  await run(async () => {
    const [transport, protocol] = await spawnShell("echo done; exit 3");
    assert.equal(await transport.wait(), 3);
    assert.equal(protocol.output, "done\n");
    // Which of the two pipes goes first is the kernel's business; both go
    // before the exit is told.
    assert.equal(protocol.events[0], "made");
    assert.deepEqual(protocol.events.slice(1, 3).sort(), [
      "pipe 0 lost",
      "pipe 1 lost",
    ]);
    assert.deepEqual(protocol.events.slice(3), ["exited", "lost"]);
    transport.close();
  });
});

test("subprocess protocol: a killed child", async () => {
  await run(async () => {
    const [transport, protocol] = await spawnShell("exec sleep 30");
    transport.kill();
    assert.equal(await transport.wait(), -9);
    assert.equal(protocol.events[0], "made");
    assert.deepEqual(protocol.events.slice(1, 3).sort(), [
      "pipe 0 lost",
      "pipe 1 lost",
    ]);
    assert.deepEqual(protocol.events.slice(3), ["exited", "lost"]);
    transport.close();
  });
});

test("subprocess protocol: a paused pipe does not hold back the exit", async () => {
  await run(async () => {
    const [transport, protocol] = await getRunningLoop().subprocessShell(
      () =>
        new class extends Recorder {
          override connectionMade(transport: SubprocessTransport) {
            super.connectionMade(transport);
            (transport.getPipeTransport(1) as ReadTransport).pauseReading();
            this.transport = transport;
          }
          override processExited() {
            super.processExited();
            const stdout = this.transport!.getPipeTransport(1) as ReadTransport;
            stdout.resumeReading();
          }
          transport: SubprocessTransport | null = null;
        }(),
      "echo paused",
      { stdout: PIPE },
    );
    assert.equal(await transport.wait(), 0);
    assert.equal(protocol.output, "paused\n");
    assert.deepEqual(protocol.events, [
      "made",
      "exited",
      "pipe 1 lost",
      "lost",
    ]);
    transport.close();
  });
});
