import { TEST_CERT, TEST_KEY } from "./tls_certificate.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import {
  getRunningLoop,
  openConnection,
  Protocol,
  run,
  RuntimeError,
  type Server,
  startServer,
  type StreamReader,
  type StreamWriter,
  type Transport,
} from "../mod.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

function portOf(server: Server): number {
  return (server.sockets[0].getsockname() as [string, number])[1];
}

// A server that speaks plain text until a client says STARTTLS, then
// upgrades and echoes lines over TLS, prefixed with whether they came
// encrypted.
async function starttlsServer(): Promise<Server> {
  return await startServer(
    async (reader, writer) => {
      if (decode(await reader.readline()) !== "STARTTLS\r\n") {
        writer.close();
        return;
      }
      writer.write("220 ready\r\n");
      try {
        await writer.startTls({ cert: TEST_CERT, key: TEST_KEY });
      } catch {
        return; // the client refused the handshake: nothing more to say
      }
      const over = writer.getExtraInfo("cipher") ? "tls" : "plain";
      for await (const line of reader) {
        writer.write(`${over}: ${decode(line)}`);
        await writer.drain();
      }
      writer.close();
    },
    "127.0.0.1",
    0,
  );
}

async function askForTls(reader: StreamReader, writer: StreamWriter) {
  writer.write("STARTTLS\r\n");
  assert.equal(decode(await reader.readline()), "220 ready\r\n");
}

test("StreamWriter.startTls: a connection upgrades mid-way, on both sides", async () => {
  await run(async () => {
    const server = await starttlsServer();
    try {
      const [reader, writer] = await openConnection(
        "127.0.0.1",
        portOf(server),
      );
      await askForTls(reader, writer);
      assert.equal(writer.getExtraInfo("cipher"), undefined);
      await writer.startTls({ ca: TEST_CERT, serverHostname: "localhost" });
      const cert = writer.getExtraInfo("peercert") as {
        subject: { CN: string };
      };
      assert.equal(cert.subject.CN, "localhost");
      writer.write("hello\n");
      assert.equal(decode(await reader.readline()), "tls: hello\n");
      writer.write("again\n");
      assert.equal(decode(await reader.readline()), "tls: again\n");
      writer.close();
      await writer.waitClosed();
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});

test("StreamWriter.startTls: a certificate that does not verify fails at the await", async () => {
  await run(async () => {
    const server = await starttlsServer();
    try {
      const [reader, writer] = await openConnection(
        "127.0.0.1",
        portOf(server),
      );
      await askForTls(reader, writer);
      await assert.rejects(
        writer.startTls({ serverHostname: "localhost" }), // system CAs only
        (e: { code?: string }) => typeof e.code === "string",
      );
      writer.close();
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});

test("loop.startTls: the protocol gets the new transport's data, and no second connectionMade", async () => {
  await run(async () => {
    const server = await starttlsServer();
    try {
      const events: string[] = [];
      let lines = "";
      let gotReply: () => void = () => {};
      class Client extends Protocol {
        override connectionMade(_transport: Transport) {
          events.push("made");
        }
        override dataReceived(data: Uint8Array) {
          lines += decode(data);
          if (lines.endsWith("\n")) gotReply();
        }
        override connectionLost() {
          events.push("lost");
        }
      }
      const loop = getRunningLoop();
      const [plain, protocol] = await loop.createConnection(
        () => new Client(),
        "127.0.0.1",
        portOf(server),
      );
      let replied = new Promise<void>((resolve) => gotReply = resolve);
      plain.write("STARTTLS\r\n");
      await replied;
      assert.equal(lines, "220 ready\r\n");
      lines = "";
      const secure = await loop.startTls(plain, protocol, {
        ca: TEST_CERT,
        serverHostname: "localhost",
      });
      assert.notEqual(secure, plain);
      assert.equal(plain.isClosing(), true);
      replied = new Promise<void>((resolve) => gotReply = resolve);
      secure.write("low level\n");
      await replied;
      assert.equal(lines, "tls: low level\n");
      assert.deepEqual(events, ["made"]);
      secure.close();
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});

test("startTls: misuse throws at the call", async () => {
  await run(async () => {
    const server = await starttlsServer();
    try {
      const loop = getRunningLoop();
      const [pipe, protocol] = await loop.connectReadPipe(
        () => new Protocol(),
        new PassThrough(),
      );
      assert.throws(
        () => loop.startTls(pipe as unknown as Transport, protocol),
        TypeError,
      );
      pipe.close();
      const [reader, writer] = await openConnection(
        "127.0.0.1",
        portOf(server),
      );
      assert.throws(() => writer.startTls({ serverSide: true }), TypeError);
      await askForTls(reader, writer);
      await writer.startTls({ ca: TEST_CERT, serverHostname: "localhost" });
      assert.throws(
        () => writer.startTls({ ca: TEST_CERT }),
        (e) => e instanceof RuntimeError && /already over TLS/.test(e.message),
      );
      writer.close();
      await writer.waitClosed();
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});

test("startTls: a handshake the peer never answers times out", async () => {
  await run(async () => {
    const server = await startServer(
      async (reader, writer) => {
        await reader.read(); // never speaks TLS; reads until the client goes
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    try {
      const [, writer] = await openConnection("127.0.0.1", portOf(server));
      await assert.rejects(
        writer.startTls({ ca: TEST_CERT, handshakeTimeout: 50 }),
        { name: "ConnectionAbortedError" },
      );
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});
