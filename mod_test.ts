// Tests of mod.ts. They use node:test and node:assert/strict only, so the
// same file runs unchanged under `deno test` (sanitizers on) and `bun test`.
// Timing is checked under virtual time, where it is exact and instant.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  getRunningLoop,
  run,
  sleep,
} from "./mod.ts";

// ---------------------------------------------------------------------------
// The tutorial
// ---------------------------------------------------------------------------

async function sayAfter(ms: number, what: string, said: string[]) {
  await sleep(ms);
  said.push(what);
}

test("tutorial: sequential awaits take 3000 ms of loop time", async () => {
  const said: string[] = [];
  const elapsed = await run(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    await sayAfter(1000, "hello", said);
    await sayAfter(2000, "world", said);
    return loop.time() - start;
  }, { virtualTime: true });
  assert.equal(elapsed, 3000);
  assert.deepEqual(said, ["hello", "world"]);
});

test("tutorial: two tasks take 2000 ms of loop time", async () => {
  const said: string[] = [];
  const elapsed = await run(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    const task1 = createTask(() => sayAfter(1000, "hello", said));
    const task2 = createTask(() => sayAfter(2000, "world", said));
    await task1;
    await task2;
    return loop.time() - start;
  }, { virtualTime: true });
  assert.equal(elapsed, 2000);
  assert.deepEqual(said, ["hello", "world"]);
});

test("tutorial: a cancelled sleep raises CancelledError at the await", async () => {
  await run(async () => {
    const task = createTask(() => sleep(60_000));
    await sleep(0);
    task.cancel("stop");
    await assert.rejects(
      task,
      (e) => e instanceof CancelledError && e.message === "stop",
    );
  });
});

// ---------------------------------------------------------------------------
// Event loop
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Futures
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Runners
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Waiting and timeouts
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Task groups
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Synchronization primitives
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Transports and protocols
// ---------------------------------------------------------------------------

import {
  BufferedProtocol,
  createSubprocessExec,
  createSubprocessShell,
  DatagramProtocol,
  type DatagramTransport,
  DEVNULL,
  gather,
  IncompleteReadError,
  LimitOverrunError,
  openConnection,
  openUnixConnection,
  PIPE,
  Protocol,
  RuntimeError,
  type Server,
  type SocketAddress,
  startServer,
  startUnixServer,
  STDOUT,
  StreamReader,
  SubprocessProtocol,
  type Task,
  TimeoutError,
  type Transport,
  waitFor,
  type WriteTransport,
} from "./mod.ts";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";

const bytesOf = (text: string) => new TextEncoder().encode(text);
const textOf = (bytes: Uint8Array | null) => new TextDecoder().decode(bytes!);

// Writes to a peer that does not read until the transport's own buffer
// holds megabytes; returns the bytes written.
async function fillUntilBuffered(transport: WriteTransport): Promise<number> {
  const chunk = new Uint8Array(1 << 20);
  let size = 0;
  while (transport.getWriteBufferSize() < (2 << 20)) {
    assert.ok(size < (256 << 20), "the peer's kernel never fills up");
    transport.write(chunk);
    size += chunk.length;
    await sleep(5);
  }
  return size;
}

function serverAddress(server: Server): [string, number] {
  return server.sockets[0].getsockname() as [string, number];
}

// A protocol that records what happens to it, in order.
class RecordingProtocol extends Protocol {
  events: string[] = [];
  received = "";
  transport: Transport | null = null;
  lost = Promise.withResolvers<Error | null>();
  override connectionMade(transport: Transport) {
    this.transport = transport;
    this.events.push("made");
  }
  override dataReceived(data: Uint8Array) {
    this.received += textOf(data);
  }
  override eofReceived() {
    this.events.push("eof");
  }
  override connectionLost(exc: Error | null) {
    this.events.push("lost");
    this.lost.resolve(exc);
  }
}

class EchoProtocol extends Protocol {
  #transport: Transport | null = null;
  override connectionMade(transport: Transport) {
    this.#transport = transport;
  }
  override dataReceived(data: Uint8Array) {
    this.#transport!.write(data);
  }
  override eofReceived() {
    this.#transport!.writeEof();
    return true;
  }
}

