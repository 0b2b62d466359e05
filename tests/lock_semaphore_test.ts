// Lock and Semaphore share one acquire/release mechanism (FairUnits in
// mod.ts) but wake differently, as in asyncio 3.14: a Lock wakes only its
// first waiter, so a first waiter cancelled before it leaves passes the
// turn on as it leaves; a Semaphore wakes the first waiter still pending at
// once. The expected lines are what this program printed on CPython 3.14.2
// (pyodide 314.0.8):
//
//   for kind in ("lock", "sem"):
//       lock = asyncio.Lock() if kind == "lock" else asyncio.Semaphore(1)
//       await lock.acquire()
//       async def waiter(name):
//           try:
//               await lock.acquire()
//           except asyncio.CancelledError:
//               log.append(f"{name} cancelled")
//               raise
//           log.append(f"{name} acquired")
//           lock.release()
//       async def ticker():
//           for i in range(4):
//               log.append(f"tick {i}")
//               await asyncio.sleep(0)
//       a = asyncio.create_task(waiter("A"))
//       b = asyncio.create_task(waiter("B"))
//       await asyncio.sleep(0)
//       t = asyncio.create_task(ticker())
//       a.cancel()
//       lock.release()
//       log.append("released")
//       await asyncio.gather(a, b, t, return_exceptions=True)
//
//   lock ['released', 'tick 0', 'A cancelled', 'tick 1', 'B acquired', ...]
//   sem ['released', 'tick 0', 'A cancelled', 'B acquired', 'tick 1', ...]

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  createTask,
  gather,
  Lock,
  run,
  Semaphore,
  sleep,
} from "../mod.ts";

async function cancelFirstThenRelease(
  lock: Lock | Semaphore,
): Promise<string[]> {
  const log: string[] = [];
  await lock.acquire();
  const waiter = async (name: string) => {
    try {
      await lock.acquire();
    } catch (error) {
      if (error instanceof CancelledError) log.push(`${name} cancelled`);
      throw error;
    }
    log.push(`${name} acquired`);
    lock.release();
  };
  const ticker = async () => {
    for (let i = 0; i < 4; i++) {
      log.push(`tick ${i}`);
      await sleep(0);
    }
  };
  const a = createTask(() => waiter("A"));
  const b = createTask(() => waiter("B"));
  await sleep(0);
  const t = createTask(ticker);
  a.cancel();
  lock.release();
  log.push("released");
  await gather([a, b, t], { returnExceptions: true });
  return log;
}

test("lock: a released lock whose first waiter was cancelled wakes the next only as that one leaves", async () => {
  const log = await run(() => cancelFirstThenRelease(new Lock()));
  assert.deepEqual(log, [
    "released",
    "tick 0",
    "A cancelled",
    "tick 1",
    "B acquired",
    "tick 2",
    "tick 3",
  ]);
});

test("semaphore: a released unit wakes the first waiter still pending at once", async () => {
  const log = await run(() => cancelFirstThenRelease(new Semaphore(1)));
  assert.deepEqual(log, [
    "released",
    "tick 0",
    "A cancelled",
    "B acquired",
    "tick 1",
    "tick 2",
    "tick 3",
  ]);
});

test("lock: locked() is false from release() until the woken waiter runs, and a newcomer still queues behind it", async () => {
  await run(async () => {
    const lock = new Lock();
    const order: string[] = [];
    await lock.acquire();
    const first = createTask(async () => {
      await lock.acquire();
      order.push("first");
      lock.release();
    });
    await sleep(0);
    lock.release();
    assert.equal(lock.locked(), false);
    assert.throws(() => lock.release(), /Lock is not acquired/);
    const newcomer = createTask(async () => {
      await lock.acquire();
      order.push("newcomer");
      lock.release();
    });
    await gather([first, newcomer]);
    assert.deepEqual(order, ["first", "newcomer"]);
    assert.equal(lock.locked(), false);
  });
});
