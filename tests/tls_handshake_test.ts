// A TLS server whose client fails or abandons the handshake: the server
// still closes, and waitClosed() returns, on Deno, Bun and Node. (On Node,
// a client that gives up mid-handshake only half-closes, and a half-open
// server socket that never got its handshake stayed open for good.)
import { TEST_CERT, TEST_KEY } from "./tls_certificate.ts";
import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import {
  openConnection,
  run,
  type Server,
  startServer,
  waitFor,
} from "../mod.ts";
import { serverAddress } from "./helpers.ts";

async function tlsEchoServer(): Promise<Server> {
  return await startServer(
    async (reader, writer) => {
      writer.write(await reader.readline());
      await writer.drain();
      writer.close();
    },
    "127.0.0.1",
    0,
    { tls: { cert: TEST_CERT, key: TEST_KEY } },
  );
}

test("tls server: a client that rejects the certificate does not keep it open", async () => {
  await run(async () => {
    const server = await tlsEchoServer();
    const [host, port] = serverAddress(server);
    await assert.rejects(
      openConnection(host, port, { tls: true }),
      (e: Error & { code?: string }) => typeof e.code === "string",
    );
    server.close();
    // Bounded, so that the bug fails the test instead of hanging it.
    await waitFor(server.waitClosed(), 5000);
  });
});

test("tls server: a client that half-closes before any handshake", async () => {
  await run(async () => {
    const server = await tlsEchoServer();
    const [host, port] = serverAddress(server);
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const closed = new Promise((resolve) => socket.on("close", resolve));
    socket.on("connect", () => socket.end());
    await waitFor(closed, 5000); // the server closed its side too
    server.close();
    await waitFor(server.waitClosed(), 5000);
  });
});

test("tls server: after the handshake, the server still answers", async () => {
  await run(async () => {
    const server = await tlsEchoServer();
    const [host, port] = serverAddress(server);
    const [reader, writer] = await openConnection(host, port, {
      tls: { ca: TEST_CERT, serverHostname: "localhost" },
    });
    writer.write("ping\n");
    assert.equal(new TextDecoder().decode(await reader.readline()), "ping\n");
    assert.equal((await reader.read()).length, 0);
    writer.close();
    await writer.waitClosed();
    server.close();
    await waitFor(server.waitClosed(), 5000);
  });
});
