/**
 * Benchmark of `@aio/asyncio`'s queues, locks and events against bare
 * hand-written promise primitives, in the same process.
 *
 *     deno run -A bench/sync.ts [--quick] [--runs N] [--only WORKLOAD] [--asyncio JSON] [--uvloop JSON]
 *     bun bench/sync.ts [--quick] [--runs N] [--only WORKLOAD] [--asyncio JSON] [--uvloop JSON]
 *
 * `--asyncio` and `--uvloop` take the JSON printed by `bench/sync_asyncio.py`
 * (same workloads in CPython) and add those columns, for instance:
 *
 *     deno run -A bench/sync.ts \
 *       --asyncio "$(/usr/bin/python3 bench/sync_asyncio.py)" \
 *       --uvloop "$(/usr/bin/python3 bench/sync_asyncio.py --uvloop)"
 *
 * Workloads (ops = items moved, lock acquisitions, or tasks woken):
 *
 * - pingpong: one producer and one consumer through a queue of maxsize 1,
 *   200,000 items, so every item blocks one side and wakes the other.
 * - mpmc: 4 producers and 4 consumers through an unbounded queue,
 *   1,000,000 items in all; producers put without waiting, consumers stop at
 *   a sentinel.
 * - lock: 100 tasks each acquiring a lock 2,000 times and yielding once to
 *   the scheduler (`sleep(0)`) while holding it, so every acquisition waits.
 * - event: 100,000 tasks wait on one event; one `set()` wakes them all.
 *   Includes making the tasks.
 *
 * The bare side is the least a promise-based design must do: a queue, a lock
 * and an event that hand the item, the lock or the wake-up straight to the
 * oldest waiter's `resolve`, plain async functions for tasks, and a FIFO
 * batch scheduler for `sleep(0)` (a ready list drained in a microtask). No
 * cancellation, no loop, no timers. Ours is a whole `run(...)` each time.
 *
 * Method: one warm-up run, then up to `--runs` (default 3) runs, stopping
 * early after 4 s; the median run is reported. GC is forced before each run
 * when the runtime allows it (Bun; Deno with `--v8-flags=--expose-gc`).
 */

import {
  createTask,
  Event,
  gather,
  Lock,
  Queue,
  run,
  sleep,
  type Task,
} from "../mod.ts";
import { BareEvent, BareLock, BareQueue, bareScheduler } from "./floor.ts";

// ---------------------------------------------------------------- runtime

type Globals = {
  Deno?: { version: { deno: string }; args: string[] };
  Bun?: { version: string; gc(force: boolean): void };
  process?: { argv: string[] };
  gc?: () => void;
};
const host = globalThis as unknown as Globals;
const runtime = host.Bun
  ? `Bun ${host.Bun.version}`
  : host.Deno
  ? `Deno ${host.Deno.version.deno}`
  : "unknown runtime";
const argv = host.Deno?.args ?? host.process?.argv.slice(2) ?? [];

