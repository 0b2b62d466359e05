/**
 * The lock workload with p-limit 7: `pLimit(1)` runs one function at a time.
 * Tasks are plain async functions and `sleep(0)` is the floor's FIFO
 * scheduler (`bareScheduler`), as for async-mutex.
 */
import pLimit from "p-limit";
import type { Workloads } from "../harness.ts";
import { exclusiveRounds } from "../floor.ts";

export const name = "p-limit";

export const workloads: Workloads = {
  lock() {
    const limit = pLimit(1);
    return exclusiveRounds(limit);
  },
};
