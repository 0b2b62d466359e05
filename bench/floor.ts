/**
 * The floor the benchmarks compare against: what a hand-written program
 * needs at the least to let concurrent async functions take turns.
 *
 * `bareScheduler()` returns a `yieldNow()` that parks the caller on a ready
 * list; the first park in a batch queues one microtask that resolves the
 * whole batch in FIFO order, and tasks parking while it runs go to the next
 * batch. No timers, no task objects, no cancellation: only the queue an
 * asyncio-style loop needs, so `sleep(0)` is measured against it.
 */
import { size } from "./harness.ts";
export function bareScheduler(): () => Promise<void> {
  let ready: Array<() => void> = [];
  let scheduled = false;
  const drain = () => {
    scheduled = false;
    const batch = ready;
    ready = [];
    for (let i = 0; i < batch.length; i++) batch[i]();
  };
  return () =>
    new Promise<void>((resolve) => {
      ready.push(resolve);
      if (!scheduled) {
        scheduled = true;
        queueMicrotask(drain);
      }
    });
}

// First in, first out, with an O(1) shift.
class BareDeque<T> {
  items: (T | undefined)[] = [];
  head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T {
    const item = this.items[this.head] as T;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    } else if (this.head > 4096 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return item;
  }
}

/**
 * A queue that hands an item straight to the oldest waiting getter, and a
 * free slot straight to the oldest waiting putter. `maxsize` 0: unbounded.
 */
export class BareQueue<T> {
  #items = new BareDeque<T>();
  #getters = new BareDeque<(item: T) => void>();
  #putters = new BareDeque<() => void>();
  readonly maxsize: number;
  constructor(maxsize = 0) {
    this.maxsize = maxsize;
  }

  put(item: T): Promise<void> {
    if (this.#getters.length > 0) {
      this.#getters.shift()(item);
      return Promise.resolve();
    }
    if (this.maxsize <= 0 || this.#items.length < this.maxsize) {
      this.#items.push(item);
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#putters.push(resolve))
      .then(() => this.put(item));
  }

  get(): Promise<T> {
    if (this.#items.length > 0) {
      const item = this.#items.shift();
      if (this.#putters.length > 0) this.#putters.shift()();
      return Promise.resolve(item);
    }
    return new Promise<T>((resolve) => this.#getters.push(resolve));
  }
}

/** A lock that hands itself straight to the oldest waiter on release. */
export class BareLock {
  #locked = false;
  #waiters = new BareDeque<() => void>();
  acquire(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    if (this.#waiters.length > 0) this.#waiters.shift()();
    else this.#locked = false;
  }
}

/** An event: `set()` resolves every waiter's promise. */
export class BareEvent {
  #set = false;
  #waiters: (() => void)[] = [];
  wait(): Promise<void> {
    if (this.#set) return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  set(): void {
    this.#set = true;
    for (const resolve of this.#waiters) resolve();
    this.#waiters = [];
  }
}

/**
 * The lock workload for a peer whose lock runs a function exclusively
 * (async-mutex's `runExclusive`, p-limit's `limit`): plain async functions
 * for tasks, and `bareScheduler` for `sleep(0)`, the cheapest turn there is.
 */
export async function exclusiveRounds(
  runExclusive: (critical: () => Promise<void>) => Promise<unknown>,
): Promise<number> {
  const yieldNow = bareScheduler();
  let acquisitions = 0;
  const critical = async () => {
    acquisitions++;
    await yieldNow();
  };
  await Promise.all(Array.from({ length: size.lockTasks }, async () => {
    for (let i = 0; i < size.lockRounds; i++) await runExclusive(critical);
  }));
  return acquisitions;
}
