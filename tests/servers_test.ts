import { test } from "node:test";
import assert from "node:assert/strict";
import {
  openConnection,
  run,
  type Server,
  startServer,
  type StreamReader,
  type StreamWriter,
} from "../mod.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

async function echoLine(reader: StreamReader, writer: StreamWriter) {
  writer.write(await reader.readline());
  await writer.drain();
  writer.close();
}

async function roundTrip(host: string, port: number): Promise<string> {
  const [reader, writer] = await openConnection(host, port);
  writer.write(`via ${host}\n`);
  const line = decode(await reader.readline());
  writer.close();
  await writer.waitClosed();
  return line;
}

function addresses(server: Server): Array<[string, number]> {
  return server.sockets.map((s) => s.getsockname() as [string, number]);
}

// Where to reach a listening address from this machine.
function loopbacksFor(host: string): string[] {
  if (host === "0.0.0.0") return ["127.0.0.1"];
  if (host === "::") {
    // Deno's IPv6 wildcard socket takes IPv4 too (see startServer).
    return "Deno" in globalThis ? ["::1", "127.0.0.1"] : ["::1"];
  }
  return [host];
}

for (const host of [null, ""]) {
  test(`startServer(cb, ${JSON.stringify(host)}, 0): every interface, IPv4 and IPv6`, async () => {
    await run(async () => {
      const server = await startServer(echoLine, host, 0);
      try {
        const listening = addresses(server);
        const hosts = listening.map(([h]) => h).sort();
        assert.deepEqual(
          hosts,
          "Deno" in globalThis ? ["::"] : ["0.0.0.0", "::"],
        );
        const reached: string[] = [];
        for (const [h, port] of listening) {
          for (const client of loopbacksFor(h)) {
            assert.equal(await roundTrip(client, port), `via ${client}\n`);
            reached.push(client);
          }
        }
        assert.deepEqual(reached.sort(), ["127.0.0.1", "::1"]);
      } finally {
        await server[Symbol.asyncDispose]();
      }
    });
  });
}

test("startServer(cb, null, port): IPv4 and IPv6 share a fixed port", async () => {
  await run(async () => {
    let port: number;
    {
      const probe = await startServer(() => {}, "127.0.0.1", 0);
      try {
        port = addresses(probe)[0][1];
      } finally {
        await probe[Symbol.asyncDispose]();
      }
    }
    const server = await startServer(echoLine, null, port);
    try {
      for (const [, p] of addresses(server)) assert.equal(p, port);
      assert.equal(await roundTrip("127.0.0.1", port), "via 127.0.0.1\n");
      assert.equal(await roundTrip("::1", port), "via ::1\n");
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});

test("startServer(cb, [hosts], 0): a socket for each host", async () => {
  await run(async () => {
    const server = await startServer(echoLine, ["127.0.0.1", "::1"], 0);
    try {
      const listening = addresses(server);
      assert.deepEqual(listening.map(([h]) => h), ["127.0.0.1", "::1"]);
      for (const [h, port] of listening) {
        assert.equal(await roundTrip(h, port), `via ${h}\n`);
      }
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});

test("startServer: reusePort lets two servers listen on one port", async () => {
  await run(async () => {
    const first = await startServer(echoLine, "127.0.0.1", 0, {
      reusePort: true,
    });
    try {
      const port = addresses(first)[0][1];
      const second = await startServer(echoLine, "127.0.0.1", port, {
        reusePort: true,
      });
      try {
        assert.equal(addresses(second)[0][1], port);
        assert.equal(await roundTrip("127.0.0.1", port), "via 127.0.0.1\n");
        await assert.rejects(startServer(echoLine, "127.0.0.1", port), {
          code: "EADDRINUSE",
        });
      } finally {
        await second[Symbol.asyncDispose]();
      }
    } finally {
      await first[Symbol.asyncDispose]();
    }
  });
});

test("startServer: backlog is passed on; bad hosts and backlogs throw at the call", async () => {
  await run(async () => {
    const server = await startServer(echoLine, "127.0.0.1", 0, {
      backlog: 5,
    });
    try {
      const port = addresses(server)[0][1];
      assert.equal(await roundTrip("127.0.0.1", port), "via 127.0.0.1\n");
      assert.throws(() => startServer(echoLine, [], 0), RangeError);
      assert.throws(() => startServer(echoLine, [42 as never], 0), TypeError);
      assert.throws(
        () => startServer(echoLine, null, 0, { backlog: -1 }),
        RangeError,
      );
    } finally {
      await server[Symbol.asyncDispose]();
    }
  });
});
