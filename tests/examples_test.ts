// The tutorial's programs, run in process, and each program in examples/
// run as its own process.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  getRunningLoop,
  run,
  sleep,
} from "../mod.ts";
import { parseXmlElements } from "./helpers.ts";

async function sayAfter(ms: number, what: string, said: string[]) {
  await sleep(ms);
  said.push(what);
}

// Whether this runtime parses `using` declarations (Node 22 does not).
const parsesUsing = (() => {
  try {
    new Function("{ using resource = null; }");
    return true;
  } catch {
    return false;
  }
})();

// Each example runs as its own program under the current runtime, the
// tutorial's two with --virtual so they take no real seconds.
async function runExample(file: string, ...args: string[]): Promise<string> {
  const { execFileSync } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const process = (await import("node:process")).default;
  const path = fileURLToPath(new URL(`../examples/${file}`, import.meta.url));
  const argv = "Deno" in globalThis
    ? ["run", "-A", path, ...args]
    : [path, ...args];
  return execFileSync(process.execPath, argv, {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, NO_COLOR: "1" },
  });
}

function secondsOfDay(clock: string): number {
  const [h, m, s] = clock.split(":").map(Number);
  return h * 3600 + m * 60 + s;
}

test("tutorial: sequential awaits take 3000 ms of loop time", async () => {
  const said: string[] = [];
  const elapsed = await run(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    await sayAfter(1000, "hello", said);
    await sayAfter(2000, "world", said);
    return loop.time() - start;
  }, { virtualTime: true });
  assert.equal(elapsed, 3000);
  assert.deepEqual(said, ["hello", "world"]);
});

test("tutorial: two tasks take 2000 ms of loop time", async () => {
  const said: string[] = [];
  const elapsed = await run(async () => {
    const loop = getRunningLoop();
    const start = loop.time();
    const task1 = createTask(() => sayAfter(1000, "hello", said));
    const task2 = createTask(() => sayAfter(2000, "world", said));
    await task1;
    await task2;
    return loop.time() - start;
  }, { virtualTime: true });
  assert.equal(elapsed, 2000);
  assert.deepEqual(said, ["hello", "world"]);
});

test("tutorial: a cancelled sleep raises CancelledError at the await", async () => {
  await run(async () => {
    const task = createTask(() => sleep(60_000));
    await sleep(0);
    task.cancel("stop");
    await assert.rejects(
      task,
      (e) => e instanceof CancelledError && e.message === "stop",
    );
  });
});

test("examples: the echo client talks to the echo server, each a program", async () => {
  const { spawn } = await import("node:child_process");
  const { fileURLToPath } = await import("node:url");
  const process = (await import("node:process")).default;
  const path = fileURLToPath(
    new URL("../examples/echo_server.ts", import.meta.url),
  );
  const args = ["--port", "0", "--seconds", "60"];
  const server = spawn(
    process.execPath,
    "Deno" in globalThis ? ["run", "-A", path, ...args] : [path, ...args],
    {
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, NO_COLOR: "1" },
    },
  );
  const exited = new Promise((resolve) => server.on("exit", resolve));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let output = "";
      server.stdout!.on("data", (chunk) => {
        output += chunk;
        // Node prints the address in single quotes, Deno and Bun in double.
        const found = output.match(
          /serving on \[ ["']127\.0\.0\.1["'], (\d+) \]/,
        );
        if (found) resolve(Number(found[1]));
      });
      server.on("exit", () => reject(new Error(`server exited: ${output}`)));
    });
    const out = await runExample("echo_client.ts", "--port", String(port));
    assert.equal(
      out,
      [
        'sent "Hello World!" received "Hello World!"',
        'sent "Bonjour" received "Bonjour"',
        'sent "Hallo Welt" received "Hallo Welt"',
        "",
      ].join("\n"),
    );
  } finally {
    server.kill();
    await exited;
    server.stdout!.destroy();
  }
});

// Each example is a child process: allow for a loaded machine (Bun's
// default test timeout is 5 s).
const EXAMPLE_TIMEOUT = { timeout: 60_000 };

// The two tutorial programs print their start and end on the wall clock and
// the loop time between them, the time their sleeps add up to.
async function checkTutorialExample(file: string, seconds: number) {
  const out = await runExample(file, "--virtual");
  const m = out.match(
    /^started at (\d\d:\d\d:\d\d)\nhello\nworld\nfinished at (\d\d:\d\d:\d\d)\nelapsed (\S+) s\n$/,
  );
  assert.ok(m, `${file} printed:\n${out}`);
  assert.equal(
    (secondsOfDay(m[2]) - secondsOfDay(m[1]) + 86400) % 86400,
    seconds,
  );
  assert.equal(m[3], `${seconds}.000`);
}

test(
  "examples: async_await_demo.ts awaits in sequence, 3 s",
  EXAMPLE_TIMEOUT,
  async () => {
    await checkTutorialExample("async_await_demo.ts", 3);
  },
);

test(
  "examples: async_task_demo.ts runs two tasks at once, 2 s",
  EXAMPLE_TIMEOUT,
  async () => {
    await checkTutorialExample("async_task_demo.ts", 2);
  },
);

test(
  "examples: timeouts.ts cancels the work at each deadline and waits for its cleanup",
  EXAMPLE_TIMEOUT,
  async () => {
    assert.equal(
      await runExample("timeouts.ts", "--virtual"),
      [
        "waitFor(slow job, 100 ms)",
        "  report: cleaned up at 100 ms",
        "  TimeoutError at 100 ms",
        "timeout(100 ms) on a block, moved 100 ms later once",
        "  block: cleaned up at 300 ms",
        "  TimeoutError at 300 ms",
        "wait([fast, slow], { timeout: 100 })",
        "  at 400 ms: 1 done, 1 pending",
        "  slow: cleaned up at 400 ms",
        "",
      ].join("\n"),
    );
  },
);

