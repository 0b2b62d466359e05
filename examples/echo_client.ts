/**
 * An echo client, as in the asyncio docs: sends a few lines to the echo
 * server on 127.0.0.1:8888 and prints what comes back. With no server
 * running there, it starts one of its own, so it also runs alone.
 *
 *     deno run -A examples/echo_client.ts
 *     deno run -A examples/echo_client.ts --port 9999
 *
 * @module
 */
import { openConnection, run, type Server } from "../mod.ts";
import { numberOption, startEchoServer } from "./echo_server.ts";

await run(async () => {
  const port = numberOption("port", 8888);
  let ownServer: Server | null = null;
  let streams;
  try {
    streams = await openConnection("127.0.0.1", port);
  } catch (error) {
    if ((error as { code?: string }).code !== "ECONNREFUSED") throw error;
    console.log(`no echo server on port ${port}: starting one here`);
    ownServer = await startEchoServer("127.0.0.1", 0);
    const [host, ownPort] = ownServer.sockets[0].getsockname() as [
      string,
      number,
    ];
    streams = await openConnection(host, ownPort);
  }
  const [reader, writer] = streams;
  for (const message of ["Hello World!", "Bonjour", "Hallo Welt"]) {
    writer.write(`${message}\n`);
    await writer.drain();
    const echoed = new TextDecoder().decode(await reader.readline()).trimEnd();
    console.log(
      "sent",
      JSON.stringify(message),
      "received",
      JSON.stringify(echoed),
    );
  }
  writer.close();
  await writer.waitClosed();
  if (ownServer !== null) await ownServer[Symbol.asyncDispose]();
});