test("transports: a protocol echo server and client over TCP", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const server = await loop.createServer(
      () => new EchoProtocol(),
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const [transport, client] = await loop.createConnection(
      () => new RecordingProtocol(),
      host,
      port,
    );
    assert.deepEqual(client.events, ["made"]);
    assert.deepEqual(transport.getExtraInfo("peername"), [host, port]);
    const [localHost] = transport.getExtraInfo("sockname") as [string, number];
    assert.equal(localHost, "127.0.0.1");
    assert.equal(transport.canWriteEof(), true);
    transport.write("hello ");
    transport.writelines([bytesOf("wor"), "ld"]);
    transport.writeEof();
    assert.equal(await client.lost.promise, null);
    assert.equal(client.received, "hello world");
    assert.deepEqual(client.events, ["made", "eof", "lost"]);
    assert.equal(transport.isClosing(), true);
    server.close();
    await server.waitClosed();
  });
});

test("transports: write flow control pauses and resumes the protocol", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    let serverSide: Transport | null = null;
    const server = await loop.createServer(
      () =>
        new class extends Protocol {
          override connectionMade(transport: Transport) {
            serverSide = transport;
            transport.pauseReading(); // a peer that does not read
          }
        }(),
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const flow: string[] = [];
    const resumed = loop.createFuture<void>();
    const [transport] = await loop.createConnection(
      () =>
        new class extends Protocol {
          override pauseWriting() {
            flow.push("pause");
          }
          override resumeWriting() {
            flow.push("resume");
            if (serverSide?.isReading()) resumed.setResult();
          }
        }(),
      host,
      port,
    );
    transport.setWriteBufferLimits(64 * 1024);
    assert.deepEqual(transport.getWriteBufferLimits(), [16 * 1024, 64 * 1024]);
    assert.throws(() => transport.setWriteBufferLimits(10, 20), RangeError);
    // Fill until writing stays paused: the peer's kernel takes in a lot.
    do {
      flow.length = 0;
      await fillUntilBuffered(transport);
      assert.equal(flow[0], "pause");
      await sleep(100);
    } while (flow.length > 1);
    assert.deepEqual(flow, ["pause"], "still paused: the peer reads nothing");
    assert.equal(serverSide!.isReading(), false);
    serverSide!.resumeReading();
    await resumed;
    assert.deepEqual(flow, ["pause", "resume"]);
    transport.close();
    server.close();
    server.closeClients();
    await server.waitClosed();
  });
});

test("transports: a BufferedProtocol receives into its own buffer", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const server = await loop.createServer(
      () => new EchoProtocol(),
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const buffer = new Uint8Array(3); // small, to be refilled many times
    let text = "";
    const done = loop.createFuture<void>();
    const [transport] = await loop.createConnection(
      () =>
        new class extends BufferedProtocol {
          override getBuffer() {
            return buffer;
          }
          override bufferUpdated(nbytes: number) {
            text += textOf(buffer.slice(0, nbytes));
          }
          override connectionLost() {
            done.setResult();
          }
        }(),
      host,
      port,
    );
    transport.write("buffered protocols save a copy");
    transport.writeEof();
    await done;
    assert.equal(text, "buffered protocols save a copy");
    server.close();
    await server.waitClosed();
  });
});

test("transports: UDP echo through createDatagramEndpoint", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const [serverTransport] = await loop.createDatagramEndpoint(
      () =>
        new class extends DatagramProtocol {
          #transport: DatagramTransport | null = null;
          override connectionMade(transport: DatagramTransport) {
            this.#transport = transport;
          }
          override datagramReceived(data: Uint8Array, addr: SocketAddress) {
            this.#transport!.sendto(
              bytesOf(textOf(data).toUpperCase()),
              addr as [string, number],
            );
          }
        }(),
      { localAddr: ["127.0.0.1", 0] },
    );
    const serverAddr = serverTransport.getExtraInfo("sockname") as [
      string,
      number,
    ];
    const replies: Array<[string, SocketAddress]> = [];
    const gotTwo = loop.createFuture<void>();
    const [client] = await loop.createDatagramEndpoint(
      () =>
        new class extends DatagramProtocol {
          override datagramReceived(data: Uint8Array, addr: SocketAddress) {
            replies.push([textOf(data), addr]);
            if (replies.length === 2) gotTwo.setResult();
          }
        }(),
      { remoteAddr: serverAddr },
    );
    assert.deepEqual(client.getExtraInfo("peername"), serverAddr);
    assert.throws(() => client.sendto("x", ["127.0.0.1", 9]), RangeError);
    client.sendto("ping");
    client.sendto("pong", serverAddr);
    await gotTwo;
    assert.deepEqual(replies.map(([text]) => text).sort(), ["PING", "PONG"]);
    assert.deepEqual(replies[0][1], serverAddr);
    client.close();
    serverTransport.close();
    assert.equal(client.isClosing(), true);
    await sleep(10); // connectionLost runs on the loop
  });
});

