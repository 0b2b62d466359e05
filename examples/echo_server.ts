/**
 * An echo server, as in the asyncio docs: each client's lines come back to
 * it. It serves on 127.0.0.1:8888 for 10 seconds, then closes by itself.
 *
 *     deno run -A examples/echo_server.ts
 *     deno run -A examples/echo_client.ts   # in another terminal
 *
 * `--port N` serves on another port (0: any free one), `--seconds S` for
 * another while.
 *
 * @module
 */
import process from "node:process";
import {
  run,
  type Server,
  startServer,
  timeout,
  TimeoutError,
} from "../mod.ts";

/** Starts the echo server on `host`:`port` (0: any free port). */
export function startEchoServer(
  host = "127.0.0.1",
  port = 8888,
): Promise<Server> {
  return startServer(
    async (reader, writer) => {
      const peer = writer.getExtraInfo("peername");
      console.log("connection from", peer);
      for await (const line of reader) {
        writer.write(line);
        await writer.drain();
      }
      console.log("closed by", peer);
      writer.close();
      await writer.waitClosed();
    },
    host,
    port,
  );
}

/** The value after `--name` on the command line, as a number. */
export function numberOption(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

if (import.meta.main) {
  await run(async () => {
    const seconds = numberOption("seconds", 10);
    const server = await startEchoServer(
      "127.0.0.1",
      numberOption("port", 8888),
    );
    console.log(
      "serving on",
      server.sockets[0].getsockname(),
      `for ${seconds} s`,
    );
    try {
      await timeout(seconds * 1000, () => server.serveForever());
    } catch (error) {
      if (!(error instanceof TimeoutError)) throw error;
    }
    server.closeClients();
    await server.waitClosed();
    console.log("server closed");
  });
}
