// Transports and protocols: TCP, UDP and TLS over protocols; signal
// handlers.

import { test } from "node:test";
import assert from "node:assert/strict";
import process from "node:process";
import {
  BufferedProtocol,
  createTask,
  DatagramProtocol,
  type DatagramTransport,
  getRunningLoop,
  newEventLoop,
  openConnection,
  Protocol,
  run,
  RuntimeError,
  type SocketAddress,
  startServer,
  type Transport,
  waitFor,
} from "../mod.ts";
import { TEST_CERT, TEST_KEY } from "./tls_certificate.ts";
import {
  bytesOf,
  fillUntilBuffered,
  serverAddress,
  steps,
  textOf,
} from "./helpers.ts";

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
    // Each call with the buffer size it saw: asyncio pauses above the
    // high-water mark and resumes at or below the low one.
    const flow: Array<["pause" | "resume", number]> = [];
    const resumed = loop.createFuture<void>();
    const [transport] = await loop.createConnection(
      () =>
        new class extends Protocol {
          #transport: Transport | null = null;
          override connectionMade(transport: Transport) {
            this.#transport = transport;
          }
          override pauseWriting() {
            flow.push(["pause", this.#transport!.getWriteBufferSize()]);
          }
          override resumeWriting() {
            flow.push(["resume", this.#transport!.getWriteBufferSize()]);
            if (serverSide?.isReading()) resumed.setResult();
          }
        }(),
      host,
      port,
    );
    transport.setWriteBufferLimits(64 * 1024);
    assert.deepEqual(transport.getWriteBufferLimits(), [16 * 1024, 64 * 1024]);
    assert.throws(() => transport.setWriteBufferLimits(10, 20), RangeError);
    // The peer's kernel may take in megabytes, resuming writing each time it
    // empties the buffer, before the buffer stays full.
    await fillUntilBuffered(transport);
    assert.equal(flow.at(-1)![0], "pause", "paused: the peer reads nothing");
    assert.equal(serverSide!.isReading(), false);
    serverSide!.resumeReading();
    await resumed;
    assert.equal(flow.at(-1)![0], "resume");
    flow.forEach(([call, size], i) => {
      assert.equal(call, i % 2 === 0 ? "pause" : "resume", "they alternate");
      if (call === "pause") assert.ok(size > 64 * 1024, `paused at ${size}`);
      else assert.ok(size <= 16 * 1024, `resumed at ${size}`);
    });
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
    const serverLost = loop.createFuture<Error | null>();
    const clientLost = loop.createFuture<Error | null>();
    const [serverTransport] = await loop.createDatagramEndpoint(
      () =>
        new class extends DatagramProtocol {
          #transport: DatagramTransport | null = null;
          override connectionMade(transport: DatagramTransport) {
            this.#transport = transport;
          }
          override connectionLost(exc: Error | null) {
            serverLost.setResult(exc);
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
          override connectionLost(exc: Error | null) {
            clientLost.setResult(exc);
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
    // A close is not an error: connectionLost gets null, once, on the loop.
    assert.equal(clientLost.done(), false);
    assert.equal(await clientLost, null);
    assert.equal(await serverLost, null);
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
    await steps(2); // the attempt is under way
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

test("transports: closing a loop removes its signal handlers", () => {
  const loop = newEventLoop();
  const before = process.listenerCount("SIGUSR2");
  loop.addSignalHandler("SIGUSR2", () => {});
  assert.equal(process.listenerCount("SIGUSR2"), before + 1);
  loop.close();
  assert.equal(process.listenerCount("SIGUSR2"), before);
});
