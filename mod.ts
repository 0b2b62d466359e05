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
   *
   * The clock holds still while a task waits on a promise wrapped with
   * {@linkcode wrapFuture}. A task awaiting a bare promise the loop cannot
   * see (`fetch()`, `new Promise(...)`) holds it still too, but for at most
   * one second of real idleness, after which the clock jumps anyway rather
   * than hang.
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

// Under virtual time, how long (real ms) the loop waits, idle, for a task
// that awaits something it cannot see, before jumping the clock anyway.
const IDLE_JUMP_MS = 1000;

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
let liveTasksOf: (loop: EventLoop) => Task<unknown>[];
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
let loopYieldFuture: (loop: EventLoop) => Future<void>;
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
        const call = callback as (...args: unknown[]) => unknown;
        const args = handle.#args;
        // Spreading is slow on a hot path; most callbacks take 0 to 2.
        switch (args.length) {
          case 0:
            call();
            break;
          case 1:
            call(args[0]);
            break;
          case 2:
            call(args[0], args[1]);
            break;
          default:
            call(...args);
        }
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
  #idleJumpTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #batchCount = 0;
  #unblockedTasks = 0;
  #foreignWaits = 0;
  #liveTasks: Task<unknown>[] = [];
  #yieldFuture: Future<void> | null = null;
  #plainTaskOptions: TaskOptions & { loop: EventLoop } = { loop: this };
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
    return new Task(
      coro,
      options.name === undefined && !options.eagerStart
        ? this.#plainTaskOptions
        : { ...options, loop: this },
    );
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
    if (this.#idleJumpTimer !== undefined) clearTimeout(this.#idleJumpTimer);
    this.#idleJumpTimer = undefined;
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
    this.#batchCount++;
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
    if (this.#foreignWaits > 0) return;
    if (this.#unblockedTasks > 0) {
      // A task awaits something the loop cannot see (a bare promise). It
      // may be waiting for one of our timers through it: jump anyway once
      // the loop has been idle for a while, rather than hang.
      this.#armIdleJump();
      return;
    }
    this.#jumpToNextTimer();
  };

  #armIdleJump(): void {
    if (
      this.#idleJumpTimer !== undefined || this.#scheduledTimers.length === 0
    ) {
      return;
    }
    const batchesSeen = this.#batchCount;
    this.#idleJumpTimer = setTimeout(() => {
      this.#idleJumpTimer = undefined;
      if (this.#closed || this.#runScheduled) return;
      if (this.#batchCount !== batchesSeen || this.#foreignWaits > 0) {
        this.#scheduleIdleCheck();
      } else {
        this.#jumpToNextTimer();
      }
    }, IDLE_JUMP_MS);
  }

  #jumpToNextTimer(): void {
    this.#dropCancelledTop();
    const timers = this.#scheduledTimers;
    if (timers.length === 0 || timers[0].when() === Infinity) return;
    if (timers[0].when() > this.#virtualNow) {
      this.#virtualNow = timers[0].when();
    }
    this.#lastHostTurn = performance.now();
    taskContext.exit(this.#runOnce);
  }

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
    liveTasksOf = (loop) => loop.#liveTasks;
    noteTaskStarted = (loop, task) => {
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
    loopYieldFuture = (loop) => {
      if (loop.#yieldFuture === null) {
        loop.#yieldFuture = new Future<void>(loop);
        loop.#yieldFuture.setResult();
      }
      return loop.#yieldFuture;
    };
    timerCancelled = (loop, timer) => loop.#onTimerCancelled(timer);
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

// Hands an outcome to the callbacks `then` got, as a promise would.
function settleAwaiter(
  awaiter: Awaiter,
  state: typeof FULFILLED | typeof REJECTED,
  value: unknown,
): void {
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
}

type FutureCallback = DoneCallback<never> | Awaiter;

// Tags a done callback with the future that waits through it, so that
// captureCallGraph() can follow gather() and task groups upwards.
const AWAITED_BY = Symbol("awaitedBy");

function markAwaitedBy(callback: object, waiter: Future<unknown>): void {
  (callback as { [AWAITED_BY]?: Future<unknown> })[AWAITED_BY] = waiter;
}

let futureState: (future: Future<unknown>) => FutureState;
let futureAwaitedBy: (future: Future<unknown>) => Future<unknown>[];
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
 * Being promise-like, a future returned from an `async` function is awaited
 * by it, as a promise would be: return it inside an array or object to hand
 * over the future itself.
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
  // One callback or awaiter in a slot of its own (the common case), several
  // in an array: most futures are awaited once, and an array each costs.
  #callbacks: FutureCallback | FutureCallback[] | null = null;
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
      this.#addCallback(callback as DoneCallback<never>);
    }
  }

  /** Removes every registration of `callback`; returns how many there were. */
  removeDoneCallback(callback: DoneCallback<T>): number {
    const callbacks = this.#callbacks;
    if (callbacks === null) return 0;
    if (!Array.isArray(callbacks)) {
      if (callbacks !== callback) return 0;
      this.#callbacks = null;
      return 1;
    }
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
      settleAwaiter(
        awaiter,
        REJECTED,
        new RuntimeError(`Task cannot await on itself: ${task}`),
      );
      return promise;
    }
    if (this.#state !== PENDING) {
      scheduleStep(this.#loop, wakeAwaiter, awaiter);
    } else {
      this.#addCallback(awaiter);
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

  #addCallback(callback: FutureCallback): void {
    const callbacks = this.#callbacks;
    if (callbacks === null) this.#callbacks = callback;
    else if (Array.isArray(callbacks)) callbacks.push(callback);
    else this.#callbacks = [callbacks, callback];
  }

  #complete(state: FutureState): void {
    this.#state = state;
    const callbacks = this.#callbacks;
    if (callbacks === null) return;
    if (callbacks instanceof Awaiter) {
      this.#callbacks = null;
      scheduleStep(this.#loop, wakeAwaiter, callbacks);
    } else {
      // The callbacks stay in place until their step runs them, all in
      // order: one step per completion rather than one per callback.
      scheduleStep(this.#loop, Future.#runCallbacks, this as Future<unknown>);
    }
  }

  static #runCallbacks(future: Future<unknown>): void {
    const callbacks = future.#callbacks;
    future.#callbacks = null;
    if (callbacks === null) return;
    if (!Array.isArray(callbacks)) {
      Future.#runCallback(future, callbacks);
      return;
    }
    for (const callback of callbacks) Future.#runCallback(future, callback);
  }

  static #runCallback(future: Future<unknown>, callback: FutureCallback): void {
    if (callback instanceof Awaiter) {
      wakeAwaiter(callback);
      return;
    }
    try {
      (callback as DoneCallback<unknown>)(future);
    } catch (error) {
      future.#loop.callExceptionHandler({
        message: `Exception in done callback ${callback.name || "anonymous"}()`,
        exception: error,
        future,
      });
    }
  }

  static {
    futureState = (future) => future.#state;
    futureAwaitedBy = (future) => {
      const callbacks = future.#callbacks;
      const list = callbacks === null
        ? []
        : Array.isArray(callbacks)
        ? callbacks
        : [callbacks];
      const waiters: Future<unknown>[] = [];
      for (const callback of list) {
        const waiter = callback instanceof Awaiter
          ? callback.task
          : (callback as { [AWAITED_BY]?: Future<unknown> })[AWAITED_BY];
        if (waiter && !waiters.includes(waiter)) waiters.push(waiter);
      }
      return waiters;
    };
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
      settleAwaiter(
        awaiter,
        state as typeof FULFILLED | typeof REJECTED,
        value,
      );
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
  #name: string | null;
  #number: number;
  #liveIndex = -1;
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
    // The default name is made only when asked for: most tasks never are.
    this.#number = ++taskCounter;
    this.#name = options.name === undefined ? null : String(options.name);
    // A promise handed over whole can only be stopped being waited for: wrap
    // it, so that cancelling the task at least ends the wait.
    this.#coro = typeof coro === "function" ? coro : wrapFuture(coro, loop);
    const live = liveTasksOf(loop);
    this.#liveIndex = live.length;
    live.push(this);
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
    return this.#name ??= `Task-${this.#number}`;
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
    return `<Task ${this.describeState()} name='${this.getName()}'>`;
  }

  // The first step: run the coroutine function inside the task's context.
  static #step(task: Task<unknown>): void {
    const loop = task.#loop;
    if (task.#mustCancel) {
      // Cancelled before it ever ran: its function is never called.
      task.#mustCancel = false;
      task.#coro = null;
      Future.prototype.cancel.call(task, task.#cancelMessage);
      Task.#forget(task);
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
      if (result instanceof Promise) {
        // A native promise runs its reactions in the context `then` was
        // called in, this task's: no closures needed to find the task.
        result.then(Task.#coroutineReturned, Task.#coroutineThrew);
      } else {
        result.then(
          (value) => task.#finish(FULFILLED, value),
          (error) => task.#finish(REJECTED, error),
        );
      }
    } else {
      task.#finish(FULFILLED, result);
    }
  }

  static #coroutineReturned(value: unknown): void {
    taskContext.getStore()!.#finish(FULFILLED, value);
  }

  static #coroutineThrew(error: unknown): void {
    taskContext.getStore()!.#finish(REJECTED, error);
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
    Task.#forget(this);
    noteTaskDone(this.#loop, this, blocked);
  }

  // Takes the task out of its loop's live list, in O(1): the last task
  // moves into its slot.
  static #forget(task: Task<unknown>): void {
    const index = task.#liveIndex;
    if (index < 0) return;
    const live = liveTasksOf(task.#loop);
    const last = live.pop()!;
    if (last !== task) {
      live[index] = last;
      last.#liveIndex = index;
    }
    task.#liveIndex = -1;
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
      if (--task.#pendingWaits === 0) {
        noteTaskBlocked(task.#loop, false);
        loopTimeline(task.#loop)?.record(task, "running", task.#loop.time());
      }
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
  return new Set(liveTasksOf(currentLoop()).filter((task) => !task.done()));
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
 * Cancelling the task cancels the sleep: the promise rejects with
 * `CancelledError`. Await it where you call it: the task counts as waiting
 * on the sleep from the moment it is called.
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
  if (ms <= 0 && value === undefined) {
    // A bare yield: every one may share the loop's one finished future,
    // since nothing can change a finished future. It costs one loop step.
    return loopYieldFuture(loop).then() as Promise<T>;
  }
  const future = new SleepFuture<T>(loop);
  if (ms <= 0) {
    future.setResult(value as T);
  } else {
    future.timer = loop.callLater(ms, finishSleep, future, value as T);
  }
  // Registering the wait here, where the task calls sleep(), and handing
  // back a native promise spares V8 the slower await of a thenable.
  return future.then();
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
  const leftover = liveTasksOf(loop).filter((task) => !task.done());
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
    markAwaitedBy(onChildDone, this);
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
export async function wait<F extends Future<unknown>>(
  aws: Iterable<F>,
  options: WaitOptions = {},
): Promise<[Set<F>, Set<F>]> {
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
  const onDone = (future: Future<unknown>) => {
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
  const done = new Set<F>();
  const pending = new Set<F>();
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
  body: (cm: Timeout) => PromiseLike<T> | T,
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
  body: (cm: Timeout) => PromiseLike<T> | T,
): Promise<T> {
  const deadline = requireOptionalMilliseconds(when, "timeoutAt()", "when");
  requireFunction(body, "timeoutAt()", "body");
  return inTask((task) => timeoutScope(new Timeout(deadline), task, body));
}

async function timeoutScope<T>(
  cm: Timeout,
  task: Task<unknown>,
  body: (cm: Timeout) => PromiseLike<T> | T,
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
      markAwaitedBy(group.#onTaskDone, parent);
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
  body: (tg: TaskGroup) => PromiseLike<T> | T,
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
// Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier.
// (Built in its own change; this banner keeps the book's order.)
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Queues
//
// Queue, PriorityQueue, LifoQueue.
// (Built in its own change; this banner keeps the book's order.)
// ---------------------------------------------------------------------------

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
// Which task awaits which (asyncio 3.14's call graphs). A future knows its
// waiters: the awaiters in its callbacks, and the done callbacks that
// gather and task groups tag with the future they serve. JavaScript keeps
// no suspended async frames to show, so a graph has no call stacks.
// Relies on futures and tasks.
// ---------------------------------------------------------------------------

/**
 * A node of the graph {@linkcode captureCallGraph} returns: a future or
 * task, and the graphs of what awaits it.
 */
export interface FutureCallGraph {
  /** The future or task. */
  readonly future: Future<unknown>;
  /**
   * The frames of its coroutine, as Python shows them. Always empty here:
   * JavaScript does not expose suspended async frames.
   */
  readonly callStack: readonly string[];
  /** What awaits this future, each with its own graph. */
  readonly awaitedBy: readonly FutureCallGraph[];
}

/**
 * The graph of what awaits `future` (default: the current task), following
 * tasks awaiting futures and tasks, `gather()` and task groups, up to the
 * top. `null` outside a task when no future is given.
 *
 * @example
 * ```ts
 * import { captureCallGraph, createTask, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const child = createTask(() => sleep(10), { name: "child" });
 *   const parent = createTask(async () => await child, { name: "parent" });
 *   await sleep(0);
 *   const graph = captureCallGraph(child)!;
 *   console.log(graph.awaitedBy.length); // 1: the parent
 *   await parent;
 * });
 * ```
 */
export function captureCallGraph(
  future?: Future<unknown>,
): FutureCallGraph | null {
  const target = future ?? currentTask();
  if (target === null) return null;
  if (!(target instanceof Future)) {
    throw new TypeError(
      `captureCallGraph(): future must be a Future or Task, got ${
        describeValue(target)
      }`,
    );
  }
  const build = (
    node: Future<unknown>,
    path: Set<Future<unknown>>,
  ): FutureCallGraph => {
    path.add(node);
    const awaitedBy = futureAwaitedBy(node)
      .filter((waiter) => !path.has(waiter))
      .map((waiter) => build(waiter, path));
    path.delete(node);
    return { future: node, callStack: [], awaitedBy };
  };
  return build(target, new Set());
}

function describeFuture(future: Future<unknown>): string {
  if (future instanceof Task) return `Task(name='${future.getName()}')`;
  return future instanceof GatheringFuture ? "Future(gather)" : String(future);
}

/**
 * The graph of {@linkcode captureCallGraph} as text, one line per future,
 * in the layout Python prints.
 *
 * @example
 * ```ts
 * import { createTask, formatCallGraph, run, sleep } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const child = createTask(() => sleep(10), { name: "child" });
 *   const parent = createTask(async () => await child, { name: "parent" });
 *   await sleep(0);
 *   console.log(formatCallGraph(child));
 *   // * Task(name='child')
 *   // + Awaited by:
 *   //    * Task(name='parent')
 *   await parent;
 * });
 * ```
 */
export function formatCallGraph(future?: Future<unknown>): string {
  const graph = captureCallGraph(future);
  if (graph === null) return "";
  const lines: string[] = [];
  const render = (node: FutureCallGraph, indent: string) => {
    lines.push(`${indent}* ${describeFuture(node.future)}`);
    if (node.awaitedBy.length === 0) return;
    lines.push(`${indent}+ Awaited by:`);
    for (const waiter of node.awaitedBy) render(waiter, `${indent}   `);
  };
  render(graph, "");
  return lines.join("\n");
}

/**
 * Prints {@linkcode formatCallGraph} to the console.
 *
 * @example
 * ```ts
 * import { printCallGraph, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   printCallGraph(); // * Task(name='Task-1')
 * });
 * ```
 */
export function printCallGraph(future?: Future<unknown>): void {
  const text = formatCallGraph(future);
  if (text !== "") console.log(text);
}

// ---------------------------------------------------------------------------
// Timelines
//
// A record of every task's life (created, running, waiting, done) on a
// loop, drawn as text or SVG. Relies only on the loop calling `record`.
// A task runs for microseconds between waits that last seconds, so both
// drawings give a running slice a minimum width (one character, a few
// pixels): otherwise the moments when a task actually runs would vanish.
// ---------------------------------------------------------------------------

/** What a task is doing, as a {@linkcode Timeline} records it. */
export type TimelineState = "created" | "running" | "waiting" | "done";

/** How a task ended: with a result, with an error, or cancelled. */
export type TimelineOutcome = "result" | "error" | "cancelled";

/** One change in a task's life, as a {@linkcode Timeline} records it. */
export interface TimelineEvent {
  /** Which task: 1 for the first task the timeline saw, 2 for the next… */
  id: number;
  /** The task's name at the time. */
  task: string;
  /** What the task started doing. */
  state: TimelineState;
  /** Loop time since the recording started, in ms. */
  time: number;
  /** With state `"done"`: how the task ended. */
  outcome?: TimelineOutcome;
}

/** A stretch of a task's life in one state, from one time to another (ms). */
export interface TimelineSpan {
  /** `created` means scheduled but not started yet. */
  state: Exclude<TimelineState, "done">;
  /** Start, in ms since the recording started. */
  from: number;
  /** End, in ms since the recording started. */
  to: number;
}

/** One task's row of a chart, as {@linkcode Timeline.rows} gives it. */
export interface TimelineRow {
  /** The task's id in {@linkcode TimelineEvent}. */
  id: number;
  /** The task's latest name. */
  name: string;
  /** Its life, in order, without gaps. */
  spans: TimelineSpan[];
  /** When it finished, in ms, or `null` if it had not. */
  end: number | null;
  /** How it finished, or `null` if it had not. */
  outcome: TimelineOutcome | null;
}

/** Options for {@linkcode Timeline.toSVG} and {@linkcode Timeline.toText}. */
export interface TimelineDrawOptions {
  /** Width of the picture in px (SVG, default 720) or of the bars in characters (text, default 60). */
  width?: number;
  /** Heading drawn above the chart; by default the timeline's own title. */
  title?: string;
  /**
   * The time the axis spans, in ms; by default the time recorded. Give two
   * charts the same duration to compare them at the same scale.
   */
  duration?: number;
}

/** Options for `new Timeline()`. */
export interface TimelineOptions {
  /** A heading for the pictures of this timeline. */
  title?: string;
}

const TIMELINE_COLORS = {
  running: "#e8590c",
  waiting: "#a5c8ed",
  created: "#b8b8b8",
  error: "#c92a2a",
  cancelled: "#868e96",
  text: "#212529",
  grid: "#dee2e6",
  stripe: "#f5f6f7",
} as const;

// Fixed metrics: the SVG must lay itself out without a font to measure.
const SVG_FONT = 'font-family="Helvetica, Arial, sans-serif"';
const SVG_CHAR_WIDTH = 7;
const SVG_ROW_HEIGHT = 26;
const SVG_MIN_RUNNING_WIDTH = 3;

function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Milliseconds for labels: whole above 10 ms, one decimal below.
function formatMs(ms: number): string {
  return `${Math.abs(ms) >= 10 ? Math.round(ms) : Number(ms.toFixed(1))} ms`;
}

// A tick spacing of 1, 2 or 5 times a power of ten, about `count` per axis.
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  let best = power;
  for (const m of [2, 5, 10]) {
    if (Math.abs(Math.log(m * power / raw)) < Math.abs(Math.log(best / raw))) {
      best = m * power;
    }
  }
  return best;
}

function outcomeLabel(row: TimelineRow): string {
  if (row.end === null) return "";
  const at = formatMs(row.end);
  return row.outcome === "error"
    ? `${at}, failed`
    : row.outcome === "cancelled"
    ? `${at}, cancelled`
    : at;
}

/**
 * Records each task's life on a loop: pass one to `run(main, { timeline })`.
 * Then `toText()` draws it for a terminal and `toSVG()` as a Gantt chart: a
 * row per task, thin grey while it is scheduled but not started, light blue
 * while it waits, orange when it runs. In a Jupyter notebook (Deno kernel),
 * a cell that ends with the timeline shows the SVG.
 *
 * A task counts as waiting only while it awaits a future of this library
 * (a sleep, a task, a queue…); awaiting a foreign promise looks like
 * running. A timeline records one loop: passing it to another `run()`
 * starts a new recording.
 *
 * @example The tutorial's two tasks, under virtual time
 * ```ts
 * import { createTask, run, sleep, Timeline } from "@aio/asyncio";
 *
 * const timeline = new Timeline({ title: "two tasks" });
 * await run(async () => {
 *   const hello = createTask(() => sleep(1000), { name: "hello" });
 *   const world = createTask(() => sleep(2000), { name: "world" });
 *   await hello;
 *   await world;
 * }, { timeline, virtualTime: true });
 * console.log(timeline.toText());
 * // two tasks
 * // Task-1 |#-----------------------------#----------------------------#| 2000 ms
 * // hello  |#-----------------------------#                             | 1000 ms
 * // world  |#----------------------------------------------------------#| 2000 ms
 * //         0 ms                                                 2000 ms
 * //         # running  - waiting  . scheduled
 * await Deno.writeTextFile("timeline.svg", timeline.toSVG());
 * ```
 */
export class Timeline {
  /** Every event recorded, in order. */
  readonly events: TimelineEvent[] = [];
  /** The heading of its pictures. */
  title: string | undefined;
  #start = 0;
  #end: number | null = null;
  #ids = new WeakMap<Task<unknown>, number>();
  #names: string[] = [];
  #lastStates: TimelineState[] = [];

  /** An empty timeline, to pass to `run(main, { timeline })`. */
  constructor(options: TimelineOptions = {}) {
    this.title = options.title;
  }

  /** @ignore Called by the loop when it starts recording. */
  start(loop: EventLoop): void {
    this.events.length = 0;
    this.#ids = new WeakMap();
    this.#names = [];
    this.#lastStates = [];
    this.#start = loop.time();
    this.#end = null;
  }

  /** @ignore Called by the loop when it closes. */
  stop(loop: EventLoop): void {
    this.#end = loop.time() - this.#start;
  }

  /** @ignore Called by the loop at each change in a task's life. */
  record(task: Task<unknown>, state: TimelineState, time: number): void {
    let id = this.#ids.get(task);
    if (id === undefined) {
      id = this.#names.push("");
      this.#ids.set(task, id);
    }
    // A row keeps the task's latest name, so renaming it later still labels
    // its whole life.
    const name = task.getName();
    this.#names[id - 1] = name;
    if (this.#lastStates[id - 1] === state) return;
    this.#lastStates[id - 1] = state;
    const event: TimelineEvent = {
      id,
      task: name,
      state,
      time: time - this.#start,
    };
    if (state === "done") {
      // Read the state directly: exception() would mark a failure as seen
      // and silence the loop's "exception was never retrieved".
      const finalState = futureState(task);
      event.outcome = finalState === CANCELLED
        ? "cancelled"
        : finalState === REJECTED
        ? "error"
        : "result";
    }
    this.events.push(event);
  }

  /** The time span recorded, in ms: up to the loop's close, or the last event. */
  duration(): number {
    const last = this.events.at(-1)?.time ?? 0;
    return Math.max(last, this.#end ?? 0);
  }

  /**
   * One row per task, in the order the tasks appeared, each its life as
   * spans of one state. A task not done yet runs to {@linkcode duration}.
   */
  rows(): TimelineRow[] {
    const rows: TimelineRow[] = this.#names.map((name, i) => ({
      id: i + 1,
      name,
      spans: [],
      end: null,
      outcome: null,
    }));
    const open: Array<{ state: TimelineSpan["state"]; from: number } | null> =
      rows.map(() => null);
    for (const event of this.events) {
      const row = rows[event.id - 1];
      const current = open[event.id - 1];
      if (current !== null) row.spans.push({ ...current, to: event.time });
      if (event.state === "done") {
        open[event.id - 1] = null;
        row.end = event.time;
        row.outcome = event.outcome ?? "result";
      } else {
        open[event.id - 1] = { state: event.state, from: event.time };
      }
    }
    const end = this.duration();
    rows.forEach((row, i) => {
      const current = open[i];
      if (current !== null) row.spans.push({ ...current, to: end });
    });
    return rows;
  }

  /**
   * An ASCII chart for terminals: a row per task, `#` running, `-` waiting,
   * `.` scheduled but not started, then when and how the task ended, with
   * a time axis and a legend below.
   *
   * @example
   * ```ts
   * import { run, sleep, Timeline } from "@aio/asyncio";
   *
   * const timeline = new Timeline();
   * await run(() => sleep(1000), { timeline, virtualTime: true });
   * console.log(timeline.toText({ width: 20 }));
   * // Task-1 |#------------------#| 1000 ms
   * //         0 ms         1000 ms
   * //         # running  - waiting  . scheduled
   * ```
   */
  toText(options: TimelineDrawOptions = {}): string {
    const width = Math.max(10, Math.floor(options.width ?? 60));
    const span = options.duration ?? this.duration();
    const scale = width / (span || 1);
    const rows = this.rows();
    const pad = Math.max(4, ...rows.map((row) => row.name.length));
    const lines: string[] = [];
    const title = options.title ?? this.title;
    if (title !== undefined) lines.push(title);
    const marks = { created: ".", waiting: "-", running: "#" } as const;
    for (const row of rows) {
      const cells: string[] = new Array(width).fill(" ");
      // Later states overwrite earlier ones in a shared cell: running last.
      for (const state of ["created", "waiting", "running"] as const) {
        for (const s of row.spans) {
          if (s.state !== state) continue;
          const from = Math.min(width - 1, Math.floor(s.from * scale));
          const to = Math.min(width - 1, Math.ceil(s.to * scale) - 1);
          for (let c = from; c <= Math.max(from, to); c++) {
            cells[c] = marks[state];
          }
        }
      }
      const label = outcomeLabel(row);
      lines.push(
        `${row.name.padEnd(pad)} |${cells.join("")}|${
          label ? ` ${label}` : ""
        }`,
      );
    }
    const right = formatMs(span);
    lines.push(
      `${"".padEnd(pad)}  0 ms${right.padStart(width - 4)}`,
      `${"".padEnd(pad)}  # running  - waiting  . scheduled`,
    );
    return lines.join("\n");
  }

  /**
   * An SVG Gantt chart: a row per task with its name, orange where it ran,
   * light blue where it waited, grey where it was scheduled but not
   * started, and when (and how) it ended; a time axis in ms and a legend.
   *
   * @example
   * ```ts
   * import { run, sleep, Timeline } from "@aio/asyncio";
   *
   * const timeline = new Timeline({ title: "one sleep" });
   * await run(() => sleep(1000), { timeline, virtualTime: true });
   * await Deno.writeTextFile("sleep.svg", timeline.toSVG({ width: 600 }));
   * ```
   */
  toSVG(options: TimelineDrawOptions = {}): string {
    return this.#draw(options, 0).svg;
  }

  /**
   * Several timelines as one SVG, next to each other on the same time
   * scale (the longest duration, unless `options.duration` is given), so
   * they compare at a glance. `options.width` is the width of each chart.
   *
   * @example
   * ```ts
   * import { run, sleep, Timeline } from "@aio/asyncio";
   *
   * const one = new Timeline({ title: "1 s" });
   * const two = new Timeline({ title: "2 s" });
   * await run(() => sleep(1000), { timeline: one, virtualTime: true });
   * await run(() => sleep(2000), { timeline: two, virtualTime: true });
   * const svg = Timeline.sideBySide([one, two], { width: 400 });
   * ```
   */
  static sideBySide(
    timelines: Timeline[],
    options: Omit<TimelineDrawOptions, "title"> = {},
  ): string {
    const duration = options.duration ??
      Math.max(0, ...timelines.map((t) => t.duration()));
    const gap = 16;
    // The same label column in each chart keeps the time scales equal.
    const labelWidth = Math.max(...timelines.map((t) => t.#labelWidth()));
    let x = 0;
    let height = 0;
    const parts: string[] = [];
    for (const timeline of timelines) {
      const chart = timeline.#draw({ ...options, duration }, x, labelWidth);
      parts.push(chart.svg);
      x += chart.width + gap;
      height = Math.max(height, chart.height);
    }
    const width = Math.max(0, x - gap);
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" ` +
      `height="${height}" viewBox="0 0 ${width} ${height}">\n` +
      `${parts.join("\n")}\n</svg>\n`;
  }

  /**
   * How Jupyter shows a timeline: the SVG chart, with the text chart for
   * frontends without pictures. The Deno kernel calls this when a cell
   * ends with a timeline.
   */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return { "image/svg+xml": this.toSVG(), "text/plain": this.toText() };
  }

  // Room for the longest task name, in px.
  #labelWidth(): number {
    const longest = Math.max(4, ...this.#names.map((name) => name.length));
    return longest * SVG_CHAR_WIDTH + 16;
  }

  #draw(
    options: TimelineDrawOptions,
    offsetX: number,
    labelWidthWanted = this.#labelWidth(),
  ): { svg: string; width: number; height: number } {
    const width = Math.max(320, options.width ?? 720);
    const span = options.duration ?? this.duration();
    const rows = this.rows();
    const title = options.title ?? this.title;
    const labelWidth = Math.min(width * 0.4, labelWidthWanted);
    const plotLeft = labelWidth;
    // Room on the right for the end labels ("150 ms, cancelled").
    const endLabel = Math.max(
      8,
      ...rows.map((row) => outcomeLabel(row).length),
    );
    const plotRight = width - Math.ceil(endLabel * SVG_CHAR_WIDTH + 16);
    const plotWidth = plotRight - plotLeft;
    const scale = plotWidth / (span || 1);
    const top = title === undefined ? 10 : 36;
    const plotBottom = top + rows.length * SVG_ROW_HEIGHT;
    const height = plotBottom + 62;
    const xOf = (ms: number) => plotLeft + Math.min(ms, span) * scale;
    const out: string[] = [];
    out.push(
      `<svg xmlns="http://www.w3.org/2000/svg" x="${offsetX}" y="0" ` +
        `width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
        `${SVG_FONT} font-size="12">`,
      `<rect width="${width}" height="${height}" fill="white"/>`,
    );
    if (title !== undefined) {
      out.push(
        `<text x="${plotLeft}" y="22" font-size="14" font-weight="bold" ` +
          `fill="${TIMELINE_COLORS.text}">${escapeXml(title)}</text>`,
      );
    }
    rows.forEach((_, i) => {
      if (i % 2 === 1) {
        out.push(
          `<rect x="0" y="${top + i * SVG_ROW_HEIGHT}" width="${width}" ` +
            `height="${SVG_ROW_HEIGHT}" fill="${TIMELINE_COLORS.stripe}"/>`,
        );
      }
    });
    // The axis: grid lines across the rows, a labelled tick under each.
    const step = niceStep(span || 1, Math.max(3, Math.floor(plotWidth / 100)));
    for (let t = 0; t <= span + step * 1e-9; t += step) {
      const x = round2(xOf(t));
      out.push(
        `<line x1="${x}" y1="${top}" x2="${x}" y2="${plotBottom + 4}" ` +
          `stroke="${TIMELINE_COLORS.grid}"/>`,
        `<text x="${x}" y="${plotBottom + 17}" text-anchor="middle" ` +
          `fill="${TIMELINE_COLORS.text}">${formatMs(t)}</text>`,
      );
    }
    out.push(
      `<line x1="${plotLeft}" y1="${plotBottom}" x2="${plotRight}" ` +
        `y2="${plotBottom}" stroke="${TIMELINE_COLORS.text}"/>`,
    );
    rows.forEach((row, i) => {
      const y = top + i * SVG_ROW_HEIGHT;
      const middle = y + SVG_ROW_HEIGHT / 2;
      const maxChars = Math.floor((labelWidth - 12) / SVG_CHAR_WIDTH);
      const name = row.name.length > maxChars
        ? `${row.name.slice(0, Math.max(1, maxChars - 1))}…`
        : row.name;
      out.push(
        `<text x="${plotLeft - 8}" y="${middle + 4}" text-anchor="end" ` +
          `fill="${TIMELINE_COLORS.text}">${escapeXml(name)}` +
          `<title>${escapeXml(row.name)}</title></text>`,
      );
      for (const state of ["created", "waiting", "running"] as const) {
        const barHeight = state === "running"
          ? 18
          : state === "waiting"
          ? 12
          : 4;
        for (const s of row.spans) {
          if (s.state !== state || s.from > span) continue;
          let x = xOf(s.from);
          let w = xOf(s.to) - x;
          if (state === "running" && w < SVG_MIN_RUNNING_WIDTH) {
            w = SVG_MIN_RUNNING_WIDTH;
            x = Math.min(x, plotRight - w);
          }
          if (w <= 0) continue;
          out.push(
            `<rect x="${round2(x)}" y="${round2(middle - barHeight / 2)}" ` +
              `width="${round2(w)}" height="${barHeight}" ` +
              `fill="${TIMELINE_COLORS[state]}"><title>` +
              `${escapeXml(row.name)}: ${
                state === "created" ? "scheduled" : state
              } ` +
              `${formatMs(s.from)} to ${formatMs(s.to)}</title></rect>`,
          );
        }
      }
      if (row.end !== null && row.end <= span) {
        const color = row.outcome === "error"
          ? TIMELINE_COLORS.error
          : row.outcome === "cancelled"
          ? TIMELINE_COLORS.cancelled
          : TIMELINE_COLORS.text;
        const x = round2(
          Math.min(xOf(row.end) + SVG_MIN_RUNNING_WIDTH, plotRight),
        );
        out.push(
          `<line x1="${x}" y1="${middle - 9}" x2="${x}" y2="${middle + 9}" ` +
            `stroke="${color}" stroke-width="2"/>`,
          `<text x="${x + 6}" y="${middle + 4}" fill="${color}">` +
            `${escapeXml(outcomeLabel(row))}</text>`,
        );
      }
    });
    // The legend, under the axis labels.
    const legendY = plotBottom + 40;
    let lx = plotLeft;
    for (
      const [state, label, h] of [
        ["running", "running", 14],
        ["waiting", "waiting", 10],
        ["created", "scheduled", 4],
      ] as const
    ) {
      out.push(
        `<rect x="${lx}" y="${legendY - h / 2}" width="18" height="${h}" ` +
          `fill="${TIMELINE_COLORS[state]}"/>`,
        `<text x="${lx + 24}" y="${
          legendY + 4
        }" fill="${TIMELINE_COLORS.text}">` +
          `${label}</text>`,
      );
      lx += 24 + label.length * SVG_CHAR_WIDTH + 16;
    }
    out.push("</svg>");
    return { svg: out.join("\n"), width, height };
  }
}

function round2(n: number): number {
  return Math.round(n * 100) / 100;
}
