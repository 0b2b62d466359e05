/**
 * The lock workload with async-mutex 0.5: `Mutex.runExclusive`. It has no
 * tasks or scheduler of its own, so tasks are plain async functions and
 * `sleep(0)` is the floor's FIFO scheduler (`bareScheduler`), the cheapest
 * turn there is.
 */
import { Mutex } from "async-mutex";
import { LOCK_ROUNDS, LOCK_TASKS, type Workloads } from "../harness.ts";
import { bareScheduler } from "../floor.ts";

export const name = "async-mutex";

export const workloads: Workloads = {
  async lock() {
    const mutex = new Mutex();
    const yieldNow = bareScheduler();
    let acquisitions = 0;
    const critical = async () => {
      acquisitions++;
      await yieldNow();
    };
    await Promise.all(Array.from({ length: LOCK_TASKS }, async () => {
      for (let i = 0; i < LOCK_ROUNDS; i++) await mutex.runExclusive(critical);
    }));
    return acquisitions;
  },
};
