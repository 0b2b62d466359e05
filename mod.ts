/**
 * Python's `asyncio`, in TypeScript, for Deno and Bun.
 *
 * Coroutines are plain `async` functions. A {@linkcode Task} runs one of them
 * concurrently with the others, and can be cancelled at the exact `await` it
 * is blocked on, as in Python. Around that core sit the rest of asyncio:
 * {@linkcode run}, {@linkcode gather}, {@linkcode wait}, {@linkcode waitFor},
 * {@linkcode timeout}, {@linkcode taskGroup}, {@linkcode shield}, and a
 * low-level {@linkcode EventLoop} with callbacks, timers and futures.
 *
 * Conventions, where they differ from Python: time is in **milliseconds**,
 * names are `camelCase`, and a coroutine is passed to {@linkcode createTask}
 * as a **function** (`createTask(() => work())`), because a called `async`
 * function has already started running.
 *
 * Beyond asyncio: `run(main, { virtualTime: true })` runs timers on a virtual
 * clock that jumps ahead whenever every task is waiting, so timing logic can
 * be tested exactly and instantly.
 *
 * @example The asyncio tutorial: two tasks, about 2 seconds in all
 * ```ts
 * import { createTask, run, sleep } from "@aio/asyncio";
 *
 * async function sayAfter(ms: number, what: string) {
 *   await sleep(ms);
 *   console.log(what);
 * }
 *
 * await run(async () => {
 *   const task1 = createTask(() => sayAfter(1000, "hello"));
 *   const task2 = createTask(() => sayAfter(2000, "world"));
 *   await task1;
 *   await task2;
 * });
 * ```
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { setImmediate } from "node:timers";

// ---------------------------------------------------------------------------
// Errors
//
// asyncio's exception classes, each a real `Error` subclass with its own
// `name`, so `instanceof` and stack traces work. Relies on nothing.
// ---------------------------------------------------------------------------

/**
 * The operation was cancelled: raised at the `await` of a cancelled task.
 *
 * Unlike Python, where `CancelledError` is a `BaseException`, here it is an
 * ordinary `Error`: a `catch` that swallows every error also swallows a
 * cancellation, so re-throw it (`if (e instanceof CancelledError) throw e`).
 *
 * @example
 * ```ts
 * import { CancelledError, createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const task = createTask(() => sleep(1000));
 *   await sleep(0);
 *   task.cancel("no longer needed");
 *   try {
 *     await task;
 *   } catch (e) {
 *     console.log(e instanceof CancelledError, (e as Error).message);
 *   }
 * });
 * ```
 */
export class CancelledError extends Error {
  /** Creates the error; `message` is the one given to `cancel(msg)`. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "CancelledError";
  }
}

/**
 * A deadline passed: raised by {@linkcode waitFor}, {@linkcode timeout} and
 * {@linkcode wait}'s callers. It carries the cancellation it replaced as
 * `cause`.
 *
 * @example
 * ```ts
 * import { run, sleep, TimeoutError, waitFor } from "@aio/asyncio";
 *
 * await run(async () => {
 *   try {
 *     await waitFor(() => sleep(1000), 10);
 *   } catch (e) {
 *     console.log(e instanceof TimeoutError); // true
 *   }
 * });
 * ```
 */
export class TimeoutError extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "TimeoutError";
  }
}

/**
 * A future was used in the wrong state: its result read before it is done,
 * or its result set twice.
 *
 * @example
 * ```ts
 * import { Future, InvalidStateError, run } from "@aio/asyncio";
 *
 * await run(() => {
 *   const future = new Future<number>();
 *   try {
 *     future.result();
 *   } catch (e) {
 *     console.log(e instanceof InvalidStateError); // true
 *   }
 *   return Promise.resolve();
 * });
 * ```
 */
export class InvalidStateError extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "InvalidStateError";
  }
}

/**
 * Python's `RuntimeError`: an operation that is wrong in the current state of
 * the program, such as `run()` inside a running task, or `getRunningLoop()`
 * outside one.
 *
 * @example
 * ```ts
 * import { getRunningLoop, RuntimeError } from "@aio/asyncio";
 *
 * try {
 *   getRunningLoop();
 * } catch (e) {
 *   console.log(e instanceof RuntimeError); // true: no loop is running here
 * }
 * ```
 */
export class RuntimeError extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "RuntimeError";
  }
}

/**
 * Several errors at once, as Python's `ExceptionGroup`: thrown by
 * {@linkcode taskGroup} with every error its tasks and body raised.
 *
 * It is JavaScript's own `AggregateError`, so `.errors` works too;
 * `.exceptions` is the Python name for the same array.
 *
 * @example
 * ```ts
 * import { ExceptionGroup } from "@aio/asyncio";
 *
 * const group = new ExceptionGroup("two failures", [
 *   new RangeError("a"),
 *   new TypeError("b"),
 * ]);
 * console.log(group.exceptions.length); // 2
 * console.log(group.subgroup((e) => e instanceof TypeError)?.exceptions); // [TypeError: b]
 * ```
 */
export class ExceptionGroup extends AggregateError {
  /** The grouped errors, in the order they happened. */
  readonly exceptions: readonly unknown[];

  /** Groups `exceptions` under `message`. */
  constructor(message: string, exceptions: Iterable<unknown>) {
    const list = [...exceptions];
    super(list, message);
    this.name = "ExceptionGroup";
    this.exceptions = list;
  }

  /**
   * The errors that match `condition`, as a group of the same message, or
   * `null` when none does. Nested groups are searched too, as in Python.
   */
  subgroup(
    condition: (error: unknown) => boolean,
  ): ExceptionGroup | null {
    return this.split(condition)[0];
  }

  /**
   * Splits the group into `[matching, rest]`; either is `null` when empty.
   */
  split(
    condition: (error: unknown) => boolean,
  ): [ExceptionGroup | null, ExceptionGroup | null] {
    const matching: unknown[] = [];
    const rest: unknown[] = [];
    for (const error of this.exceptions) {
      if (condition(error)) {
        matching.push(error);
      } else if (error instanceof ExceptionGroup) {
        const [inner, outer] = error.split(condition);
        if (inner) matching.push(inner);
        if (outer) rest.push(outer);
      } else {
        rest.push(error);
      }
    }
    return [
      matching.length ? new ExceptionGroup(this.message, matching) : null,
      rest.length ? new ExceptionGroup(this.message, rest) : null,
    ];
  }
}

/**
 * {@linkcode Queue.getNowait} found the queue empty.
 *
 * @example
 * ```ts
 * import { Queue, QueueEmpty } from "@aio/asyncio";
 *
 * try {
 *   new Queue<number>().getNowait();
 * } catch (e) {
 *   console.log(e instanceof QueueEmpty); // true
 * }
 * ```
 */
export class QueueEmpty extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "QueueEmpty";
  }
}

/**
 * {@linkcode Queue.putNowait} found the queue full.
 *
 * @example
 * ```ts
 * import { Queue, QueueFull } from "@aio/asyncio";
 *
 * const queue = new Queue<number>(1);
 * queue.putNowait(1);
 * try {
 *   queue.putNowait(2);
 * } catch (e) {
 *   console.log(e instanceof QueueFull); // true
 * }
 * ```
 */
export class QueueFull extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "QueueFull";
  }
}

/**
 * The queue was shut down: raised by `put()` at once, and by `get()` once the
 * queue is empty.
 *
 * @example
 * ```ts
 * import { Queue, QueueShutDown } from "@aio/asyncio";
 *
 * const queue = new Queue<number>();
 * queue.shutdown();
 * try {
 *   queue.putNowait(1);
 * } catch (e) {
 *   console.log(e instanceof QueueShutDown); // true
 * }
 * ```
 */
export class QueueShutDown extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "QueueShutDown";
  }
}

/**
 * A {@linkcode Barrier} was reset or aborted while a task waited on it.
 *
 * @example
 * ```ts
 * import { Barrier, BrokenBarrierError, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const barrier = new Barrier(2);
 *   await barrier.abort();
 *   try {
 *     await barrier.wait();
 *   } catch (e) {
 *     console.log(e instanceof BrokenBarrierError); // true
 *   }
 * });
 * ```
 */
export class BrokenBarrierError extends Error {
  /** Creates the error. */
  constructor(message?: string, options?: ErrorOptions) {
    super(message ?? "", options);
    this.name = "BrokenBarrierError";
  }
}

/**
 * The stream ended before `readexactly(n)` or `readuntil()` got what it
 * needed. `partial` holds the bytes read before the end.
 *
 * @example
 * ```ts
 * import { IncompleteReadError } from "@aio/asyncio";
 *
 * const error = new IncompleteReadError(new Uint8Array([1, 2]), 4);
 * console.log(error.partial.length, error.expected); // 2 4
 * ```
 */
export class IncompleteReadError extends Error {
  /** The bytes read before the end of the stream. */
  readonly partial: Uint8Array;
  /** How many bytes were wanted, or `null` when reading up to a separator. */
  readonly expected: number | null;

  /** Creates the error for `partial` bytes of `expected`. */
  constructor(partial: Uint8Array, expected: number | null) {
    super(
      `${partial.length} bytes read on a total of ${
        expected === null ? "undefined" : expected
      } expected bytes`,
    );
    this.name = "IncompleteReadError";
    this.partial = partial;
    this.expected = expected;
  }
}

/**
 * A read would exceed the stream's buffer limit before finding its
 * separator. `consumed` is how many bytes may be consumed to get past it.
 *
 * @example
 * ```ts
 * import { LimitOverrunError } from "@aio/asyncio";
 *
 * const error = new LimitOverrunError("Separator is not found", 65536);
 * console.log(error.consumed); // 65536
 * ```
 */
export class LimitOverrunError extends Error {
  /** How many bytes to consume to skip past the offending data. */
  readonly consumed: number;

  /** Creates the error. */
  constructor(message: string, consumed: number) {
    super(message);
    this.name = "LimitOverrunError";
    this.consumed = consumed;
  }
}

// ---------------------------------------------------------------------------
// Argument checks
//
// Bad input fails at once, with an error that names the argument, rather
// than as a hang or a NaN deadline much later.
// ---------------------------------------------------------------------------

function describeValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return "a function";
  if (value === null) return "null";
  if (typeof value === "object") {
    return `an object (${value.constructor?.name ?? "Object"})`;
  }
  return String(value);
}

function requireMilliseconds(
  value: unknown,
  where: string,
  argument: string,
): number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `${where}: ${argument} must be a number of milliseconds, got ${
        describeValue(value)
      }`,
    );
  }
  return value;
}

function requireOptionalMilliseconds(
  value: unknown,
  where: string,
  argument: string,
): number | null {
  return value === null || value === undefined
    ? null
    : requireMilliseconds(value, where, argument);
}

