/**
 * Bytes per pending task: how much heap one task costs while it waits.
 *
 *     deno run -A --v8-flags=--expose-gc bench/memory.ts [--quick]
 *     bun bench/memory.ts
 *     node --expose-gc bench/memory.ts
 *
 * For each kind of wait, N = 100,000 tasks are made and left waiting: on
 * `queue.get()` of an empty queue, on `lock.acquire()` of a held lock, and
 * in `sleep(3_600_000)`. The figure is the growth of the used heap, after a
 * forced collection on both sides, divided by N: the task, its suspended
 * async function, the future it waits on and its entry in the queue, lock
 * or timer heap (and 8 bytes for its slot in the array that holds the
 * tasks, as in the Python program, `memory_asyncio.py`). The floor is the
 * same with bare promises: an async function waiting on `BareQueue.get()`,
 * `BareLock.acquire()` or a `setTimeout` promise. Then everything is
 * cancelled and the loop closes. Prints JSON on stdout.
 */
import { BareLock, BareQueue } from "./floor.ts";
import {
  canGc,
  forceGc,
  printJsonAndExit,
  runtimeKey,
  runtimeName,
  SCALE,
} from "./harness.ts";
import process from "node:process";

const N = 100_000 / SCALE;
const KINDS = ["queue", "lock", "sleep"] as const;
type Kind = typeof KINDS[number];

function heapUsed(): number {
  forceGc();
  forceGc();
  return process.memoryUsage().heapUsed;
}

async function ours(kind: Kind): Promise<number> {
  const { createTask, gather, Lock, Queue, run, sleep } = await import(
    "../mod.ts"
  );
  return run(async () => {
    const queue = new Queue<number>();
    const lock = new Lock();
    await lock.acquire();
    const waiter = kind === "queue"
      ? async () => {
        await queue.get();
      }
      : kind === "lock"
      ? async () => {
        using _ = await lock.acquire();
      }
      : async () => {
        await sleep(3_600_000);
      };
    const tasks = new Array(N);
    const before = heapUsed();
    for (let i = 0; i < N; i++) tasks[i] = createTask(waiter);
    await sleep(0);
    const after = heapUsed();
    for (const t of tasks) t.cancel();
    await gather(tasks, { returnExceptions: true });
    return (after - before) / N;
  });
}

async function floor(kind: Kind): Promise<number> {
  const queue = new BareQueue<number>();
  const lock = new BareLock();
  await lock.acquire();
  const timers: ReturnType<typeof setTimeout>[] = [];
  const waiter = kind === "queue"
    ? async () => {
      await queue.get();
    }
    : kind === "lock"
    ? async () => {
      await lock.acquire();
      lock.release();
    }
    : async () => {
      await new Promise((resolve) => {
        timers.push(setTimeout(resolve, 3_600_000));
      });
    };
  const tasks = new Array(N);
  const before = heapUsed();
  for (let i = 0; i < N; i++) tasks[i] = waiter();
  await null;
  const after = heapUsed();
  // Let them all finish, so nothing is left pending.
  for (let i = 0; i < N; i++) {
    if (kind === "queue") queue.put(i);
  }
  if (kind === "lock") lock.release();
  for (const t of timers) clearTimeout(t);
  if (kind !== "sleep") await Promise.all(tasks);
  return (after - before) / N;
}

const out: Record<string, Record<Kind, number | string>> = {
  ours: {} as Record<Kind, number | string>,
  floor: {} as Record<Kind, number | string>,
};
for (const kind of KINDS) {
  for (const [impl, fn] of [["floor", floor], ["ours", ours]] as const) {
    try {
      out[impl][kind] = await fn(kind);
    } catch (e) {
      out[impl][kind] = `error: ${e instanceof Error ? e.message : e}`;
    }
    console.error(
      `# ${runtimeName} memory ${impl}/${kind}: ${out[impl][kind]}`,
    );
  }
}
printJsonAndExit({
  runtime: runtimeKey,
  runtimeName,
  exactGc: canGc,
  tasks: N,
  bytesPerTask: out,
});