test("transports: TLS echo with the tls option", async () => {
  await run(async () => {
    const server = await startServer(
      async (reader, writer) => {
        writer.write(await reader.readline());
        await writer.drain();
        writer.close();
      },
      "127.0.0.1",
      0,
      { tls: { cert: TEST_CERT, key: TEST_KEY } },
    );
    const [host, port] = serverAddress(server);
    const [reader, writer] = await openConnection(host, port, {
      tls: { ca: TEST_CERT, serverHostname: "localhost" },
    });
    assert.equal(writer.canWriteEof(), false);
    assert.ok(writer.getExtraInfo("cipher"));
    writer.write("secret\n");
    assert.equal(textOf(await reader.readline()), "secret\n");
    assert.equal(textOf(await reader.read()), "");
    writer.close();
    await writer.waitClosed();
    // An untrusted certificate fails at the await, with the TLS error.
    await assert.rejects(
      openConnection(host, port, { tls: true }),
      (e: Error & { code?: string }) => typeof e.code === "string",
    );
    server.close();
    await server.waitClosed();
  });
});

test("transports: refused, unresolvable and in-use addresses fail at the await with the system's code", async () => {
  await run(async () => {
    const server = await startServer(() => {}, "127.0.0.1", 0);
    const [host, port] = serverAddress(server);
    await assert.rejects(
      startServer(() => {}, host, port),
      (e: Error & { code?: string }) =>
        e.code === "EADDRINUSE" && e.message.includes(String(port)),
    );
    server.close();
    await server.waitClosed();
    await assert.rejects(
      openConnection(host, port),
      (e: Error & { code?: string }) =>
        e.code === "ECONNREFUSED" && e.message.includes(String(port)),
    );
    await assert.rejects(
      openConnection("no-such-host.invalid", 80),
      (e: Error & { code?: string }) =>
        /^(ENOTFOUND|EAI_AGAIN|EAI_FAIL)$/.test(e.code ?? "") &&
        e.message.includes("no-such-host.invalid"),
    );
    assert.throws(() => openConnection(host, 70000), RangeError);
    assert.throws(
      () => getRunningLoop().createConnection(() => new Protocol(), host, -1),
      RangeError,
    );
  });
});

test("transports: a cancelled connect leaves nothing behind", async () => {
  await run(async () => {
    // 192.0.2.0/24 is TEST-NET-1: connects there hang until cancelled
    // (or fail at once with no route); either way nothing may leak.
    const attempt = createTask(() => openConnection("192.0.2.1", 9));
    await sleep(20);
    attempt.cancel();
    await assert.rejects(attempt);
  });
});

test("transports: a signal handler runs its callback on the loop", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const got = loop.createFuture<string>();
    loop.addSignalHandler("SIGUSR2", (what: string) => {
      assert.equal(getRunningLoop(), loop);
      got.setResult(what);
    }, "caught");
    try {
      process.kill(process.pid, "SIGUSR2");
      assert.equal(await waitFor(got, 5000), "caught");
    } finally {
      assert.equal(loop.removeSignalHandler("SIGUSR2"), true);
    }
    assert.equal(loop.removeSignalHandler("SIGUSR2"), false);
    assert.throws(() => loop.addSignalHandler("SIGNOPE", () => {}), RangeError);
    assert.throws(
      () => loop.addSignalHandler("SIGKILL", () => {}),
      RuntimeError,
    );
  });
});

// A self-signed certificate for localhost and 127.0.0.1, for tests only.
const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUVIZjhHkG7Sx47eTPLei/OOMip/UwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyNDIwMTYwOVoYDzIxMjYxMDMx
MjAxNjA5WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAARb5f7vFKOLWU0SmlOf7GaA+zHIx0yzgdMXxXo83McbyNg+IFxfdXe+
gXBYCiNp8h0FskJp9h/ezrnazUa368ugo28wbTAdBgNVHQ4EFgQUgnscvEwGj7v7
VDvlFCUoKiSFAlMwHwYDVR0jBBgwFoAUgnscvEwGj7v7VDvlFCUoKiSFAlMwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDSAAwRQIgLSk3DD+KWTRveTjCj2JCtmZjDupbPfx971ca0ye/5zoCIQDd
2yhOSWO7CnH5s9P/+rRxo636joVwH6mNKGUN3V5kGQ==
-----END CERTIFICATE-----
`;
const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQglKJpGoWjLQWBpmdT
vvjhTyAXKGu53z1AQwQupPJP5hOhRANCAARb5f7vFKOLWU0SmlOf7GaA+zHIx0yz
gdMXxXo83McbyNg+IFxfdXe+gXBYCiNp8h0FskJp9h/ezrnazUa368ug
-----END PRIVATE KEY-----
`;

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

