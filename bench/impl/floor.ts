/**
 * The floor: every workload written with bare hand-written promises (the
 * primitives of `../floor.ts`), the least work any promise-based design
 * must do for the same result. The same code as the floors of `core.ts` and
 * `sync.ts`.
 */
import {
  DELAYS,
  EVENT_TASKS,
  LOCK_ROUNDS,
  LOCK_TASKS,
  MPMC_ITEMS,
  MPMC_SIDES,
  N_TASKS,
  PINGPONG_ITEMS,
  sumOf,
  SWITCH_TASKS,
  SWITCHES_PER_TASK,
  type Workloads,
} from "../harness.ts";
import { BareEvent, BareLock, BareQueue, bareScheduler } from "../floor.ts";

export const workloads: Workloads = {
  async tasks() {
    const results = await Promise.all(
      Array.from({ length: N_TASKS }, async () => {
        await null;
        return 1;
      }),
    );
    return sumOf(results);
  },
  async switches() {
    const yieldNow = bareScheduler();
    const worker = async () => {
      for (let i = 0; i < SWITCHES_PER_TASK; i++) await yieldNow();
      return SWITCHES_PER_TASK;
    };
    return sumOf(
      await Promise.all(Array.from({ length: SWITCH_TASKS }, worker)),
    );
  },
  async timers() {
    const results = await Promise.all(
      DELAYS.map((d) =>
        new Promise<number>((resolve) => setTimeout(() => resolve(1), d))
      ),
    );
    return sumOf(results);
  },
  async lock() {
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
  async event() {
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
  async pingpong() {
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
  async mpmc() {
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
    return sumOf(await Promise.all(consumers));
  },
};
