import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type AddrInfo,
  getRunningLoop,
  run,
  SOCK_DGRAM,
  SOCK_STREAM,
} from "../mod.ts";

test("getaddrinfo: a numeric address, once per socket type, as asyncio's tuples", async () => {
  await run(async () => {
    const infos = await getRunningLoop().getaddrinfo("127.0.0.1", 8080);
    assert.deepEqual(
      infos,
      [
        [4, SOCK_STREAM, 6, "", ["127.0.0.1", 8080]],
        [4, SOCK_DGRAM, 17, "", ["127.0.0.1", 8080]],
      ] satisfies AddrInfo[],
    );
  });
});

test("getaddrinfo: localhost resolves through the system's resolver", async () => {
  await run(async () => {
    const infos = await getRunningLoop().getaddrinfo("localhost", "80", {
      type: SOCK_STREAM,
    });
    assert.ok(infos.length > 0);
    for (const [family, type, proto, , [host, port]] of infos) {
      assert.ok(family === 4 || family === 6);
      assert.equal(type, SOCK_STREAM);
      assert.equal(proto, 6);
      assert.equal(port, 80);
      assert.ok(host === "127.0.0.1" || host === "::1", host);
    }
  });
});

test("getaddrinfo: family and proto filter the answer", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    const udp = await loop.getaddrinfo("::1", 53, { proto: 17 });
    assert.deepEqual(udp, [[6, SOCK_DGRAM, 17, "", ["::1", 53]]]);
    await assert.rejects(
      loop.getaddrinfo("127.0.0.1", 80, { family: 6 }),
      { code: "EAI_ADDRFAMILY" },
    );
  });
});

test("getaddrinfo: a null host gives the loopback addresses", async () => {
  await run(async () => {
    const infos = await getRunningLoop().getaddrinfo(null, 0, {
      type: SOCK_STREAM,
      family: 4,
    });
    assert.deepEqual(infos, [[4, SOCK_STREAM, 6, "", ["127.0.0.1", 0]]]);
  });
});

test("getaddrinfo: a name that does not resolve fails at the await", async () => {
  await run(async () => {
    const lookup = getRunningLoop().getaddrinfo("nonexistent.invalid", 80);
    await assert.rejects(lookup, (e: { code?: string }) => {
      assert.ok(["ENOTFOUND", "EAI_AGAIN", "EAI_NONAME"].includes(e.code!));
      return true;
    });
  });
});

test("getaddrinfo/getnameinfo: bad arguments throw at the call", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    assert.throws(() => loop.getaddrinfo(42 as never, 80), TypeError);
    assert.throws(() => loop.getaddrinfo("localhost", "http"), RangeError);
    assert.throws(() => loop.getaddrinfo("localhost", 70000), RangeError);
    assert.throws(
      () => loop.getaddrinfo("localhost", 80, { family: 5 as never }),
      RangeError,
    );
    assert.throws(() => loop.getnameinfo("localhost" as never), TypeError);
    assert.throws(() => loop.getnameinfo(["localhost", 80]), TypeError);
  });
});

test("getnameinfo: an address and port give a host name and service", async () => {
  await run(async () => {
    const [host, service] = await getRunningLoop().getnameinfo([
      "127.0.0.1",
      80,
    ]);
    assert.equal(typeof host, "string");
    assert.ok(host.length > 0);
    assert.ok(service === "http" || service === "80", service);
  });
});
