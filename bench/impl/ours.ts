/**
 * Every workload with `@aio/asyncio`, each a whole `run(...)`: a fresh event
 * loop, the work, and closing the loop. The same code as `core.ts` and
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
import {
  createTask,
  Event,
  gather,
  Lock,
  Queue,
  run,
  sleep,
  type Task,
} from "../../mod.ts";

export const workloads: Workloads = {
  tasks() {
    return run(async () => {
      const results = await gather(
        Array.from({ length: N_TASKS }, () => async () => {
          await sleep(0);
          return 1;
        }),
      );
      return sumOf(results as number[]);
    });
  },
  switches() {
    return run(async () => {
      const worker = async () => {
        for (let i = 0; i < SWITCHES_PER_TASK; i++) await sleep(0);
        return SWITCHES_PER_TASK;
      };
      const tasks = Array.from(
        { length: SWITCH_TASKS },
        () => createTask(worker),
      );
      let total = 0;
      for (const t of tasks) total += await t;
      return total;
    });
  },
  timers() {
    return run(async () => {
      const results = await gather(
        DELAYS.map((d) => async () => {
          await sleep(d);
          return 1;
        }),
      );
      return sumOf(results as number[]);
    });
  },
  lock() {
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
  event() {
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
  pingpong() {
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
  mpmc() {
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
      return sumOf(await gather(consumers));
    });
  },
};