function requireFunction(value: unknown, where: string, argument: string) {
  if (typeof value !== "function") {
    throw new TypeError(
      `${where}: ${argument} must be a function, got ${describeValue(value)}`,
    );
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null &&
    (typeof value === "object" || typeof value === "function") &&
    typeof (value as PromiseLike<unknown>).then === "function";
}

function requireCoro(value: unknown, where: string, argument: string) {
  if (typeof value !== "function" && !isThenable(value)) {
    throw new TypeError(
      `${where}: ${argument} must be a function returning a promise (a coroutine function) or a promise-like, got ${
        describeValue(value)
      }`,
    );
  }
}

// ---------------------------------------------------------------------------
// Event loop
//
// The loop owns two queues: `#readyFns`/`#readyArgs`, the steps to run next
// in order, and `#scheduledTimers`, a binary heap of timer handles behind one
// host timer. A batch of ready steps runs in a microtask while the loop has
// had the host for less than HOST_TURN_BUDGET_MS, then in a host macrotask
// (setImmediate), so a loop of `await sleep(0)` never starves host timers and
// I/O. The current task is found through one AsyncLocalStorage, set once
// when a task starts and inherited by every await inside it.
// ---------------------------------------------------------------------------

/**
 * A coroutine, as the library's functions take it: preferably a function that
 * returns a promise (an `async` function), which is called inside the new
 * task so that the task owns every `await` in it; or an already-started
 * promise-like, which can only be stopped being waited for.
 */
export type Coro<T> = (() => PromiseLike<T>) | PromiseLike<T>;

/** A callback that gets the future it was added to, once that is done. */
export type DoneCallback<T> = (future: Future<T>) => void;

/**
 * What the loop's exception handler receives: a message, and where known the
 * error and the future, task or handle involved.
 */
export interface ExceptionContext {
  /** One line saying what went wrong. */
  message: string;
  /** The error, when there is one. */
  exception?: unknown;
  /** The future whose error nobody retrieved. */
  future?: Future<unknown>;
  /** The task involved. */
  task?: Task<unknown>;
  /** The callback handle whose callback threw. */
  handle?: Handle;
  /** Anything else a caller adds. */
  [key: string]: unknown;
}

/** A loop's exception handler: see {@linkcode EventLoop.setExceptionHandler}. */
export type ExceptionHandler = (
  loop: EventLoop,
  context: ExceptionContext,
) => void;

/** Options for {@linkcode EventLoop}, {@linkcode run} and {@linkcode Runner}. */
export interface LoopOptions {
  /** Debug mode: warns about callbacks slower than `slowCallbackDuration`. */
  debug?: boolean;
  /**
   * Run timers on a virtual clock that starts at 0 and jumps to the next
   * deadline whenever every task of the loop waits on the loop's own
   * futures. `loop.time()` then reports virtual milliseconds exactly.
   */
  virtualTime?: boolean;
  /** Record every task's life into this timeline. */
  timeline?: Timeline;
}

// A step is a function and its one argument, kept in two parallel arrays so
// that waking a task costs no allocation.
type Step = (argument: never) => void;

const taskContext = new AsyncLocalStorage<Task<unknown>>();

// Hands the host back its turn at least this often, in milliseconds.
const HOST_TURN_BUDGET_MS = 4;

// Node-compatible hosts wrap setTimeout delays above 2^31-1 ms around.
const MAX_HOST_TIMER_MS = 0x7fffffff;

let loopBeingRun: EventLoop | null = null;
let defaultLoop: EventLoop | null = null;

// Module-private access to class internals, filled in by static blocks.
let runHandle: (handle: Handle) => void;
let scheduleStep: <A>(
  loop: EventLoop,
  step: (argument: A) => void,
  argument: A,
) => void;
let noteTaskStarted: (loop: EventLoop, task: Task<unknown>) => void;
let noteTaskBlocked: (loop: EventLoop, blocked: boolean) => void;
let noteTaskDone: (
  loop: EventLoop,
  task: Task<unknown>,
  wasBlocked: boolean,
) => void;
let noteForeignWait: (loop: EventLoop, delta: number) => void;
let noteUnretrieved: (
  loop: EventLoop,
  future: Future<unknown>,
  add: boolean,
) => void;
let loopTimeline: (loop: EventLoop) => Timeline | null;
let timerCancelled: (loop: EventLoop, timer: TimerHandle) => void;

/**
 * A callback scheduled with {@linkcode EventLoop.callSoon}: it can be
 * cancelled until it runs.
 *
 * @example
 * ```ts
 * import { getEventLoop } from "@aio/asyncio";
 *
 * const handle = getEventLoop().callSoon(() => console.log("never printed"));
 * handle.cancel();
 * console.log(handle.cancelled()); // true
 * ```
 */
export class Handle {
  #callback: ((...args: never[]) => unknown) | null;
  #args: unknown[];
  #loop: EventLoop;
  #cancelled = false;

  /** A handle for `callback(...args)` on `loop`; the loop makes these. */
  constructor(
    callback: (...args: never[]) => unknown,
    args: unknown[],
    loop: EventLoop,
  ) {
    this.#callback = callback;
    this.#args = args;
    this.#loop = loop;
  }

  /** Stops the callback from running, if it has not run yet. */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    this.#callback = null;
    this.#args = [];
  }

  /** Whether {@linkcode Handle.cancel} was called. */
  cancelled(): boolean {
    return this.#cancelled;
  }

  /** Where the loop shows this handle in a message: `<Handle name()>`. */
  toString(): string {
    const name = this.#callback?.name || "anonymous";
    return `<${this.constructor.name} ${
      this.#cancelled ? "cancelled" : `${name}()`
    }>`;
  }

  static {
    runHandle = (handle) => {
      const callback = handle.#callback;
      if (callback === null) return;
      const loop = handle.#loop;
      const started = loop.getDebug() ? performance.now() : 0;
      try {
        (callback as (...args: unknown[]) => unknown)(...handle.#args);
      } catch (error) {
        loop.callExceptionHandler({
          message: `Exception in callback ${handle}`,
          exception: error,
          handle,
        });
      }
      if (started) {
        const took = performance.now() - started;
        if (took > loop.slowCallbackDuration) {
          console.warn(
            `asyncio: executing ${handle} took ${took.toFixed(1)} ms`,
          );
        }
      }
    };
  }
}

/**
 * A callback scheduled for a time with {@linkcode EventLoop.callLater} or
 * {@linkcode EventLoop.callAt}.
 *
 * @example
 * ```ts
 * import { getEventLoop } from "@aio/asyncio";
 *
 * const loop = getEventLoop();
 * const timer = loop.callLater(1000, () => console.log("late"));
 * console.log(timer.when() - loop.time()); // about 1000
 * timer.cancel();
 * ```
 */
export class TimerHandle extends Handle {
  #when: number;
  #loop: EventLoop;
  #scheduled = true;
  /** Breaks ties between equal deadlines in scheduling order. @ignore */
  readonly sequence: number;

  /** A handle for `callback(...args)` at loop time `when`. */
  constructor(
    when: number,
    callback: (...args: never[]) => unknown,
    args: unknown[],
    loop: EventLoop,
    sequence = 0,
  ) {
    super(callback, args, loop);
    this.#when = when;
    this.#loop = loop;
    this.sequence = sequence;
  }

  /** The loop time, in ms, at which the callback is scheduled to run. */
  when(): number {
    return this.#when;
  }

  /** Stops the callback from running, and frees its place in the timers. */
  override cancel(): void {
    if (this.cancelled()) return;
    super.cancel();
    if (this.#scheduled) timerCancelled(this.#loop, this);
  }

  /** @ignore Marks the timer as taken off the heap. */
  static unschedule(timer: TimerHandle): void {
    timer.#scheduled = false;
  }
}

/**
 * The event loop: runs callbacks, timers, futures and tasks.
 *
 * Most programs never touch it: {@linkcode run} makes one, runs the main
 * coroutine in it and closes it. It is the low-level layer for bridging
 * callback APIs ({@linkcode EventLoop.createFuture}) and scheduling plain
 * callbacks.
 *
 * One difference from Python: the loop processes its callbacks whenever the
 * host gives it a turn, not only inside `runForever()` or
 * `runUntilComplete()`; those mark it running and wait. That is what lets a
 * notebook cell `await sleep(1000)` on the default loop with no `run()`.
 *
 * @example
 * ```ts
 * import { EventLoop } from "@aio/asyncio";
 *
 * const loop = new EventLoop({ virtualTime: true });
 * const done = loop.createFuture<string>();
 * loop.callLater(5000, () => done.setResult("five seconds later"));
 * console.log(await loop.runUntilComplete(done), loop.time()); // instant: 5000
 * loop.close();
 * ```
 */
export class EventLoop {
  #readyFns: Step[] = [];
  #readyArgs: unknown[] = [];
  #spareFns: Step[] = [];
  #spareArgs: unknown[] = [];
  #runScheduled = false;
  #lastHostTurn = -Infinity;
  #scheduledTimers: TimerHandle[] = [];
  #cancelledTimerCount = 0;
  #timerSequence = 0;
  #hostTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #hostTimerDeadline = Infinity;
  #virtualTime: boolean;
  #virtualNow = 0;
  #idleCheckScheduled = false;
  #unblockedTasks = 0;
  #foreignWaits = 0;
  #tasks = new Set<Task<unknown>>();
  #unretrieved = new Set<Future<unknown>>();
  #closed = false;
  #running = false;
  #stopRequested: (() => void) | null = null;
  #exceptionHandler: ExceptionHandler | null = null;
  #debug: boolean;
  #timeline: Timeline | null;
  /** In debug mode, callbacks slower than this many ms are reported. */
  slowCallbackDuration = 100;

  /** A new loop; `virtualTime: true` gives it a virtual clock. */
  constructor(options: LoopOptions = {}) {
    this.#virtualTime = options.virtualTime === true;
    this.#debug = options.debug === true;
    this.#timeline = options.timeline ?? null;
    this.#timeline?.start(this);
  }

  // --- Time --------------------------------------------------------------

  /**
   * The loop's clock, in milliseconds: monotonic real time
   * (`performance.now()`), or with virtual time, virtual ms from 0.
   */
  time(): number {
    return this.#virtualTime ? this.#virtualNow : performance.now();
  }

  // --- Callbacks ---------------------------------------------------------

  /**
   * Schedules `callback(...args)` to run on the loop's next step, after the
   * callbacks already scheduled, in order.
   */
  callSoon<A extends unknown[]>(
    callback: (...args: A) => unknown,
    ...args: A
  ): Handle {
    requireFunction(callback, "callSoon()", "callback");
    this.#checkClosed();
    const handle = new Handle(
      callback as (...args: never[]) => unknown,
      args,
      this,
    );
    this.#schedule(runHandle, handle);
    return handle;
  }

  /**
   * Schedules `callback(...args)` to run `delay` ms from now. A delay of 0
   * or less means as soon as possible, after the callbacks already due.
   */
  callLater<A extends unknown[]>(
    delay: number,
    callback: (...args: A) => unknown,
    ...args: A
  ): TimerHandle {
    requireMilliseconds(delay, "callLater()", "delay");
    requireFunction(callback, "callLater()", "callback");
    return this.#addTimer(this.time() + delay, callback, args);
  }

  /** Schedules `callback(...args)` to run at loop time `when` (ms). */
  callAt<A extends unknown[]>(
    when: number,
    callback: (...args: A) => unknown,
    ...args: A
  ): TimerHandle {
    requireMilliseconds(when, "callAt()", "when");
    requireFunction(callback, "callAt()", "callback");
    return this.#addTimer(when, callback, args);
  }

  // --- Futures and tasks -------------------------------------------------

  /** A new pending {@linkcode Future} attached to this loop. */
  createFuture<T = unknown>(): Future<T> {
    return new Future<T>(this);
  }

  /** Wraps `coro` in a {@linkcode Task} on this loop: see {@linkcode createTask}. */
  createTask<T>(coro: Coro<T>, options: TaskOptions = {}): Task<T> {
    this.#checkClosed();
    return new Task(coro, { ...options, loop: this });
  }

  // --- Running and stopping ----------------------------------------------

  /**
   * Runs until `future` is done and returns its result (or throws its
   * error). A coroutine function or promise is wrapped in a task first.
   */
  async runUntilComplete<T>(future: Coro<T> | Future<T>): Promise<T> {
    this.#checkClosed();
    if (this.#running) {
      throw new RuntimeError("This event loop is already running");
    }
    const target = ensureFuture(future, this);
    this.#running = true;
    try {
      await new Promise<void>((resolve) => {
        this.#stopRequested = resolve;
        target.addDoneCallback(() => resolve());
      });
    } finally {
      this.#running = false;
      this.#stopRequested = null;
    }
    if (!target.done()) {
      throw new RuntimeError("Event loop stopped before Future completed.");
    }
    return target.result();
  }

  /** Marks the loop running until {@linkcode EventLoop.stop} is called. */
  async runForever(): Promise<void> {
    this.#checkClosed();
    if (this.#running) {
      throw new RuntimeError("This event loop is already running");
    }
    this.#running = true;
    try {
      await new Promise<void>((resolve) => this.#stopRequested = resolve);
    } finally {
      this.#running = false;
      this.#stopRequested = null;
    }
  }

  /**
   * Stops `runForever()` after the callbacks already scheduled have run; a
   * `runUntilComplete()` stopped this way throws `RuntimeError`.
   */
  stop(): void {
    this.callSoon(() => this.#stopRequested?.());
  }

  /** Whether `runForever()` or `runUntilComplete()` is in progress. */
  isRunning(): boolean {
    return this.#running;
  }

  /** Whether {@linkcode EventLoop.close} was called. */
  isClosed(): boolean {
    return this.#closed;
  }

  /**
   * Closes the loop: drops pending callbacks and timers, and reports to the
   * exception handler every failed future whose error nobody retrieved.
   * Python reports those when they are garbage-collected; here it happens
   * at close, deterministically.
   */
  close(): void {
    if (this.#running) {
      throw new RuntimeError("Cannot close a running event loop");
    }
    if (this.#closed) return;
    for (const future of this.#unretrieved) {
      const task = future instanceof Task ? future : undefined;
      this.callExceptionHandler({
        message: task
          ? `Task exception was never retrieved (task "${task.getName()}")`
          : "Future exception was never retrieved",
        exception: future.exception(),
        future,
        task,
      });
    }
    this.#unretrieved.clear();
    this.#closed = true;
    this.#readyFns.length = 0;
    this.#readyArgs.length = 0;
    for (const timer of this.#scheduledTimers) TimerHandle.unschedule(timer);
    this.#scheduledTimers.length = 0;
    this.#disarmHostTimer();
    this.#timeline?.stop(this);
    if (defaultLoop === this) defaultLoop = null;
  }

  // --- Error handling ----------------------------------------------------

  /**
   * Sets the handler for errors nobody else can receive: a callback that
   * threw, a failed task nobody awaited. `null` restores the default, which
   * writes one line to stderr.
   */
  setExceptionHandler(handler: ExceptionHandler | null): void {
    if (handler !== null) {
      requireFunction(handler, "setExceptionHandler()", "handler");
    }
    this.#exceptionHandler = handler;
  }

  /** The handler set by `setExceptionHandler()`, or `null` for the default. */
  getExceptionHandler(): ExceptionHandler | null {
    return this.#exceptionHandler;
  }

  /** Passes `context` to the exception handler. */
  callExceptionHandler(context: ExceptionContext): void {
    const handler = this.#exceptionHandler;
    if (handler === null) {
      this.defaultExceptionHandler(context);
      return;
    }
    try {
      handler(this, context);
    } catch (error) {
      this.defaultExceptionHandler({
        message: "Unhandled error in exception handler",
        exception: error,
        context,
      });
    }
  }

  /** The default handler: one line on stderr with the message and error. */
  defaultExceptionHandler(context: ExceptionContext): void {
    const error = context.exception;
    const detail = error === undefined
      ? ""
      : error instanceof Error
      ? `: ${error.name}: ${error.message}`
      : `: ${String(error)}`;
    console.error(`asyncio: ${context.message}${detail}`);
  }

  /** Whether debug mode is on. */
  getDebug(): boolean {
    return this.#debug;
  }

  /** Turns debug mode on or off. */
  setDebug(enabled: boolean): void {
    this.#debug = Boolean(enabled);
  }

  // --- Networking, subprocesses and signals -----------------------------
  // (Built in its own change.)

  // --- Internals: scheduling ---------------------------------------------

  #checkClosed(): void {
    if (this.#closed) throw new RuntimeError("Event loop is closed");
  }

  #schedule<A>(step: (argument: A) => void, argument: A): void {
    this.#readyFns.push(step as Step);
    this.#readyArgs.push(argument);
    if (!this.#runScheduled) this.#scheduleRun();
  }

  #scheduleRun(): void {
    if (this.#closed) return;
    this.#runScheduled = true;
    if (performance.now() - this.#lastHostTurn < HOST_TURN_BUDGET_MS) {
      queueMicrotask(this.#runFromMicrotask);
    } else {
      setImmediate(this.#runFromHost);
    }
  }

  #runFromMicrotask = (): void => {
    taskContext.exit(this.#runOnce);
  };

  #runFromHost = (): void => {
    this.#lastHostTurn = performance.now();
    taskContext.exit(this.#runOnce);
  };

  #runOnce = (): void => {
    this.#runScheduled = false;
    if (this.#closed) return;
    const timers = this.#scheduledTimers;
    if (timers.length > 0) {
      const now = this.time();
      while (timers.length > 0 && timers[0].when() <= now) {
        const timer = this.#popTimer();
        if (!timer.cancelled()) {
          this.#readyFns.push(runHandle as Step);
          this.#readyArgs.push(timer);
        }
      }
    }
    const fns = this.#readyFns;
    const args = this.#readyArgs;
    this.#readyFns = this.#spareFns;
    this.#readyArgs = this.#spareArgs;
    const outer = loopBeingRun;
    loopBeingRun = this;
    try {
      for (let i = 0; i < fns.length; i++) {
        const argument = args[i];
        args[i] = undefined;
        (fns[i] as (argument: unknown) => void)(argument);
      }
    } finally {
      loopBeingRun = outer;
      fns.length = 0;
      args.length = 0;
      this.#spareFns = fns;
      this.#spareArgs = args;
    }
    if (this.#readyFns.length > 0) {
      if (!this.#runScheduled) this.#scheduleRun();
    } else {
      this.#afterIdle();
    }
  };

  // Called when nothing is ready: arm the host timer for the next deadline,
  // or in virtual time, check (after microtasks drain) whether to jump.
  #afterIdle(): void {
    if (this.#closed) return;
    if (this.#virtualTime) {
      if (this.#scheduledTimers.length > 0) this.#scheduleIdleCheck();
    } else {
      this.#armHostTimer();
    }
  }

  #scheduleIdleCheck(): void {
    if (this.#idleCheckScheduled || this.#closed) return;
    this.#idleCheckScheduled = true;
    setImmediate(this.#idleCheck);
  }

  #idleCheck = (): void => {
    this.#idleCheckScheduled = false;
    if (this.#closed || this.#runScheduled || this.#readyFns.length > 0) return;
    if (this.#unblockedTasks > 0 || this.#foreignWaits > 0) return;
    this.#dropCancelledTop();
    const timers = this.#scheduledTimers;
    if (timers.length === 0 || timers[0].when() === Infinity) return;
    if (timers[0].when() > this.#virtualNow) {
      this.#virtualNow = timers[0].when();
    }
    this.#lastHostTurn = performance.now();
    taskContext.exit(this.#runOnce);
  };

  // --- Internals: timers -------------------------------------------------

  #addTimer(
    when: number,
    callback: (...args: never[]) => unknown,
    args: unknown[],
  ): TimerHandle {
    this.#checkClosed();
    const timer = new TimerHandle(
      when,
      callback,
      args,
      this,
      this.#timerSequence++,
    );
    const timers = this.#scheduledTimers;
    timers.push(timer);
    this.#siftUp(timers.length - 1);
    if (timers[0] === timer && !this.#runScheduled) {
      if (this.#virtualTime) this.#scheduleIdleCheck();
      else this.#armHostTimer();
    }
    return timer;
  }

  static #earlier(a: TimerHandle, b: TimerHandle): boolean {
    const aw = a.when();
    const bw = b.when();
    return aw < bw || (aw === bw && a.sequence < b.sequence);
  }

  #siftUp(index: number): void {
    const timers = this.#scheduledTimers;
    const timer = timers[index];
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (!EventLoop.#earlier(timer, timers[parent])) break;
      timers[index] = timers[parent];
      index = parent;
    }
    timers[index] = timer;
  }

  #siftDown(index: number): void {
    const timers = this.#scheduledTimers;
    const length = timers.length;
    const timer = timers[index];
    for (;;) {
      let child = 2 * index + 1;
      if (child >= length) break;
      if (
        child + 1 < length &&
        EventLoop.#earlier(timers[child + 1], timers[child])
      ) child++;
      if (!EventLoop.#earlier(timers[child], timer)) break;
      timers[index] = timers[child];
      index = child;
    }
    timers[index] = timer;
  }

  #popTimer(): TimerHandle {
    const timers = this.#scheduledTimers;
    const top = timers[0];
    const last = timers.pop()!;
    if (timers.length > 0) {
      timers[0] = last;
      this.#siftDown(0);
    }
    TimerHandle.unschedule(top);
    if (top.cancelled()) this.#cancelledTimerCount--;
    return top;
  }

  #dropCancelledTop(): void {
    const timers = this.#scheduledTimers;
    while (timers.length > 0 && timers[0].cancelled()) this.#popTimer();
  }

  #onTimerCancelled(timer: TimerHandle): void {
    this.#cancelledTimerCount++;
    const timers = this.#scheduledTimers;
    if (
      this.#cancelledTimerCount > 64 &&
      this.#cancelledTimerCount * 2 > timers.length
    ) {
      // Most of the heap is dead: rebuild it rather than carry the garbage.
      const live = timers.filter((t) => !t.cancelled());
      for (const t of timers) if (t.cancelled()) TimerHandle.unschedule(t);
      timers.length = 0;
      for (const t of live) {
        timers.push(t);
        this.#siftUp(timers.length - 1);
      }
      this.#cancelledTimerCount = 0;
    } else if (timers[0] === timer) {
      this.#dropCancelledTop();
    } else {
      return;
    }
    if (!this.#virtualTime) this.#armHostTimer();
  }

  #armHostTimer(): void {
    this.#dropCancelledTop();
    const timers = this.#scheduledTimers;
    if (timers.length === 0) {
      this.#disarmHostTimer();
      return;
    }
    const when = timers[0].when();
    if (this.#hostTimer !== undefined && this.#hostTimerDeadline === when) {
      return;
    }
    this.#disarmHostTimer();
    this.#hostTimerDeadline = when;
    const delay = Math.min(
      MAX_HOST_TIMER_MS,
      Math.max(0, Math.ceil(when - performance.now())),
    );
    this.#hostTimer = setTimeout(this.#onHostTimer, delay);
  }

  #disarmHostTimer(): void {
    if (this.#hostTimer !== undefined) clearTimeout(this.#hostTimer);
    this.#hostTimer = undefined;
    this.#hostTimerDeadline = Infinity;
  }

  #onHostTimer = (): void => {
    this.#hostTimer = undefined;
    this.#hostTimerDeadline = Infinity;
    if (this.#runScheduled) return;
    this.#lastHostTurn = performance.now();
    taskContext.exit(this.#runOnce);
  };

  // --- Internals: what tasks are doing, for virtual time -----------------

  static {
    scheduleStep = (loop, step, argument) => loop.#schedule(step, argument);
    noteTaskStarted = (loop, task) => {
      loop.#tasks.add(task);
      loop.#unblockedTasks++;
      loop.#timeline?.record(task, "running", loop.time());
    };
    noteTaskBlocked = (loop, blocked) => {
      if (blocked) {
        if (--loop.#unblockedTasks === 0 && loop.#virtualTime) {
          loop.#scheduleIdleCheck();
        }
      } else {
        loop.#unblockedTasks++;
      }
    };
    noteTaskDone = (loop, task, wasBlocked) => {
      loop.#tasks.delete(task);
      if (!wasBlocked) noteTaskBlocked(loop, true);
      loop.#timeline?.record(task, "done", loop.time());
    };
    noteForeignWait = (loop, delta) => {
      loop.#foreignWaits += delta;
      if (loop.#foreignWaits === 0 && loop.#virtualTime) {
        loop.#scheduleIdleCheck();
      }
    };
    noteUnretrieved = (loop, future, add) => {
      if (add) loop.#unretrieved.add(future);
      else loop.#unretrieved.delete(future);
    };
    loopTimeline = (loop) => loop.#timeline;
    timerCancelled = (loop, timer) => loop.#onTimerCancelled(timer);
  }

  /** @ignore The live tasks of this loop, for {@linkcode allTasks}. */
  static tasksOf(loop: EventLoop): Set<Task<unknown>> {
    return loop.#tasks;
  }
}

/**
 * The loop running the current task or callback.
 *
 * @throws {RuntimeError} outside a task or loop callback, as in Python.
 *
 * @example
 * ```ts
 * import { getRunningLoop, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const loop = getRunningLoop();
 *   console.log(loop.time() >= 0); // true
 * });
 * ```
 */
export function getRunningLoop(): EventLoop {
  const loop = taskContext.getStore()?.getLoop() ?? loopBeingRun;
  if (loop === null) throw new RuntimeError("no running event loop");
  return loop;
}

/**
 * The running loop, or else the default loop (made on first use, real time),
 * so that code outside {@linkcode run}, such as a notebook cell, can still
 * `await sleep(1000)` or create tasks.
 *
 * @example
 * ```ts
 * import { getEventLoop } from "@aio/asyncio";
 *
 * const loop = getEventLoop();
 * loop.callSoon(() => console.log("on the default loop"));
 * ```
 */
export function getEventLoop(): EventLoop {
  const running = taskContext.getStore()?.getLoop() ?? loopBeingRun;
  if (running !== null) return running;
  if (defaultLoop === null || defaultLoop.isClosed()) {
    defaultLoop = new EventLoop();
  }
  return defaultLoop;
}

/**
 * A new event loop; the same as `new EventLoop(options)`.
 *
 * @example
 * ```ts
 * import { newEventLoop } from "@aio/asyncio";
 *
 * const loop = newEventLoop({ virtualTime: true });
 * console.log(loop.time()); // 0
 * loop.close();
 * ```
 */
export function newEventLoop(options: LoopOptions = {}): EventLoop {
  return new EventLoop(options);
}

/**
 * Makes `loop` the default loop that {@linkcode getEventLoop} returns
 * outside a running task; `null` forgets the default.
 *
 * @example
 * ```ts
 * import { getEventLoop, newEventLoop, setEventLoop } from "@aio/asyncio";
 *
 * const loop = newEventLoop({ virtualTime: true });
 * setEventLoop(loop);
 * console.log(getEventLoop() === loop); // true
 * setEventLoop(null);
 * loop.close();
 * ```
 */
export function setEventLoop(loop: EventLoop | null): void {
  if (loop !== null && !(loop instanceof EventLoop)) {
    throw new TypeError(
      `setEventLoop(): loop must be an EventLoop or null, got ${
        describeValue(loop)
      }`,
    );
  }
  defaultLoop = loop;
}

// The loop for library calls: the running one, else the default.
function currentLoop(): EventLoop {
  return getEventLoop();
}

// ---------------------------------------------------------------------------
// Futures
//
// A Future is a result that will be set later. Awaiting one (that is,
// calling its `then`) inside a task registers the task as its waiter, so
// that `task.cancel()` can reach it. The wake-up of the awaiting code is a
// step of its own on the loop (`wakeAwaiter`): if the task was cancelled in
// between, it sees CancelledError there, as asyncio's "must cancel".
// Relies on the event loop.
// ---------------------------------------------------------------------------

const PENDING = 0;
const FULFILLED = 1;
const REJECTED = 2;
const CANCELLED = 3;
type FutureState =
  | typeof PENDING
  | typeof FULFILLED
  | typeof REJECTED
  | typeof CANCELLED;

const STATE_NAMES = ["pending", "finished", "finished", "cancelled"];

// One `await` of a future: the callbacks `then` got, and the task awaiting.
class Awaiter {
  fired = false;
  constructor(
    readonly future: Future<unknown>,
    readonly task: Task<unknown> | null,
    readonly onFulfilled: ((value: unknown) => unknown) | null | undefined,
    readonly onRejected: ((reason: unknown) => unknown) | null | undefined,
    readonly resolve: (value: unknown) => void,
    readonly reject: (reason: unknown) => void,
  ) {}
}

let futureState: (future: Future<unknown>) => FutureState;
let futureValue: (future: Future<unknown>) => unknown;
let futureCancelledError: (future: Future<unknown>) => CancelledError;
let wakeAwaiter: (awaiter: Awaiter) => void;
let taskWillWait: (task: Task<unknown>, future: Future<unknown>) => void;
let taskWakes: (task: Task<unknown>, future: Future<unknown>) => string | null;

/**
 * A result that will be set later: asyncio's `Future`, awaitable with
 * `await`, `Promise.all` and the rest, since it is promise-like.
 *
 * Its done callbacks always run on the loop, never inside `setResult()`.
 * Inside a task, awaiting a future (calling its `then`) registers the task as
 * its waiter: `task.cancel()` then cancels the future. To watch a future
 * without waiting on it, use {@linkcode Future.addDoneCallback}.
 *
 * @example Bridging a callback API
 * ```ts
 * import { getRunningLoop, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const future = getRunningLoop().createFuture<string>();
 *   setTimeout(() => future.setResult("from a callback"), 10);
 *   console.log(await future);
 * });
 * ```
 */
export class Future<T = unknown> implements PromiseLike<T> {
  #loop: EventLoop;
  #state: FutureState = PENDING;
  #value: unknown = undefined;
  #cancelMessage: string | undefined = undefined;
  #callbacks: Array<DoneCallback<never> | Awaiter> | null = null;
  #retrieved = false;

  /** A pending future on `loop`, by default {@linkcode getEventLoop}'s. */
  constructor(loop?: EventLoop) {
    this.#loop = loop ?? currentLoop();
  }

  /**
   * The result. Throws the future's error if it failed, `CancelledError` if
   * it was cancelled, and `InvalidStateError` if it is not done yet.
   */
  result(): T {
    switch (this.#state) {
      case FULFILLED:
        return this.#value as T;
      case REJECTED:
        this.#markRetrieved();
        throw this.#value;
      case CANCELLED:
        throw this.#makeCancelledError();
      default:
        throw new InvalidStateError("Result is not set.");
    }
  }

  /**
   * The error the future failed with, or `null` if it succeeded. Throws
   * `CancelledError` if cancelled and `InvalidStateError` if not done.
   */
  exception(): unknown {
    switch (this.#state) {
      case FULFILLED:
        return null;
      case REJECTED:
        this.#markRetrieved();
        return this.#value;
      case CANCELLED:
        throw this.#makeCancelledError();
      default:
        throw new InvalidStateError("Exception is not set.");
    }
  }

  /** Whether the future has a result, an error, or was cancelled. */
  done(): boolean {
    return this.#state !== PENDING;
  }

  /** Whether the future was cancelled. */
  cancelled(): boolean {
    return this.#state === CANCELLED;
  }

  /** Completes the future with `value`. Throws `InvalidStateError` if done. */
  setResult(value: T): void {
    if (this.#state !== PENDING) {
      throw new InvalidStateError(
        `invalid state: the future is already ${STATE_NAMES[this.#state]}`,
      );
    }
    this.#value = value;
    this.#complete(FULFILLED);
  }

  /** Fails the future with `error`. Throws `InvalidStateError` if done. */
  setException(error: unknown): void {
    if (this.#state !== PENDING) {
      throw new InvalidStateError(
        `invalid state: the future is already ${STATE_NAMES[this.#state]}`,
      );
    }
    this.#value = error;
    this.#complete(REJECTED);
    if (!this.#retrieved) noteUnretrieved(this.#loop, this, true);
  }

  /**
   * Cancels the future, with an optional message for the `CancelledError`.
   * Returns `false` if it was already done.
   */
  cancel(msg?: string): boolean {
    if (this.#state !== PENDING) return false;
    this.#cancelMessage = msg;
    this.#complete(CANCELLED);
    return true;
  }

  /**
   * Calls `callback(future)` on the loop once the future is done (at once
   * on the next step if it already is).
   */
  addDoneCallback(callback: DoneCallback<T>): void {
    requireFunction(callback, "addDoneCallback()", "callback");
    if (this.#state !== PENDING) {
      this.#loop.callSoon(callback, this);
    } else {
      (this.#callbacks ??= []).push(callback);
    }
  }

  /** Removes every registration of `callback`; returns how many there were. */
  removeDoneCallback(callback: DoneCallback<T>): number {
    const callbacks = this.#callbacks;
    if (callbacks === null) return 0;
    const kept = callbacks.filter((entry) => entry !== callback);
    const removed = callbacks.length - kept.length;
    if (removed > 0) this.#callbacks = kept;
    return removed;
  }

  /** The loop the future belongs to. */
  getLoop(): EventLoop {
    return this.#loop;
  }

  /**
   * Makes the future awaitable. Inside a task, this registers the task as
   * the future's waiter (that is what `await` does), so cancelling the task
   * cancels the future.
   */
  then<R1 = T, R2 = never>(
    onfulfilled?: ((value: T) => R1 | PromiseLike<R1>) | null,
    onrejected?: ((reason: unknown) => R2 | PromiseLike<R2>) | null,
  ): Promise<R1 | R2> {
    const { promise, resolve, reject } = Promise.withResolvers<R1 | R2>();
    const task = taskContext.getStore() ?? null;
    const awaiter = new Awaiter(
      this as Future<unknown>,
      task,
      onfulfilled as ((value: unknown) => unknown) | null | undefined,
      onrejected,
      resolve as (value: unknown) => void,
      reject,
    );
    this.#markRetrieved();
    if (task === (this as Future<unknown>)) {
      awaiter.fired = true;
      reject(new RuntimeError(`Task cannot await on itself: ${task}`));
      return promise;
    }
    if (this.#state !== PENDING) {
      scheduleStep(this.#loop, wakeAwaiter, awaiter);
    } else {
      (this.#callbacks ??= []).push(awaiter);
    }
    if (task !== null) taskWillWait(task, this as Future<unknown>);
    return promise;
  }

  /** Like `Promise.prototype.catch`. */
  catch<R = never>(
    onrejected?: ((reason: unknown) => R | PromiseLike<R>) | null,
  ): Promise<T | R> {
    return this.then(undefined, onrejected);
  }

  /** Like `Promise.prototype.finally`. */
  finally(onfinally?: (() => void) | null): Promise<T> {
    return this.then().finally(onfinally);
  }

  /** `"Future"`, or `"Task"`: so that a future passes for a promise. */
  get [Symbol.toStringTag](): string {
    return this.constructor.name;
  }

  /** `<Future pending>`, `<Future finished result=…>`, and so on. */
  toString(): string {
    return `<${this.constructor.name} ${this.#describeState()}>`;
  }

  /** @ignore The state part of `toString()`, for subclasses. */
  protected describeState(): string {
    return this.#describeState();
  }

  #describeState(): string {
    switch (this.#state) {
      case FULFILLED:
        return `finished result=${describeValue(this.#value)}`;
      case REJECTED:
        return `finished exception=${describeValue(this.#value)}`;
      default:
        return STATE_NAMES[this.#state];
    }
  }

  #markRetrieved(): void {
    if (this.#retrieved) return;
    this.#retrieved = true;
    if (this.#state === REJECTED) noteUnretrieved(this.#loop, this, false);
  }

  #makeCancelledError(): CancelledError {
    return new CancelledError(this.#cancelMessage);
  }

  #complete(state: FutureState): void {
    this.#state = state;
    const callbacks = this.#callbacks;
    if (callbacks === null) return;
    this.#callbacks = null;
    for (const callback of callbacks) {
      if (callback instanceof Awaiter) {
        scheduleStep(this.#loop, wakeAwaiter, callback);
      } else {
        this.#loop.callSoon(callback as DoneCallback<unknown>, this);
      }
    }
  }

  static {
    futureState = (future) => future.#state;
    futureValue = (future) => future.#value;
    futureCancelledError = (future) => future.#makeCancelledError();
    wakeAwaiter = (awaiter) => {
      if (awaiter.fired) return;
      awaiter.fired = true;
      const future = awaiter.future;
      let state = future.#state;
      let value = future.#value;
      if (awaiter.task !== null) {
        const cancelMessage = taskWakes(awaiter.task, future);
        if (cancelMessage !== null) {
          // Must-cancel: the task was cancelled after its future settled but
          // before it could resume. It sees CancelledError here, so that
          // whatever the future handed it can be passed on, not lost.
          state = REJECTED;
          value = new CancelledError(cancelMessage || undefined);
        }
      }
      if (state === CANCELLED) {
        state = REJECTED;
        value = future.#makeCancelledError();
      }
      const handler = state === FULFILLED
        ? awaiter.onFulfilled
        : awaiter.onRejected;
      if (typeof handler !== "function") {
        if (state === FULFILLED) awaiter.resolve(value);
        else awaiter.reject(value);
        return;
      }
      try {
        awaiter.resolve(handler(value));
      } catch (error) {
        awaiter.reject(error);
      }
    };
  }
}

/**
 * Whether `value` is a {@linkcode Future} (a {@linkcode Task} is one too).
 *
 * @example
 * ```ts
 * import { isFuture, newEventLoop } from "@aio/asyncio";
 *
 * const loop = newEventLoop();
 * console.log(isFuture(loop.createFuture()), isFuture(Promise.resolve())); // true false
 * loop.close();
 * ```
 */
export function isFuture(value: unknown): value is Future<unknown> {
  return value instanceof Future;
}

/**
 * A future that follows a foreign promise-like, so it can be awaited in a
 * cancellable way: cancelling the future stops the waiting, though the
 * foreign work itself goes on (pass `task.signal` to it to stop it too).
 * Under virtual time, the clock holds still while a wrapped promise is
 * pending.
 *
 * @example
 * ```ts
 * import { run, waitFor, wrapFuture } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const slow = new Promise((resolve) => setTimeout(resolve, 50, "late"));
 *   console.log(await waitFor(wrapFuture(slow), 1000)); // "late"
 * });
 * ```
 */
export function wrapFuture<T>(
  promise: PromiseLike<T>,
  loop?: EventLoop,
): Future<T> {
  if (promise instanceof Future) return promise as Future<T>;
  if (!isThenable(promise)) {
    throw new TypeError(
      `wrapFuture(): promise must be promise-like, got ${
        describeValue(promise)
      }`,
    );
  }
  const owner = loop ?? currentLoop();
  const future = new Future<T>(owner);
  noteForeignWait(owner, 1);
  let counted = true;
  const settled = () => {
    if (counted) {
      counted = false;
      noteForeignWait(owner, -1);
    }
  };
  future.addDoneCallback(settled);
  // Called outside any task, so that no task registers as waiting on it.
  taskContext.exit(() =>
    promise.then(
      (value) => {
        settled();
        if (!future.done() && !owner.isClosed()) future.setResult(value);
      },
      (error) => {
        settled();
        if (!future.done() && !owner.isClosed()) future.setException(error);
      },
    )
  );
  return future;
}

/**
 * Turns any awaitable into a {@linkcode Future}: a future stays itself, a
 * coroutine function becomes a {@linkcode Task}, a promise is wrapped with
 * {@linkcode wrapFuture}.
 *
 * @example
 * ```ts
 * import { ensureFuture, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const task = ensureFuture(() => sleep(10, "done"));
 *   console.log(await task); // "done"
 * });
 * ```
 */
export function ensureFuture<T>(
  aw: Coro<T> | Future<T>,
  loop?: EventLoop,
): Future<T> {
  if (aw instanceof Future) return aw;
  requireCoro(aw, "ensureFuture()", "aw");
  if (typeof aw === "function") {
    return (loop ?? currentLoop()).createTask(aw);
  }
  return wrapFuture(aw, loop);
}

// ---------------------------------------------------------------------------
// Tasks
//
// A Task runs a coroutine function inside `taskContext`, so every library
// future the coroutine awaits knows the task waiting on it. `cancel()`
// cancels that future (its waiter), or, when the task is between awaits,
// marks it to be cancelled at its next one. `signal` carries the request to
// foreign APIs. Relies on futures and the loop.
// ---------------------------------------------------------------------------

/** Options for {@linkcode createTask}. */
export interface TaskOptions {
  /** The task's name, for messages; default `Task-N`. */
  name?: string;
  /**
   * Start the coroutine at once, inside `createTask()`, up to its first
   * `await`, rather than on the loop's next step (asyncio's eager tasks).
   */
  eagerStart?: boolean;
}

let taskCounter = 0;

/**
 * A coroutine running concurrently, as asyncio's `Task`: it is a
 * {@linkcode Future} of the coroutine's result, so awaiting it waits for the
 * coroutine to finish.
 *
 * Cancelling it (`task.cancel()`) throws `CancelledError` into the coroutine
 * at the library `await` it is blocked on (a sleep, a queue, a lock, a future,
 * another task), or at its next one. The coroutine may catch it and clean up;
 * `task.signal` is aborted at the same moment, for foreign APIs like `fetch`.
 *
 * @example
 * ```ts
 * import { CancelledError, createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const task = createTask(async () => {
 *     try {
 *       await sleep(60_000);
 *     } finally {
 *       console.log("cleaning up");
 *     }
 *   }, { name: "sleeper" });
 *   await sleep(10);
 *   task.cancel();
 *   await task.catch((e) => console.log(e instanceof CancelledError)); // true
 * });
 * ```
 */
export class Task<T = unknown> extends Future<T> {
  #coro: Coro<T> | null;
  #name: string;
  #loop: EventLoop;
  #waitingOn: Future<unknown> | null = null;
  #pendingWaits = 0;
  #started = false;
  #mustCancel = false;
  #cancelRequests = 0;
  #cancelMessage: string | undefined = undefined;
  #abortController: AbortController | null = null;

  /**
   * A task running `coro` on `options.loop` (default: the running loop, or
   * the default loop). Prefer {@linkcode createTask}.
   */
  constructor(coro: Coro<T>, options: TaskOptions & { loop?: EventLoop } = {}) {
    requireCoro(coro, "createTask()", "coro");
    const loop = options.loop ?? currentLoop();
    super(loop);
    this.#loop = loop;
    this.#name = options.name === undefined
      ? `Task-${++taskCounter}`
      : String(options.name);
    // A promise handed over whole can only be stopped being waited for: wrap
    // it, so that cancelling the task at least ends the wait.
    this.#coro = typeof coro === "function" ? coro : wrapFuture(coro, loop);
    loopTimeline(loop)?.record(this, "created", loop.time());
    if (options.eagerStart) Task.#step(this);
    else scheduleStep(loop, Task.#step, this);
  }

  /**
   * Asks the task to stop: `CancelledError` is thrown into its coroutine at
   * the await it is blocked on, or at its next one. Returns `false` if the
   * task is already done. The coroutine may catch the error and go on; it is
   * a request, not a kill.
   */
  override cancel(msg?: string): boolean {
    if (this.done()) return false;
    this.#cancelRequests++;
    const controller = this.#abortController;
    if (controller !== null && !controller.signal.aborted) {
      controller.abort(new CancelledError(msg));
    }
    if (this.#waitingOn !== null && this.#waitingOn.cancel(msg)) {
      // The waiter delivers the CancelledError. Keep #waitingOn: it may be a
      // task that swallows the cancellation, and we may cancel it again.
      return true;
    }
    this.#mustCancel = true;
    this.#cancelMessage = msg;
    return true;
  }

  /** How many cancellation requests are pending (not taken back). */
  cancelling(): number {
    return this.#cancelRequests;
  }

  /**
   * Takes back one cancellation request and returns how many remain. At
   * zero, a cancellation not yet delivered is dropped, and `signal` is
   * renewed (read it again).
   */
  uncancel(): number {
    if (this.#cancelRequests > 0) {
      this.#cancelRequests--;
      if (this.#cancelRequests === 0) {
        this.#mustCancel = false;
        if (this.#abortController?.signal.aborted) this.#abortController = null;
      }
    }
    return this.#cancelRequests;
  }

  /**
   * Aborted when the task is asked to cancel; pass it to `fetch` and other
   * APIs that take an `AbortSignal`. Its reason is the `CancelledError`.
   */
  get signal(): AbortSignal {
    let controller = this.#abortController;
    if (controller === null) {
      controller = this.#abortController = new AbortController();
      if (this.#cancelRequests > 0 || this.cancelled()) {
        controller.abort(new CancelledError(this.#cancelMessage));
      }
    }
    return controller.signal;
  }

  /** The task's name. */
  getName(): string {
    return this.#name;
  }

  /** Renames the task. */
  setName(name: string): void {
    this.#name = String(name);
  }

  /** Tasks cannot be completed from outside: throws `RuntimeError`. */
  override setResult(_value: T): void {
    throw new RuntimeError("Task does not support setResult()");
  }

  /** Tasks cannot be completed from outside: throws `RuntimeError`. */
  override setException(_error: unknown): void {
    throw new RuntimeError("Task does not support setException()");
  }

  /** `<Task pending name='Task-1'>` and the like. */
  override toString(): string {
    return `<Task ${this.describeState()} name='${this.#name}'>`;
  }

  // The first step: run the coroutine function inside the task's context.
  static #step(task: Task<unknown>): void {
    const loop = task.#loop;
    if (task.#mustCancel) {
      // Cancelled before it ever ran: its function is never called.
      task.#mustCancel = false;
      task.#coro = null;
      Future.prototype.cancel.call(task, task.#cancelMessage);
      noteTaskDone(loop, task, true);
      return;
    }
    task.#started = true;
    noteTaskStarted(loop, task);
    taskContext.run(task, Task.#startCoro, task);
  }

  static #startCoro(task: Task<unknown>): void {
    const coro = task.#coro!;
    task.#coro = null;
    let result: unknown;
    try {
      result = typeof coro === "function" ? coro() : coro;
    } catch (error) {
      task.#finish(REJECTED, error);
      return;
    }
    if (isThenable(result)) {
      result.then(
        (value) => task.#finish(FULFILLED, value),
        (error) => task.#finish(REJECTED, error),
      );
    } else {
      task.#finish(FULFILLED, result);
    }
  }

  #finish(state: typeof FULFILLED | typeof REJECTED, value: unknown): void {
    if (this.done()) return;
    const blocked = this.#pendingWaits > 0;
    if (state === REJECTED && value instanceof CancelledError) {
      Future.prototype.cancel.call(this, value.message || undefined);
    } else if (this.#mustCancel && state === FULFILLED) {
      // Cancelled right before the coroutine returned: asyncio ends such a
      // task cancelled, not with its result.
      this.#mustCancel = false;
      Future.prototype.cancel.call(this, this.#cancelMessage);
    } else if (state === FULFILLED) {
      Future.prototype.setResult.call(this, value);
    } else {
      Future.prototype.setException.call(this, value);
    }
    this.#waitingOn = null;
    noteTaskDone(this.#loop, this, blocked);
  }

  static {
    taskWillWait = (task, future) => {
      task.#waitingOn = future;
      if (task.#pendingWaits++ === 0 && task.#started && !task.done()) {
        noteTaskBlocked(task.#loop, true);
      }
      loopTimeline(task.#loop)?.record(task, "waiting", task.#loop.time());
      if (task.#mustCancel && future.cancel(task.#cancelMessage)) {
        task.#mustCancel = false;
      }
    };
    taskWakes = (task, future) => {
      if (task.#waitingOn === future) task.#waitingOn = null;
      if (task.done()) return null;
      if (--task.#pendingWaits === 0) noteTaskBlocked(task.#loop, false);
      loopTimeline(task.#loop)?.record(task, "running", task.#loop.time());
      if (!task.#mustCancel) return null;
      task.#mustCancel = false;
      return task.#cancelMessage ?? "";
    };
  }
}

/**
 * Runs `coro` concurrently as a {@linkcode Task} and returns the task.
 *
 * Pass a **function** (`createTask(() => fetchAll())`): it is called inside
 * the task, on the loop's next step, so the task owns every await in it.
 * With `eagerStart: true` it runs at once, up to its first await. Outside a
 * running loop the task goes on the default loop ({@linkcode getEventLoop}).
 *
 * @example
 * ```ts
 * import { createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const task = createTask(() => sleep(100, 42), { name: "answer" });
 *   console.log(task.getName(), await task); // answer 42
 * });
 * ```
 */
export function createTask<T>(
  coro: Coro<T>,
  options: TaskOptions = {},
): Task<T> {
  requireCoro(coro, "createTask()", "coro");
  return currentLoop().createTask(coro, options);
}

/**
 * The task running the current code, or `null` outside any task.
 *
 * @example
 * ```ts
 * import { currentTask, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   console.log(currentTask()?.getName()); // Task-1
 * });
 * ```
 */
export function currentTask(): Task<unknown> | null {
  return taskContext.getStore() ?? null;
}

/**
 * The tasks of the running loop (or the default loop) that are not done.
 *
 * @example
 * ```ts
 * import { allTasks, createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   createTask(() => sleep(10));
 *   await sleep(0);
 *   console.log(allTasks().size); // 2: main and the sleeper
 * });
 * ```
 */
export function allTasks(): Set<Task<unknown>> {
  return new Set(EventLoop.tasksOf(currentLoop()));
}

// A future subclass whose cancellation also frees its timer, so that a
// cancelled sleep leaves no host timer behind.
class SleepFuture<T> extends Future<T> {
  timer: TimerHandle | null = null;
  override cancel(msg?: string): boolean {
    if (!super.cancel(msg)) return false;
    this.timer?.cancel();
    return true;
  }
}

function finishSleep<T>(future: SleepFuture<T>, value: T): void {
  future.timer = null;
  if (!future.done()) future.setResult(value);
}

/**
 * Suspends the current task for `ms` milliseconds, then resolves to `value`.
 * `sleep(0)` yields to the other tasks for one loop step. Negative means 0.
 *
 * It returns a {@linkcode Future} (which has `then`, `catch` and `finally`,
 * so it passes for a `Promise`), and cancelling the task cancels the sleep.
 *
 * @example
 * ```ts
 * import { run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   console.log(await sleep(100, "rested")); // "rested"
 * });
 * ```
 */
export function sleep<T = void>(ms: number, value?: T): Promise<T> {
  requireMilliseconds(ms, "sleep()", "ms");
  const loop = currentLoop();
  const future = new SleepFuture<T>(loop);
  if (ms <= 0) {
    // Already done: awaiting it costs exactly one loop step.
    future.setResult(value as T);
  } else {
    future.timer = loop.callLater(ms, finishSleep, future, value as T);
  }
  return future as unknown as Promise<T>;
}

// ---------------------------------------------------------------------------
// Runners
//
// `run()` and `Runner`: a fresh loop for the main coroutine, and an orderly
// end: cancel what is left, let its `finally` blocks run, close the loop.
// Relies on the loop and tasks.
// ---------------------------------------------------------------------------

/** Options for {@linkcode run} and {@linkcode Runner}. */
export type RunOptions = LoopOptions;

async function cancelAllTasks(loop: EventLoop): Promise<void> {
  const leftover = [...EventLoop.tasksOf(loop)].filter((task) => !task.done());
  if (leftover.length === 0) return;
  for (const task of leftover) task.cancel();
  await loop.runUntilComplete(gather(leftover, { returnExceptions: true }));
  for (const task of leftover) {
    if (task.cancelled()) continue;
    const error = task.exception();
    if (error !== null) {
      loop.callExceptionHandler({
        message: "unhandled exception during run() shutdown",
        exception: error,
        task,
      });
    }
  }
}

/**
 * Runs coroutines on one loop that it makes on first use and closes at the
 * end: asyncio's `Runner`. Use it to run several top-level coroutines on the
 * same loop; `await using` closes it.
 *
 * @example
 * ```ts
 * import { Runner, sleep } from "@aio/asyncio";
 *
 * await using runner = new Runner({ virtualTime: true });
 * await runner.run(() => sleep(1000));
 * await runner.run(() => sleep(1000));
 * console.log(runner.getLoop().time()); // 2000
 * ```
 */
export class Runner {
  #options: RunOptions;
  #loop: EventLoop | null = null;
  #closed = false;

  /** A runner whose loop gets `options`. */
  constructor(options: RunOptions = {}) {
    this.#options = { ...options };
  }

  /** Runs `coro` as a task on the runner's loop until it is done. */
  async run<T>(coro: Coro<T>): Promise<T> {
    if (taskContext.getStore() !== undefined) {
      throw new RuntimeError(
        "Runner.run() cannot be called from a running event loop",
      );
    }
    requireCoro(coro, "Runner.run()", "coro");
    return await this.getLoop().runUntilComplete(coro);
  }

  /** The runner's loop, made on first use. */
  getLoop(): EventLoop {
    if (this.#closed) throw new RuntimeError("Runner is closed");
    return this.#loop ??= new EventLoop(this.#options);
  }

  /**
   * Cancels the tasks still running, waits for them to finish, and closes
   * the loop.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    const loop = this.#loop;
    this.#closed = true;
    if (loop === null) return;
    try {
      await cancelAllTasks(loop);
    } finally {
      loop.close();
    }
  }

  /** Closes the runner: `await using runner = new Runner()`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Runs `main` on a new event loop and returns its result: asyncio's
 * `run()`, the entry point of a program. When `main` is done, the tasks it
 * left running are cancelled and awaited, so their `finally` blocks run, and
 * the loop is closed.
 *
 * @throws {RuntimeError} when called from inside a running task.
 *
 * @example
 * ```ts
 * import { run, sleep } from "@aio/asyncio";
 *
 * const answer = await run(async () => {
 *   await sleep(3_600_000); // an hour, in an instant
 *   return 42;
 * }, { virtualTime: true });
 * console.log(answer); // 42
 * ```
 */
export async function run<T>(
  main: Coro<T>,
  options: RunOptions = {},
): Promise<T> {
  if (taskContext.getStore() !== undefined) {
    throw new RuntimeError("run() cannot be called from a running event loop");
  }
  requireCoro(main, "run()", "main");
  const runner = new Runner(options);
  try {
    return await runner.run(main);
  } finally {
    await runner.close();
  }
}

// ---------------------------------------------------------------------------
// Waiting and timeouts
//
// gather, wait, waitFor, asCompleted, shield, timeout: ways to wait on
// several things, or on one with a deadline. Each is built from futures and
// done callbacks, as in asyncio. Relies on futures, tasks and the loop.
// ---------------------------------------------------------------------------

/** Options for {@linkcode gather}. */
export interface GatherOptions {
  /** Return errors (and cancellations) as values instead of throwing. */
  returnExceptions?: boolean;
}

/** The result type of `gather(aws)`: one slot per awaitable, in order. */
export type GatherResult<T extends readonly unknown[]> = {
  -readonly [K in keyof T]: T[K];
};

/** The result type of `gather(aws, { returnExceptions: true })`. */
export type GatherSettled<T extends readonly unknown[]> = {
  -readonly [K in keyof T]: T[K] | Error;
};

// The future `gather` returns: cancelling it cancels every child.
class GatheringFuture<T> extends Future<T> {
  #children: Future<unknown>[];
  #cancelRequested = false;
  #cancelMessage: string | undefined = undefined;

  constructor(
    children: Future<unknown>[],
    returnExceptions: boolean,
    loop: EventLoop,
  ) {
    super(loop);
    this.#children = children;
    const unique = new Set(children);
    let finished = 0;
    const onChildDone = (child: Future<unknown>) => {
      finished++;
      if (this.done()) {
        if (futureState(child) === REJECTED) child.exception();
        return;
      }
      if (!returnExceptions) {
        const state = futureState(child);
        if (state === CANCELLED) {
          super.setException(futureCancelledError(child));
          return;
        }
        if (state === REJECTED) {
          super.setException(child.exception());
          return;
        }
      }
      if (finished === unique.size) {
        if (this.#cancelRequested) {
          super.setException(new CancelledError(this.#cancelMessage));
          return;
        }
        const results = children.map((child) => {
          const state = futureState(child);
          if (state === CANCELLED) return futureCancelledError(child);
          if (state === REJECTED) return child.exception();
          return futureValue(child);
        });
        super.setResult(results as T);
      }
    };
    for (const child of unique) child.addDoneCallback(onChildDone);
  }

  override cancel(msg?: string): boolean {
    if (this.done()) return false;
    let cancelledAny = false;
    for (const child of this.#children) {
      if (child.cancel(msg)) cancelledAny = true;
    }
    if (cancelledAny) {
      this.#cancelRequested = true;
      this.#cancelMessage = msg;
    }
    return cancelledAny;
  }
}

/**
 * Runs the awaitables concurrently and resolves to their results, in the
 * order given: asyncio's `gather()`. Coroutine functions become tasks.
 *
 * The first error is thrown at once, while the other children keep running;
 * with `returnExceptions: true` errors come back as values. Cancelling the
 * returned future cancels every child that is not done.
 *
 * @example
 * ```ts
 * import { gather, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const [a, b] = await gather([() => sleep(20, "a"), () => sleep(10, 1)]);
 *   console.log(a, b); // "a" 1
 * });
 * ```
 */
export function gather<T extends readonly unknown[]>(
  aws: readonly [...{ [K in keyof T]: Coro<T[K]> | Future<T[K]> }],
  options?: { returnExceptions?: false },
): Future<GatherResult<T>>;
/** With `returnExceptions: true`, errors are returned in their slots. */
export function gather<T extends readonly unknown[]>(
  aws: readonly [...{ [K in keyof T]: Coro<T[K]> | Future<T[K]> }],
  options: { returnExceptions: true },
): Future<GatherSettled<T>>;
/** Any iterable of awaitables. */
export function gather<T>(
  aws: Iterable<Coro<T> | Future<T>>,
  options?: GatherOptions,
): Future<T[]>;
export function gather(
  aws: Iterable<Coro<unknown> | Future<unknown>>,
  options: GatherOptions = {},
): Future<unknown[]> {
  if (aws === null || typeof aws !== "object" || !(Symbol.iterator in aws)) {
    throw new TypeError(
      `gather(): aws must be an array of awaitables, got ${describeValue(aws)}`,
    );
  }
  const list = [...aws];
  list.forEach((aw, i) => {
    if (!(aw instanceof Future)) requireCoro(aw, "gather()", `aws[${i}]`);
  });
  const loop = currentLoop();
  const children = list.map((aw) => ensureFuture(aw, loop));
  if (children.length === 0) {
    const empty = new Future<unknown[]>(loop);
    empty.setResult([]);
    return empty;
  }
  return new GatheringFuture<unknown[]>(
    children,
    options.returnExceptions === true,
    children[0].getLoop(),
  );
}

/** Wait until the first awaitable is done: see {@linkcode wait}. */
export const FIRST_COMPLETED = "FIRST_COMPLETED";
/** Wait until one fails, or all are done: see {@linkcode wait}. */
export const FIRST_EXCEPTION = "FIRST_EXCEPTION";
/** Wait until all are done: see {@linkcode wait}. */
export const ALL_COMPLETED = "ALL_COMPLETED";

/** Options for {@linkcode wait}. */
export interface WaitOptions {
  /** Give up after this many ms; nothing is cancelled. */
  timeout?: number | null;
  /** When to return; default `ALL_COMPLETED`. */
  returnWhen?:
    | typeof FIRST_COMPLETED
    | typeof FIRST_EXCEPTION
    | typeof ALL_COMPLETED;
}

/**
 * Waits for the futures or tasks until the `returnWhen` condition or the
 * timeout, and resolves to `[done, pending]`, two sets. Nothing is
 * cancelled and no error is thrown for a failed one: look at `done`.
 *
 * @example
 * ```ts
 * import { createTask, FIRST_COMPLETED, run, sleep, wait } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const fast = createTask(() => sleep(10));
 *   const slow = createTask(() => sleep(1000));
 *   const [done, pending] = await wait([fast, slow], { returnWhen: FIRST_COMPLETED });
 *   console.log(done.has(fast), pending.has(slow)); // true true
 *   slow.cancel();
 * });
 * ```
 */
export async function wait<T>(
  aws: Iterable<Future<T>>,
  options: WaitOptions = {},
): Promise<[Set<Future<T>>, Set<Future<T>>]> {
  const futures = new Set(aws);
  if (futures.size === 0) {
    throw new RangeError("wait(): aws is empty: give it futures or tasks");
  }
  for (const future of futures) {
    if (!(future instanceof Future)) {
      throw new TypeError(
        `wait(): aws must hold futures or tasks (wrap a coroutine with createTask()), got ${
          describeValue(future)
        }`,
      );
    }
  }
  const timeoutMs = requireOptionalMilliseconds(
    options.timeout,
    "wait()",
    "options.timeout",
  );
  const returnWhen = options.returnWhen ?? ALL_COMPLETED;
  if (
    returnWhen !== FIRST_COMPLETED && returnWhen !== FIRST_EXCEPTION &&
    returnWhen !== ALL_COMPLETED
  ) {
    throw new RangeError(
      `wait(): options.returnWhen must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, got ${
        describeValue(returnWhen)
      }`,
    );
  }
  const loop = currentLoop();
  const waiter = loop.createFuture<void>();
  const release = () => {
    if (!waiter.done()) waiter.setResult();
  };
  const timer = timeoutMs === null ? null : loop.callLater(timeoutMs, release);
  let remaining = futures.size;
  const onDone = (future: Future<T>) => {
    remaining--;
    if (
      remaining <= 0 || returnWhen === FIRST_COMPLETED ||
      (returnWhen === FIRST_EXCEPTION && futureState(future) === REJECTED)
    ) {
      release();
    }
  };
  for (const future of futures) future.addDoneCallback(onDone);
  try {
    await waiter;
  } finally {
    timer?.cancel();
    for (const future of futures) future.removeDoneCallback(onDone);
  }
  const done = new Set<Future<T>>();
  const pending = new Set<Future<T>>();
  for (const future of futures) (future.done() ? done : pending).add(future);
  return [done, pending];
}

/**
 * Waits for `aw` with a deadline of `ms` (or none, for `null`): on timeout
 * it cancels `aw`, waits until it has really finished, then throws
 * {@linkcode TimeoutError}. If `aw` suppresses the cancellation and returns a
 * value, that value is returned. With `ms <= 0`, a coroutine function is
 * never started.
 *
 * @example
 * ```ts
 * import { run, sleep, TimeoutError, waitFor } from "@aio/asyncio";
 *
 * await run(async () => {
 *   console.log(await waitFor(() => sleep(10, "quick"), 1000)); // "quick"
 *   await waitFor(() => sleep(5000), 100).catch((e) =>
 *     console.log(e instanceof TimeoutError) // true
 *   );
 * });
 * ```
 */
export async function waitFor<T>(
  aw: Coro<T> | Future<T>,
  ms: number | null,
): Promise<T> {
  if (!(aw instanceof Future)) requireCoro(aw, "waitFor()", "aw");
  const limit = requireOptionalMilliseconds(ms, "waitFor()", "ms");
  if (limit !== null && limit <= 0) {
    if (typeof aw === "function") throw new TimeoutError();
    const future = ensureFuture(aw);
    if (future.done()) return future.result();
    await cancelAndWait(future);
    throw new TimeoutError();
  }
  const inner = (): PromiseLike<T> =>
    typeof aw === "function"
      ? aw()
      : aw instanceof Future
      ? aw
      : wrapFuture(aw);
  if (limit === null) return await inner();
  return await timeout(limit, inner);
}

async function cancelAndWait(future: Future<unknown>): Promise<void> {
  const waiter = future.getLoop().createFuture<void>();
  const release = () => {
    if (!waiter.done()) waiter.setResult();
  };
  future.addDoneCallback(release);
  try {
    future.cancel();
    // Wait even if we are cancelled meanwhile: the work must really end.
    for (;;) {
      try {
        await waiter;
        return;
      } catch (error) {
        if (!(error instanceof CancelledError) || future.done()) throw error;
      }
    }
  } finally {
    future.removeDoneCallback(release);
  }
}

/** Options for {@linkcode asCompleted}. */
export interface AsCompletedOptions {
  /** Throw `TimeoutError` from the iteration after this many ms. */
  timeout?: number | null;
}

/**
 * What {@linkcode asCompleted} returns: iterate it with `for await` to get
 * each future or task as it completes, or with a plain `for` to get
 * promises of the results, in completion order.
 */
export interface AsCompleted<T>
  extends AsyncIterable<Future<T>>, Iterable<Promise<T>> {}

/**
 * Yields the given futures and tasks in the order they complete (Python
 * 3.13 semantics: the original objects; coroutine functions become tasks).
 * With a timeout, the iteration throws `TimeoutError` when it runs out.
 *
 * @example
 * ```ts
 * import { asCompleted, createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const slow = createTask(() => sleep(20, "slow"));
 *   const fast = createTask(() => sleep(10, "fast"));
 *   for await (const task of asCompleted([slow, fast])) {
 *     console.log(await task); // "fast", then "slow"
 *   }
 * });
 * ```
 */
export function asCompleted<T>(
  aws: Iterable<Coro<T> | Future<T>>,
  options: AsCompletedOptions = {},
): AsCompleted<T> {
  const timeoutMs = requireOptionalMilliseconds(
    options.timeout,
    "asCompleted()",
    "options.timeout",
  );
  const loop = currentLoop();
  const todo = new Set([...aws].map((aw) => ensureFuture(aw, loop)));
  let remaining = todo.size;
  const completed: Future<T>[] = [];
  let waiter: Future<void> | null = null;
  let timedOut = false;
  const wake = () => {
    if (waiter !== null && !waiter.done()) waiter.setResult();
  };
  const onDone = (future: Future<T>) => {
    if (!todo.delete(future)) return;
    completed.push(future);
    wake();
  };
  for (const future of todo) future.addDoneCallback(onDone);
  const timer = timeoutMs === null || todo.size === 0 ? null : loop.callLater(
    timeoutMs,
    () => {
      timedOut = true;
      for (const future of todo) future.removeDoneCallback(onDone);
      wake();
    },
  );
  // Boxed, because an async function would unwrap a Future it returns.
  const next = async (): Promise<{ future: Future<T> } | null> => {
    if (remaining === 0) return null;
    while (completed.length === 0) {
      if (timedOut) throw new TimeoutError();
      waiter = loop.createFuture<void>();
      await waiter;
    }
    remaining--;
    if (remaining === 0) timer?.cancel();
    return { future: completed.shift()! };
  };
  return {
    [Symbol.asyncIterator]() {
      return {
        async next(): Promise<IteratorResult<Future<T>>> {
          const box = await next();
          return box === null
            ? { done: true, value: undefined }
            : { done: false, value: box.future };
        },
      };
    },
    *[Symbol.iterator]() {
      for (let i = todo.size + completed.length; i > 0; i--) {
        yield next().then((box) => box!.future.result());
      }
    },
  };
}

/**
 * Protects `aw` from cancellation: cancelling the task that awaits the
 * returned future cancels only that wait, while the inner work keeps running
 * to the end.
 *
 * @example
 * ```ts
 * import { createTask, run, shield, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const save = createTask(() => sleep(50, "saved"));
 *   const impatient = createTask(() => shield(save));
 *   await sleep(10);
 *   impatient.cancel();
 *   console.log(await save); // "saved": the inner task was not cancelled
 * });
 * ```
 */
export function shield<T>(aw: Coro<T> | Future<T>): Future<T> {
  const inner = ensureFuture(aw);
  if (inner.done()) return inner;
  const outer = inner.getLoop().createFuture<T>();
  const onInnerDone = (future: Future<T>) => {
    if (outer.done()) {
      if (futureState(future) === REJECTED) future.exception();
      return;
    }
    copyOutcome(future, outer);
  };
  inner.addDoneCallback(onInnerDone);
  outer.addDoneCallback(() => {
    if (!inner.done()) inner.removeDoneCallback(onInnerDone);
  });
  return outer;
}

function copyOutcome<T>(source: Future<T>, target: Future<T>): void {
  switch (futureState(source)) {
    case CANCELLED:
      target.cancel(futureCancelledError(source).message || undefined);
      break;
    case REJECTED:
      target.setException(source.exception());
      break;
    default:
      target.setResult(futureValue(source) as T);
  }
}

// Runs `scope` in a new task when called outside any task, so that scopes
// that must cancel "the current task" also work at a notebook's top level.
function inTask<T>(scope: (task: Task<unknown>) => Promise<T>): Promise<T> {
  const task = taskContext.getStore();
  if (task !== undefined) return scope(task);
  return currentLoop().createTask(() =>
    scope(currentTask()!)
  ) as unknown as Promise<T>;
}

const TIMEOUT_CREATED = 0;
const TIMEOUT_ENTERED = 1;
const TIMEOUT_EXPIRING = 2;
const TIMEOUT_EXPIRED = 3;
const TIMEOUT_EXITED = 4;

let enterTimeout: (cm: Timeout, task: Task<unknown>) => void;
let exitTimeout: (cm: Timeout, error: unknown, failed: boolean) => void;

/**
 * The deadline of a {@linkcode timeout} scope, which the body can read and
 * move.
 *
 * @example
 * ```ts
 * import { getRunningLoop, run, sleep, timeout } from "@aio/asyncio";
 *
 * await run(async () => {
 *   await timeout(100, async (cm) => {
 *     cm.reschedule(getRunningLoop().time() + 500); // more time
 *     await sleep(200);
 *     console.log(cm.expired()); // false
 *   });
 * });
 * ```
 */
export class Timeout {
  #when: number | null;
  #state = TIMEOUT_CREATED;
  #task: Task<unknown> | null = null;
  #handle: Handle | null = null;
  #cancellingAtEntry = 0;

  /** A scope with deadline `when` (loop time, ms), or none for `null`. */
  constructor(when: number | null) {
    this.#when = requireOptionalMilliseconds(when, "Timeout()", "when");
  }

  /** The deadline, in loop time (ms), or `null` for none. */
  when(): number | null {
    return this.#when;
  }

  /**
   * Moves the deadline to `when` (loop time, ms); `null` removes it. A time
   * already past expires the scope on the next loop step.
   */
  reschedule(when: number | null): void {
    const deadline = requireOptionalMilliseconds(when, "reschedule()", "when");
    if (this.#state !== TIMEOUT_ENTERED && this.#state !== TIMEOUT_CREATED) {
      throw new RuntimeError(
        `Cannot change the deadline of a timeout that is ${
          ["created", "active", "expiring", "expired", "finished"][this.#state]
        }`,
      );
    }
    this.#when = deadline;
    this.#handle?.cancel();
    this.#handle = null;
    if (this.#state !== TIMEOUT_ENTERED || deadline === null) return;
    const loop = this.#task!.getLoop();
    this.#handle = deadline <= loop.time()
      ? loop.callSoon(this.#onTimeout)
      : loop.callAt(deadline, this.#onTimeout);
  }

  /** Whether the deadline passed and the scope cancelled its body. */
  expired(): boolean {
    return this.#state === TIMEOUT_EXPIRING || this.#state === TIMEOUT_EXPIRED;
  }

  #onTimeout = (): void => {
    this.#task!.cancel();
    this.#state = TIMEOUT_EXPIRING;
    this.#handle = null;
  };

  static {
    enterTimeout = (cm, task) => {
      if (cm.#state !== TIMEOUT_CREATED) {
        throw new RuntimeError("Timeout has already been entered");
      }
      cm.#task = task;
      cm.#cancellingAtEntry = task.cancelling();
      cm.#state = TIMEOUT_ENTERED;
      cm.reschedule(cm.#when);
    };
    exitTimeout = (cm, error, failed) => {
      cm.#handle?.cancel();
      cm.#handle = null;
      if (cm.#state === TIMEOUT_EXPIRING) {
        cm.#state = TIMEOUT_EXPIRED;
        if (
          cm.#task!.uncancel() <= cm.#cancellingAtEntry && failed &&
          error instanceof CancelledError
        ) {
          // Only the cancellation this scope caused becomes a TimeoutError.
          throw new TimeoutError(undefined, { cause: error });
        }
      } else if (cm.#state === TIMEOUT_ENTERED) {
        cm.#state = TIMEOUT_EXITED;
      }
    };
  }
}

/**
 * Runs `body` with a deadline `ms` from now (`null`: none). When it passes,
 * the body is cancelled at its current await, and once it has unwound the
 * scope throws {@linkcode TimeoutError}. Only the cancellation the scope
 * caused is converted: a cancellation from outside stays `CancelledError`.
 * `cm.reschedule()` moves the deadline.
 *
 * @example
 * ```ts
 * import { run, sleep, timeout, TimeoutError } from "@aio/asyncio";
 *
 * await run(async () => {
 *   try {
 *     await timeout(100, async () => {
 *       await sleep(10_000);
 *     });
 *   } catch (e) {
 *     console.log(e instanceof TimeoutError); // true
 *   }
 * }, { virtualTime: true });
 * ```
 */
export function timeout<T>(
  ms: number | null,
  body: (cm: Timeout) => PromiseLike<T>,
): Promise<T> {
  const delay = requireOptionalMilliseconds(ms, "timeout()", "ms");
  requireFunction(body, "timeout()", "body");
  return inTask((task) =>
    timeoutScope(
      new Timeout(delay === null ? null : task.getLoop().time() + delay),
      task,
      body,
    )
  );
}

/**
 * Like {@linkcode timeout}, with an absolute deadline in loop time (ms).
 *
 * @example
 * ```ts
 * import { getRunningLoop, run, sleep, timeoutAt } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const deadline = getRunningLoop().time() + 1000;
 *   console.log(await timeoutAt(deadline, () => sleep(10, "in time")));
 * });
 * ```
 */
export function timeoutAt<T>(
  when: number | null,
  body: (cm: Timeout) => PromiseLike<T>,
): Promise<T> {
  const deadline = requireOptionalMilliseconds(when, "timeoutAt()", "when");
  requireFunction(body, "timeoutAt()", "body");
  return inTask((task) => timeoutScope(new Timeout(deadline), task, body));
}

async function timeoutScope<T>(
  cm: Timeout,
  task: Task<unknown>,
  body: (cm: Timeout) => PromiseLike<T>,
): Promise<T> {
  enterTimeout(cm, task);
  let result: T;
  try {
    result = await body(cm);
  } catch (error) {
    exitTimeout(cm, error, true);
    throw error;
  }
  exitTimeout(cm, undefined, false);
  return result;
}

// ---------------------------------------------------------------------------
// Task groups
//
// Structured concurrency: a scope whose tasks all finish before it does,
// and whose first failure cancels the rest. Relies on tasks, futures and
// cancel/uncancel on the task that runs the scope.
// ---------------------------------------------------------------------------

let enterGroup: (group: TaskGroup, parent: Task<unknown>) => void;
let exitGroup: (
  group: TaskGroup,
  error: unknown,
  failed: boolean,
) => Promise<void>;

/**
 * The handle a {@linkcode taskGroup} body gets, to start tasks in the group.
 *
 * @example
 * ```ts
 * import { run, sleep, taskGroup } from "@aio/asyncio";
 *
 * await run(async () => {
 *   await taskGroup(async (tg) => {
 *     tg.createTask(() => sleep(10));
 *     tg.createTask(() => sleep(20));
 *   }); // both are done here
 * });
 * ```
 */
export class TaskGroup {
  #parentTask: Task<unknown> | null = null;
  #tasks = new Set<Task<unknown>>();
  #errors: unknown[] = [];
  #entered = false;
  #exiting = false;
  #aborting = false;
  #parentCancelRequested = false;
  #allDone: Future<boolean> | null = null;

  /**
   * Starts `coro` as a task of the group.
   *
   * @throws {RuntimeError} if the group has not started, is shutting down
   * after a failure, or has finished.
   */
  createTask<T>(coro: Coro<T>, options: TaskOptions = {}): Task<T> {
    if (!this.#entered) {
      throw new RuntimeError("TaskGroup has not been entered");
    }
    if (this.#exiting && this.#tasks.size === 0) {
      throw new RuntimeError("TaskGroup is finished");
    }
    if (this.#aborting) {
      throw new RuntimeError("TaskGroup is shutting down");
    }
    const task = this.#parentTask!.getLoop().createTask(coro, options);
    if (task.done()) {
      this.#onTaskDone(task);
    } else {
      this.#tasks.add(task);
      task.addDoneCallback(this.#onTaskDone as DoneCallback<T>);
    }
    return task;
  }

  #abort(): void {
    this.#aborting = true;
    for (const task of this.#tasks) if (!task.done()) task.cancel();
  }

  #onTaskDone = (task: Task<unknown>): void => {
    this.#tasks.delete(task);
    if (
      this.#allDone !== null && this.#tasks.size === 0 && !this.#allDone.done()
    ) {
      this.#allDone.setResult(true);
    }
    if (task.cancelled()) return;
    const error = task.exception();
    if (error === null) return;
    this.#errors.push(error);
    const parent = this.#parentTask!;
    if (parent.done()) {
      parent.getLoop().callExceptionHandler({
        message: "Task error after its TaskGroup's task finished",
        exception: error,
        task,
      });
      return;
    }
    if (!this.#aborting && !this.#parentCancelRequested) {
      // Cancel the body too; the scope takes the cancellation back on exit.
      this.#abort();
      this.#parentCancelRequested = true;
      parent.cancel();
    }
  };

  static {
    enterGroup = (group, parent) => {
      if (group.#entered) {
        throw new RuntimeError("TaskGroup has already been entered");
      }
      group.#entered = true;
      group.#parentTask = parent;
    };
    exitGroup = async (group, error, failed) => {
      group.#exiting = true;
      let propagateCancellation: unknown =
        failed && error instanceof CancelledError ? error : null;
      if (failed && !group.#aborting) group.#abort();
      const loop = group.#parentTask!.getLoop();
      while (group.#tasks.size > 0) {
        group.#allDone ??= loop.createFuture<boolean>();
        try {
          await group.#allDone;
        } catch (cancelled) {
          if (!group.#aborting) {
            // The task running the group is being cancelled from outside.
            propagateCancellation = cancelled;
            group.#abort();
          }
        }
        group.#allDone = null;
      }
      if (group.#parentCancelRequested) {
        if (group.#parentTask!.uncancel() === 0) propagateCancellation = null;
      }
      if (propagateCancellation !== null && group.#errors.length === 0) {
        throw propagateCancellation;
      }
      if (failed && !(error instanceof CancelledError)) {
        group.#errors.push(error);
      }
      if (group.#errors.length > 0) {
        const errors = group.#errors;
        group.#errors = [];
        throw new ExceptionGroup("unhandled errors in a TaskGroup", errors);
      }
    };
  }
}

/**
 * Runs `body` with a {@linkcode TaskGroup} and waits for every task it
 * started: asyncio's `async with TaskGroup() as tg`. When a task fails, the
 * other tasks and the body are cancelled, and the scope throws an
 * {@linkcode ExceptionGroup} of every error (the body's included).
 *
 * @example
 * ```ts
 * import { run, sleep, taskGroup } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const [a, b] = await taskGroup(async (tg) => {
 *     const a = tg.createTask(() => sleep(10, "a"));
 *     const b = tg.createTask(() => sleep(20, "b"));
 *     return [a, b];
 *   });
 *   console.log(a.result(), b.result()); // "a" "b"
 * });
 * ```
 */
export function taskGroup<T>(
  body: (tg: TaskGroup) => PromiseLike<T>,
): Promise<T> {
  requireFunction(body, "taskGroup()", "body");
  return inTask(async (parent) => {
    const group = new TaskGroup();
    enterGroup(group, parent);
    let result: T;
    try {
      result = await body(group);
    } catch (error) {
      await exitGroup(group, error, true);
      throw error;
    }
    await exitGroup(group, undefined, false);
    return result;
  });
}

// ---------------------------------------------------------------------------
// Synchronization primitives
//
// Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier. Each waiter
// is a future of its own in a first-in-first-out WaiterQueue, so cancelling
// a task cancels exactly its own wait. A wake-up is a hand-over: release()
// gives the lock (or the semaphore's unit) to the first waiter directly, so
// no newcomer can slip in before it runs, and a waiter that is cancelled
// after being handed something passes it on in its `catch`. Relies on
// futures, tasks (their "must cancel" at the next await) and getEventLoop().
// ---------------------------------------------------------------------------

// Resolved once, shared: the uncontended paths allocate nothing.
const RESOLVED_VOID: Promise<void> = Promise.resolve();
const RESOLVED_TRUE: Promise<true> = Promise.resolve(true);

function requireCount(
  value: unknown,
  where: string,
  argument: string,
): number {
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(
      `${where}: ${argument} must be a number, got ${describeValue(value)}`,
    );
  }
  return value;
}

function requireNonNegativeInteger(
  value: unknown,
  where: string,
  argument: string,
): number {
  const count = requireCount(value, where, argument);
  if (count < 0 || !(Number.isInteger(count) || count === Infinity)) {
    throw new RangeError(
      `${where}: ${argument} must be a non-negative integer, got ${count}`,
    );
  }
  return count;
}

// A first-in-first-out list whose shift() is O(1): an array read from a
// moving head, compacted once the consumed prefix is most of it.
class Deque<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  unshift(item: T): void {
    if (this.#head > 0) this.#items[--this.#head] = item;
    else this.#items.unshift(item);
  }

  shift(): T | undefined {
    const items = this.#items;
    const head = this.#head;
    if (head === items.length) return undefined;
    const item = items[head];
    items[head] = undefined;
    if (head + 1 === items.length) {
      items.length = 0;
      this.#head = 0;
    } else if (head >= 1024 && head * 2 >= items.length) {
      items.splice(0, head + 1);
      this.#head = 0;
    } else {
      this.#head = head + 1;
    }
    return item;
  }

  // Keeps only the items `keep` accepts, in order; returns how many remain.
  retain(keep: (item: T) => boolean): number {
    const items = this.#items;
    let kept = 0;
    for (let i = this.#head; i < items.length; i++) {
      const item = items[i] as T;
      if (keep(item)) items[kept++] = item;
    }
    items.length = kept;
    this.#head = 0;
    return kept;
  }

  count(matching: (item: T) => boolean): number {
    const items = this.#items;
    let found = 0;
    for (let i = this.#head; i < items.length; i++) {
      if (matching(items[i] as T)) found++;
    }
    return found;
  }

  clear(): void {
    this.#items.length = 0;
    this.#head = 0;
  }
}

const isPending = (future: Future<unknown>): boolean => !future.done();

// The tasks waiting on one primitive, oldest first, each as its own future.
// A cancelled waiter's future is done, so it is skipped when waking, and
// dropped in bulk once the dead outnumber the living (no hook on cancel).
// Bound to the loop of its first waiter, as asyncio's _LoopBoundMixin.
class WaiterQueue<T> {
  #futures = new Deque<Future<T>>();
  #loop: EventLoop | null = null;
  #compactAt = 64;

  // A new waiter at the back of the line.
  add(owner: object): Future<T> {
    const loop = getEventLoop();
    if (loop !== this.#loop) this.#bind(loop, owner);
    const futures = this.#futures;
    if (futures.length >= this.#compactAt) {
      this.#compactAt = Math.max(64, 2 * futures.retain(isPending));
    }
    const future = new Future<T>(loop);
    futures.push(future);
    return future;
  }

  // Completes the oldest live waiter with `value`; false if there is none.
  wakeFirst(value: T): boolean {
    const futures = this.#futures;
    for (;;) {
      const future = futures.shift();
      if (future === undefined) return false;
      if (!future.done()) {
        future.setResult(value);
        return true;
      }
    }
  }

  // Completes every live waiter with `value`, oldest first.
  wakeAll(value: T): void {
    while (this.wakeFirst(value));
  }

  // Fails every live waiter with a fresh error from `makeError`.
  failAll(makeError: () => Error): void {
    const futures = this.#futures;
    for (;;) {
      const future = futures.shift();
      if (future === undefined) return;
      if (!future.done()) future.setException(makeError());
    }
  }

  // How many waiters there are, counting cancelled ones not yet dropped.
  get size(): number {
    return this.#futures.length;
  }

  liveCount(): number {
    return this.#futures.count(isPending);
  }

  #bind(loop: EventLoop, owner: object): void {
    if (this.#loop !== null && !this.#loop.isClosed()) {
      throw new RuntimeError(
        `${owner.constructor.name} is bound to a different event loop`,
      );
    }
    // The old loop is closed: its waiters can never run again.
    this.#futures.clear();
    this.#loop = loop;
  }
}

// Whether `future` completed with a result: its waiter was handed something
// (the lock, a unit, a notification, an item, a free slot) that it must pass
// on if it fails.
function wasHandedOver(future: Future<unknown>): boolean {
  return future.done() && !future.cancelled() && future.exception() === null;
}

/**
 * A mutual exclusion lock, as asyncio's `Lock`: one task holds it at a time.
 * `acquire()` resolves to a `Disposable`, so `using` releases it at the end
 * of the block (asyncio's `async with lock:`).
 *
 * Fair: waiters get the lock in the order they asked for it. `release()`
 * hands it straight to the first waiter, so `locked()` stays `true` until
 * that waiter has run, and no newcomer can take it in between. A waiter
 * cancelled right after being handed the lock passes it on.
 *
 * @example
 * ```ts
 * import { gather, Lock, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const lock = new Lock();
 *   let inside = 0;
 *   const worker = async () => {
 *     using _ = await lock.acquire();
 *     inside++;
 *     await sleep(10);
 *     console.log(inside); // always 1
 *     inside--;
 *   };
 *   await gather([worker, worker, worker]);
 * });
 * ```
 */
export class Lock {
  #locked = false;
  #waiters = new WaiterQueue<void>();
  #release: Disposable = { [Symbol.dispose]: () => this.release() };
  #acquired: Promise<Disposable> | null = null;

  /**
   * Waits until the lock is free, takes it, and resolves to a `Disposable`
   * that releases it: `using _ = await lock.acquire();`.
   */
  acquire(): Promise<Disposable> {
    if (!this.#locked) {
      this.#locked = true;
      return this.#acquired ??= Promise.resolve(this.#release);
    }
    // Not an async function: the handlers run as the waiter wakes, which
    // saves a hop, and the rejection handler sees a cancellation that came
    // after the hand-over ("must cancel"), so it can pass the lock on.
    const waiter = this.#waiters.add(this);
    return waiter.then(this.#handedOver, (error) => {
      if (wasHandedOver(waiter)) this.release();
      throw error;
    });
  }

  #handedOver = (): Disposable => this.#release;

  /**
   * Releases the lock, handing it to the first waiter if there is one.
   *
   * @throws {RuntimeError} if the lock is not locked.
   */
  release(): void {
    if (!this.#locked) throw new RuntimeError("Lock is not acquired");
    if (!this.#waiters.wakeFirst(undefined)) this.#locked = false;
  }

  /** Whether a task holds the lock, or was handed it and has not run yet. */
  locked(): boolean {
    return this.#locked;
  }
}

/**
 * A flag tasks can wait for, as asyncio's `Event`: `set()` wakes every task
 * waiting in `wait()`, and later waits return at once until `clear()`.
 * A waiter woken by `set()` returns `true` even if `clear()` follows at
 * once.
 *
 * @example
 * ```ts
 * import { createTask, Event, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const ready = new Event();
 *   const waiter = createTask(async () => {
 *     await ready.wait();
 *     console.log("ready");
 *   });
 *   await sleep(10);
 *   ready.set();
 *   await waiter;
 * });
 * ```
 */
export class Event {
  #isSet = false;
  #waiters = new WaiterQueue<true>();

  /** Sets the flag and wakes every task waiting for it. */
  set(): void {
    if (this.#isSet) return;
    this.#isSet = true;
    this.#waiters.wakeAll(true);
  }

  /** Resets the flag: later `wait()` calls block until the next `set()`. */
  clear(): void {
    this.#isSet = false;
  }

  /** Whether the flag is set. */
  isSet(): boolean {
    return this.#isSet;
  }

  /**
   * Resolves to `true` once the flag is set (at once if it is). The result
   * is a {@linkcode Future}, which passes for a promise.
   */
  wait(): Promise<true> {
    if (this.#isSet) return RESOLVED_TRUE;
    return this.#waiters.add(this) as unknown as Promise<true>;
  }
}

/**
 * A condition variable, as asyncio's `Condition`: tasks holding its lock
 * `wait()` until another task holding it calls `notify()`. Several
 * conditions may share one {@linkcode Lock}, passed to the constructor.
 *
 * `wait()` always re-acquires the lock before it returns or throws, even
 * when cancelled; a waiter that fails after being notified passes the
 * notification on to the next waiter.
 *
 * @example
 * ```ts
 * import { Condition, createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const condition = new Condition();
 *   const items: number[] = [];
 *   const consumer = createTask(async () => {
 *     using _ = await condition.acquire();
 *     await condition.waitFor(() => items.length > 0);
 *     console.log(items.shift()); // 42
 *   });
 *   await sleep(10);
 *   {
 *     using _ = await condition.acquire();
 *     items.push(42);
 *     condition.notify();
 *   }
 *   await consumer;
 * });
 * ```
 */
export class Condition {
  #lock: Lock;
  #waiters = new WaiterQueue<true>();

  /** A condition on `lock`, or on a new {@linkcode Lock}. */
  constructor(lock?: Lock) {
    if (lock !== undefined && !(lock instanceof Lock)) {
      throw new TypeError(
        `Condition(): lock must be a Lock, got ${describeValue(lock)}`,
      );
    }
    this.#lock = lock ?? new Lock();
  }

  /** Acquires the underlying lock: `using _ = await condition.acquire();`. */
  acquire(): Promise<Disposable> {
    return this.#lock.acquire();
  }

  /** Releases the underlying lock. @throws {RuntimeError} if not locked. */
  release(): void {
    this.#lock.release();
  }

  /** Whether the underlying lock is held. */
  locked(): boolean {
    return this.#lock.locked();
  }

  /**
   * Releases the lock, waits to be notified, re-acquires the lock and
   * resolves to `true`. If cancelled, it still re-acquires the lock before
   * throwing `CancelledError`.
   *
   * @throws {RuntimeError} if the lock is not held.
   */
  async wait(): Promise<true> {
    if (!this.#lock.locked()) {
      throw new RuntimeError("cannot wait on un-acquired lock");
    }
    const waiter = this.#waiters.add(this);
    this.#lock.release();
    let failure: { error: unknown } | null = null;
    try {
      await waiter;
    } catch (error) {
      failure = { error };
    }
    for (;;) {
      try {
        await this.#lock.acquire();
        break;
      } catch (error) {
        if (!(error instanceof CancelledError)) throw error;
        failure = { error };
      }
    }
    if (failure !== null) {
      // Notified, but leaving with an error: let another waiter have it.
      if (wasHandedOver(waiter)) this.#waiters.wakeFirst(true);
      throw failure.error;
    }
    return true;
  }

  /**
   * Waits until `predicate()` returns something truthy, and resolves to
   * that. The predicate is called with the lock held, first before waiting.
   */
  async waitFor<T>(predicate: () => T): Promise<T> {
    requireFunction(predicate, "waitFor()", "predicate");
    let result = predicate();
    while (!result) {
      await this.wait();
      result = predicate();
    }
    return result;
  }

  /**
   * Wakes up to `n` waiting tasks, oldest first.
   *
   * @throws {RuntimeError} if the lock is not held.
   */
  notify(n = 1): void {
    const count = requireCount(n, "notify()", "n");
    if (!this.#lock.locked()) {
      throw new RuntimeError("cannot notify on un-acquired lock");
    }
    for (let woken = 0; woken < count; woken++) {
      if (!this.#waiters.wakeFirst(true)) return;
    }
  }

  /**
   * Wakes every waiting task.
   *
   * @throws {RuntimeError} if the lock is not held.
   */
  notifyAll(): void {
    this.notify(Infinity);
  }
}

let limitSemaphore: (semaphore: Semaphore, limit: number) => void;

/**
 * A semaphore, as asyncio's `Semaphore`: a counter of free units, which
 * `acquire()` takes one of (waiting while there are none) and `release()`
 * gives back. Use it to limit concurrency.
 *
 * Fair, like {@linkcode Lock}: `release()` hands the unit straight to the
 * oldest waiter, and a waiter cancelled right after passes it on. The value
 * must be a non-negative integer (or `Infinity`).
 *
 * @example
 * ```ts
 * import { gather, run, Semaphore, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const slots = new Semaphore(2);
 *   const download = async () => {
 *     using _ = await slots.acquire();
 *     await sleep(100); // at most two at a time
 *   };
 *   await gather([download, download, download, download]);
 * }, { virtualTime: true });
 * ```
 */
export class Semaphore {
  #value: number;
  #limit = Infinity;
  #waiters = new WaiterQueue<void>();
  #release: Disposable = { [Symbol.dispose]: () => this.release() };
  #acquired: Promise<Disposable> | null = null;

  /**
   * A semaphore with `value` free units.
   *
   * @throws {TypeError} if `value` is not a number.
   * @throws {RangeError} if it is negative or not an integer.
   */
  constructor(value = 1) {
    this.#value = requireNonNegativeInteger(
      value,
      `${new.target.name}()`,
      "value",
    );
  }

  /**
   * Takes a unit, waiting for one if there is none, and resolves to a
   * `Disposable` that gives it back: `using _ = await semaphore.acquire();`.
   */
  acquire(): Promise<Disposable> {
    if (this.#value > 0) {
      this.#value--;
      return this.#acquired ??= Promise.resolve(this.#release);
    }
    const waiter = this.#waiters.add(this);
    return waiter.then(this.#handedOver, (error) => {
      if (wasHandedOver(waiter)) this.#giveBack();
      throw error;
    });
  }

  #handedOver = (): Disposable => this.#release;

  /**
   * Gives a unit back, handing it to the oldest waiter if there is one.
   *
   * @throws {RangeError} for a {@linkcode BoundedSemaphore} released more
   * times than it was acquired.
   */
  release(): void {
    if (this.#value >= this.#limit) {
      throw new RangeError("BoundedSemaphore released too many times");
    }
    this.#giveBack();
  }

  #giveBack(): void {
    if (!this.#waiters.wakeFirst(undefined)) this.#value++;
  }

  /** Whether `acquire()` would have to wait. */
  locked(): boolean {
    return this.#value === 0;
  }

  static {
    limitSemaphore = (semaphore, limit) => semaphore.#limit = limit;
  }
}

/**
 * A {@linkcode Semaphore} that refuses to be released more times than it was
 * acquired, catching that bug early: asyncio's `BoundedSemaphore`.
 *
 * @example
 * ```ts
 * import { BoundedSemaphore } from "@aio/asyncio";
 *
 * const semaphore = new BoundedSemaphore(1);
 * try {
 *   semaphore.release();
 * } catch (e) {
 *   console.log(e instanceof RangeError); // true
 * }
 * ```
 */
export class BoundedSemaphore extends Semaphore {
  /** A bounded semaphore with `value` free units, and at most that many. */
  constructor(value = 1) {
    super(value);
    limitSemaphore(this, value);
  }
}

/**
 * A barrier, as asyncio's `Barrier`: each of `parties` tasks calls `wait()`,
 * and all of them go on together once the last one arrives. Each gets a
 * distinct index from 0 to `parties - 1`, in order of arrival; then the
 * barrier is ready for the next round.
 *
 * A waiter cancelled before the barrier fills simply leaves it. `reset()`
 * makes the current waiters throw {@linkcode BrokenBarrierError} and starts
 * afresh; `abort()` does the same but leaves the barrier broken for good.
 * Unlike Python, a round that has filled does not hold up the next one
 * while its tasks wake.
 *
 * @example
 * ```ts
 * import { Barrier, gather, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const barrier = new Barrier(3);
 *   const indexes = await gather([
 *     () => barrier.wait(),
 *     () => barrier.wait(),
 *     () => barrier.wait(),
 *   ]);
 *   console.log(indexes.sort()); // [0, 1, 2]
 * });
 * ```
 */
export class Barrier {
  #parties: number;
  #waiters = new WaiterQueue<number>();
  #broken = false;

  /**
   * A barrier for `parties` tasks.
   *
   * @throws {TypeError} if `parties` is not a number.
   * @throws {RangeError} if it is not a positive integer.
   */
  constructor(parties: number) {
    const count = requireNonNegativeInteger(parties, "Barrier()", "parties");
    if (count < 1 || count === Infinity) {
      throw new RangeError(
        `Barrier(): parties must be a positive integer, got ${count}`,
      );
    }
    this.#parties = count;
  }

  /**
   * Waits until `parties` tasks are waiting, and resolves to this task's
   * index (0 for the first to arrive).
   *
   * @throws {BrokenBarrierError} if the barrier is broken, or is reset or
   * aborted while waiting.
   */
  wait(): Promise<number> {
    if (this.#broken) {
      return Promise.reject(new BrokenBarrierError("Barrier aborted"));
    }
    const waiters = this.#waiters;
    // The raw size is an upper bound: count the living only when it may fill.
    const waiting = waiters.size + 1 < this.#parties
      ? waiters.size
      : waiters.liveCount();
    if (waiting + 1 < this.#parties) {
      return waiters.add(this) as unknown as Promise<number>;
    }
    for (let index = 0; index < waiting; index++) {
      waiters.wakeFirst(index);
    }
    return Promise.resolve(waiting);
  }

  /**
   * Breaks the current round: its waiters throw
   * {@linkcode BrokenBarrierError}. The barrier is then empty and usable,
   * even after {@linkcode Barrier.abort}.
   */
  reset(): Promise<void> {
    this.#waiters.failAll(() => new BrokenBarrierError("Barrier reset"));
    this.#broken = false;
    return RESOLVED_VOID;
  }

  /**
   * Breaks the barrier for good: current and future waiters throw
   * {@linkcode BrokenBarrierError} (until {@linkcode Barrier.reset}).
   */
  abort(): Promise<void> {
    this.#broken = true;
    this.#waiters.failAll(() => new BrokenBarrierError("Barrier aborted"));
    return RESOLVED_VOID;
  }

  /** How many tasks must wait for the barrier to let them through. */
  get parties(): number {
    return this.#parties;
  }

  /** How many tasks are waiting in the current round. */
  get nWaiting(): number {
    return this.#waiters.liveCount();
  }

  /** Whether the barrier is broken by {@linkcode Barrier.abort}. */
  get broken(): boolean {
    return this.#broken;
  }
}

// ---------------------------------------------------------------------------
// Queues
//
// Queue, PriorityQueue, LifoQueue: one Queue class, whose items live in an
// ItemStore (first-in-first-out, a heap, or a stack). Blocked getters and
// putters wait in WaiterQueues and are served by hand-over, like the lock:
// a put hands its item straight to the oldest waiting getter, a get keeps
// the slot it frees for the oldest waiting putter, which fills it as it
// wakes. One that fails after its hand-over gives the item back (first in
// line) or passes the slot on, so nothing is lost, and a cancelled put()
// never enqueues its item. Relies on the synchronization primitives above
// (WaiterQueue, Deque, Event).
// ---------------------------------------------------------------------------

// Where a queue keeps its items; the order of `take()` is the queue's kind.
interface ItemStore<T> {
  readonly size: number;
  add(item: T): void;
  take(): T;
  // Returns an item just taken, so that `take()` gives it again.
  putBack(item: T): void;
  clear(): void;
}

class FifoStore<T> implements ItemStore<T> {
  #items = new Deque<T>();
  get size(): number {
    return this.#items.length;
  }
  add(item: T): void {
    this.#items.push(item);
  }
  take(): T {
    return this.#items.shift() as T;
  }
  putBack(item: T): void {
    this.#items.unshift(item);
  }
  clear(): void {
    this.#items.clear();
  }
}

class LifoStore<T> implements ItemStore<T> {
  #items: T[] = [];
  get size(): number {
    return this.#items.length;
  }
  add(item: T): void {
    this.#items.push(item);
  }
  take(): T {
    return this.#items.pop() as T;
  }
  putBack(item: T): void {
    this.#items.push(item);
  }
  clear(): void {
    this.#items.length = 0;
  }
}

// Python's ordering of numbers, strings and tuples (arrays), which asyncio's
// PriorityQueue relies on; anything else cannot be ordered.
function pythonOrder(a: unknown, b: unknown): number {
  const ta = typeof a;
  const tb = typeof b;
  if (
    (ta === "number" || ta === "bigint") &&
      (tb === "number" || tb === "bigint") ||
    (ta === "string" && tb === "string")
  ) {
    return (a as number) < (b as number)
      ? -1
      : (a as number) > (b as number)
      ? 1
      : 0;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    const length = Math.min(a.length, b.length);
    for (let i = 0; i < length; i++) {
      if (a[i] === b[i]) continue;
      const order = pythonOrder(a[i], b[i]);
      if (order !== 0) return order;
    }
    return a.length - b.length;
  }
  throw new TypeError(
    `PriorityQueue: cannot order ${describeValue(a)} and ${
      describeValue(b)
    }: use numbers, strings or arrays of them, or give a compare option`,
  );
}

// A binary min-heap. Equal items come out in insertion order (a sequence
// number breaks ties), and a compare that throws leaves the heap unchanged.
class HeapStore<T> implements ItemStore<T> {
  #items: T[] = [];
  #sequence: number[] = [];
  #added = 0;
  #compare: (a: T, b: T) => number;

  constructor(compare: (a: T, b: T) => number) {
    this.#compare = compare;
  }

  get size(): number {
    return this.#items.length;
  }

  #precedes(a: T, aSequence: number, b: T, bSequence: number): boolean {
    const order = this.#compare(a, b);
    return order < 0 || (order === 0 && aSequence < bSequence);
  }

  add(item: T): void {
    const items = this.#items;
    const sequence = this.#sequence;
    const number = this.#added;
    // Find the place first, moving nothing, so a throwing compare is harmless.
    let target = items.length;
    while (target > 0) {
      const parent = (target - 1) >> 1;
      if (!this.#precedes(item, number, items[parent], sequence[parent])) break;
      target = parent;
    }
    this.#added++;
    let hole = items.length;
    items.push(item);
    sequence.push(number);
    while (hole > target) {
      const parent = (hole - 1) >> 1;
      items[hole] = items[parent];
      sequence[hole] = sequence[parent];
      hole = parent;
    }
    items[target] = item;
    sequence[target] = number;
  }

  take(): T {
    const items = this.#items;
    const sequence = this.#sequence;
    const top = items[0];
    const topSequence = sequence[0];
    const last = items.pop()!;
    const lastSequence = sequence.pop()!;
    const length = items.length;
    if (length === 0) return top;
    let hole = 0;
    try {
      for (;;) {
        let child = 2 * hole + 1;
        if (child >= length) break;
        if (
          child + 1 < length &&
          this.#precedes(
            items[child + 1],
            sequence[child + 1],
            items[child],
            sequence[child],
          )
        ) child++;
        if (
          !this.#precedes(items[child], sequence[child], last, lastSequence)
        ) {
          break;
        }
        items[hole] = items[child];
        sequence[hole] = sequence[child];
        hole = child;
      }
    } catch (error) {
      // Undo: move the path back down, and put `top` and `last` back.
      while (hole > 0) {
        const parent = (hole - 1) >> 1;
        items[hole] = items[parent];
        sequence[hole] = sequence[parent];
        hole = parent;
      }
      items[0] = top;
      sequence[0] = topSequence;
      items.push(last);
      sequence.push(lastSequence);
      throw error;
    }
    items[hole] = last;
    sequence[hole] = lastSequence;
    return top;
  }

  putBack(item: T): void {
    this.add(item);
  }

  clear(): void {
    this.#items.length = 0;
    this.#sequence.length = 0;
  }
}

let useStore: <T>(queue: Queue<T>, store: ItemStore<T>) => void;

/**
 * A first-in-first-out queue for tasks, as asyncio's `Queue`: `put()` waits
 * while the queue is full (`maxsize` items; 0 or less means unbounded),
 * `get()` waits while it is empty. Waiting getters and putters are served
 * in order, and cancelling one loses nothing: a cancelled `put()` never
 * enqueues its item, a cancelled `get()` leaves the item for the next.
 *
 * `join()` waits until every item put has been marked done with
 * `taskDone()`. `shutdown()` stops it: `put()` throws
 * {@linkcode QueueShutDown} at once, `get()` once the queue is empty (or at
 * once with `shutdown(true)`, which drops the items). `for await` takes
 * items until the queue is shut down and empty.
 *
 * Like a lock, the queue serves by hand-over: `put()` gives its item
 * straight to the oldest waiting getter (so `qsize()` does not count it),
 * and `get()` keeps the slot it frees for the oldest waiting putter (so
 * `full()` stays true until that putter runs). As with any promise, an item
 * that is itself a promise or a {@linkcode Future} is awaited by
 * `await queue.get()`: box it (`{ task }`) to pass it along as is.
 *
 * @example Workers
 * ```ts
 * import { createTask, Queue, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const queue = new Queue<number>();
 *   for (let i = 1; i <= 6; i++) queue.putNowait(i * 10);
 *   const worker = async (name: string) => {
 *     for await (const ms of queue) {
 *       await sleep(ms);
 *       console.log(`${name} slept ${ms} ms`);
 *       queue.taskDone();
 *     }
 *   };
 *   const workers = [createTask(() => worker("a")), createTask(() => worker("b"))];
 *   await queue.join(); // every item processed
 *   queue.shutdown(); // the workers' loops end
 *   for (const w of workers) await w;
 * }, { virtualTime: true });
 * ```
 */
export class Queue<T> implements AsyncIterable<T> {
  #maxsize: number;
  #items: ItemStore<T> = new FifoStore<T>();
  #getters = new WaiterQueue<T>();
  #putters = new WaiterQueue<void>();
  #reservedSlots = 0;
  #unfinishedTasks = 0;
  #finished: Event | null = null;
  #shutDown = false;

  /**
   * A queue holding at most `maxsize` items (0 or less: no limit).
   *
   * @throws {TypeError} if `maxsize` is not a number.
   */
  constructor(maxsize = 0) {
    this.#maxsize = requireCount(maxsize, `${new.target.name}()`, "maxsize");
  }

  /** The most items the queue holds; 0 or less means no limit. */
  get maxsize(): number {
    return this.#maxsize;
  }

  /**
   * How many items are in the queue. An item handed to a waiting getter
   * that has not run yet is no longer counted.
   */
  qsize(): number {
    return this.#items.size;
  }

  /** Whether the queue has no items. */
  empty(): boolean {
    return this.#items.size === 0;
  }

  /**
   * Whether there is no room for another item (never, when unbounded). A
   * slot freed for a waiting putter that has not run yet counts as taken.
   */
  full(): boolean {
    return this.#maxsize > 0 &&
      this.#items.size + this.#reservedSlots >= this.#maxsize;
  }

  /**
   * Puts `item` in the queue, waiting for room while it is full.
   *
   * @throws {QueueShutDown} if the queue is shut down, or is while waiting.
   */
  put(item: T): Promise<void> {
    if (this.#shutDown || !this.full()) {
      try {
        this.putNowait(item);
      } catch (error) {
        return Promise.reject(error);
      }
      return RESOLVED_VOID;
    }
    // The putter is woken with a slot kept for it; it fills the slot as it
    // wakes, or, failing, passes the slot on.
    const putter = this.#putters.add(this);
    return putter.then(() => {
      this.#reservedSlots--;
      try {
        this.putNowait(item);
      } catch (error) {
        this.#passSlotOn();
        throw error;
      }
    }, (error) => {
      if (wasHandedOver(putter)) {
        this.#reservedSlots--;
        this.#passSlotOn();
      }
      throw error;
    });
  }

  /**
   * Puts `item` in the queue at once.
   *
   * @throws {QueueFull} if the queue is full.
   * @throws {QueueShutDown} if the queue is shut down.
   */
  putNowait(item: T): void {
    if (this.#shutDown) throw new QueueShutDown();
    if (this.full()) throw new QueueFull();
    // Getters wait only on an empty queue: the oldest gets the item directly.
    if (!this.#getters.wakeFirst(item)) this.#items.add(item);
    if (this.#unfinishedTasks++ === 0) this.#finished?.clear();
  }

  /**
   * Takes the next item, waiting for one while the queue is empty.
   *
   * @throws {QueueShutDown} once the queue is shut down and empty.
   */
  get(): Promise<T> {
    if (this.#items.size > 0 || this.#shutDown) {
      try {
        return Promise.resolve(this.getNowait());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const getter = this.#getters.add(this);
    return getter.then(undefined, (error) => {
      // Handed an item, then cancelled before running: the item goes back
      // to the front, for the next getter.
      if (wasHandedOver(getter)) this.#giveBack(getter.result());
      throw error;
    });
  }

  /**
   * Takes the next item at once.
   *
   * @throws {QueueEmpty} if the queue is empty.
   * @throws {QueueShutDown} if it is empty and shut down.
   */
  getNowait(): T {
    if (this.#items.size === 0) {
      throw this.#shutDown ? new QueueShutDown() : new QueueEmpty();
    }
    const item = this.#items.take();
    this.#passSlotOn();
    return item;
  }

  #giveBack(item: T): void {
    if (!this.#getters.wakeFirst(item)) this.#items.putBack(item);
  }

  // Keeps a free slot for the oldest waiting putter.
  #passSlotOn(): void {
    if (!this.full() && this.#putters.wakeFirst(undefined)) {
      this.#reservedSlots++;
    }
  }

  /**
   * Marks one item taken with `get()` as processed, for `join()`.
   *
   * @throws {RangeError} if called more times than items were put.
   */
  taskDone(): void {
    if (this.#unfinishedTasks <= 0) {
      throw new RangeError("taskDone() called too many times");
    }
    if (--this.#unfinishedTasks === 0) this.#finished?.set();
  }

  /** Waits until every item put has been marked done with `taskDone()`. */
  async join(): Promise<void> {
    if (this.#unfinishedTasks > 0) {
      await (this.#finished ??= new Event()).wait();
    }
  }

  /**
   * Shuts the queue down: `put()` throws {@linkcode QueueShutDown} from now
   * on, and `get()` does once the queue is empty; blocked putters and
   * getters wake up with it. With `immediate`, the items left are dropped
   * (and count as done for `join()`), so `get()` throws at once.
   */
  shutdown(immediate = false): void {
    this.#shutDown = true;
    if (immediate) {
      const dropped = this.#items.size;
      this.#items.clear();
      this.#unfinishedTasks = Math.max(0, this.#unfinishedTasks - dropped);
      if (this.#unfinishedTasks === 0) this.#finished?.set();
    }
    // Getters wait only on an empty queue, putters only on a full one.
    this.#getters.failAll(() => new QueueShutDown());
    this.#putters.failAll(() => new QueueShutDown());
  }

  /** Takes items with `get()` until the queue is shut down and empty. */
  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    for (;;) {
      let item: T;
      try {
        item = await this.get();
      } catch (error) {
        if (error instanceof QueueShutDown) return;
        throw error;
      }
      yield item;
    }
  }

  static {
    useStore = (queue, store) => queue.#items = store;
  }
}

/** Options for {@linkcode PriorityQueue}. */
export interface PriorityQueueOptions<T> {
  /**
   * Orders two items: negative if `a` comes out first, positive if `b`
   * does, 0 if equal (then the one put first comes out first).
   */
  compare?(a: T, b: T): number;
}

/**
 * A {@linkcode Queue} that gives out its smallest item first, as asyncio's
 * `PriorityQueue`. Items are ordered as Python orders them: numbers,
 * strings, and arrays element by element like tuples (`[priority, job]`),
 * or by the `compare` option. Equal items come out in the order they were
 * put (Python leaves that unspecified). Items that cannot be ordered make
 * `put()` throw `TypeError`, and are not enqueued.
 *
 * @example
 * ```ts
 * import { PriorityQueue } from "@aio/asyncio";
 *
 * const queue = new PriorityQueue<[number, string]>();
 * queue.putNowait([2, "write"]);
 * queue.putNowait([1, "read"]);
 * console.log(queue.getNowait()); // [1, "read"]
 *
 * const byLength = new PriorityQueue<string>(0, {
 *   compare: (a, b) => a.length - b.length,
 * });
 * byLength.putNowait("three");
 * byLength.putNowait("one");
 * console.log(byLength.getNowait()); // "one"
 * ```
 */
export class PriorityQueue<T> extends Queue<T> {
  /**
   * A priority queue of at most `maxsize` items (0 or less: no limit).
   *
   * @throws {TypeError} if `maxsize` is not a number or `compare` is not a
   * function.
   */
  constructor(maxsize = 0, options: PriorityQueueOptions<T> = {}) {
    super(maxsize);
    const compare = options.compare ?? pythonOrder;
    requireFunction(compare, "PriorityQueue()", "options.compare");
    useStore(this, new HeapStore<T>(compare));
  }
}

/**
 * A {@linkcode Queue} that gives out the item put last first (a stack), as
 * asyncio's `LifoQueue`.
 *
 * @example
 * ```ts
 * import { LifoQueue } from "@aio/asyncio";
 *
 * const stack = new LifoQueue<number>();
 * stack.putNowait(1);
 * stack.putNowait(2);
 * console.log(stack.getNowait()); // 2
 * ```
 */
export class LifoQueue<T> extends Queue<T> {
  /** A stack of at most `maxsize` items (0 or less: no limit). */
  constructor(maxsize = 0) {
    super(maxsize);
    useStore(this, new LifoStore<T>());
  }
}

// ---------------------------------------------------------------------------
// Transports and protocols
//
// (Built in its own change; this banner keeps the book's order.)
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Streams
//
// (Built in its own change; this banner keeps the book's order.)
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Subprocesses
//
// (Built in its own change; this banner keeps the book's order.)
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Introspection
//
// (Built in its own change; this banner keeps the book's order.)
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Timelines
//
// A record of every task's life (created, running, waiting, done) on a
// loop, drawn as text or SVG. Relies only on the loop calling `record`.
// ---------------------------------------------------------------------------

/** One change in a task's life, as a {@linkcode Timeline} records it. */
export interface TimelineEvent {
  /** The task's name at the time. */
  task: string;
  /** What the task started doing. */
  state: "created" | "running" | "waiting" | "done";
  /** Loop time, in ms. */
  time: number;
}

/**
 * Records each task's life on a loop: pass one to `run(main, { timeline })`.
 *
 * @example
 * ```ts
 * import { run, sleep, Timeline } from "@aio/asyncio";
 *
 * const timeline = new Timeline();
 * await run(() => sleep(1000), { timeline, virtualTime: true });
 * console.log(timeline.events.length > 0); // true
 * ```
 */
export class Timeline {
  /** Every event recorded, in order. */
  readonly events: TimelineEvent[] = [];
  #start = 0;
  #end: number | null = null;
  #lastState = new WeakMap<Task<unknown>, TimelineEvent["state"]>();

  /** @ignore Called by the loop when it starts recording. */
  start(loop: EventLoop): void {
    this.#start = loop.time();
  }

  /** @ignore Called by the loop when it closes. */
  stop(loop: EventLoop): void {
    this.#end = loop.time();
  }

  /** @ignore Called by the loop at each change in a task's life. */
  record(
    task: Task<unknown>,
    state: TimelineEvent["state"],
    time: number,
  ): void {
    if (this.#lastState.get(task) === state) return;
    this.#lastState.set(task, state);
    this.events.push({ task: task.getName(), state, time: time - this.#start });
  }

  /** The time span recorded, in ms. */
  duration(): number {
    const last = this.events.at(-1)?.time ?? 0;
    return Math.max(last, this.#end === null ? 0 : this.#end - this.#start);
  }

  /** An ASCII chart: one row per task, `#` running, `.` waiting. */
  toText(width = 60): string {
    const span = this.duration() || 1;
    const names = [...new Set(this.events.map((event) => event.task))];
    const pad = Math.max(...names.map((name) => name.length), 4);
    const rows = names.map((name) => {
      const cells = new Array(width).fill(" ");
      const mine = this.events.filter((event) => event.task === name);
      for (let i = 0; i < mine.length; i++) {
        const from = Math.floor((mine[i].time / span) * (width - 1));
        const to = i + 1 < mine.length
          ? Math.floor((mine[i + 1].time / span) * (width - 1))
          : from;
        const mark = mine[i].state === "running"
          ? "#"
          : mine[i].state === "waiting"
          ? "."
          : " ";
        for (let c = from; c <= Math.max(from, to); c++) {
          if (cells[c] !== "#") cells[c] = mark;
        }
      }
      return `${name.padEnd(pad)} |${cells.join("")}|`;
    });
    rows.push(
      `${"".padEnd(pad)}  0 ms${`${Math.round(span)} ms`.padStart(width - 4)}`,
    );
    return rows.join("\n");
  }
}
