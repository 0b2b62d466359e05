// Streams: readers, writers, servers; real python3 peers when present.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import {
  CancelledError,
  createSubprocessExec,
  createTask,
  gather,
  getRunningLoop,
  IncompleteReadError,
  LimitOverrunError,
  openConnection,
  openUnixConnection,
  PIPE,
  Queue,
  run,
  RuntimeError,
  type Server,
  sleep,
  startServer,
  startUnixServer,
  StreamReader,
  type Task,
  waitFor,
} from "../mod.ts";
import {
  bytesOf,
  fillUntilBuffered,
  serverAddress,
  steps,
  textOf,
  until,
  vrun,
} from "./helpers.ts";

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
    assert.throws(() => reader.readexactly(-1), RangeError);
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
    assert.throws(() => reader.readuntil(""), RangeError);
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
    // pushing back, so fill until a drain() blocks; each drain() that does
    // finish must have seen the buffer drained.
    let size = 0;
    let drained: Task<void>;
    for (;;) {
      size += await fillUntilBuffered(writer.transport);
      drained = createTask(() => writer.drain());
      await steps();
      if (!drained.done()) break;
      assert.ok(writer.transport.getWriteBufferSize() <= 16 * 1024);
      assert.ok(size < (256 << 20), "the peer never pushes back");
    }
    assert.ok(writer.transport.getWriteBufferSize() > 16 * 1024);
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
    // One item per connection a server's handler has taken in.
    const accepted = new Queue<void>();
    const server = await startServer(
      async (reader) => {
        accepted.putNowait();
        await reader.read(); // until the client or the server ends it
      },
      "127.0.0.1",
      0,
      { startServing: false },
    );
    assert.equal(server.isServing(), false);
    const forever = createTask(() => server.serveForever());
    await until(() => server.isServing()); // listening is the runtime's event
    assert.equal(server.isServing(), true);
    await assert.rejects(server.serveForever(), RuntimeError);
    const [host, port] = serverAddress(server);
    const [r1] = await openConnection(host, port);
    const [r2] = await openConnection(host, port);
    connected.push(r1.read(), r2.read());
    await accepted.get();
    await accepted.get();
    // close() stops listening, but waitClosed() waits for the clients.
    server.close();
    const closed = createTask(() => server.waitClosed());
    await steps(2);
    assert.equal(closed.done(), false);
    server.closeClients();
    await closed;
    await assert.rejects(forever, CancelledError);
    await Promise.all(connected);
    // abortClients() ends connections at once.
    const second = await startServer(
      async (reader) => {
        accepted.putNowait();
        await reader.read();
      },
      "127.0.0.1",
      0,
    );
    const [r3, w3] = await openConnection(...serverAddress(second));
    await accepted.get();
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

test("streams: what a read returned stays as it was, whatever is fed later", async () => {
  await vrun(async () => {
    const encoder = new TextEncoder();
    const decoder = new TextDecoder();
    const reader = new StreamReader();
    const fed = encoder.encode("abc");
    reader.feedData(fed);
    fed[0] = 120; // feedData copied: the caller's array is the caller's
    const whole = await reader.read(100);
    reader.feedData(encoder.encode("defghi"));
    const part = await reader.read(2);
    reader.feedData(encoder.encode("jkl"));
    assert.deepEqual(
      [decoder.decode(whole), decoder.decode(part)],
      ["abc", "de"],
    );
    assert.equal(decoder.decode(await reader.read(100)), "fghijkl");
  });
});
