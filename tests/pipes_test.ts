import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { PassThrough, type Readable, Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import {
  createSubprocessExec,
  getRunningLoop,
  PIPE,
  Protocol,
  run,
  StreamReader,
  StreamReaderProtocol,
  StreamWriter,
  type Transport,
} from "../mod.ts";

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

// Records what a read pipe's protocol is told, in order.
class Recorder extends Protocol {
  events: string[] = [];
  lost: Promise<Error | null>;
  #lost!: (exc: Error | null) => void;
  constructor() {
    super();
    this.lost = new Promise((resolve) => this.#lost = resolve);
  }
  override connectionMade(_transport: Transport) {
    this.events.push("made");
  }
  override dataReceived(data: Uint8Array) {
    this.events.push(`data ${decode(data)}`);
  }
  override eofReceived() {
    this.events.push("eof");
  }
  override connectionLost(exc: Error | null) {
    this.events.push(`lost ${exc?.message ?? null}`);
    this.#lost(exc);
  }
}

test("connectReadPipe: data, then eofReceived and connectionLost(null)", async () => {
  await run(async () => {
    const pipe = new PassThrough();
    const [transport, protocol] = await getRunningLoop().connectReadPipe(
      () => new Recorder(),
      pipe,
    );
    assert.equal(transport.getExtraInfo("pipe"), pipe);
    assert.equal(transport.isReading(), true);
    pipe.end("hello");
    await protocol.lost;
    assert.deepEqual(protocol.events, [
      "made",
      "data hello",
      "eof",
      "lost null",
    ]);
    assert.equal(transport.isClosing(), true);
  });
});

test("connectReadPipe: a stream that fails ends with connectionLost(error)", async () => {
  await run(async () => {
    const pipe = new PassThrough();
    const [, protocol] = await getRunningLoop().connectReadPipe(
      () => new Recorder(),
      pipe,
    );
    pipe.destroy(new Error("broken"));
    assert.equal((await protocol.lost)?.message, "broken");
    assert.deepEqual(protocol.events, ["made", "lost broken"]);
  });
});

test("connectReadPipe: a StreamReaderProtocol feeds a StreamReader line by line", async () => {
  await run(async () => {
    const pipe = new PassThrough();
    const reader = new StreamReader();
    await getRunningLoop().connectReadPipe(
      () => new StreamReaderProtocol(reader),
      pipe,
    );
    pipe.write("one\ntw");
    pipe.end("o\nthree");
    const lines: string[] = [];
    for await (const line of reader) lines.push(decode(line));
    assert.deepEqual(lines, ["one\n", "two\n", "three"]);
    assert.equal(reader.atEof(), true);
  });
});

test("connectReadPipe: a web ReadableStream", async () => {
  await run(async () => {
    const reader = new StreamReader();
    await getRunningLoop().connectReadPipe(
      () => new StreamReaderProtocol(reader),
      new Blob(["from a web stream"]).stream(),
    );
    assert.equal(decode(await reader.read()), "from a web stream");
  });
});

test("connectReadPipe: a file descriptor", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pipes-"));
  const file = path.join(dir, "input.txt");
  fs.writeFileSync(file, "read through fd\n");
  try {
    await run(async () => {
      const fd = fs.openSync(file, "r");
      const reader = new StreamReader();
      const [transport] = await getRunningLoop().connectReadPipe(
        () => new StreamReaderProtocol(reader),
        fd,
      );
      assert.equal(decode(await reader.readline()), "read through fd\n");
      assert.equal(decode(await reader.read()), "");
      // At the end, the stream closes the descriptor it was given.
      const stream = transport.getExtraInfo("pipe") as Readable;
      if (!stream.closed) {
        await new Promise((resolve) => stream.once("close", resolve));
      }
      assert.throws(() => fs.fstatSync(fd), { code: "EBADF" });
    });
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
});

test("connectReadPipe: pauseReading holds data until resumeReading", async () => {
  await run(async () => {
    const pipe = new PassThrough();
    const reader = new StreamReader();
    const [transport] = await getRunningLoop().connectReadPipe(
      () => new StreamReaderProtocol(reader),
      pipe,
    );
    transport.pauseReading();
    assert.equal(transport.isReading(), false);
    pipe.write("held");
    transport.resumeReading();
    assert.equal(transport.isReading(), true);
    assert.equal(decode(await reader.read(100)), "held");
    transport.close();
  });
});

test("connectWritePipe: writes reach the stream; close() ends it and reports connectionLost(null)", async () => {
  await run(async () => {
    const pipe = new PassThrough();
    const chunks: string[] = [];
    pipe.on("data", (chunk: Uint8Array) => chunks.push(decode(chunk)));
    const [transport, protocol] = await getRunningLoop().connectWritePipe(
      () => new Recorder(),
      pipe,
    );
    assert.equal(transport.canWriteEof(), true);
    transport.write("a");
    transport.writelines(["b", new TextEncoder().encode("c")]);
    transport.close();
    assert.equal(await protocol.lost, null);
    assert.equal(chunks.join(""), "abc");
  });
});

test("connectWritePipe: StreamWriter.drain() waits while the pipe is over its high-water mark", async () => {
  await run(async () => {
    const callbacks: Array<() => void> = [];
    const slow = new Writable({
      highWaterMark: 1 << 20,
      write(_chunk, _encoding, callback) {
        callbacks.push(callback);
      },
    });
    const loop = getRunningLoop();
    const [transport, protocol] = await loop.connectWritePipe(
      () => new StreamReaderProtocol(new StreamReader()),
      slow,
    );
    transport.setWriteBufferLimits(10);
    const writer = new StreamWriter(transport, protocol, null, loop);
    writer.write("x".repeat(100));
    let drained = false;
    const draining = writer.drain().then(() => drained = true);
    await loop.createTask(async () => {}); // a loop step or two
    assert.equal(drained, false);
    for (const callback of callbacks.splice(0)) callback();
    await draining;
    assert.equal(drained, true);
    transport.abort();
  });
});

test("connectWritePipe: a web WritableStream", async () => {
  await run(async () => {
    const chunks: string[] = [];
    const [transport, protocol] = await getRunningLoop().connectWritePipe(
      () => new Recorder(),
      new WritableStream<Uint8Array>({
        write: (chunk) => void chunks.push(decode(chunk)),
      }),
    );
    transport.write("to the web");
    transport.close();
    await protocol.lost;
    assert.deepEqual(chunks, ["to the web"]);
  });
});

test("connectReadPipe/connectWritePipe: bad arguments throw at the call", async () => {
  await run(async () => {
    const loop = getRunningLoop();
    assert.throws(
      () => loop.connectReadPipe(() => new Protocol(), "stdin" as never),
      { name: "TypeError", message: /connectReadPipe\(\): pipe/ },
    );
    assert.throws(
      () => loop.connectWritePipe(() => new Protocol(), -1 as never),
      { name: "TypeError", message: /connectWritePipe\(\): pipe/ },
    );
    assert.throws(
      () => loop.connectReadPipe(null as never, new PassThrough()),
      TypeError,
    );
    assert.throws(() => new StreamReaderProtocol({} as never), TypeError);
  });
});

// The runtime running this test, as a command for a child program.
function runtimeCommand(script: string): [string, string[]] {
  const g = globalThis as Record<string, unknown>;
  if ("Deno" in g) return [process.execPath, ["run", "-A", script]];
  return [process.execPath, [...process.execArgv, script]];
}

test("stdin recipe: a child reads stdin line by line and writes stdout through pipes", async () => {
  const script = fileURLToPath(
    new URL("./pipes_stdin_upper.ts", import.meta.url),
  );
  await run(async () => {
    const [program, args] = runtimeCommand(script);
    const child = await createSubprocessExec(program, args, {
      stdin: PIPE,
      stdout: PIPE,
    });
    const [out] = await child.communicate(
      new TextEncoder().encode("first line\nsecond\n"),
    );
    assert.equal(decode(out!), "FIRST LINE\nSECOND\n");
    assert.equal(child.returncode, 0);
  });
});
