/**
 * The floor: every workload written with bare hand-written promises (the
 * primitives of `../floor.ts`), the least work any promise-based design
 * must do for the same result.
 */
import { DELAYS, pingpong, size, sumOf, type Workloads } from "../harness.ts";
import { BareEvent, BareLock, BareQueue, bareScheduler } from "../floor.ts";

/**
 * The lock workload on the bare lock, `yieldNow` standing for `sleep(0)`
 * (`bench/lock_study.ts` tries other ways to yield).
 */
export async function lockWith(
  yieldNow: () => Promise<unknown>,
): Promise<number> {
  const lock = new BareLock();
  let acquisitions = 0;
  await Promise.all(Array.from({ length: size.lockTasks }, async () => {
    for (let i = 0; i < size.lockRounds; i++) {
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
}

export const workloads: Workloads = {
  async tasks() {
    const results = await Promise.all(
      Array.from({ length: size.tasks }, async () => {
        await null;
        return 1;
      }),
    );
    return sumOf(results);
  },
  async switches() {
    const yieldNow = bareScheduler();
    const worker = async () => {
      for (let i = 0; i < size.switchesPerTask; i++) await yieldNow();
      return size.switchesPerTask;
    };
    return sumOf(
      await Promise.all(Array.from({ length: size.switchTasks }, worker)),
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
  lock: () => lockWith(bareScheduler()),
  async event() {
    const event = new BareEvent();
    const yieldNow = bareScheduler();
    const waiters = Array.from({ length: size.eventTasks }, async () => {
      await event.wait();
      return 1;
    });
    await yieldNow();
    event.set();
    return (await Promise.all(waiters)).length;
  },
  pingpong: () => pingpong(new BareQueue<number>(1), (producer) => producer()),
  async mpmc() {
    const queue = new BareQueue<number>();
    const each = size.mpmcItems / size.mpmcSides;
    const producers = Array.from({ length: size.mpmcSides }, async () => {
      for (let i = 0; i < each; i++) await queue.put(i);
    });
    const consumers = Array.from({ length: size.mpmcSides }, async () => {
      let received = 0;
      while ((await queue.get()) >= 0) received++;
      return received;
    });
    await Promise.all(producers);
    for (let i = 0; i < size.mpmcSides; i++) await queue.put(-1);
    return sumOf(await Promise.all(consumers));
  },
};
