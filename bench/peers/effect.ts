/**
 * The workloads in Effect 4, in its idiom: fibers forked with
 * `Effect.forkChild` and joined with `Fiber.joinAll`, `Effect.yieldNow` for
 * `sleep(0)` (Effect's way to give the other fibers a turn), `Effect.sleep`
 * for timers, `Semaphore.withPermits(1)` for the lock, a `Latch` for the
 * event, `Queue.bounded(1)` and `Queue.unbounded` for the queues. Each run
 * is one `Effect.runPromise`.
 */
import { Effect, Fiber, Latch, Queue, Semaphore } from "effect";
import { DELAYS, size, sumOf, type Workloads } from "../harness.ts";

export const name = "Effect";

/** Forks `n` fibers running `effect`, and returns them. */
const forkTimes = <A>(n: number, effect: Effect.Effect<A>) =>
  Effect.gen(function* () {
    const fibers = [];
    for (let i = 0; i < n; i++) fibers.push(yield* Effect.forkChild(effect));
    return fibers;
  });

export const workloads: Workloads = {
  tasks: () =>
    Effect.runPromise(Effect.gen(function* () {
      const one = Effect.yieldNow.pipe(Effect.as(1));
      const fibers = yield* forkTimes(size.tasks, one);
      return sumOf(yield* Fiber.joinAll(fibers));
    })),
  switches: () =>
    Effect.runPromise(Effect.gen(function* () {
      const worker = Effect.gen(function* () {
        for (let i = 0; i < size.switchesPerTask; i++) yield* Effect.yieldNow;
        return size.switchesPerTask;
      });
      const fibers = yield* forkTimes(size.switchTasks, worker);
      return sumOf(yield* Fiber.joinAll(fibers));
    })),
  timers: () =>
    Effect.runPromise(Effect.gen(function* () {
      const fibers = [];
      for (const d of DELAYS) {
        fibers.push(
          yield* Effect.forkChild(Effect.sleep(d).pipe(Effect.as(1))),
        );
      }
      return sumOf(yield* Fiber.joinAll(fibers));
    })),
  lock: () =>
    Effect.runPromise(Effect.gen(function* () {
      const semaphore = yield* Semaphore.make(1);
      let acquisitions = 0;
      const critical = semaphore.withPermits(1)(Effect.gen(function* () {
        acquisitions++;
        yield* Effect.yieldNow;
      }));
      const worker = Effect.gen(function* () {
        for (let i = 0; i < size.lockRounds; i++) yield* critical;
      });
      const fibers = yield* forkTimes(size.lockTasks, worker);
      yield* Fiber.joinAll(fibers);
      return acquisitions;
    })),
  event: () =>
    Effect.runPromise(Effect.gen(function* () {
      const latch = yield* Latch.make(false);
      const waiter = latch.await.pipe(Effect.as(1));
      const fibers = yield* forkTimes(size.eventTasks, waiter);
      yield* Effect.yieldNow;
      yield* latch.open;
      return (yield* Fiber.joinAll(fibers)).length;
    })),
  pingpong: () =>
    Effect.runPromise(Effect.gen(function* () {
      const queue = yield* Queue.bounded<number>(1);
      const producer = yield* Effect.forkChild(Effect.gen(function* () {
        for (let i = 0; i < size.pingpongItems; i++) {
          yield* Queue.offer(queue, i);
        }
      }));
      let received = 0;
      for (let i = 0; i < size.pingpongItems; i++) {
        yield* Queue.take(queue);
        received++;
      }
      yield* Fiber.join(producer);
      return received;
    })),
  mpmc: () =>
    Effect.runPromise(Effect.gen(function* () {
      const queue = yield* Queue.unbounded<number>();
      const each = size.mpmcItems / size.mpmcSides;
      const producer = Effect.gen(function* () {
        for (let i = 0; i < each; i++) yield* Queue.offer(queue, i);
      });
      const consumer = Effect.gen(function* () {
        let received = 0;
        while ((yield* Queue.take(queue)) >= 0) received++;
        return received;
      });
      const producers = yield* forkTimes(size.mpmcSides, producer);
      const consumers = yield* forkTimes(size.mpmcSides, consumer);
      yield* Fiber.joinAll(producers);
      for (let i = 0; i < size.mpmcSides; i++) yield* Queue.offer(queue, -1);
      return sumOf(yield* Fiber.joinAll(consumers));
    })),
};