// The python3 peer tests need python3; outside CI, they are skipped without.
const python3 = spawnSync("python3", ["--version"]).status === 0;
const skipPython = !python3 && process.env.CI !== "true"
  ? "python3 not found: skipping the tests against a real python3 peer"
  : false;
if (skipPython) console.warn(skipPython);

async function lineEchoServer(): Promise<Server> {
  return await startServer(
    async (reader, writer) => {
      for await (const line of reader) {
        writer.write(line);
        await writer.drain();
      }
      writer.close();
    },
    "127.0.0.1",
    0,
  );
}

test("streams: echo over TCP", async () => {
  await run(async () => {
    const server = await lineEchoServer();
    assert.equal(server.isServing(), true);
    const [host, port] = serverAddress(server);
    const [reader, writer] = await openConnection(host, port);
    writer.write("hello\n");
    writer.writelines(["wor", bytesOf("ld\n")]);
    await writer.drain();
    assert.equal(textOf(await reader.readline()), "hello\n");
    assert.equal(textOf(await reader.readuntil("\n")), "world\n");
    writer.write("no newline at the end");
    writer.writeEof();
    assert.equal(textOf(await reader.read()), "no newline at the end");
    assert.equal(reader.atEof(), true);
    writer.close();
    assert.equal(writer.isClosing(), true);
    await writer.waitClosed();
    server.close();
    assert.equal(server.isServing(), false);
    assert.deepEqual(server.sockets, []);
    await server.waitClosed();
  });
});

