/**
 * The workloads in Effect 4, in its idiom: fibers forked with
 * `Effect.forkChild` and joined with `Fiber.joinAll`, `Effect.yieldNow` for
 * `sleep(0)` (Effect's way to give the other fibers a turn), `Effect.sleep`
 * for timers, `Semaphore.withPermits(1)` for the lock, a `Latch` for the
 * event, `Queue.bounded(1)` and `Queue.unbounded` for the queues. Each run
 * is one `Effect.runPromise`.
 */
import { Effect, Fiber, Latch, Queue, Semaphore } from "effect";
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

export const name = "Effect";

export const workloads: Workloads = {
  tasks: () =>
    Effect.runPromise(Effect.gen(function* () {
      const one = Effect.yieldNow.pipe(Effect.as(1));
      const fibers = [];
      for (let i = 0; i < N_TASKS; i++) {
        fibers.push(yield* Effect.forkChild(one));
      }
      return sumOf(yield* Fiber.joinAll(fibers));
    })),
  switches: () =>
    Effect.runPromise(Effect.gen(function* () {
      const worker = Effect.gen(function* () {
        for (let i = 0; i < SWITCHES_PER_TASK; i++) yield* Effect.yieldNow;
        return SWITCHES_PER_TASK;
      });
      const fibers = [];
      for (let i = 0; i < SWITCH_TASKS; i++) {
        fibers.push(yield* Effect.forkChild(worker));
      }
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
        for (let i = 0; i < LOCK_ROUNDS; i++) yield* critical;
      });
      const fibers = [];
      for (let i = 0; i < LOCK_TASKS; i++) {
        fibers.push(yield* Effect.forkChild(worker));
      }
      yield* Fiber.joinAll(fibers);
      return acquisitions;
    })),
  event: () =>
    Effect.runPromise(Effect.gen(function* () {
      const latch = yield* Latch.make(false);
      const waiter = latch.await.pipe(Effect.as(1));
      const fibers = [];
      for (let i = 0; i < EVENT_TASKS; i++) {
        fibers.push(yield* Effect.forkChild(waiter));
      }
      yield* Effect.yieldNow;
      yield* latch.open;
      return (yield* Fiber.joinAll(fibers)).length;
    })),
  pingpong: () =>
    Effect.runPromise(Effect.gen(function* () {
      const queue = yield* Queue.bounded<number>(1);
      const producer = yield* Effect.forkChild(Effect.gen(function* () {
        for (let i = 0; i < PINGPONG_ITEMS; i++) yield* Queue.offer(queue, i);
      }));
      let received = 0;
      for (let i = 0; i < PINGPONG_ITEMS; i++) {
        yield* Queue.take(queue);
        received++;
      }
      yield* Fiber.join(producer);
      return received;
    })),
  mpmc: () =>
    Effect.runPromise(Effect.gen(function* () {
      const queue = yield* Queue.unbounded<number>();
      const each = MPMC_ITEMS / MPMC_SIDES;
      const producer = Effect.gen(function* () {
        for (let i = 0; i < each; i++) yield* Queue.offer(queue, i);
      });
      const consumer = Effect.gen(function* () {
        let received = 0;
        while ((yield* Queue.take(queue)) >= 0) received++;
        return received;
      });
      const producers = [];
      const consumers = [];
      for (let i = 0; i < MPMC_SIDES; i++) {
        producers.push(yield* Effect.forkChild(producer));
      }
      for (let i = 0; i < MPMC_SIDES; i++) {
        consumers.push(yield* Effect.forkChild(consumer));
      }
      yield* Fiber.joinAll(producers);
      for (let i = 0; i < MPMC_SIDES; i++) yield* Queue.offer(queue, -1);
      return sumOf(yield* Fiber.joinAll(consumers));
    })),
};
