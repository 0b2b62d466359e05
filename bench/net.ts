/**
 * Network benchmark for `@aio/asyncio`: a TCP echo server on loopback, 1 KiB
 * messages, with 10 and then 100 concurrent clients, each sending a message
 * and waiting for its echo before sending the next.
 *
 *     deno run -A bench/net.ts [--seconds S]
 *     bun bench/net.ts [--seconds S]
 *
 * Servers, each in a process of its own:
 * - ours, streams: `startServer`, `reader.read(65536)`, `write`, `drain`.
 * - ours, protocol: `loop.createServer` with a Protocol that writes back in
 *   `dataReceived`.
 * - bare node:net: `net.createServer`, `socket.on("data", d => socket.write(d))`,
 *   the floor for this runtime.
 * - CPython asyncio and uvloop, streams and protocol (bench/net_asyncio.py),
 *   on the CPython `scripts/tools.sh` found: `bash bench/all.sh --net` runs
 *   this file with AIO_PYTHON and AIO_UVLOOP set (run by hand without them,
 *   the CPython rows are skipped).
 *
 * The clients are bare node:net sockets in this process, the same for every
 * server. Each cell runs S seconds (default 2) after 0.3 s of warm-up and
 * reports requests (round trips) per second. On 2 cores the client and the
 * server each get about one; the absolute numbers mean little, the ratios
 * between servers are the point.
 */
import * as net from "node:net";
import { type ChildProcess, spawn } from "node:child_process";
import process from "node:process";
import { fileURLToPath } from "node:url";
import {
  getRunningLoop,
  Protocol,
  run,
  startServer,
  type StreamReader,
  type StreamWriter,
  type Transport,
} from "../mod.ts";
import { env, flag, fmtOps, runtimeName, table } from "./harness.ts";

const MESSAGE_SIZE = 1024;
const CONCURRENCY = [10, 100];
const seconds = Number(flag("--seconds")) || 2;
const here = fileURLToPath(new URL(".", import.meta.url));
const isDeno = "Deno" in globalThis;

// ---------------------------------------------------------------- servers

class EchoProtocol extends Protocol {
  #transport: Transport | null = null;
  override connectionMade(transport: Transport) {
    this.#transport = transport;
  }
  override dataReceived(data: Uint8Array) {
    this.#transport!.write(data);
  }
}

// The streams echo handler, as the Python one (`except ConnectionError`):
// the clients reset their connections at the end.
async function echoStreams(reader: StreamReader, writer: StreamWriter) {
  try {
    for (;;) {
      const data = await reader.read(65536);
      if (data.length === 0) break;
      writer.write(data);
      await writer.drain();
    }
  } catch (error) {
    if ((error as { code?: string }).code !== "ECONNRESET") throw error;
  }
  writer.close();
}

// Runs one of our servers (or the bare one) until stdin ends; prints the port.
async function serve(kind: string): Promise<void> {
  const untilStdinEnds = new Promise((resolve) => {
    process.stdin.on("data", () => {});
    process.stdin.on("end", resolve);
    process.stdin.on("close", resolve);
  });
  if (kind === "bare") {
    const server = net.createServer((socket) => {
      socket.on("data", (data) => socket.write(data));
      socket.on("error", () => {});
    });
    await new Promise<void>((resolve) =>
      server.listen(0, "127.0.0.1", resolve)
    );
    console.log((server.address() as net.AddressInfo).port);
    await untilStdinEnds;
    server.close();
    process.exit(0);
  }
  await run(async () => {
    const server = kind === "streams"
      ? await startServer(echoStreams, "127.0.0.1", 0)
      : await getRunningLoop().createServer(
        () => new EchoProtocol(),
        "127.0.0.1",
        0,
      );
    console.log((server.sockets[0].getsockname() as [string, number])[1]);
    const stop = getRunningLoop().createFuture<void>();
    untilStdinEnds.then(() => stop.setResult());
    await stop;
    server.close();
    server.abortClients();
  });
  process.exit(0);
}

// ---------------------------------------------------------------- client

