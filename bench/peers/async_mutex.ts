/**
 * The lock workload with async-mutex 0.5: `Mutex.runExclusive`. It has no
 * tasks or scheduler of its own, so tasks are plain async functions and
 * `sleep(0)` is the floor's FIFO scheduler (`bareScheduler`), the cheapest
 * turn there is.
 */
import { Mutex } from "async-mutex";
import type { Workloads } from "../harness.ts";
import { exclusiveRounds } from "../floor.ts";

export const name = "async-mutex";

export const workloads: Workloads = {
  lock() {
    const mutex = new Mutex();
    return exclusiveRounds((critical) => mutex.runExclusive(critical));
  },
};
