/**
 * The lock workload with p-limit 7: `pLimit(1)` runs one function at a time.
 * Tasks are plain async functions and `sleep(0)` is the floor's FIFO
 * scheduler (`bareScheduler`), as for async-mutex.
 */
import pLimit from "p-limit";
import { LOCK_ROUNDS, LOCK_TASKS, type Workloads } from "../harness.ts";
import { bareScheduler } from "../floor.ts";

export const name = "p-limit";

export const workloads: Workloads = {
  async lock() {
    const limit = pLimit(1);
    const yieldNow = bareScheduler();
    let acquisitions = 0;
    const critical = async () => {
      acquisitions++;
      await yieldNow();
    };
    await Promise.all(Array.from({ length: LOCK_TASKS }, async () => {
      for (let i = 0; i < LOCK_ROUNDS; i++) await limit(critical);
    }));
    return acquisitions;
  },
};
