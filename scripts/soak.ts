// Load and soak figures for README ("Load and soak"): `deno task soak`.
// Not part of the test run: it takes a few minutes and wants the machine.
// Each scenario reports memory (V8 heap after a full GC), the process's
// open file descriptors (/proc/self/fd, Linux) and throughput.
import { readdirSync } from "node:fs";
import process from "node:process";
import {
  Barrier,
  Condition,
  createSubprocessExec,
  createTask,
  Event,
  Future,
  gather,
  Lock,
  openConnection,
  PIPE,
  Queue,
  run,
  Semaphore,
  sleep,
  startServer,
  StreamReader,
  type Task,
  TimeoutError,
  waitFor,
} from "../mod.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error("run with --v8-flags=--expose-gc (deno task soak does)");
  process.exit(2);
}

function heap(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

function fds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return NaN;
  }
}

const rows: string[] = [];
function report(name: string, figures: Record<string, string | number>) {
  const text = Object.entries(figures).map(([k, v]) => `${k} ${v}`).join(
    "; ",
  );
  rows.push(`| ${name} | ${text} |`);
  console.log(`${name}: ${text}`);
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const perSecond = (count: number, ms: number) =>
  `${fmt(count / (ms / 1000))}/s`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

// 1. One million items through a bounded queue, producer to consumer.
async function queueThroughput() {
  const before = heap();
  const started = performance.now();
  await run(async () => {
    const queue = new Queue<number>(1000);
    const n = 1_000_000;
    const consumer = createTask(async () => {
      let sum = 0;
      for (let i = 0; i < n; i++) sum += await queue.get();
      return sum;
    });
    for (let i = 0; i < n; i++) await queue.put(i);
    await consumer;
  });
  const ms = performance.now() - started;
  report("1,000,000 items through a Queue(1000)", {
    throughput: perSecond(1_000_000, ms),
    "heap after": `${fmt(heap() - before)} B`,
  });
}

// 2. 100,000 tasks blocked on each primitive, then cancelled.
async function cancelledWaiters() {
  const n = 100_000;
  const kinds: Record<string, () => () => Promise<unknown>> = {
    "sleep(1e9)": () => () => sleep(1e9),
    "Queue.get()": () => {
      const q = new Queue();
      return () => q.get();
    },
    "Queue.put() (full)": () => {
      const q = new Queue(1);
      q.putNowait(0);
      return () => q.put(1);
    },
    "Lock.acquire()": () => {
      const lock = new Lock();
      void lock.acquire();
      return () => lock.acquire();
    },
    "Semaphore.acquire()": () => {
      const s = new Semaphore(0);
      return () => s.acquire();
    },
    "Event.wait()": () => {
      const e = new Event();
      return () => e.wait();
    },
    "Condition.wait()": () => {
      const c = new Condition();
      return async () => {
        await c.acquire();
        try {
          await c.wait();
        } finally {
          c.release();
        }
      };
    },
    "Barrier.wait()": () => {
      const b = new Barrier(n + 1);
      return () => b.wait();
    },
  };
  for (const [kind, make] of Object.entries(kinds)) {
    const base = heap();
    let pending = 0;
    let retained = 0;
    let ms = 0;
    await run(async () => {
      const waitOn = make();
      const tasks: Task<unknown>[] = [];
      for (let i = 0; i < n; i++) tasks.push(createTask(waitOn));
      await sleep(0);
      await sleep(0);
      pending = (heap() - base) / n;
      const started = performance.now();
      for (const task of tasks) task.cancel();
      await gather(tasks, { returnExceptions: true });
      ms = performance.now() - started;
      // Let go of the tasks, and let this task's last wait (the gather,
      // which holds them all) be replaced by another.
      tasks.length = 0;
      await sleep(0);
      retained = (heap() - base) / n;
    });
    const after = heap() - base;
    report(`100,000 × ${kind}, cancelled`, {
      "pending": `${fmt(pending)} B/task`,
      "retained after cancel": `${fmt(retained)} B/task`,
      "after run()": `${fmt(after)} B`,
      "cancel+finish": perSecond(n, ms),
    });
  }
}

// 3. TCP connections: 10,000 one after another, and 1,000 at once.
async function connections() {
  const fd0 = fds();
  const base = heap();
  let sequential = 0;
  let parallel = 0;
  await run(async () => {
    await using server = await startServer(
      async (reader, writer) => {
        writer.write(await reader.readline());
        await writer.drain();
        writer.close();
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = server.sockets[0].getsockname() as [string, number];
    const once = async () => {
      const [reader, writer] = await openConnection(host, port);
      writer.write("ping\n");
      await reader.readline();
      writer.close();
      await writer.waitClosed();
    };
    let started = performance.now();
    for (let i = 0; i < 10_000; i++) await once();
    sequential = performance.now() - started;
    started = performance.now();
    await gather(Array.from({ length: 1000 }, () => once));
    parallel = performance.now() - started;
  });
  report("10,000 TCP connections in sequence", {
    throughput: perSecond(10_000, sequential),
  });
  report("1,000 TCP connections at once", {
    "all done in": `${fmt(parallel)} ms`,
    "fds before/after": `${fd0}/${fds()}`,
    "heap after": `${fmt(heap() - base)} B`,
  });
}

// 4. A child writing 200 MB that we read; one that we never read.
const CHILD_BYTES = 200_000_000;
/** A child writing CHILD_BYTES zero bytes to its stdout, a pipe. */
const zeros = () =>
  createSubprocessExec("head", ["-c", String(CHILD_BYTES), "/dev/zero"], {
    stdout: PIPE,
  });

async function children() {
  const fd0 = fds();
  const base = heap();
  let ms = 0;
  let bytes = 0;
  let peak = 0;
  await run(async () => {
    const child = await zeros();
    const started = performance.now();
    for (;;) {
      const chunk = await child.stdout!.read(1 << 20);
      if (chunk.length === 0) break;
      bytes += chunk.length;
      if (bytes % (50 << 20) < chunk.length) {
        peak = Math.max(peak, process.memoryUsage().rss);
      }
    }
    ms = performance.now() - started;
    await child.wait();
  });
  report("child writes 200 MB, we read it", {
    read: mb(bytes),
    throughput: `${mb(bytes / (ms / 1000))}/s`,
    "peak RSS": mb(peak),
    "fds before/after": `${fd0}/${fds()}`,
    "heap after": `${fmt(heap() - base)} B`,
  });
  let held = 0;
  await run(async () => {
    const child = await zeros();
    // Never read: the reader pauses the pipe at 2 × limit, the child blocks.
    await sleep(1000);
    held = process.memoryUsage().rss;
    // Left running: run() closes its pipes and kills it.
    void child;
  });
  report("child writes 200 MB, we never read", {
    "RSS while it blocks": mb(held),
    "fds before/after": `${fd0}/${fds()}`,
  });
}

// 5. A peer sending an endless line to readline().
async function endlessLine(limit: number | undefined) {
  const fd0 = fds();
  const base = heap();
  let outcome = "";
  let sent = 0;
  await run(async () => {
    const chunk = new Uint8Array(64 * 1024).fill(120);
    await using server = await startServer(
      async (_reader, writer) => {
        try {
          for (;;) {
            writer.write(chunk);
            sent += chunk.length;
            await writer.drain();
          }
        } catch {
          // The reader gave up on us.
        }
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = server.sockets[0].getsockname() as [string, number];
    const [reader, writer] = await openConnection(host, port, { limit });
    const started = performance.now();
    try {
      await reader.readline();
      outcome = "a line?";
    } catch (error) {
      outcome = `${(error as Error).name} after ${
        fmt(performance.now() - started)
      } ms`;
    }
    writer.close();
    server.closeClients();
  });
  report(`endless line to readline(), limit ${limit ?? "64 KiB (default)"}`, {
    outcome,
    "peer wrote": mb(sent),
    "heap after": `${fmt(heap() - base)} B`,
    "fds before/after": `${fd0}/${fds()}`,
  });
}

// 6. A peer that never reads while we write.
async function neverReads() {
  const fd0 = fds();
  let buffered = 0;
  let written = 0;
  let outcome = "";
  await run(async () => {
    await using server = await startServer(
      async () => {
        await sleep(1e9);
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = server.sockets[0].getsockname() as [string, number];
    const [, writer] = await openConnection(host, port);
    const chunk = new Uint8Array(64 * 1024);
    try {
      await waitFor(async () => {
        for (;;) {
          writer.write(chunk);
          written += chunk.length;
          await writer.drain();
        }
      }, 2000);
    } catch (error) {
      outcome = error instanceof TimeoutError
        ? "drain() blocked until the 2 s timeout"
        : String(error);
    }
    buffered = writer.transport.getWriteBufferSize();
    writer.transport.abort();
    server.abortClients();
  });
  report("a peer that never reads", {
    outcome,
    "written before blocking": mb(written),
    "our write buffer": `${fmt(buffered)} B`,
    "fds before/after": `${fd0}/${fds()}`,
  });
}

// 7. Slowloris: 500 clients trickle one byte every 100 ms, never a line;
// the server gives each 1 s to send its line.
async function slowloris() {
  const fd0 = fds();
  let timedOut = 0;
  let served = 0;
  let cutOffCount = 0;
  let ms = 0;
  await run(async () => {
    await using server = await startServer(
      async (reader, writer) => {
        try {
          await waitFor(() => reader.readline(), 1000);
          served++;
        } catch (error) {
          if (error instanceof TimeoutError) timedOut++;
        }
        writer.transport.abort();
      },
      "127.0.0.1",
      0,
    );
    const [host, port] = server.sockets[0].getsockname() as [string, number];
    const started = performance.now();
    // A loris sends a byte every 100 ms and never a newline, until the
    // server cuts it off (or 10 s pass: then the server failed).
    let cutOff = 0;
    const loris = async () => {
      const [, writer] = await openConnection(host, port);
      try {
        for (let i = 0; i < 100 && !writer.isClosing(); i++) {
          writer.write("x");
          await writer.drain();
          await sleep(100);
        }
      } catch {
        // Reset by the server: what we wanted to see.
      } finally {
        if (writer.isClosing()) cutOff++;
        writer.close();
      }
    };
    const good = async () => {
      const [reader, writer] = await openConnection(host, port);
      writer.write("GET /\n");
      await writer.drain();
      await reader.read().catch(() => {});
      writer.close();
    };
    await gather([
      ...Array.from({ length: 500 }, () => loris),
      ...Array.from({ length: 50 }, () => good),
    ]);
    ms = performance.now() - started;
    cutOffCount = cutOff;
  });
  report("slowloris: 500 trickling clients, 50 good ones, 1 s per client", {
    "timed out": timedOut,
    "lorises cut off": cutOffCount,
    served,
    "all over in": `${fmt(ms)} ms`,
    "fds before/after": `${fd0}/${fds()}`,
  });
}

// Loose ends for the figures: a throwaway reader, so that StreamReader's
// own size is known too.
function readerSize() {
  const base = heap();
  const readers: StreamReader[] = [];
  for (let i = 0; i < 10_000; i++) readers.push(new StreamReader());
  const each = (heap() - base) / readers.length;
  report("a StreamReader, empty", { size: `${fmt(each)} B` });
}

// Where a pending task's bytes go: the same 100,000 waits, built up a
// layer at a time.
async function breakdown() {
  const n = 100_000;
  const measure = async (build: (keep: unknown[]) => void) => {
    const keep: unknown[] = [];
    const base = heap();
    build(keep);
    await sleep(0);
    await sleep(0);
    const each = (heap() - base) / n;
    keep.length = 0;
    return `${fmt(each)} B`;
  };
  await run(async () => {
    const never = new Promise<void>(() => {});
    const plain = await measure((keep) => {
      for (let i = 0; i < n; i++) keep.push((async () => await never)());
    });
    const future = await measure((keep) => {
      for (let i = 0; i < n; i++) keep.push(new Future());
    });
    const shared = new Future<void>();
    const taskOnShared = await measure((keep) => {
      for (let i = 0; i < n; i++) keep.push(createTask(() => shared));
    });
    report("a pending wait, layer by layer (each)", {
      "bare async fn awaiting a promise": plain,
      "a Future": future,
      "a Task returning a shared Future": taskOnShared,
    });
    shared.cancel();
  });
}

const only = process.argv.slice(2);
const scenarios: Record<string, () => unknown> = {
  queue: queueThroughput,
  cancel: cancelledWaiters,
  tcp: connections,
  child: children,
  line: async () => {
    await endlessLine(undefined);
    await endlessLine(1024);
  },
  neverreads: neverReads,
  slowloris,
  reader: readerSize,
  breakdown,
};
// The runtime opens a few descriptors of its own on first network use (its
// poller, a DNS pipe): warm it up, so that the baseline is the steady one.
await run(async () => {
  await using server = await startServer((_r, w) => w.close(), "127.0.0.1", 0);
  const [host, port] = server.sockets[0].getsockname() as [string, number];
  const [reader] = await openConnection(host, port);
  await reader.read();
});
const fd0 = fds();
for (const [name, scenario] of Object.entries(scenarios)) {
  if (only.length > 0 && !only.includes(name)) continue;
  await scenario();
}
console.log(`\nfile descriptors: ${fd0} at start, ${fds()} at the end`);
console.log("\n| scenario | figures |\n| --- | --- |\n" + rows.join("\n"));
