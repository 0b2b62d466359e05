/**
 * The workloads in Effection 4, in its idiom: `spawn` and `yield*` for
 * tasks, `sleep` (a host timer, also for `sleep(0)`), `withResolvers` for
 * the event, `createQueue` (unbounded) for the fan-out. Each run is one
 * `run(...)`.
 *
 * Not expressed: `switches` (Effection's only way to yield is `sleep(0)`, a
 * host timer, so 10 tasks x 10,000 of them measures the host's timer clamp)
 * and `lock` (no lock or semaphore). `pingpong` has no bounded queue to go
 * through: it is two queues, an item one way and an acknowledgement back,
 * which is the rendezvous `Queue(1)` makes.
 */
import {
  createQueue,
  run,
  sleep,
  spawn,
  type Task,
  withResolvers,
} from "effection";
import {
  DELAYS,
  EVENT_TASKS,
  MPMC_ITEMS,
  MPMC_SIDES,
  N_TASKS,
  PINGPONG_ITEMS,
  type Workloads,
} from "../harness.ts";

export const name = "Effection";

export const workloads: Workloads = {
  tasks: () =>
    run(function* () {
      const tasks: Task<number>[] = [];
      for (let i = 0; i < N_TASKS; i++) {
        tasks.push(
          yield* spawn(function* () {
            yield* sleep(0);
            return 1;
          }),
        );
      }
      let total = 0;
      for (const task of tasks) total += yield* task;
      return total;
    }),
  timers: () =>
    run(function* () {
      const tasks: Task<number>[] = [];
      for (const d of DELAYS) {
        tasks.push(
          yield* spawn(function* () {
            yield* sleep(d);
            return 1;
          }),
        );
      }
      let total = 0;
      for (const task of tasks) total += yield* task;
      return total;
    }),
  event: () =>
    run(function* () {
      const event = withResolvers<void>();
      const tasks: Task<number>[] = [];
      for (let i = 0; i < EVENT_TASKS; i++) {
        tasks.push(
          yield* spawn(function* () {
            yield* event.operation;
            return 1;
          }),
        );
      }
      event.resolve();
      let total = 0;
      for (const task of tasks) total += yield* task;
      return total;
    }),
  pingpong: () =>
    run(function* () {
      const items = createQueue<number, void>();
      const acks = createQueue<void, void>();
      const producer = yield* spawn(function* () {
        for (let i = 0; i < PINGPONG_ITEMS; i++) {
          items.add(i);
          yield* acks.next();
        }
      });
      let received = 0;
      for (let i = 0; i < PINGPONG_ITEMS; i++) {
        yield* items.next();
        received++;
        acks.add();
      }
      yield* producer;
      return received;
    }),
  mpmc: () =>
    run(function* () {
      const queue = createQueue<number, void>();
      const each = MPMC_ITEMS / MPMC_SIDES;
      const consumers: Task<number>[] = [];
      for (let i = 0; i < MPMC_SIDES; i++) {
        consumers.push(
          yield* spawn(function* () {
            let received = 0;
            while ((yield* queue.next()).value as number >= 0) received++;
            return received;
          }),
        );
      }
      const producers: Task<void>[] = [];
      for (let i = 0; i < MPMC_SIDES; i++) {
        producers.push(
          yield* spawn(function* () {
            for (let i = 0; i < each; i++) {
              queue.add(i);
            }
          }),
        );
      }
      for (const task of producers) yield* task;
      for (let i = 0; i < MPMC_SIDES; i++) queue.add(-1);
      let total = 0;
      for (const task of consumers) total += yield* task;
      return total;
    }),
};