function flag(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

function forceGc(): void {
  if (host.Bun) host.Bun.gc(true);
  else host.gc?.();
}

const scale = argv.includes("--quick") ? 10 : 1;
const maxRuns = Number(flag("--runs") ?? 3);
const BUDGET_MS = 4000;

const PINGPONG_ITEMS = 200_000 / scale;
const MPMC_ITEMS = 1_000_000 / scale;
const MPMC_SIDES = 4;
const LOCK_TASKS = 100;
const LOCK_ROUNDS = 2000 / scale;
const EVENT_TASKS = 100_000 / scale;

// ---------------------------------------------------------------- bare

const bare = {
  async pingpong(): Promise<number> {
    const queue = new BareQueue<number>(1);
    const producer = (async () => {
      for (let i = 0; i < PINGPONG_ITEMS; i++) await queue.put(i);
    })();
    let received = 0;
    for (let i = 0; i < PINGPONG_ITEMS; i++) {
      await queue.get();
      received++;
    }
    await producer;
    return received;
  },
  async mpmc(): Promise<number> {
    const queue = new BareQueue<number>();
    const each = MPMC_ITEMS / MPMC_SIDES;
    const producers = Array.from({ length: MPMC_SIDES }, async () => {
      for (let i = 0; i < each; i++) await queue.put(i);
    });
    const consumers = Array.from({ length: MPMC_SIDES }, async () => {
      let received = 0;
      while ((await queue.get()) >= 0) received++;
      return received;
    });
    await Promise.all(producers);
    for (let i = 0; i < MPMC_SIDES; i++) await queue.put(-1);
    return (await Promise.all(consumers)).reduce((a, b) => a + b, 0);
  },
  async lock(): Promise<number> {
    const lock = new BareLock();
    const yieldNow = bareScheduler();
    let acquisitions = 0;
    await Promise.all(Array.from({ length: LOCK_TASKS }, async () => {
      for (let i = 0; i < LOCK_ROUNDS; i++) {
        await lock.acquire();
        try {
          acquisitions++;
          await yieldNow();
        } finally {
          lock.release();
        }
      }
    }));
    return acquisitions;
  },
  async event(): Promise<number> {
    const event = new BareEvent();
    const yieldNow = bareScheduler();
    const waiters = Array.from({ length: EVENT_TASKS }, async () => {
      await event.wait();
      return 1;
    });
    await yieldNow();
    event.set();
    return (await Promise.all(waiters)).length;
  },
};

// ---------------------------------------------------------------- ours

const ours = {
  pingpong(): Promise<number> {
    return run(async () => {
      const queue = new Queue<number>(1);
      const producer = createTask(async () => {
        for (let i = 0; i < PINGPONG_ITEMS; i++) await queue.put(i);
      });
      let received = 0;
      for (let i = 0; i < PINGPONG_ITEMS; i++) {
        await queue.get();
        received++;
      }
      await producer;
      return received;
    });
  },
  mpmc(): Promise<number> {
    return run(async () => {
      const queue = new Queue<number>();
      const each = MPMC_ITEMS / MPMC_SIDES;
      const producers = Array.from(
        { length: MPMC_SIDES },
        () =>
          createTask(async () => {
            for (let i = 0; i < each; i++) await queue.put(i);
          }),
      );
      const consumers = Array.from(
        { length: MPMC_SIDES },
        () =>
          createTask(async () => {
            let received = 0;
            while ((await queue.get()) >= 0) received++;
            return received;
          }),
      );
      await gather(producers);
      for (let i = 0; i < MPMC_SIDES; i++) await queue.put(-1);
      return (await gather(consumers)).reduce((a, b) => a + b, 0);
    });
  },
  lock(): Promise<number> {
    return run(async () => {
      const lock = new Lock();
      let acquisitions = 0;
      const tasks: Task<void>[] = [];
      for (let t = 0; t < LOCK_TASKS; t++) {
        tasks.push(createTask(async () => {
          for (let i = 0; i < LOCK_ROUNDS; i++) {
            using _ = await lock.acquire();
            acquisitions++;
            await sleep(0);
          }
        }));
      }
      await gather(tasks);
      return acquisitions;
    });
  },
  event(): Promise<number> {
    return run(async () => {
      const event = new Event();
      const waiters = Array.from(
        { length: EVENT_TASKS },
        () =>
          createTask(async () => {
            await event.wait();
            return 1;
          }),
      );
      await sleep(0);
      event.set();
      return (await gather(waiters)).length;
    });
  },
};

// ---------------------------------------------------------------- harness

const WORKLOADS = ["pingpong", "mpmc", "lock", "event"] as const;
type Workload = typeof WORKLOADS[number];
const OPS: Record<Workload, number> = {
  pingpong: PINGPONG_ITEMS,
  mpmc: MPMC_ITEMS,
  lock: LOCK_TASKS * LOCK_ROUNDS,
  event: EVENT_TASKS,
};

async function measure(
  fn: () => Promise<number>,
  workload: Workload,
): Promise<number> {
  const once = async () => {
    forceGc();
    const start = performance.now();
    const got = await fn();
    const ms = performance.now() - start;
    if (got !== OPS[workload]) {
      throw new Error(`${workload}: got ${got}, expected ${OPS[workload]}`);
    }
    return ms;
  };
  const began = performance.now();
  await once();
  const times: number[] = [];
  while (times.length < maxRuns) {
    times.push(await once());
    if (performance.now() - began > BUDGET_MS) break;
  }
  times.sort((a, b) => a - b);
  return OPS[workload] / (times[times.length >> 1] / 1000);
}

function parsePython(name: string): Record<string, number> {
  const text = flag(name);
  if (text === undefined || text === "") return {};
  return JSON.parse(text);
}

const ops = (x: number | undefined) =>
  x === undefined || !Number.isFinite(x)
    ? "n/a"
    : Math.round(x).toLocaleString("en-US");
const ratio = (a: number | undefined, b: number | undefined) =>
  a === undefined || b === undefined ? "n/a" : (a / b).toFixed(2);

const asyncio = parsePython("--asyncio");
const uvloop = parsePython("--uvloop");
const lines = [
  `### ${runtime}${scale > 1 ? " (quick: sizes / 10)" : ""}`,
  "",
  "| workload | ours ops/s | bare promises ops/s | ours/bare | asyncio ops/s | uvloop ops/s | ours/uvloop |",
  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
];
const only = flag("--only");
for (const workload of WORKLOADS) {
  if (only !== undefined && only !== workload) continue;
  const floor = await measure(bare[workload], workload);
  const mine = await measure(ours[workload], workload);
  console.error(`# ${workload}: ours ${ops(mine)}, bare ${ops(floor)}`);
  lines.push(
    `| ${workload} | ${ops(mine)} | ${ops(floor)} | ${ratio(mine, floor)} | ${
      ops(asyncio[workload])
    } | ${ops(uvloop[workload])} | ${ratio(mine, uvloop[workload])} |`,
  );
}
console.log(lines.join("\n"));
