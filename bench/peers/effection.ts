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
  type Operation,
  run,
  sleep,
  spawn,
  type Task,
  withResolvers,
} from "effection";
import { DELAYS, size, type Workloads } from "../harness.ts";

export const name = "Effection";

/** Spawns a task for each body, in order, and returns the tasks. */
function* spawnEach<T>(
  bodies: Iterable<() => Operation<T>>,
): Operation<Task<T>[]> {
  const tasks: Task<T>[] = [];
  for (const body of bodies) tasks.push(yield* spawn(body));
  return tasks;
}

/** Waits for every task, and returns the sum of their results. */
function* sumOfTasks(tasks: Task<number>[]): Operation<number> {
  let total = 0;
  for (const task of tasks) total += yield* task;
  return total;
}

/** `n` times the same body. */
const times = <T>(n: number, body: T): T[] =>
  Array.from({ length: n }, () => body);

export const workloads: Workloads = {
  tasks: () =>
    run(function* () {
      return yield* sumOfTasks(
        yield* spawnEach(times(size.tasks, function* () {
          yield* sleep(0);
          return 1;
        })),
      );
    }),
  timers: () =>
    run(function* () {
      return yield* sumOfTasks(
        yield* spawnEach(DELAYS.map((d) =>
          function* () {
            yield* sleep(d);
            return 1;
          }
        )),
      );
    }),
  event: () =>
    run(function* () {
      const event = withResolvers<void>();
      const tasks = yield* spawnEach<number>(
        times(size.eventTasks, function* () {
          yield* event.operation;
          return 1;
        }),
      );
      event.resolve();
      return yield* sumOfTasks(tasks);
    }),
  pingpong: () =>
    run(function* () {
      const items = createQueue<number, void>();
      const acks = createQueue<void, void>();
      const producer = yield* spawn(function* () {
        for (let i = 0; i < size.pingpongItems; i++) {
          items.add(i);
          yield* acks.next();
        }
      });
      let received = 0;
      for (let i = 0; i < size.pingpongItems; i++) {
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
      const each = size.mpmcItems / size.mpmcSides;
      const consumers = yield* spawnEach<number>(
        times(size.mpmcSides, function* () {
          let received = 0;
          while ((yield* queue.next()).value as number >= 0) received++;
          return received;
        }),
      );
      const producers = yield* spawnEach(times(size.mpmcSides, function* () {
        for (let i = 0; i < each; i++) queue.add(i);
      }));
      for (const task of producers) yield* task;
      for (let i = 0; i < size.mpmcSides; i++) queue.add(-1);
      return yield* sumOfTasks(consumers);
    }),
};