test(
  "examples: task_group.ts waits for every fetch, and cancels the rest when one fails",
  EXAMPLE_TIMEOUT,
  async () => {
    assert.equal(
      await runExample("task_group.ts", "--virtual"),
      [
        "three fetches in a group",
        "  fetchUser(1) ended at 100 ms",
        "  fetchUser(3) ended at 150 ms",
        "  fetchUser(2) ended at 200 ms",
        "  got user1, user2, user3 at 200 ms",
        "one fetch fails: the others are cancelled",
        "  fetchUser(-1) ended at 50 ms",
        "  fetchUser(4) ended at 50 ms",
        "  fetchUser(5) ended at 50 ms",
        "  ExceptionGroup at 50 ms: RangeError: no user -1",
        "",
      ].join("\n"),
    );
  },
);

test(
  "examples: worker_pool.ts shares nine jobs among three workers",
  EXAMPLE_TIMEOUT,
  async () => {
    const pool = await runExample("worker_pool.ts", "--virtual");
    const poolLines = pool.split("\n");
    assert.deepEqual(poolLines.slice(0, 11), [
      "100 ms: w2 finished a 100 ms job",
      "200 ms: w3 finished a 200 ms job",
      "300 ms: w1 finished a 300 ms job",
      "300 ms: w3 finished a 100 ms job",
      "500 ms: w2 finished a 400 ms job",
      "500 ms: w1 finished a 200 ms job",
      "600 ms: w3 finished a 300 ms job",
      "600 ms: w2 finished a 100 ms job",
      "700 ms: w1 finished a 200 ms job",
      "700 ms: all 9 jobs (1900 ms of work) done",
      "700 ms: 3 workers cancelled",
    ], pool);
    assert.match(pool, /\nthree workers, nine jobs\nmain +\|#-+#\| 700 ms\n/);
    for (const worker of ["w1", "w2", "w3"]) {
      assert.match(
        pool,
        new RegExp(`\n${worker} +\\|[#-]+\\| 700 ms, cancelled\n`),
      );
    }
  },
);

// rate_limit.ts shows `using`, which Node 22 cannot parse.
test("examples: rate_limit.ts keeps at most three at work", {
  ...EXAMPLE_TIMEOUT,
  skip: parsesUsing ? false : "this runtime cannot parse `using`",
}, async () => {
  assert.equal(
    await runExample("rate_limit.ts", "--virtual"),
    [
      "0 ms: start  file0 (1 at work)",
      "0 ms: start  file1 (2 at work)",
      "0 ms: start  file2 (3 at work)",
      "100 ms: start  file3 (3 at work)",
      "200 ms: start  file4 (2 at work)",
      "200 ms: start  file5 (3 at work)",
      "300 ms: start  file6 (2 at work)",
      "300 ms: start  file7 (3 at work)",
      "400 ms: start  file8 (2 at work)",
      "400 ms: start  file9 (3 at work)",
      "600 ms: 10 files, 16000 bytes, at most 3 at once",
      "",
    ].join("\n"),
  );
});

test(
  "examples: producer_consumer.ts makes the producer wait for room in the queue",
  EXAMPLE_TIMEOUT,
  async () => {
    assert.equal(
      await runExample("producer_consumer.ts", "--virtual"),
      [
        "50 ms: producer put 1, waited 0 ms",
        "100 ms: producer put 2, waited 0 ms",
        "150 ms: producer put 3, waited 0 ms",
        "250 ms: consumer used 1",
        "250 ms: producer put 4, waited 50 ms",
        "450 ms: consumer used 2",
        "450 ms: producer put 5, waited 150 ms",
        "650 ms: consumer used 3",
        "650 ms: producer put 6, waited 150 ms",
        "650 ms: producer done, 2 items queued",
        "850 ms: consumer used 4",
        "1050 ms: consumer used 5",
        "1250 ms: consumer used 6",
        "1250 ms: consumer: no more items",
        "",
      ].join("\n"),
    );
  },
);

test(
  "examples: subprocess_pipeline.ts pipes one process into another and stops a slow one",
  EXAMPLE_TIMEOUT,
  async () => {
    const pipeline = await runExample("subprocess_pipeline.ts");
    assert.match(
      pipeline,
      /^awk counted 100000 lines adding up to 5000050000\nexit codes: 0 0\nsleep 60 took too long; terminated: -15\nas expected: .*no-such-program.*\n$/,
    );
  },
);

test(
  "examples: timeline.ts draws its two tasks and writes an SVG",
  EXAMPLE_TIMEOUT,
  async () => {
    const out = await runExample("timeline.ts");
    assert.match(out, /^hello\nworld\ntwo tasks/);
    assert.match(out, /\nhello +\|#-+# +\| 1000 ms\n/);
    assert.match(out, /\nworld +\|#-+#\| 2000 ms\n/);
    const written = out.match(/wrote (.+timeline\.svg)\n$/);
    assert.ok(written, out);
    const { readFileSync, rmSync } = await import("node:fs");
    const { dirname } = await import("node:path");
    try {
      assert.equal(
        parseXmlElements(readFileSync(written[1], "utf8"))[0],
        "svg",
      );
    } finally {
      rmSync(dirname(written[1]), { recursive: true, force: true });
    }
  },
);
