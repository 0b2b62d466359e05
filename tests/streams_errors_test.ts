// Hostile peers: a connection that is reset while we write or drain fails
// at once with the runtime's error, on every runtime, and a closing loop
// closes what it owns.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { existsSync, readFileSync } from "node:fs";
import {
  createSubprocessExec,
  IncompleteReadError,
  openConnection,
  PIPE,
  type Process,
  run,
  type Server,
  startServer,
  StreamReader,
  type StreamWriter,
} from "../mod.ts";

const RESET_CODES = ["ECONNRESET", "EPIPE"];

// A server whose one client's socket the test can reset, and a client
// connected to it.
async function connectedPair(): Promise<{
  server: Server;
  reader: StreamReader;
  writer: StreamWriter;
  peer: Socket;
}> {
  const accepted = Promise.withResolvers<Socket>();
  const server = await startServer(
    (_r, w) => {
      accepted.resolve(w.transport.getExtraInfo("socket") as Socket);
    },
    "127.0.0.1",
    0,
  );
  const [host, port] = server.sockets[0].getsockname() as [string, number];
  const [reader, writer] = await openConnection(host, port);
  return { server, reader, writer, peer: await accepted.promise };
}

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

test("drain() blocked on a peer that resets raises the reset error", async () => {
  await run(async () => {
    const { server, writer, peer } = await connectedPair();
    // The peer never reads: write until the transport pauses us (its
    // buffer over the high-water mark), so that drain() really waits.
    const chunk = new Uint8Array(256 * 1024);
    const [, high] = writer.transport.getWriteBufferLimits();
    let blocked: Promise<void> | null = null;
    for (let i = 0; i < 400 && blocked === null; i++) {
      writer.write(chunk);
      if (writer.transport.getWriteBufferSize() > high) {
        blocked = writer.drain();
      } else await writer.drain();
    }
    assert.ok(blocked !== null, "the peer's window never filled");
    peer.resetAndDestroy();
    const error = await blocked!.then(() => null, (e) => e);
    assert.ok(error instanceof Error, "drain() must fail");
    assert.ok(RESET_CODES.includes(codeOf(error)!), `code ${codeOf(error)}`);
    assert.equal(writer.isClosing(), true);
    server.close();
    await server.waitClosed();
  });
});

test("a write/drain loop against a reset peer fails within a few MB", async () => {
  await run(async () => {
    const { server, writer, peer } = await connectedPair();
    peer.resetAndDestroy();
    const chunk = new Uint8Array(1 << 20);
    let sent = 0;
    const error = await (async () => {
      for (; sent < 100 * chunk.length; sent += chunk.length) {
        writer.write(chunk);
        await writer.drain();
      }
    })().then(() => null, (e) => e);
    assert.ok(error instanceof Error, "100 MB 'sent' to a reset peer");
    assert.ok(sent <= 8 * chunk.length, `failed only after ${sent} bytes`);
    assert.ok(RESET_CODES.includes(codeOf(error)!), `code ${codeOf(error)}`);
    // Lost: closing, and the next drain() raises the same error again.
    assert.equal(writer.isClosing(), true);
    await assert.rejects(writer.drain(), (e) => e === error);
    // A write after that is not sent, and its drain() is refused the same
    // way on every runtime.
    writer.write("more");
    await assert.rejects(writer.drain(), (e) => e === error);
    server.close();
    await server.waitClosed();
  });
});

test("a reader sees the reset: reads raise it, buffered or not", async () => {
  await run(async () => {
    const { server, reader, peer } = await connectedPair();
    peer.resetAndDestroy();
    const error = await reader.read(10).then(() => null, (e) => e);
    assert.ok(error instanceof Error);
    assert.equal(codeOf(error), "ECONNRESET");
    await assert.rejects(reader.readline(), (e) => e === error);
    server.close();
    await server.waitClosed();
  });
});

test("run() closes the server and connection it leaves open", async () => {
  let server: Server | undefined;
  let writer: StreamWriter | undefined;
  await run(async () => {
    server = await startServer(() => {}, "127.0.0.1", 0);
    const [host, port] = server.sockets[0].getsockname() as [string, number];
    [, writer] = await openConnection(host, port);
    // Left open on purpose: the closing loop must close both (and the
    // server's side of the connection). Deno's resource sanitizer checks
    // that nothing is left.
  });
  assert.equal(server!.isServing(), false);
  assert.equal(writer!.isClosing(), true);
});

test("in debug mode, the closing loop names each thing it closes", async () => {
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => warnings.push(args.join(" "));
  try {
    await run(async () => {
      const server = await startServer(() => {}, "127.0.0.1", 0);
      const [host, port] = server.sockets[0].getsockname() as [string, number];
      await openConnection(host, port);
    }, { debug: true });
  } finally {
    console.warn = warn;
  }
  const unclosed = warnings.filter((w) => w.startsWith("ResourceWarning"));
  assert.ok(
    unclosed.some((w) => w.includes("server listening on 127.0.0.1:")),
    unclosed.join("\n"),
  );
  assert.ok(
    unclosed.some((w) => w.includes("transport to 127.0.0.1:")),
    unclosed.join("\n"),
  );
});

test("StreamReader: a rejected argument leaves the buffer as it was", async () => {
  await run(async () => {
    const reader = new StreamReader();
    const text = "12345678";
    reader.feedData(new TextEncoder().encode(text));
    const bad: Array<() => unknown> = [
      () => reader.read(NaN),
      () => reader.read(1.5),
      () => reader.read("3" as unknown as number),
      () => reader.feedData("hello" as unknown as Uint8Array),
      () => reader.readuntil(42 as unknown as string),
      () => reader.readuntil(""),
      () => reader.readexactly(-1),
      () => reader.readexactly(NaN),
    ];
    for (const attempt of bad) {
      assert.throws(
        attempt,
        (e) => e instanceof TypeError || e instanceof RangeError,
      );
    }
    reader.feedEof();
    assert.equal(new TextDecoder().decode(await reader.read()), text);
  });
});

test("StreamReader.readuntil([...]): the match that ends first wins", async () => {
  await run(async () => {
    const reader = new StreamReader();
    reader.feedData(new TextEncoder().encode("ab\r\ncd\nef||gh"));
    reader.feedEof();
    const next = async () =>
      new TextDecoder().decode(await reader.readuntil(["\r\n", "\n", "||"]));
    assert.equal(await next(), "ab\r\n");
    assert.equal(await next(), "cd\n");
    assert.equal(await next(), "ef||");
    await assert.rejects(next(), IncompleteReadError);
  });
});

test("run() closes the pipes of a child it leaves running, and kills it", async () => {
  let child: Process | undefined;
  await run(async () => {
    child = await createSubprocessExec("sleep", ["30"], {
      stdin: PIPE,
      stdout: PIPE,
    });
  });
  assert.equal(child!.stdin!.isClosing(), true);
  assert.equal(child!.returncode, null); // its exit is not awaited
  if (!existsSync("/proc")) return; // Linux only: watch it die
  // SIGKILL was sent; the kernel ends it a moment later (a zombie, "Z", until
  // the runtime reaps it). Poll for that event, for at most two seconds.
  const state = () => {
    try {
      return readFileSync(`/proc/${child!.pid}/stat`, "utf8").split(" ")[2];
    } catch {
      return "gone";
    }
  };
  for (let i = 0; i < 100 && !["Z", "gone"].includes(state()); i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.ok(["Z", "gone"].includes(state()), `child state ${state()}`);
});