// Starts a server process and resolves to it and its port.
function startServerProcess(
  command: string,
  commandArgs: string[],
): Promise<[ChildProcess, number]> {
  const child = spawn(command, commandArgs, {
    stdio: ["pipe", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let output = "";
    child.stdout!.on("data", (chunk) => {
      output += chunk;
      if (output.includes("\n")) resolve([child, Number(output.trim())]);
    });
    child.on("error", reject);
    child.on("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
}

function stopServerProcess(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
    child.on("close", () => {
      clearTimeout(timer);
      resolve();
    });
    child.stdin!.end();
  });
}

// Runs `clients` request/response loops for `ms`; returns requests per second.
async function load(
  port: number,
  clients: number,
  ms: number,
): Promise<number> {
  const message = new Uint8Array(MESSAGE_SIZE).fill(120);
  let counting = false;
  let stopping = false;
  let requests = 0;
  const sockets: net.Socket[] = [];
  await Promise.all(
    Array.from(
      { length: clients },
      () =>
        new Promise<void>((resolve, reject) => {
          const socket = net.connect({ host: "127.0.0.1", port }, () => {
            socket.setNoDelay(true);
            resolve();
          });
          socket.on("error", reject);
          sockets.push(socket);
          let pending = 0;
          socket.on("data", (data) => {
            pending -= data.length;
            if (pending > 0) return;
            if (counting) requests++;
            if (stopping) return;
            pending = MESSAGE_SIZE;
            socket.write(message);
          });
        }),
    ),
  );
  for (const socket of sockets) socket.emit("data", new Uint8Array(0));
  await new Promise((resolve) => setTimeout(resolve, 300));
  counting = true;
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  counting = false;
  const elapsed = performance.now() - start;
  stopping = true;
  for (const socket of sockets) socket.destroy();
  return requests / (elapsed / 1000);
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const self = fileURLToPath(import.meta.url);
  const runtime = isDeno ? ["run", "-A", self] : [self];
  const servers: Array<[string, string, string[]]> = [
    ["@aio/asyncio streams", process.execPath, [
      ...runtime,
      "--serve",
      "streams",
    ]],
    ["@aio/asyncio protocol", process.execPath, [
      ...runtime,
      "--serve",
      "protocol",
    ]],
    ["bare node:net", process.execPath, [...runtime, "--serve", "bare"]],
  ];
  // Found by scripts/tools.sh, which says so when they are missing.
  const python = env("AIO_PYTHON");
  if (python === "") {
    console.error(
      "no AIO_PYTHON (bash bench/all.sh --net sets it): skipping the CPython rows",
    );
  } else {
    const script = `${here}net_asyncio.py`;
    servers.push(
      ["CPython asyncio streams", python, [script, "--serve", "streams"]],
      ["CPython asyncio protocol", python, [script, "--serve", "protocol"]],
    );
    if (env("AIO_UVLOOP") === "1") {
      servers.push(
        ["uvloop streams", python, [script, "--serve", "streams", "--uvloop"]],
        ["uvloop protocol", python, [
          script,
          "--serve",
          "protocol",
          "--uvloop",
        ]],
      );
    }
  }
  const rows: string[][] = [];
  for (const [name, command, commandArgs] of servers) {
    const cells: string[] = [];
    for (const clients of CONCURRENCY) {
      const [child, port] = await startServerProcess(command, commandArgs);
      try {
        const rate = await load(port, clients, seconds * 1000);
        cells.push(fmtOps(rate));
        console.error(`${name}, ${clients} clients: ${Math.round(rate)} req/s`);
      } finally {
        await stopServerProcess(child);
      }
    }
    rows.push([name, ...cells]);
  }
  console.log(
    `\nTCP echo, 1 KiB messages, requests/s (clients: bare node:net on ${runtimeName}, ${seconds} s per cell)\n`,
  );
  const head = ["server", ...CONCURRENCY.map((c) => `${c} clients`)];
  console.log(table(head, rows).join("\n"));
}

const serverKind = flag("--serve");
if (serverKind !== undefined) await serve(serverKind);
else await main();