test("streams: echo over a Unix socket", async () => {
  const dir = mkdtempSync(join(tmpdir(), "aio-"));
  try {
    await run(async () => {
      const path = join(dir, "echo.sock");
      const server = await startUnixServer(async (reader, writer) => {
        assert.equal(writer.getExtraInfo("sockname"), path);
        writer.write(await reader.readexactly(5));
        writer.close();
      }, path);
      assert.equal(server.sockets[0].getsockname(), path);
      const [reader, writer] = await openUnixConnection(path);
      assert.equal(writer.getExtraInfo("peername"), path);
      writer.write("howdy");
      assert.equal(textOf(await reader.read()), "howdy");
      writer.close();
      await server[Symbol.asyncDispose]();
      // A stale socket file does not stop a new server.
      const again = await startUnixServer(() => {}, path);
      await again[Symbol.asyncDispose]();
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("streams: 200 concurrent clients each get their own answer", async () => {
  await run(async () => {
    const server = await lineEchoServer();
    const [host, port] = serverAddress(server);
    const answers = await gather(
      Array.from({ length: 200 }, (_, i) => async () => {
        const [reader, writer] = await openConnection(host, port);
        writer.write(`client ${i}\n`);
        const answer = textOf(await reader.readline());
        writer.close();
        await writer.waitClosed();
        return answer;
      }),
    );
    assert.deepEqual(answers, answers.map((_, i) => `client ${i}\n`));
    server.close();
    await server.waitClosed();
  });
});

test("streams: our server answers a real python3 socket client", {
  skip: skipPython,
}, async () => {
  await run(async () => {
    const server = await startServer(
      async (reader, writer) => {
        const line = textOf(await reader.readline());
        writer.write(line.toUpperCase());
        await writer.drain();
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const client = await createSubprocessExec("python3", [
      "-c",
      `
import socket
with socket.create_connection((${JSON.stringify(host)}, ${port})) as s:
    s.sendall(b"hello from python\\n")
    data = b""
    while chunk := s.recv(100):
        data += chunk
    print(data.decode(), end="")
`,
    ], { stdout: PIPE });
    const [out] = await client.communicate();
    assert.equal(textOf(out), "HELLO FROM PYTHON\n");
    assert.equal(client.returncode, 0);
    server.close();
    await server.waitClosed();
  });
});

test("streams: our client talks to a real python3 server", {
  skip: skipPython,
}, async () => {
  await run(async () => {
    const pythonServer = await createSubprocessExec("python3", [
      "-u",
      "-c",
      `
import socket
with socket.create_server(("127.0.0.1", 0)) as server:
    print(server.getsockname()[1])
    conn, _ = server.accept()
    with conn, conn.makefile("rb") as lines:
        for line in lines:
            conn.sendall(line[::-1].strip() + b"\\n")
`,
    ], { stdout: PIPE });
    const port = Number(textOf(await pythonServer.stdout!.readline()));
    const [reader, writer] = await openConnection("127.0.0.1", port);
    for (const word of ["stressed", "drawer"]) {
      writer.write(`${word}\n`);
      await writer.drain();
    }
    assert.equal(textOf(await reader.readline()), "desserts\n");
    assert.equal(textOf(await reader.readline()), "reward\n");
    writer.close();
    await writer.waitClosed();
    assert.equal(await pythonServer.wait(), 0);
  });
});

test("streams: readexactly at EOF raises IncompleteReadError with partial and expected", async () => {
  await run(async () => {
    const reader = new StreamReader();
    reader.feedData(bytesOf("abc"));
    reader.feedEof();
    await assert.rejects(reader.readexactly(5), (e) => {
      assert.ok(e instanceof IncompleteReadError);
      assert.equal(textOf(e.partial), "abc");
      assert.equal(e.expected, 5);
      return true;
    });
    assert.equal(reader.atEof(), true);
    assert.equal((await reader.readexactly(0)).length, 0);
    await assert.rejects(reader.readexactly(-1), RangeError);
  });
});

test("streams: readuntil over the limit raises LimitOverrunError and leaves the buffer intact", async () => {
  await run(async () => {
    const reader = new StreamReader(8);
    reader.feedData(bytesOf("0123456789abc;rest"));
    await assert.rejects(reader.readuntil(";"), (e) => {
      assert.ok(e instanceof LimitOverrunError);
      assert.equal(e.consumed, 13);
      return true;
    });
    assert.equal(textOf(await reader.readexactly(14)), "0123456789abc;");
    // Without the separator yet, past the limit.
    reader.feedData(bytesOf("0123456789"));
    await assert.rejects(reader.readuntil(";"), LimitOverrunError);
    reader.feedEof();
    assert.equal(textOf(await reader.read()), "rest0123456789");
    await assert.rejects(reader.readuntil(""), RangeError);
    // Multi-byte separators, at the end of the stream.
    const r2 = new StreamReader();
    r2.feedData(bytesOf("a\r\nb"));
    r2.feedEof();
    assert.equal(textOf(await r2.readuntil("\r\n")), "a\r\n");
    await assert.rejects(
      r2.readuntil("\r\n"),
      (e) => e instanceof IncompleteReadError && textOf(e.partial) === "b",
    );
  });
});

test("streams: readline over the limit raises and discards the line", async () => {
  await run(async () => {
    const reader = new StreamReader(4);
    reader.feedData(bytesOf("much too long\nok\n"));
    await assert.rejects(reader.readline(), RangeError);
    assert.equal(textOf(await reader.readline()), "ok\n");
    reader.feedData(bytesOf("longer than four, and no newline"));
    await assert.rejects(reader.readline(), RangeError);
    reader.feedData(bytesOf("x\n"));
    reader.feedEof();
    assert.equal(textOf(await reader.readline()), "x\n");
    assert.equal(textOf(await reader.readline()), "");
  });
});

test("streams: a cancelled read loses no bytes", async () => {
  await run(async () => {
    const reader = new StreamReader();
    const first = createTask(() => reader.readexactly(6));
    await sleep(0);
    reader.feedData(bytesOf("abc"));
    await sleep(0);
    first.cancel();
    await assert.rejects(first, CancelledError);
    reader.feedData(bytesOf("def"));
    assert.equal(textOf(await reader.readexactly(6)), "abcdef");
    // Two readers at once is a mistake, reported at once.
    const waiting = createTask(() => reader.read(1));
    await sleep(0);
    await assert.rejects(reader.read(1), RuntimeError);
    reader.feedEof();
    assert.equal((await waiting).length, 0);
    assert.throws(() => reader.feedData(bytesOf("late")), RuntimeError);
  });
});

test("streams: async iteration over lines", async () => {
  await run(async () => {
    const reader = new StreamReader();
    reader.feedData(bytesOf("one\ntwo\nthree"));
    reader.feedEof();
    const lines: string[] = [];
    for await (const line of reader) lines.push(textOf(line));
    assert.deepEqual(lines, ["one\n", "two\n", "three"]);
  });
});

test("streams: drain() blocks while the peer does not read, and resumes when it does", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const startReading = loop.createFuture<void>();
    const received = loop.createFuture<number>();
    const server = await startServer(
      async (reader, writer) => {
        await startReading;
        received.setResult((await reader.read()).length);
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = serverAddress(server);
    const [, writer] = await openConnection(host, port);
    // The peer's kernel (and runtime) may take in tens of MiB before
    // pushing back, so fill until a drain() is still blocked 200 ms later;
    // each drain() that does finish must have seen the buffer drained.
    let size = 0;
    let drained: Task<void>;
    for (;;) {
      size += await fillUntilBuffered(writer.transport);
      drained = createTask(() => writer.drain());
      await sleep(200);
      if (!drained.done()) break;
      assert.ok(writer.transport.getWriteBufferSize() <= 16 * 1024);
      assert.ok(size < (256 << 20), "the peer never pushes back");
    }
    startReading.setResult();
    await drained;
    writer.writeEof();
    assert.equal(await received, size);
    writer.close();
    await writer.waitClosed();
    server.close();
    await server.waitClosed();
  });
});

test("streams: under virtual time, the clock holds still while I/O is pending", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const server = await startServer(
      async (_reader, writer) => {
        await sleep(0);
        writer.write("late\n"); // real time passes before this arrives
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [reader, writer] = await openConnection(...serverAddress(server));
    const start = loop.time();
    const line = await waitFor(reader.readline(), 60_000);
    assert.equal(textOf(line), "late\n");
    assert.equal(loop.time() - start, 0, "no virtual jump during the read");
    writer.close();
    server.close();
    await server.waitClosed();
  }, { virtualTime: true });
});

test("streams: server close, closeClients, abortClients and serveForever", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const connected: Array<Promise<unknown>> = [];
    const server = await startServer(
      async (reader) => {
        await reader.read(); // until the client or the server ends it
      },
      "127.0.0.1",
      0,
      { startServing: false },
    );
    assert.equal(server.isServing(), false);
    const forever = createTask(() => server.serveForever());
    await sleep(10);
    assert.equal(server.isServing(), true);
    await assert.rejects(server.serveForever(), RuntimeError);
    const [host, port] = serverAddress(server);
    const [r1] = await openConnection(host, port);
    const [r2] = await openConnection(host, port);
    connected.push(r1.read(), r2.read());
    await sleep(10);
    // close() stops listening, but waitClosed() waits for the clients.
    server.close();
    const closed = createTask(() => server.waitClosed());
    await sleep(10);
    assert.equal(closed.done(), false);
    server.closeClients();
    await closed;
    await assert.rejects(forever, CancelledError);
    await Promise.all(connected);
    // abortClients() ends connections at once.
    const second = await startServer(
      async (reader) => {
        await reader.read();
      },
      "127.0.0.1",
      0,
    );
    const [r3, w3] = await openConnection(...serverAddress(second));
    await sleep(10);
    second.abortClients();
    await r3.read();
    w3.close();
    await second[Symbol.asyncDispose]();
    assert.equal(loop.isClosed(), false);
  });
});

test("streams: a failing client handler is reported and its connection closed", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const reported = loop.createFuture<unknown>();
    loop.setExceptionHandler((_loop, context) => {
      reported.setResult(context.exception);
    });
    const server = await startServer(
      () => {
        throw new Error("handler bug");
      },
      "127.0.0.1",
      0,
    );
    const [reader, writer] = await openConnection(...serverAddress(server));
    assert.equal(((await reported) as Error).message, "handler bug");
    assert.equal((await reader.read()).length, 0); // closed by the server
    writer.close();
    server.close();
    await server.waitClosed();
  });
});

// ---------------------------------------------------------------------------
// Subprocesses
// ---------------------------------------------------------------------------

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
    await sleep(20);
    waiting.cancel();
    await assert.rejects(waiting, CancelledError);
    assert.equal(child.returncode, null);
    await assert.rejects(waitFor(child.wait(), 20), TimeoutError);
    child.terminate();
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

// ---------------------------------------------------------------------------
// Timelines
// ---------------------------------------------------------------------------
