/**
 * Every workload with `@aio/asyncio`, each a whole `run(...)`: a fresh event
 * loop, the work, and closing the loop.
 */
import { DELAYS, pingpong, size, sumOf, type Workloads } from "../harness.ts";
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
        Array.from({ length: size.tasks }, () => async () => {
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
        for (let i = 0; i < size.switchesPerTask; i++) await sleep(0);
        return size.switchesPerTask;
      };
      const tasks = Array.from(
        { length: size.switchTasks },
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
      for (let t = 0; t < size.lockTasks; t++) {
        tasks.push(createTask(async () => {
          for (let i = 0; i < size.lockRounds; i++) {
            // try/finally, as the floor writes it: V8's native `using`
            // costs 250-550 ns a scope on Deno and Node 24 (6 ns for
            // try/finally), which would measure the engine, not the lock.
            await lock.acquire();
            try {
              acquisitions++;
              await sleep(0);
            } finally {
              lock.release();
            }
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
        { length: size.eventTasks },
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
    return run(() =>
      pingpong(new Queue<number>(1), (producer) => createTask(producer))
    );
  },
  mpmc() {
    return run(async () => {
      const queue = new Queue<number>();
      const each = size.mpmcItems / size.mpmcSides;
      const producers = Array.from(
        { length: size.mpmcSides },
        () =>
          createTask(async () => {
            for (let i = 0; i < each; i++) await queue.put(i);
          }),
      );
      const consumers = Array.from(
        { length: size.mpmcSides },
        () =>
          createTask(async () => {
            let received = 0;
            while ((await queue.get()) >= 0) received++;
            return received;
          }),
      );
      await gather(producers);
      for (let i = 0; i < size.mpmcSides; i++) await queue.put(-1);
      return sumOf(await gather(consumers));
    });
  },
};
