/**
 * Python's `asyncio`, in TypeScript, for Deno, Bun and Node.js.
 *
 * Coroutines are plain `async` functions. A {@linkcode Task} runs one of them
 * concurrently with the others, and can be cancelled at the exact `await` it
 * is blocked on, as in Python. Around that core sits the rest of asyncio:
 *
 * - running and waiting: {@linkcode run}, {@linkcode gather},
 *   {@linkcode wait}, {@linkcode waitFor}, {@linkcode asCompleted},
 *   {@linkcode timeout}, {@linkcode taskGroup}, {@linkcode shield};
 * - synchronization and queues: {@linkcode Lock}, {@linkcode Event},
 *   {@linkcode Condition}, {@linkcode Semaphore}, {@linkcode Barrier},
 *   {@linkcode Queue}, {@linkcode PriorityQueue}, {@linkcode LifoQueue};
 * - network I/O and processes: {@linkcode openConnection},
 *   {@linkcode startServer}, {@linkcode createSubprocessExec}, and below
 *   them transports and protocols;
 * - the low-level {@linkcode EventLoop}: callbacks, timers, futures, signals.
 *
 * The file is in dependency order, not documentation order: it reads top
 * down, in 21 numbered sections (`grep '^// §' mod.ts` is the table of
 * contents), each opening with a banner that says what it holds, its rule,
 * what it relies on and who uses it. Helpers used everywhere come first
 * (errors, argument checks, internal collections), then the core (event
 * loop, futures, tasks, waiting and timeouts, task groups, runners), then
 * what is built on it (synchronization, queues, I/O plumbing, transports and
 * protocols, streams, signals, subprocesses, executors, task factories, name
 * resolution, introspection, timelines). The few back-edges are calls from
 * inside functions, made once the whole file has loaded:
 * - the argument checks test for an `EventLoop`, a `Future`, a `Timeline`, a
 *   transport or a protocol;
 * - the event loop wakes and starts tasks through accessors of the futures
 *   and tasks sections (`wakeAwaiter`, `taskStartStep`, `cancelWantsQuiet`,
 *   `taskStalled`); its I/O methods are one-line delegations to the I/O
 *   sections, and it closes what they own;
 * - a future registers the awaiting task through the tasks section
 *   (`taskWillWait`, `taskWakes`);
 * - transports and protocols call the streams section (`adoptTransport`,
 *   `toBytes`, and a StreamWriter for startTls).

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
import * as childProcess from "node:child_process";
import type { ChildProcess } from "node:child_process";
import * as dgram from "node:dgram";
import * as fs from "node:fs";
import * as net from "node:net";
import { constants as osConstants } from "node:os";
import process from "node:process";
import type { Readable, Writable } from "node:stream";
import * as tls from "node:tls";
import { availableParallelism } from "node:os";
import { resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import * as dns from "node:dns";
import {
  Readable as NodeReadable,
  Writable as NodeWritable,
} from "node:stream";

// ===========================================================================
// §1 Errors
// Holds: asyncio's exception classes, CancelledError to KeyboardInterrupt,
// and the streams' IncompleteReadError and LimitOverrunError.
// Rule: each is a real `Error` subclass with its own `name`, so that
// `instanceof`, messages and stack traces work, minified or not.
// Relies on: nothing. Used by: every section below.
// ===========================================================================

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
export class CancelledError extends Error {}

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
export class TimeoutError extends Error {}

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
export class InvalidStateError extends Error {}

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
export class RuntimeError extends Error {}

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
export class QueueEmpty extends Error {}

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
export class QueueFull extends Error {}

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
export class QueueShutDown extends Error {}

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
export class BrokenBarrierError extends Error {}

/**
 * Ctrl-C stopped the program: what {@linkcode run} and
 * {@linkcode Runner.run} throw when the first SIGINT cancelled the main
 * task and the task ended cancelled, as Python's `KeyboardInterrupt`.
 *
 * @example
 * ```ts
 * import { KeyboardInterrupt } from "@aio/asyncio";
 *
 * console.log(new KeyboardInterrupt().name); // "KeyboardInterrupt"
 * ```
 */
export class KeyboardInterrupt extends Error {}

// Each error names itself on its prototype, as the built-in errors do, so
// that stack traces and messages say `QueueEmpty: ...`. The names are
// spelled out rather than read from the classes, which minifiers rename.
function nameErrorClasses(classes: Record<string, { prototype: Error }>) {
  for (const [name, errorClass] of Object.entries(classes)) {
    Object.defineProperty(errorClass.prototype, "name", {
      value: name,
      writable: true,
      configurable: true,
    });
  }
}

nameErrorClasses({
  KeyboardInterrupt,
  CancelledError,
  TimeoutError,
  InvalidStateError,
  RuntimeError,
  QueueEmpty,
  QueueFull,
  QueueShutDown,
  BrokenBarrierError,
});

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

// ===========================================================================
// §2 Argument checks
// Holds: the checks of public functions' arguments (`require*` for one
// value, `check*Arguments` for a call), and the rule for setException().
// Rule: bad input fails at the call, with a TypeError or RangeError that
// names the function and the argument, rather than as a hang or a NaN
// deadline much later, or at the await.
// Relies on: §1 Errors; back-edges: `instanceof` EventLoop, Future and
// Timeline, which are defined below. Used by: every public function.
// ===========================================================================

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

function requireOptionsObject(
  value: unknown,
  where: string,
  argument = "options",
): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== "object") {
    throw new TypeError(
      `${where}: ${argument} must be an object, got ${describeValue(value)}`,
    );
  }
  return value as Record<string, unknown>;
}

function requireOptionalBoolean(
  value: unknown,
  where: string,
  argument: string,
): void {
  if (value !== undefined && typeof value !== "boolean") {
    throw new TypeError(
      `${where}: ${argument} must be true or false, got ${
        describeValue(value)
      }`,
    );
  }
}

// A count of bytes, items or parties: an integer, where asyncio would raise
// TypeError for a float and ValueError (here RangeError) below `min`.
function requireInteger(
  value: unknown,
  where: string,
  argument: string,
  min = -Infinity,
): number {
  if (typeof value !== "number" || !Number.isInteger(value)) {
    throw new TypeError(
      `${where}: ${argument} must be an integer, got ${describeValue(value)}`,
    );
  }
  if (value < min) {
    throw new RangeError(
      `${where}: ${argument} must be >= ${min}, got ${value}`,
    );
  }
  return value;
}

// Options a loop is made with: by run(), Runner, new EventLoop().
function checkLoopOptions(options: unknown, where: string): void {
  const given = requireOptionsObject(options, where);
  requireOptionalBoolean(given.debug, where, "options.debug");
  requireOptionalBoolean(given.virtualTime, where, "options.virtualTime");
  requireOptionalBoolean(given.handleSignals, where, "options.handleSignals");
  const timeline = given.timeline;
  if (timeline !== undefined && !(timeline instanceof Timeline)) {
    throw new TypeError(
      `${where}: options.timeline must be a Timeline, got ${
        describeValue(timeline)
      }`,
    );
  }
}

function checkSetEventLoopArgument(loop: unknown): void {
  if (loop !== null && !(loop instanceof EventLoop)) {
    throw new TypeError(
      `setEventLoop(): loop must be an EventLoop or null, got ${
        describeValue(loop)
      }`,
    );
  }
}

function checkTaskOptions(options: unknown, where: string): void {
  // As asyncio, any name is taken (made a string); eagerStart must be a
  // boolean, since a truthy string is more likely a slip than a wish.
  const given = requireOptionsObject(options, where);
  requireOptionalBoolean(given.eagerStart, where, "options.eagerStart");
}

function checkRunArguments(main: unknown, options: unknown): void {
  requireCoro(main, "run()", "main");
  checkLoopOptions(options, "run()");
}

// asyncio's run_until_complete() is a plain function: a closed or running
// loop is refused at the call, not at the await.
function checkRunUntilComplete(loop: EventLoop, future: unknown): void {
  if (!(future instanceof Future)) {
    requireCoro(future, "runUntilComplete()", "future");
  }
  if (loop.isClosed()) throw new RuntimeError("Event loop is closed");
  if (loop.isRunning()) {
    throw new RuntimeError("This event loop is already running");
  }
}

function checkCreateTaskArguments(coro: unknown, options: unknown): void {
  requireCoro(coro, "createTask()", "coro");
  checkTaskOptions(options, "createTask()");
}

function requireIterable(value: unknown, where: string, argument: string) {
  if (
    value === null || value === undefined ||
    typeof (value as Iterable<unknown>)[Symbol.iterator] !== "function"
  ) {
    throw new TypeError(
      `${where}: ${argument} must be an iterable of futures or tasks, got ${
        describeValue(value)
      }`,
    );
  }
}

function checkWaitArguments(aws: unknown, options: unknown): void {
  requireIterable(aws, "wait()", "aws");
  // A one-shot iterator (a generator) cannot be read twice: only a
  // re-readable collection is checked here; wait() checks the rest.
  if (
    Array.isArray(aws) || aws instanceof Set
  ) {
    const items = [...(aws as Iterable<unknown>)];
    if (items.length === 0) {
      throw new RangeError("wait(): aws is empty: give it futures or tasks");
    }
    for (const item of items) {
      if (!(item instanceof Future)) {
        throw new TypeError(
          `wait(): aws must hold futures or tasks (wrap a coroutine with createTask()), got ${
            describeValue(item)
          }`,
        );
      }
    }
  }
  const given = requireOptionsObject(options, "wait()");
  requireOptionalMilliseconds(given.timeout, "wait()", "options.timeout");
  const returnWhen = given.returnWhen;
  if (
    returnWhen !== undefined && returnWhen !== "FIRST_COMPLETED" &&
    returnWhen !== "FIRST_EXCEPTION" && returnWhen !== "ALL_COMPLETED"
  ) {
    throw new RangeError(
      `wait(): options.returnWhen must be FIRST_COMPLETED, FIRST_EXCEPTION or ALL_COMPLETED, got ${
        describeValue(returnWhen)
      }`,
    );
  }
}

function checkWaitForArguments(aw: unknown, ms: unknown): void {
  if (!(aw instanceof Future)) requireCoro(aw, "waitFor()", "aw");
  requireOptionalMilliseconds(ms, "waitFor()", "ms");
}

// Library code that passes on a failure it did not make (a foreign promise
// rejected with a string, a child task that threw one) sets this, so that
// only a user's own setException() call is held to asyncio's rule.
let passingOnFailure = false;

// Fails `future` with a value that came from elsewhere, unchecked.
function failWith(future: Future<unknown>, error: unknown): void {
  passingOnFailure = true;
  try {
    future.setException(error);
  } finally {
    passingOnFailure = false;
  }
}

// asyncio: set_exception() of a non-exception is a TypeError. Here any
// object (an Error, a DOMException, an error-like) passes; a primitive does
// not, since it carries no message or stack and is almost always a slip.
function checkExceptionArgument(error: unknown, where: string): void {
  if (passingOnFailure) return;
  if (
    error === null || (typeof error !== "object" && typeof error !== "function")
  ) {
    throw new TypeError(
      `${where}: exception must be an Error, got ${describeValue(error)}`,
    );
  }
}

// asyncio's primitives take no arguments (their `loop` parameter is gone):
// `new Lock(42)` is a slip, as it is a TypeError there.
function requireNoArguments(args: IArguments, where: string): void {
  if (args.length > 0) {
    throw new TypeError(
      `${where} takes no arguments, got ${describeValue(args[0])}`,
    );
  }
}

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

function requireBytes(data: unknown, where: string): Uint8Array | string {
  if (typeof data === "string" || data instanceof Uint8Array) return data;
  throw new TypeError(
    `${where}: data must be a Uint8Array or a string, got ${
      describeValue(data)
    }`,
  );
}

// Ports are 16-bit.
const MAX_PORT = 65535;

function requireHostPort(
  host: unknown,
  port: unknown,
  where: string,
): void {
  if (host !== null && host !== undefined && typeof host !== "string") {
    throw new TypeError(
      `${where}: host must be a string, got ${describeValue(host)}`,
    );
  }
  if (
    typeof port !== "number" || !Number.isInteger(port) || port < 0 ||
    port > MAX_PORT
  ) {
    throw new RangeError(
      `${where}: port must be an integer from 0 to ${MAX_PORT}, got ${
        describeValue(port)
      }`,
    );
  }
}

function requireServerArguments(
  host: unknown,
  port: unknown,
  options: ServerOptions,
  where: string,
): void {
  if (Array.isArray(host)) {
    if (host.length === 0) {
      throw new RangeError(`${where}: host must not be an empty list`);
    }
    for (const h of host) requireHostPort(h, port, where);
  } else {
    requireHostPort(host, port, where);
  }
  const backlog = options.backlog;
  if (
    backlog !== undefined && (!Number.isInteger(backlog) || backlog < 0)
  ) {
    throw new RangeError(
      `${where}: options.backlog must be an integer >= 0, got ${
        describeValue(backlog)
      }`,
    );
  }
}

function requirePath(path: unknown, where: string): string {
  if (typeof path !== "string" || path === "") {
    throw new TypeError(
      `${where}: path must be a non-empty string, got ${describeValue(path)}`,
    );
  }
  return path;
}

function requireFactory(factory: unknown, where: string): void {
  requireFunction(factory, where, "protocolFactory");
}

function checkStartTlsArguments(
  transport: unknown,
  protocol: unknown,
  options: StartTlsOptions,
): void {
  if (!(transport instanceof SocketTransport)) {
    throw new TypeError(
      `startTls(): transport must be a TCP or Unix stream transport, got ${
        describeValue(transport)
      }`,
    );
  }
  if (!(protocol instanceof BaseProtocol)) {
    throw new TypeError(
      `startTls(): protocol must be a protocol, got ${describeValue(protocol)}`,
    );
  }
  if (transport.getExtraInfo("sslObject") !== undefined) {
    throw new RuntimeError("startTls(): the transport is already over TLS");
  }
  if (transport.isClosing()) {
    throw new RuntimeError("startTls(): the transport is closing");
  }
  if (options.serverSide && (!options.cert || !options.key)) {
    throw new TypeError(
      "startTls(): a server side needs options.cert and options.key",
    );
  }
  if (options.handshakeTimeout !== undefined) {
    requireMilliseconds(
      options.handshakeTimeout,
      "startTls()",
      "options.handshakeTimeout",
    );
  }
}

function requireFunctionName(name: unknown, where: string): string {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(
      `${where}: name must be the name of an exported function, got ${
        describeValue(name)
      }`,
    );
  }
  return name;
}

function requireService(port: unknown, where: string): number {
  if (port === null || port === undefined) return 0;
  const number = typeof port === "string" && /^\d+$/.test(port)
    ? Number(port)
    : port;
  if (
    typeof number !== "number" || !Number.isInteger(number) || number < 0 ||
    number > MAX_PORT
  ) {
    throw new RangeError(
      `${where}: port must be a port number from 0 to ${MAX_PORT} (service names are not looked up), got ${
        describeValue(port)
      }`,
    );
  }
  return number;
}

function checkAddrinfoArguments(
  host: unknown,
  port: unknown,
  options: GetaddrinfoOptions,
): number {
  if (host !== null && typeof host !== "string") {
    throw new TypeError(
      `getaddrinfo(): host must be a string or null, got ${
        describeValue(host)
      }`,
    );
  }
  const { family = 0, type = 0, proto = 0 } = options;
  if (family !== 0 && family !== 4 && family !== 6) {
    throw new RangeError(
      `getaddrinfo(): options.family must be 0, 4 or 6, got ${
        describeValue(family)
      }`,
    );
  }
  if (type !== 0 && type !== SOCK_STREAM && type !== SOCK_DGRAM) {
    throw new RangeError(
      `getaddrinfo(): options.type must be 0, SOCK_STREAM or SOCK_DGRAM, got ${
        describeValue(type)
      }`,
    );
  }
  if (proto !== 0 && proto !== IPPROTO_TCP && proto !== IPPROTO_UDP) {
    throw new RangeError(
      `getaddrinfo(): options.proto must be 0, 6 (TCP) or 17 (UDP), got ${
        describeValue(proto)
      }`,
    );
  }
  return requireService(port, "getaddrinfo()");
}

// ===========================================================================
// §3 Internal collections
// Holds: Deque, Stack and BinaryHeap, the collections the rest of the file
// keeps its items and timers in; prefixWorthCompacting and
// drainedWorthResetting, their shared rules for dropping a consumed prefix
// and for resetting a drained array; RESOLVED_VOID and RESOLVED_TRUE, the
// promises settled once that every section shares.
// Rule: each is written once, used wherever its shape is needed; none
// allocates per item beyond the item itself (arrays grow amortized).
// Relies on: nothing.
// Used by: §4 Event loop (its timers: BinaryHeap), §10 Synchronization
// primitives (WaiterList compacts as Deque does), §11 Queues (Deque, Stack,
// BinaryHeap), and the resolved promises everywhere.
// ===========================================================================

// An array read from a moving head drops its consumed prefix (an O(n)
// splice) only once the prefix is this long and half the array or more:
// short lines never splice, and each item is moved O(1) times, amortized.
const COMPACT_PREFIX_MIN = 1024;

// Whether the first `head` slots of an array of `length` are worth splicing
// out: see COMPACT_PREFIX_MIN.
function prefixWorthCompacting(head: number, length: number): boolean {
  return head >= COMPACT_PREFIX_MIN && head * 2 >= length;
}

// A list drained of its last item keeps its array (the consumed slots
// cleared) until its head reaches this many slots. Truncating an array to
// length 0 drops its backing store on V8, so a list that fills and drains
// one item at a time (a Queue(1), a lock's line) would allocate a new one
// per item: about 130 ns per item on Deno, against 4 ns for the push and
// take themselves.
const DRAINED_ARRAY_KEPT_BELOW = 64;

// Whether an array read up to `head` and now empty is worth truncating to
// length 0: see DRAINED_ARRAY_KEPT_BELOW.
function drainedWorthResetting(head: number): boolean {
  return head >= DRAINED_ARRAY_KEPT_BELOW;
}

// A first-in-first-out list whose take() is O(1): an array read from a
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

  // The oldest item (undefined if there is none).
  take(): T | undefined {
    const items = this.#items;
    const head = this.#head;
    if (head === items.length) return undefined;
    const item = items[head];
    items[head] = undefined;
    if (head + 1 === items.length && drainedWorthResetting(head + 1)) {
      items.length = 0;
      this.#head = 0;
    } else if (prefixWorthCompacting(head, items.length)) {
      items.splice(0, head + 1);
      this.#head = 0;
    } else {
      this.#head = head + 1;
    }
    return item;
  }

  clear(): void {
    this.#items.length = 0;
    this.#head = 0;
  }
}

// A last-in-first-out list.
class Stack<T> {
  #items: T[] = [];

  get length(): number {
    return this.#items.length;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  // The newest item (undefined if there is none).
  take(): T | undefined {
    return this.#items.pop();
  }

  clear(): void {
    this.#items.length = 0;
  }
}

// A binary min-heap: PriorityQueue's store and the event loop's timers.
// Items that compare equal come out in insertion order: each item is kept
// with the number of its insertion, in a parallel array of numbers (so
// nothing is allocated per item), which breaks ties. A compare that throws
// leaves the heap as it was: push() finds the place before it moves
// anything, take() undoes its moves, retain() builds aside and swaps.
class BinaryHeap<T> {
  #items: T[] = [];
  // `#inserted[i]` is the insertion number of `#items[i]`.
  #inserted: number[] = [];
  #insertions = 0;
  #compare: (a: T, b: T) => number;

  constructor(compare: (a: T, b: T) => number) {
    this.#compare = compare;
  }

  get length(): number {
    return this.#items.length;
  }

  // The smallest item, left in place (undefined if there is none).
  peek(): T | undefined {
    return this.#items[0];
  }

  #precedes(a: T, aNumber: number, b: T, bNumber: number): boolean {
    const order = this.#compare(a, b);
    return order < 0 || (order === 0 && aNumber < bNumber);
  }

  push(item: T): void {
    const items = this.#items;
    const inserted = this.#inserted;
    const number = this.#insertions;
    // Find the place first, moving nothing, so a throwing compare is harmless.
    let target = items.length;
    while (target > 0) {
      const parent = (target - 1) >> 1;
      if (!this.#precedes(item, number, items[parent], inserted[parent])) break;
      target = parent;
    }
    this.#insertions++;
    let hole = items.length;
    items.push(item);
    inserted.push(number);
    while (hole > target) {
      const parent = (hole - 1) >> 1;
      items[hole] = items[parent];
      inserted[hole] = inserted[parent];
      hole = parent;
    }
    items[target] = item;
    inserted[target] = number;
  }

  // Takes the smallest item out (undefined if there is none).
  take(): T | undefined {
    const items = this.#items;
    const inserted = this.#inserted;
    const top = items[0];
    const topNumber = inserted[0];
    const last = items.pop();
    const lastNumber = inserted.pop();
    if (items.length === 0) return top;
    try {
      this.#siftDown(items, inserted, 0, last!, lastNumber!);
    } catch (error) {
      // The hole is back at the top: put `top` and `last` back.
      items[0] = top;
      inserted[0] = topNumber;
      items.push(last!);
      inserted.push(lastNumber!);
      throw error;
    }
    return top;
  }

  // Keeps only the items `keep` is true for, in one O(n) rebuild.
  retain(keep: (item: T) => boolean): void {
    const items: T[] = [];
    const inserted: number[] = [];
    for (let i = 0; i < this.#items.length; i++) {
      const item = this.#items[i];
      if (keep(item)) {
        items.push(item);
        inserted.push(this.#inserted[i]);
      }
    }
    // Floyd's heapify: sift each parent down, the deepest first.
    for (let i = (items.length >> 1) - 1; i >= 0; i--) {
      this.#siftDown(items, inserted, i, items[i], inserted[i]);
    }
    this.#items = items;
    this.#inserted = inserted;
  }

  clear(): void {
    this.#items.length = 0;
    this.#inserted.length = 0;
  }

  // The items, in no particular order.
  [Symbol.iterator](): Iterator<T> {
    return this.#items.values();
  }

  // Moves `item` (numbered `number`) down from the hole at `hole` to its
  // place, moving each child that precedes it up. If compare throws, the
  // moves are undone, so the hole is back where it started.
  #siftDown(
    items: T[],
    inserted: number[],
    hole: number,
    item: T,
    number: number,
  ): void {
    const start = hole;
    const length = items.length;
    try {
      for (;;) {
        let child = 2 * hole + 1;
        if (child >= length) break;
        if (
          child + 1 < length &&
          this.#precedes(
            items[child + 1],
            inserted[child + 1],
            items[child],
            inserted[child],
          )
        ) child++;
        if (!this.#precedes(items[child], inserted[child], item, number)) {
          break;
        }
        items[hole] = items[child];
        inserted[hole] = inserted[child];
        hole = child;
      }
    } catch (error) {
      while (hole > start) {
        const parent = (hole - 1) >> 1;
        items[hole] = items[parent];
        inserted[hole] = inserted[parent];
        hole = parent;
      }
      throw error;
    }
    items[hole] = item;
    inserted[hole] = number;
  }
}

// Settled once, shared: the primitives' uncontended paths return them and
// allocate nothing; and a reaction to RESOLVED_VOID runs a callback in a
// microtask for less than queueMicrotask(), which Deno wraps in JavaScript.
const RESOLVED_VOID: Promise<void> = Promise.resolve();
const RESOLVED_TRUE: Promise<true> = Promise.resolve(true);

// ===========================================================================
// §4 Event loop
// Holds: Handle, TimerHandle, EventLoop and the accessors other sections
// reach its internals through; getRunningLoop(), getEventLoop(),
// newEventLoop(), setEventLoop(); the task context (`taskContext`: a task,
// or a CancelScope of it, whose cancellation state §6 keeps).
// Rule: steps run one at a time, in order, in batches; a step that wakes or
// starts a task ends only when that task suspends again, so a woken task
// runs alone, as in asyncio. The host always gets its turn: a batch runs in
// a microtask while the loop has had the host for less than
// HOST_TURN_BUDGET_MS, then in a host macrotask, so that a loop of
// `await sleep(0)` never starves host timers and I/O.
// Relies on: §1 Errors, §2 Argument checks; back-edges (called, never at
// load time): §5 Futures and §6 Tasks for the steps (wakeAwaiter,
// taskStartStep, cancelWantsQuiet, taskStalled), and the I/O methods'
// sections. Used by: every section below.
//
// The loop owns two queues: the ready steps, to run next in order, and a
// binary heap of timer handles behind one host timer. The current task is
// found through one AsyncLocalStorage, set once when a task starts and
// inherited by every await inside it.
// ===========================================================================

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

// The mark of a cancel scope among the frames (isCancelScope).
const IS_CANCEL_SCOPE = Symbol("isCancelScope");

// A part of a task's code whose own cancellation reaches only the waits
// made inside it: the body of a timeout scope or of a task group. asyncio
// cancels such a body with task.cancel(), as there the body is all of the
// task's code that runs; here other code of the task may run beside it (a
// Promise.race branch, a helper), and the scope's cancel must not reach
// that. The body runs with the scope as its context (`taskContext`), so the
// waits made in it, and in the code it starts, are the scope's
// (Awaiter.scope). Its cancellation state is Task's to change (§6).
// Invariants:
// - `mustCancel`: the scope cancelled itself (a deadline passed, a child
//   of the group failed) and that cancellation is not delivered yet: every
//   wait made inside the scope is cancelled as it is made. Cleared as the
//   task's own `#mustCancel` is, once a wait the scope's cancel reached
//   wakes the task and the task goes on, and when the scope closes.
// - `closed`: the scope's body is done; a cancel of it then reaches no
//   wait (code the body left running goes on uncancelled, as it would
//   outside the scope).
// - `cancelRequested`: the scope's cancel counts in its task's
//   cancelling() and is not taken back yet (the scope takes it back as it
//   exits). Only the cancels of the scopes around a body, and the task's
//   own, reach it: those of a scope beside it (in another race branch)
//   never do, so a scope deciding whether a CancelledError is its own
//   counts only those (cancelsReaching).
class CancelScope {
  readonly [IS_CANCEL_SCOPE] = true;
  readonly task: Task<unknown>;
  // The scope the scope was entered in, or null: the task's own code.
  readonly parent: CancelScope | null;
  mustCancel = false;
  closed = false;
  cancelRequested = false;

  constructor(task: Task<unknown>, parent: CancelScope | null) {
    this.task = task;
    this.parent = parent;
  }

  close(): void {
    this.closed = true;
    this.mustCancel = false;
  }
}

// What code of a task runs in: the task itself, or a cancel scope of it.
type TaskFrame = Task<unknown> | CancelScope;

// The task a frame is of.
function frameTask(frame: TaskFrame): Task<unknown> {
  return isCancelScope(frame) ? frame.task : frame;
}

// Tells a cancel scope from a task in one property load, which a task does
// not have; `instanceof` would walk the task's prototype chain on every
// await (about 4 ns on V8, measured).
function isCancelScope(frame: TaskFrame): frame is CancelScope {
  return (frame as CancelScope)[IS_CANCEL_SCOPE] === true;
}

const taskContext = new AsyncLocalStorage<TaskFrame>();

// Whether a step runs code of the library's callers (a callback, a done
// callback, the handlers given to a future's `then`), which must run
// outside any task's context. Starting a task sets its own context, a bare
// wake-up runs no code, and the wake-up of an internal wait (awaitWaiter)
// runs the library's, which needs none: those need not leave one.
function runsCallersCode(step: Step, argument: unknown): boolean {
  if (step === taskStartStep) return false;
  if (step !== (wakeAwaiter as Step)) return true;
  const awaiter = argument as Awaiter;
  return awaiter.subject === null &&
    (awaiter.onFulfilled != null || awaiter.onRejected != null);
}

// The task whose context the caller runs in, or null. A context outlives
// its task (a timer callback registered in it, a helper left running): once
// the task is done, code there runs as if outside any task.
function runningTask(): Task<unknown> | null {
  const frame = taskContext.getStore();
  if (frame === undefined) return null;
  const task = frameTask(frame);
  return task.done() ? null : task;
}

// As runningTask(), with the cancel scope the caller runs in, if any: what
// a wait made here belongs to.
function runningFrame(): TaskFrame | null {
  const frame = taskContext.getStore();
  if (frame === undefined) return null;
  return frameTask(frame).done() ? null : frame;
}

// The loop of the task whose context the caller runs in, finished or not,
// while that loop is open: code a task left running (a branch of a race it
// lost, a helper) keeps to the task's loop, though it is no task's.
function contextLoop(): EventLoop | null {
  const frame = taskContext.getStore();
  if (frame === undefined) return null;
  const loop = frameTask(frame).getLoop();
  return loop.isClosed() ? null : loop;
}

// In real time, the host gets a turn at least this often (ms), so that a
// loop of `await sleep(0)` leaves room for host timers and I/O.
const HOST_TURN_BUDGET_MS = 4;

// Reading the clock costs as much as a small batch: read it for the budget
// above only every this many batches.
const CLOCK_EVERY_N_BATCHES = 8;

// Under virtual time the host still gets turns, for foreign I/O, but
// counted in batches: the wall clock must not decide anything.
const VIRTUAL_BATCHES_PER_HOST_TURN = 64;

// Under virtual time, how long (real ms) the loop waits, idle, for a task
// that awaits something it cannot see, before jumping the clock anyway.
const IDLE_JUMP_MS = 1000;

// Node-compatible hosts wrap setTimeout delays above 2^31-1 ms around.
const MAX_HOST_TIMER_MS = 0x7fffffff;

// asyncio's default `slow_callback_duration` (0.1 s): in debug mode, a
// callback that holds the loop longer is reported.
const DEFAULT_SLOW_CALLBACK_MS = 100;

// The loop whose batch is running now, or null. A batch of one loop may
// run inside another's (#runBatch saves and restores it).
let loopBeingRun: EventLoop | null = null;
// What getEventLoop() gives outside a running loop: made on first use, or
// set by setEventLoop(); a loop that closes is forgotten.
let defaultLoop: EventLoop | null = null;

// Runs a handle's callback: the step that callSoon() and a due timer
// schedule. Set by Handle's static block.
let runHandle: (handle: Handle) => void;
// The arguments of a handle made with none yet (see passOneArgument).
const NO_ARGUMENTS: unknown[] = [];

// The loop a handle belongs to.
let handleLoop: (handle: Handle) => EventLoop;
// Makes a new handle call its callback with `argument` alone, held as it
// is: no array per timer for the library's one-argument timers (a sleep).
let passOneArgument: (handle: Handle, argument: unknown) => void;

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
  // A handle is scheduled once (a step on the ready queue, or a timer in
  // the heap) and runs at most once. cancel() sets `#cancelled` and drops
  // the callback (`#callback` null) and its arguments, so that a cancelled
  // handle holds nothing and runs nothing. `#args` is the array of the
  // callback's arguments, or with `#oneArgument` its one argument itself.
  #callback: ((...args: never[]) => unknown) | null;
  #args: unknown;
  #oneArgument = false;
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
    this.#args = undefined;
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

  // Calls the callback, unless cancelled: what it throws goes to the loop's
  // exception handler, and in debug mode a slow callback is reported.
  #run(): void {
    const callback = this.#callback;
    if (callback === null) return;
    const loop = this.#loop;
    const started = loop.getDebug() ? performance.now() : 0;
    try {
      const call = callback as (...args: unknown[]) => unknown;
      const args = this.#args as unknown[];
      // Spreading is slow on a hot path; most callbacks take 0 to 2.
      switch (this.#oneArgument ? 1 : args.length) {
        case 0:
          call();
          break;
        case 1:
          call(this.#oneArgument ? args : args[0]);
          break;
        case 2:
          call(args[0], args[1]);
          break;
        default:
          call(...args);
      }
    } catch (error) {
      loop.callExceptionHandler({
        message: `Exception in callback ${this}`,
        exception: error,
        handle: this,
      });
    }
    if (started) {
      const took = performance.now() - started;
      if (took > loop.slowCallbackDuration) {
        console.warn(
          `asyncio: executing ${this} took ${took.toFixed(1)} ms`,
        );
      }
    }
  }

  #passOneArgument(argument: unknown): void {
    this.#args = argument;
    this.#oneArgument = true;
  }

  static {
    runHandle = (handle) => handle.#run();
    handleLoop = (handle) => handle.#loop;
    passOneArgument = (handle, argument) => handle.#passOneArgument(argument);
  }
}

// Marks a timer as taken off its loop's heap (run, dropped or closed): a
// later cancel() then has no heap to tell.
let unscheduleTimer: (timer: TimerHandle) => void;

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
  // In its loop's timer heap. The loop clears it as it takes the timer out
  // (due, dropped as dead, or at close); only a scheduled timer's cancel()
  // tells the loop, which counts it as a dead entry.
  #scheduled = true;

  /** A handle for `callback(...args)` at loop time `when`. */
  constructor(
    when: number,
    callback: (...args: never[]) => unknown,
    args: unknown[],
    loop: EventLoop,
  ) {
    super(callback, args, loop);
    this.#when = when;
  }

  /** The loop time, in ms, at which the callback is scheduled to run. */
  when(): number {
    return this.#when;
  }

  /** Stops the callback from running, and frees its place in the timers. */
  override cancel(): void {
    if (this.cancelled()) return;
    super.cancel();
    if (this.#scheduled) timerCancelled(handleLoop(this), this);
  }

  #unschedule(): void {
    this.#scheduled = false;
  }

  static {
    unscheduleTimer = (timer) => timer.#unschedule();
  }
}

// --- Failures nobody retrieved, kept for the loop --------------------------

// What is left to report of a failed future once it is garbage-collected:
// everything but the future itself, which must be free to go.
interface CollectedFailure {
  failures: UnretrievedFailures;
  ref: WeakRef<Future<unknown>>;
  message: string;
  exception: unknown;
}

function unretrievedMessage(future: Future<unknown>): string {
  return future instanceof Task
    ? `Task exception was never retrieved (task "${future.getName()}")`
    : "Future exception was never retrieved";
}

// One loop's failed futures whose error nobody has read yet: asyncio's
// "exception was never retrieved". Each is held weakly, so that a forgotten
// one is reported once it is garbage-collected, as in Python; the loop's
// close() reports the rest, deterministically.
// Invariant: a future is in `#refs` exactly while `#records` holds the
// record of its WeakRef and the registry holds the record; all three let
// go of it together, when its error is read (forget), when it has been
// collected and reported (#collected), or at the loop's close (reportAll).
class UnretrievedFailures {
  static #registry = new FinalizationRegistry<CollectedFailure>(
    (record) => record.failures.#collected(record),
  );
  #loop: EventLoop;
  #refs = new WeakMap<Future<unknown>, WeakRef<Future<unknown>>>();
  #records = new Map<WeakRef<Future<unknown>>, CollectedFailure>();

  constructor(loop: EventLoop) {
    this.#loop = loop;
  }

  // `future` failed, and nobody has read its error yet.
  add(future: Future<unknown>): void {
    const ref = new WeakRef(future);
    const record = {
      failures: this,
      ref,
      message: unretrievedMessage(future),
      exception: futureValue(future),
    };
    this.#refs.set(future, ref);
    this.#records.set(ref, record);
    UnretrievedFailures.#registry.register(future, record, ref);
  }

  // Someone read the error of `future`: nothing to report.
  forget(future: Future<unknown>): void {
    const ref = this.#refs.get(future);
    if (ref === undefined) return;
    this.#refs.delete(future);
    this.#records.delete(ref);
    UnretrievedFailures.#registry.unregister(ref);
  }

  // The loop closes: every failure left goes to its exception handler now.
  reportAll(): void {
    for (const [ref, record] of this.#records) {
      UnretrievedFailures.#registry.unregister(ref);
      // Collected, but its finalizer has not run yet: report it from the
      // record, since the finalizer will find the loop closed.
      const future = ref.deref();
      this.#loop.callExceptionHandler({
        message: record.message,
        exception: record.exception,
        future,
        task: future instanceof Task ? future : undefined,
      });
    }
    this.#refs = new WeakMap();
    this.#records.clear();
  }

  // The future of `record` was garbage-collected with its error unread.
  #collected(record: CollectedFailure): void {
    if (!this.#records.delete(record.ref) || this.#loop.isClosed()) return;
    this.#loop.callExceptionHandler({
      message: record.message,
      exception: record.exception,
    });
  }
}

// --- The loop's accessors --------------------------------------------------
// What the sections below share of the loop's internals. Each is set by
// EventLoop's static block, to a private method of the loop (or a read of
// one of its fields).

// Appends `step(argument)` to the ready queue: how a future wakes an
// awaiter or runs a done callback, and how a task starts.
let scheduleStep: <A>(
  loop: EventLoop,
  step: (argument: A) => void,
  argument: A,
) => void;
// The loop's tasks that are not done, in no order: a task adds itself when
// it is made and swaps itself out when done (Task #retire).
let liveTasksOf: (loop: EventLoop) => Task<unknown>[];
// For virtual time, what the loop's tasks are doing. A task started: it
// counts as unblocked.
let noteTaskStarted: (loop: EventLoop, task: Task<unknown>) => void;
// `blocked`: an unblocked task made its first pending wait; else a blocked
// task woke with no wait left.
let noteTaskBlocked: (loop: EventLoop, blocked: boolean) => void;
// A started task is done; `wasBlocked`: it was counted as blocked.
let noteTaskDone: (
  loop: EventLoop,
  task: Task<unknown>,
  wasBlocked: boolean,
) => void;
// A wait on the outside world began (+1) or ended (-1): while one is
// pending, a virtual clock does not jump. wrapFuture() and IoFuture count.
let noteForeignWait: (loop: EventLoop, delta: number) => void;
// `add`: `future` failed and nobody has read its error yet; else someone
// has.
let noteUnretrieved: (
  loop: EventLoop,
  future: Future<unknown>,
  add: boolean,
) => void;
let loopTimeline: (loop: EventLoop) => TimelineRecorder | null;
// Runs `callback` on the loop now, from a runtime event, as a loop
// callback: in a batch of its own, or at the end of the one running.
let runOnLoopNow: (loop: EventLoop, callback: () => void) => void;
// The loop's done future, which every bare yield (`sleep(0)`) awaits.
let loopYieldFuture: (loop: EventLoop) => Future<void>;
// How many turns the host has given the loop.
let loopHostTurns: (loop: EventLoop) => number;
// callLater() with one argument, which the timer holds without an array.
let callLaterWithArgument: <A>(
  loop: EventLoop,
  delay: number,
  callback: (argument: A) => unknown,
  argument: A,
) => TimerHandle;
// A step woke or started `task`: the batch waits until it suspends again.
let noteResumed: (loop: EventLoop, task: Task<unknown>) => void;
// `task` suspended (it awaits a pending future, or finished).
let noteSuspended: (
  loop: EventLoop,
  task: Task<unknown>,
  finished?: boolean,
) => void;
// How many batches the loop has run: it has made progress if this moved.
let loopBatchCount: (loop: EventLoop) => number;
// A scheduled timer was cancelled (TimerHandle.cancel).
let timerCancelled: (loop: EventLoop, timer: TimerHandle) => void;

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
  // The loop's jobs, each under a banner of its own: the ready queue and
  // its batches, timers, virtual time, failures nobody retrieved (kept by
  // UnretrievedFailures), signals (a listener map, kept by the Subprocesses
  // section's addSignalListener), and the I/O methods, doors onto the
  // sections that do the work. Its state comes first, by job, each part
  // with its invariants; then the public methods; then the internals.

  // --- State: the ready queue and the batch ------------------------------
  // A step is a function and its one argument (see Step). The ready queue
  // is the steps waiting for the next batch, in order: the first
  // `#readyCount` entries of `#readyFns`/`#readyArgs`. The slots beyond are
  // spare capacity, kept from batch to batch rather than grown again.
  // A batch (asyncio's `ntodo` ready callbacks) is what was ready, with the
  // timers due, when #runOnce began: the first `#batchLength` entries of
  // `#batchFns`/`#batchArgs`, run in order from `#batchIndex`. A step
  // scheduled meanwhile waits for the next batch; a batch that stop() or
  // close() cuts short puts the steps it left in front of the ready ones.
  // The two pairs of arrays swap at each batch: `#spareFns`/`#spareArgs`
  // keep the last batch's, to be the next ready queue.
  // - `#runScheduled`: a #runOnce is queued (a microtask or a host
  //   macrotask) and no batch has begun since: a new step needs no other.
  // - `#batchActive`: from the batch's first step to its end, including
  //   while it waits for `#resumed`. A new step then queues no run:
  //   #endBatch does.
  // - `#inStep`: a step function is running. Only then does a task that
  //   wakes or starts become `#resumed`: one resumed outside any step (an
  //   eager task, a foreign promise) holds no batch up.
  // - `#resumed`: the task the current step woke or started. While it is
  //   set, the batch's next step waits. It is cleared when the task
  //   suspends again (#noteSuspended: it awaits a pending future of the
  //   library, or finished), or by the stall check (`#stallCheckArmed`), a
  //   host macrotask, which runs only once the microtasks have run dry: a
  //   task still resumed then awaits something the loop cannot see, and the
  //   batch goes on without it.
  // - `#hostTurns`: the turns the host has given the loop (its timers and
  //   immediates, a runtime event). A cancel's wake-up made in the current
  //   turn waits for the next (cancelWantsQuiet), so that the microtasks
  //   run dry first.
  // - `#stopping`, `#stopped`: stop() asked, and it took effect at the end
  //   of a batch: a stopped loop runs no step and moves no virtual clock
  //   until runForever() or runUntilComplete() runs it again.
  // - `#batchesSinceHostTurn`, `#lastHostTurn`: the host's budget, spent
  //   by #scheduleRun.
  #readyFns: Step[] = [];
  #readyArgs: unknown[] = [];
  #readyCount = 0;
  #spareFns: Step[] = [];
  #spareArgs: unknown[] = [];
  #runScheduled = false;
  #batchFns: Step[] = [];
  #batchArgs: unknown[] = [];
  #batchLength = 0;
  #batchIndex = 0;
  #batchActive = false;
  #inStep = false;
  #resumed: Task<unknown> | null = null;
  #stallCheckArmed = false;
  #hostTurns = 0;
  #stopping = false;
  #stopped = false;
  #batchesSinceHostTurn = 0;
  #lastHostTurn = -Infinity;

  // --- State: timers -----------------------------------------------------
  // `#scheduledTimers` is a binary min-heap of timer handles by deadline;
  // equal deadlines run in the order they were scheduled (the heap's
  // insertion order). A timer is in it exactly while its `#scheduled` is
  // true. Cancelled timers stay in it, `#cancelledTimerCount` of them, until
  // they reach the top or most of the heap is dead. In real time, one host
  // timer at most (`#hostTimer`, due at `#hostTimerDeadline`, Infinity when
  // none) wakes the loop for the earliest deadline: it is armed again when
  // the loop goes idle, and when the top of the heap changes with no run
  // queued.
  #scheduledTimers = new BinaryHeap<TimerHandle>(EventLoop.#compareDeadlines);
  #cancelledTimerCount = 0;
  #hostTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #hostTimerDeadline = Infinity;

  // --- State: virtual time -----------------------------------------------
  // With `#virtualTime`, time() is `#virtualNow`. It only moves forward,
  // only in #jumpToNextTimer, to the deadline of the earliest live timer,
  // and only when the loop is idle: no step ready or running, not stopped,
  // no foreign wait pending, and no task unblocked. Otherwise it would
  // jump while something the clock should wait for is still on its way.
  // - `#foreignWaits`: pending futures for outside work (wrapFuture(), the
  //   I/O): the outside world may settle one at any moment.
  // - `#unblockedTasks`: the loop's tasks, started and not done, with no
  //   pending wait on a library future: running, or away on a promise the
  //   loop cannot see, maybe waiting for one of the loop's timers through
  //   it. Then the clock jumps anyway once the loop has stood idle, no
  //   batch run, for IDLE_JUMP_MS of real time (`#idleJumpTimer`).
  // - `#idleCheckScheduled`: an #idleCheck is queued as a host macrotask,
  //   so that it looks only once the microtasks have run dry.
  // - `#batchCount`: the batches run so far: the loop made progress if it
  //   moved.
  #virtualTime: boolean;
  #virtualNow = 0;
  #foreignWaits = 0;
  #unblockedTasks = 0;
  #idleCheckScheduled = false;
  #idleJumpTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #batchCount = 0;

  // --- State: tasks, failures, running, signals --------------------------
  // The tasks not done yet (see liveTasksOf).
  #liveTasks: Task<unknown>[] = [];
  // Made at the first bare yield, done: what every bare yield awaits.
  #yieldFutureDone: Future<void> | null = null;
  // Shared by every task made with no options: no object per task.
  #plainTaskOptions: TaskOptions & { loop: EventLoop } = { loop: this };
  // The factory createTask() hands tasks to, or null for plain Tasks.
  #taskFactory: TaskFactory | null = null;
  #unretrieved = new UnretrievedFailures(this);
  #closed = false;
  #running = false;
  // Ends the wait of runForever() or runUntilComplete(), once stop() has
  // taken effect.
  #stopRequested: (() => void) | null = null;
  #exceptionHandler: ExceptionHandler | null = null;
  #debug: boolean;
  #timeline: TimelineRecorder | null;
  // The process listener of each signal that has a handler (see
  // addSignalHandler).
  #signalListeners = new Map<string, () => void>();
  /** In debug mode, callbacks slower than this many ms are reported. */
  slowCallbackDuration: number = DEFAULT_SLOW_CALLBACK_MS;

  /** A new loop; `virtualTime: true` gives it a virtual clock. */
  constructor(options: LoopOptions = {}) {
    checkLoopOptions(options, "EventLoop()");
    this.#virtualTime = options.virtualTime === true;
    this.#debug = options.debug === true;
    this.#timeline = options.timeline === undefined
      ? null
      : timelineRecorder(options.timeline);
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
    this.#scheduleStep(runHandle, handle);
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
    checkCreateTaskArguments(coro, options);
    this.#checkClosed();
    if (this.#taskFactory !== null) {
      return this.#taskFactory(this, coro, options);
    }
    return new Task(
      coro,
      options.name === undefined && !options.eagerStart
        ? this.#plainTaskOptions
        : { ...options, loop: this },
    );
  }

  /**
   * Makes `createTask()` on this loop (and so every task of the library:
   * `createTask`, task groups, `gather`, servers) call `factory(loop, coro,
   * options)` instead of `new Task(...)`; `null` restores the default.
   * {@linkcode eagerTaskFactory} makes a whole program's tasks eager.
   *
   * @throws {TypeError} for anything but a function or `null`.
   */
  setTaskFactory(factory: TaskFactory | null): void {
    if (factory !== null) {
      requireFunction(factory, "setTaskFactory()", "factory");
    }
    this.#taskFactory = factory;
  }

  /** The factory set by `setTaskFactory()`, or `null` for the default. */
  getTaskFactory(): TaskFactory | null {
    return this.#taskFactory;
  }

  // --- Running and stopping ----------------------------------------------

  /**
   * Runs until `future` is done and returns its result (or throws its
   * error). A coroutine function or promise is wrapped in a task first.
   */
  runUntilComplete<T>(future: Coro<T> | Future<T>): Promise<T> {
    checkRunUntilComplete(this, future);
    return this.#runUntilComplete(future);
  }

  async #runUntilComplete<T>(future: Coro<T> | Future<T>): Promise<T> {
    this.#checkClosed();
    if (this.#running) {
      throw new RuntimeError("This event loop is already running");
    }
    const target = ensureFuture(future, this);
    this.#running = true;
    this.#resumeAfterStop();
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
    this.#resumeAfterStop();
    try {
      await new Promise<void>((resolve) => this.#stopRequested = resolve);
    } finally {
      this.#running = false;
      this.#stopRequested = null;
    }
  }

  /**
   * Stops `runForever()` at the end of the loop's current iteration, as
   * asyncio's `stop()`; a `runUntilComplete()` stopped this way throws
   * `RuntimeError`. Until the loop runs again, no step runs and a virtual
   * clock stands still. Outside `runForever()`/`runUntilComplete()` it does
   * nothing.
   */
  stop(): void {
    this.#checkClosed();
    if (!this.#running) return;
    this.#stopping = true;
    if (!this.#batchActive && !this.#runScheduled) this.#scheduleRun();
  }

  // Runs again what a stop() held: the ready steps and the timers.
  #resumeAfterStop(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.#readyCount > 0) {
      if (!this.#runScheduled) this.#scheduleRun();
    } else {
      this.#afterIdle();
    }
  }

  /** Whether `runForever()` or `runUntilComplete()` is in progress. */
  isRunning(): boolean {
    return this.#running;
  }

  /** Whether {@linkcode EventLoop.close} was called. */
  isClosed(): boolean {
    return this.#closed;
  }

  // --- Closing -----------------------------------------------------------

  /**
   * Closes the loop: drops pending callbacks and timers, and reports to the
   * exception handler every failed future whose error nobody retrieved.
   * Python reports those when they are garbage-collected, which happens
   * here too while the loop runs; at the latest, the loop's close reports
   * the rest, deterministically.
   */
  close(): void {
    if (this.#running) {
      throw new RuntimeError("Cannot close a running event loop");
    }
    if (this.#closed) return;
    // The reports and the clean-ups run while the loop is still open; what
    // they schedule on it is dropped with the rest below.
    this.#unretrieved.reportAll();
    this.#removeSignalHandlers();
    closeOwnedResources(this);
    terminateLoopExecutor(this); // nothing of the loop's keeps the process alive
    this.#closed = true;
    this.#dropReadySteps();
    this.#dropTimers();
    this.#cancelIdleJump();
    this.#timeline?.stop(this);
    if (defaultLoop === this) defaultLoop = null;
  }

  // As asyncio does: a closed loop leaves no signal listener behind.
  #removeSignalHandlers(): void {
    for (const signal of [...this.#signalListeners.keys()]) {
      removeSignalListener(this.#signalListeners, signal);
    }
  }

  #dropReadySteps(): void {
    this.#readyFns.length = 0;
    this.#readyArgs.length = 0;
    this.#readyCount = 0;
  }

  #dropTimers(): void {
    for (const timer of this.#scheduledTimers) unscheduleTimer(timer);
    this.#scheduledTimers.clear();
    this.#disarmHostTimer();
  }

  #cancelIdleJump(): void {
    if (this.#idleJumpTimer !== undefined) clearTimeout(this.#idleJumpTimer);
    this.#idleJumpTimer = undefined;
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
  // Thin doors onto the Transports and protocols, Streams and Subprocesses
  // sections below, which do the work.

  /**
   * Connects to `host`:`port` over TCP (TLS with `options.tls`), and
   * returns the transport and the protocol `protocolFactory()` made for it,
   * once its `connectionMade` has run. Fails at the await with the system's
   * error (`code`: `ECONNREFUSED`, `ENOTFOUND`, ...).
   */
  createConnection<P extends Protocol | BufferedProtocol>(
    protocolFactory: () => P,
    host: string,
    port: number,
    options: ConnectionOptions = {},
  ): Promise<[Transport, P]> {
    return createConnectionOn(this, protocolFactory, host, port, options);
  }

  /**
   * Listens on `host`:`port` (port 0: a free one), with a new protocol from
   * `protocolFactory()` for each connection. Host `null` or `""` listens
   * on every interface, IPv4 and IPv6, a socket each (on Deno, one socket
   * serves both); a list of hosts listens on each. Fails at the await with
   * the system's error (`EADDRINUSE`).
   */
  createServer(
    protocolFactory: () => Protocol | BufferedProtocol,
    host: string | readonly string[] | null,
    port: number,
    options: ServerOptions = {},
  ): Promise<Server> {
    return createServerOn(this, protocolFactory, host, port, options);
  }

  /** {@linkcode EventLoop.createConnection} to the Unix socket at `path`. */
  createUnixConnection<P extends Protocol | BufferedProtocol>(
    protocolFactory: () => P,
    path: string,
    options: ConnectionOptions = {},
  ): Promise<[Transport, P]> {
    return createUnixConnectionOn(this, protocolFactory, path, options);
  }

  /** {@linkcode EventLoop.createServer} on a Unix socket at `path`. */
  createUnixServer(
    protocolFactory: () => Protocol | BufferedProtocol,
    path: string,
    options: ServerOptions = {},
  ): Promise<Server> {
    return createUnixServerOn(this, protocolFactory, path, options);
  }

  /**
   * Upgrades a TCP (or Unix socket) connection to TLS in place (STARTTLS,
   * as SMTP, IMAP and Postgres do), and returns the new transport: asyncio's
   * `start_tls()`. The old transport must not be used again; `protocol`
   * gets the new transport's events (no second `connectionMade`). The
   * handshake starts at once: call this right after the exchange that
   * agreed on it. Fails at the await with the TLS error (a certificate that
   * does not verify, say), the connection then closed.
   *
   * @example A protocol's client upgrading its connection
   * ```ts
   * import { getRunningLoop, Protocol, type Transport } from "@aio/asyncio";
   *
   * async function upgrade(transport: Transport, protocol: Protocol) {
   *   transport.write("STARTTLS\r\n");
   *   // ... once the server has said yes:
   *   return await getRunningLoop().startTls(transport, protocol, {
   *     serverHostname: "mail.example.com",
   *   });
   * }
   * console.log(typeof upgrade); // "function"
   * ```
   */
  startTls(
    transport: Transport,
    protocol: Protocol | BufferedProtocol,
    options: StartTlsOptions = {},
  ): Promise<Transport> {
    return startTlsOn(this, transport, protocol, options);
  }

  /**
   * Opens a UDP endpoint bound to `localAddr` and/or connected to
   * `remoteAddr`, and returns its transport and protocol.
   */
  createDatagramEndpoint<P extends DatagramProtocol>(
    protocolFactory: () => P,
    options: DatagramEndpointOptions = {},
  ): Promise<[DatagramTransport, P]> {
    return createDatagramEndpointOn(this, protocolFactory, options);
  }

  /**
   * Reads from `pipe` (`process.stdin`, a readable stream, a web
   * `ReadableStream`, or a file descriptor): returns a
   * {@linkcode ReadTransport} and the protocol `protocolFactory()` made,
   * whose `dataReceived` gets what arrives, then `eofReceived` and
   * `connectionLost(null)` at the end. With a {@linkcode StreamReaderProtocol}
   * it feeds a {@linkcode StreamReader}: asyncio's way to read stdin.
   *
   * @example Reading stdin line by line
   * ```ts
   * import { getRunningLoop, run, StreamReader, StreamReaderProtocol } from "@aio/asyncio";
   * import process from "node:process";
   *
   * await run(async () => {
   *   const reader = new StreamReader();
   *   await getRunningLoop().connectReadPipe(
   *     () => new StreamReaderProtocol(reader),
   *     process.stdin,
   *   );
   *   for await (const line of reader) {
   *     console.log(new TextDecoder().decode(line).trimEnd().toUpperCase());
   *   }
   * });
   * ```
   */
  connectReadPipe<P extends Protocol>(
    protocolFactory: () => P,
    pipe: ReadablePipe,
  ): Promise<[ReadTransport, P]> {
    return connectReadPipeOn(this, protocolFactory, pipe);
  }

  /**
   * Writes to `pipe` (`process.stdout`, a writable stream, a web
   * `WritableStream`, or a file descriptor): returns a
   * {@linkcode WriteTransport}, with flow control, and the protocol
   * `protocolFactory()` made. A {@linkcode StreamWriter} over it (with a
   * {@linkcode StreamReaderProtocol} as the protocol, for `drain()`) is
   * asyncio's way to write stdout.
   *
   * @example
   * ```ts
   * import {
   *   getRunningLoop, run, StreamReader, StreamReaderProtocol, StreamWriter,
   * } from "@aio/asyncio";
   * import process from "node:process";
   *
   * await run(async () => {
   *   const loop = getRunningLoop();
   *   const [transport, protocol] = await loop.connectWritePipe(
   *     () => new StreamReaderProtocol(new StreamReader()),
   *     process.stdout,
   *   );
   *   const writer = new StreamWriter(transport, protocol, null, loop);
   *   writer.write("written through a pipe transport\n");
   *   await writer.drain();
   * });
   * ```
   */
  connectWritePipe<P extends BaseProtocol>(
    protocolFactory: () => P,
    pipe: WritablePipe,
  ): Promise<[WriteTransport, P]> {
    return connectWritePipeOn(this, protocolFactory, pipe);
  }

  /**
   * Resolves `host` and `port` to socket addresses with the system's
   * resolver: asyncio's `getaddrinfo()`. Each is an {@linkcode AddrInfo},
   * `[family, type, proto, canonname, [host, port]]`, once per socket type
   * (stream and datagram, unless `options.type` picks one). Differences
   * from Python: families are 4 and 6; the port is a number (service names
   * are not looked up); `canonname` is always `""`. A name that does not
   * resolve fails at the await with the resolver's error (`code`:
   * `ENOTFOUND`, `EAI_AGAIN`).
   *
   * @example
   * ```ts
   * import { getRunningLoop, run, SOCK_STREAM } from "@aio/asyncio";
   *
   * await run(async () => {
   *   const infos = await getRunningLoop().getaddrinfo("localhost", 80, {
   *     type: SOCK_STREAM,
   *   });
   *   console.log(infos[0]); // [ 4, 1, 6, "", [ "127.0.0.1", 80 ] ]
   * });
   * ```
   */
  getaddrinfo(
    host: string | null,
    port: number | string | null,
    options: GetaddrinfoOptions = {},
  ): Promise<AddrInfo[]> {
    return getaddrinfoOn(this, host, port, options);
  }

  /**
   * The host name and service of a socket address: asyncio's
   * `getnameinfo()`, as `[host, service]`.
   *
   * @example
   * ```ts
   * import { getRunningLoop, run } from "@aio/asyncio";
   *
   * await run(async () => {
   *   console.log(await getRunningLoop().getnameinfo(["127.0.0.1", 80])); // [ "localhost", "http" ]
   * });
   * ```
   */
  getnameinfo(
    sockaddr: [host: string, port: number],
  ): Promise<[host: string, service: string]> {
    return lookupName(this, sockaddr);
  }

  /**
   * Starts `program` with `args` (no shell) and returns its transport and
   * protocol, once it runs. A missing program fails at the await (ENOENT).
   */
  subprocessExec<P extends SubprocessProtocol>(
    protocolFactory: () => P,
    program: string,
    args: readonly string[] = [],
    options: SubprocessOptions = {},
  ): Promise<[SubprocessTransport, P]> {
    return subprocessExecOn(this, protocolFactory, program, args, options);
  }

  /** Runs `cmd` through `/bin/sh -c`: see {@linkcode EventLoop.subprocessExec}. */
  subprocessShell<P extends SubprocessProtocol>(
    protocolFactory: () => P,
    cmd: string,
    options: SubprocessOptions = {},
  ): Promise<[SubprocessTransport, P]> {
    return subprocessShellOn(this, protocolFactory, cmd, options);
  }

  /**
   * Runs `callback(...args)` on the loop each time this process receives
   * `signal` (a name like `"SIGINT"`, or a number), replacing any handler
   * the loop had for it. Remove it when done: it keeps a listener on the
   * process.
   */
  addSignalHandler<A extends unknown[]>(
    signal: string | number,
    callback: (...args: A) => unknown,
    ...args: A
  ): void {
    addSignalListener(
      this,
      this.#signalListeners,
      signal,
      callback as (...args: never[]) => unknown,
      args,
    );
  }

  /** Removes the handler for `signal`; returns whether there was one. */
  removeSignalHandler(signal: string | number): boolean {
    return removeSignalListener(this.#signalListeners, signal);
  }

  /**
   * Runs the function `name` that `executor`'s module exports, on one of
   * its workers, and returns the future of its result: asyncio's
   * `run_in_executor()`. JavaScript cannot send a function to another
   * thread, so the executor is required and the function is named: see
   * {@linkcode WorkerPoolExecutor} and, for the default executor,
   * {@linkcode toThread}.
   */
  runInExecutor<M, K extends FunctionNames<M>>(
    executor: WorkerPoolExecutor<M>,
    name: K,
    ...args: M[K] extends (...args: infer A) => unknown ? A : never
  ): Future<M[K] extends (...args: never[]) => infer R ? Awaited<R> : never> {
    return runInLoopExecutor(this, executor as never, name, args) as never;
  }

  /** Makes `executor` the one {@linkcode toThread} uses on this loop. */
  setDefaultExecutor(executor: WorkerPoolExecutor<unknown>): void {
    setLoopExecutor(this, executor);
  }

  /**
   * Shuts the default executor down, waiting for its jobs and workers to
   * end; {@linkcode toThread} then throws `RuntimeError`. Closing the loop
   * terminates the default executor's workers without waiting.
   */
  shutdownDefaultExecutor(): Promise<void> {
    return shutdownLoopExecutor(this);
  }

  // --- Internals: the ready queue and batches ----------------------------
  //
  // The hot path: what one `await sleep(0)` in a task T does.
  // 1. sleep(0) calls yieldAwaiter(): an Awaiter on the loop's done yield
  //    future becomes one of T's waits (taskWillWait: T counts as blocked,
  //    and noteSuspended(T) tells the loop, see 4), then scheduleStep()
  //    appends its wake-up, wakeAwaiter, to the ready queue. T's `await`
  //    gives the thread back.
  // 2. Once the batch's last step is done, #endBatch finds steps ready and
  //    #scheduleRun queues #runOnce: in a microtask, or in a host macrotask
  //    once the host's budget is spent.
  // 3. #runOnce makes the ready steps (and the timers due) the batch, and
  //    #runBatch calls wakeAwaiter(awaiter): T leaves its waits, becomes
  //    `#resumed` (noteResumed), and the awaiter's promise resolves. The
  //    batch holds there, and the stall check is armed.
  // 4. T runs on in a microtask to its next suspension, whose
  //    #noteSuspended picks the batch up: a next step that only settles a
  //    bare awaiter, with no fresh cancel, is taken at once, anything else
  //    after one microtask (#continueBatch).
  // Steps are called in two places only: #runBatch (any step) and
  // #noteSuspended (a bare wake-up, as the task before it suspends).
  // #runBatch runs from #runOnce (a new batch) and from #continueBatch (the
  // batch picked up again, by #noteSuspended or #onStallCheck). #runOnce
  // runs from #runFromMicrotask and #runFromHost (queued by #scheduleRun),
  // #onHostTimer (a timer is due), #jumpToNextTimer (a virtual clock
  // jumps) and #runOnLoopNow (a runtime event). Task code runs outside
  // steps in two cases: an eager task starts inside its creator's step,
  // and a task that a foreign promise resumes runs in the host's
  // microtasks; its awaits schedule steps as usual (see #scheduleStep).

  #checkClosed(): void {
    if (this.#closed) throw new RuntimeError("Event loop is closed");
  }

  #scheduleStep<A>(step: (argument: A) => void, argument: A): void {
    // A closed loop runs nothing more: keeping the step would only leak it.
    if (this.#closed) return;
    const index = this.#readyCount++;
    this.#readyFns[index] = step as Step;
    this.#readyArgs[index] = argument;
    if (!this.#runScheduled && !this.#batchActive) {
      // Scheduled from outside the loop's steps by a task that a foreign
      // promise resumed: its microtasks must all run first (it runs alone
      // until it suspends, and its next await must be registered before
      // anything is woken), so the batch waits for a host turn.
      this.#scheduleRun(runningTask() !== null);
    }
  }

  // The next batch runs in a microtask while the loop has had the host for
  // less than its budget, else in a host macrotask, so that a loop of
  // `await sleep(0)` never starves host timers and I/O. Under virtual time
  // the budget is counted in batches, not read off the wall clock: which
  // turn a batch runs in must not depend on how fast the machine is.
  #scheduleRun(fromOutside = false): void {
    if (this.#closed) return;
    this.#runScheduled = true;
    let hostTurn: boolean;
    if (fromOutside) {
      hostTurn = true;
    } else if (this.#virtualTime) {
      hostTurn = ++this.#batchesSinceHostTurn >= VIRTUAL_BATCHES_PER_HOST_TURN;
    } else {
      // Reading the clock costs as much as the rest of a small batch: look
      // at it only every CLOCK_EVERY_N_BATCHES batches.
      const clockDue =
        ++this.#batchesSinceHostTurn % CLOCK_EVERY_N_BATCHES === 0;
      hostTurn = clockDue &&
        performance.now() - this.#lastHostTurn >= HOST_TURN_BUDGET_MS;
    }
    if (hostTurn) setImmediate(this.#runFromHost);
    else RESOLVED_VOID.then(this.#runFromMicrotask); // cheaper than queueMicrotask
  }

  // Queued from a step or a task's code, this microtask runs in that
  // task's context, and the batch stays in it until a step that runs
  // callers' code, as a batch #continueBatch picks up does (see #runBatch):
  // most batches of a loop that only switches tasks have none, and leaving
  // a context costs a copy of it on Node (AsyncContextFrame).
  #runFromMicrotask = (): void => {
    this.#runOnce();
  };

  #runFromHost = (): void => {
    this.#noteHostTurn();
    this.#runOnceOutsideTasks();
  };

  #noteHostTurn(): void {
    this.#hostTurns++;
    this.#batchesSinceHostTurn = 0;
    if (!this.#virtualTime) this.#lastHostTurn = performance.now();
  }

  // A batch must not run in a task's context, which a host callback may
  // carry over from where it was registered; leaving one costs, so only
  // when there is one to leave.
  #runOnceOutsideTasks(): void {
    if (taskContext.getStore() === undefined) this.#runOnce();
    else taskContext.exit(this.#runOnce);
  }

  // One iteration of the loop, asyncio's `_run_once`: the timers that are
  // due join the ready steps, and the steps ready now form the batch. Steps
  // scheduled while it runs wait for the next batch.
  #runOnce = (): void => {
    this.#runScheduled = false;
    if (this.#closed || this.#batchActive || this.#stopped) return;
    this.#batchCount++;
    const timers = this.#scheduledTimers;
    if (timers.length > 0) {
      const now = this.time();
      while (timers.length > 0 && timers.peek()!.when() <= now) {
        const timer = this.#popTimer();
        if (!timer.cancelled()) {
          const index = this.#readyCount++;
          this.#readyFns[index] = runHandle as Step;
          this.#readyArgs[index] = timer;
        }
      }
    }
    this.#batchFns = this.#readyFns;
    this.#batchArgs = this.#readyArgs;
    this.#batchLength = this.#readyCount;
    this.#batchIndex = 0;
    this.#readyFns = this.#spareFns;
    this.#readyArgs = this.#spareArgs;
    this.#readyCount = 0;
    this.#batchActive = true;
    this.#runBatch();
  };

  // Runs the batch's steps in order, each to completion: a step that
  // resumes a task (`#resumed`) is complete only when that task suspends
  // again (it awaits a pending future, finishes, or, when the microtasks
  // run dry without either, awaits something the loop cannot see). This is
  // asyncio's step semantics: a woken task runs alone until it suspends.
  #runBatch(): void {
    const fns = this.#batchFns;
    const args = this.#batchArgs;
    // Called from a task's microtask, the batch runs in that task's
    // context. Leaving it costs (a copy of the context on Node), and only
    // steps that run callers' code need to (see runsCallersCode): at the
    // first of those, the rest of the batch leaves it, once.
    const inTaskContext = taskContext.getStore() !== undefined;
    const outer = loopBeingRun;
    loopBeingRun = this;
    try {
      while (this.#batchIndex < this.#batchLength) {
        const index = this.#batchIndex;
        if (
          fns[index] === (wakeAwaiter as Step) &&
          cancelWantsQuiet(args[index] as Awaiter, this.#hostTurns)
        ) {
          // A wake-up that delivers a cancellation waits for the microtasks
          // to run dry first: the task may not be blocked on this wait at
          // all (a branch of a race made it, the rest of the task goes on),
          // and if it ends meanwhile, it must end cancelled. One host turn,
          // for all the cancels made before it.
          this.#armStallCheck();
          return;
        }
        if (inTaskContext && runsCallersCode(fns[index], args[index])) {
          taskContext.exit(this.#runRestOfBatch);
          return;
        }
        this.#batchIndex = index + 1;
        const argument = args[index];
        args[index] = undefined;
        const step = fns[index] as (argument: unknown) => void;
        this.#inStep = true;
        try {
          step(argument);
        } finally {
          this.#inStep = false;
        }
        if (this.#resumed !== null) {
          // The task goes on in microtasks; #noteSuspended or the stall
          // check picks the batch up again.
          this.#armStallCheck();
          return;
        }
        if (this.#closed || this.#stopped) break;
      }
    } finally {
      loopBeingRun = outer;
    }
    this.#endBatch();
  }

  #runRestOfBatch = (): void => {
    this.#runBatch();
  };

  #endBatch(): void {
    // Steps a stop or close left unrun go back in front of the ready ones.
    const left = this.#batchLength - this.#batchIndex;
    if (left > 0 && !this.#closed) {
      const fns = this.#batchFns.slice(this.#batchIndex, this.#batchLength);
      const args = this.#batchArgs.slice(this.#batchIndex, this.#batchLength);
      for (let i = 0; i < this.#readyCount; i++) {
        fns.push(this.#readyFns[i]);
        args.push(this.#readyArgs[i]);
      }
      this.#readyFns = fns;
      this.#readyArgs = args;
      this.#readyCount = fns.length;
    }
    this.#spareFns = this.#batchFns;
    this.#spareArgs = this.#batchArgs;
    this.#batchLength = 0;
    this.#batchIndex = 0;
    this.#batchActive = false;
    if (this.#stopping) {
      // As asyncio's loop, stop() takes effect at the end of an iteration.
      this.#stopping = false;
      this.#stopped = true;
      this.#stopRequested?.();
    }
    if (this.#closed || this.#stopped) return;
    if (this.#readyCount > 0) {
      if (!this.#runScheduled) this.#scheduleRun();
    } else {
      this.#afterIdle();
    }
  }

  // A step woke or started `task`: the batch waits until it suspends
  // again. Outside a step (an eager start, a foreign promise) it holds
  // nothing up.
  #noteResumed(task: Task<unknown>): void {
    if (this.#inStep) this.#resumed = task;
  }

  // `task` suspended. If it is the task resumed by the current step, the
  // batch goes on after the task's synchronous code (its `await` is still
  // unwinding). `finished`: the task's coroutine has returned, so none of
  // its code is left to run and the batch can go on at once, saving a
  // microtask.
  #noteSuspended(task: Task<unknown>, finished: boolean): void {
    if (this.#resumed !== task) return;
    this.#resumed = null;
    if (this.#inStep) return;
    if (finished) {
      this.#continueBatch();
      return;
    }
    // The task is still running its synchronous code up to its `await`. A
    // next step that only settles a bare awaiter (a sleep's, a yield's)
    // runs no code of anyone's now, so it can be taken here at once: its
    // task resumes in a microtask, after this one. Anything else waits
    // for a microtask of its own.
    while (this.#batchIndex < this.#batchLength) {
      const index = this.#batchIndex;
      if (this.#batchFns[index] !== (wakeAwaiter as Step)) break;
      const awaiter = this.#batchArgs[index] as Awaiter;
      if (awaiter.onFulfilled != null || awaiter.onRejected != null) break;
      if (cancelWantsQuiet(awaiter, this.#hostTurns)) break;
      this.#batchArgs[index] = undefined;
      this.#batchIndex++;
      this.#inStep = true;
      try {
        wakeAwaiter(awaiter);
      } finally {
        this.#inStep = false;
      }
      if (this.#resumed !== null) {
        this.#armStallCheck();
        return;
      }
      if (this.#closed || this.#stopped) break;
    }
    RESOLVED_VOID.then(this.#continueBatch); // cheaper than queueMicrotask
  }

  #continueBatch = (): void => {
    if (this.#resumed !== null || !this.#batchActive) return;
    this.#runBatch();
  };

  // A host macrotask runs only once the microtasks have run dry: if the
  // resumed task has not suspended by then, it awaits something foreign
  // (or a promise whose branch lost a race), and the batch goes on.
  #armStallCheck(): void {
    if (this.#stallCheckArmed) return;
    this.#stallCheckArmed = true;
    setImmediate(this.#onStallCheck);
  }

  #onStallCheck = (): void => {
    this.#stallCheckArmed = false;
    this.#noteHostTurn();
    if (this.#closed) return;
    if (this.#resumed !== null) taskStalled(this.#resumed);
    this.#resumed = null;
    this.#continueBatch();
  };

  // A runtime event posted `callback`: like asyncio's loop after a poll,
  // the loop runs it at once, as a batch of its own. Unless a batch is
  // running (its end runs it), the loop is stopped (it runs when the loop
  // runs again), or another loop's batch is running (it waits a turn).
  #runOnLoopNow(callback: () => void): void {
    if (this.#closed) return;
    const index = this.#readyCount++;
    this.#readyFns[index] = EventLoop.#runPostedCallback as Step;
    this.#readyArgs[index] = callback;
    if (this.#batchActive || this.#stopped) return; // its end runs the step
    if (loopBeingRun !== null) {
      // Inside a batch of another loop: take a turn.
      if (!this.#runScheduled) this.#scheduleRun();
      return;
    }
    this.#noteHostTurn();
    this.#runOnceOutsideTasks();
  }

  // The step of a callback posted with runOnLoopNow(): a loop callback.
  static #runPostedCallback(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      getRunningLoop().callExceptionHandler({
        message: `Exception in callback ${callback.name || "anonymous"}()`,
        exception: error,
      });
    }
  }

  #yieldFuture(): Future<void> {
    if (this.#yieldFutureDone === null) {
      this.#yieldFutureDone = new Future<void>(this);
      this.#yieldFutureDone.setResult();
    }
    return this.#yieldFutureDone;
  }

  // --- Internals: virtual time ------------------------------------------

  // A task started: it counts as unblocked until it waits.
  #noteTaskStarted(task: Task<unknown>): void {
    this.#unblockedTasks++;
    this.#timeline?.record(task, "running", this.time());
  }

  #noteTaskBlocked(blocked: boolean): void {
    if (blocked) {
      if (--this.#unblockedTasks === 0 && this.#virtualTime) {
        this.#scheduleIdleCheck();
      }
    } else {
      this.#unblockedTasks++;
    }
  }

  #noteTaskDone(task: Task<unknown>, wasBlocked: boolean): void {
    if (!wasBlocked) this.#noteTaskBlocked(true);
    this.#timeline?.record(task, "done", this.time());
  }

  #noteForeignWait(delta: number): void {
    this.#foreignWaits += delta;
    if (this.#foreignWaits === 0 && this.#virtualTime) {
      this.#scheduleIdleCheck();
    }
  }

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
    if (
      this.#closed || this.#stopped || this.#runScheduled ||
      this.#batchActive || this.#readyCount > 0
    ) return;
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
      if (this.#closed || this.#runScheduled || this.#batchActive) return;
      if (this.#batchCount !== batchesSeen || this.#foreignWaits > 0) {
        this.#scheduleIdleCheck();
      } else {
        this.#jumpToNextTimer();
      }
    }, IDLE_JUMP_MS);
  }

  #jumpToNextTimer(): void {
    if (this.#stopped) return;
    this.#dropCancelledTop();
    const next = this.#scheduledTimers.peek();
    if (next === undefined || next.when() === Infinity) return;
    if (next.when() > this.#virtualNow) {
      this.#virtualNow = next.when();
    }
    this.#noteHostTurn();
    this.#runOnceOutsideTasks();
  }

  // --- Internals: timers -------------------------------------------------

  #addTimer(
    when: number,
    callback: (...args: never[]) => unknown,
    args: unknown[],
  ): TimerHandle {
    this.#checkClosed();
    return this.#scheduleTimer(new TimerHandle(when, callback, args, this));
  }

  #callLaterWithArgument<A>(
    delay: number,
    callback: (argument: A) => unknown,
    argument: A,
  ): TimerHandle {
    this.#checkClosed();
    const timer = new TimerHandle(
      this.time() + delay,
      callback as (argument: never) => unknown,
      NO_ARGUMENTS,
      this,
    );
    passOneArgument(timer, argument);
    return this.#scheduleTimer(timer);
  }

  #scheduleTimer(timer: TimerHandle): TimerHandle {
    const timers = this.#scheduledTimers;
    timers.push(timer);
    if (timers.peek() === timer && !this.#runScheduled) {
      if (this.#virtualTime) this.#scheduleIdleCheck();
      else this.#armHostTimer();
    }
    return timer;
  }

  // Cancelled timers stay in the heap, as in asyncio, until they reach its
  // top. Once more than this many are dead and they are more than this
  // share of the heap, it is rebuilt without them: the O(n) rebuild then
  // costs less than carrying them, and small heaps are never rebuilt.
  static readonly #REBUILD_AFTER_CANCELLED = 64;
  static readonly #REBUILD_CANCELLED_SHARE = 0.5;

  // Earlier deadline first; ties go to the heap's insertion order.
  static #compareDeadlines(a: TimerHandle, b: TimerHandle): number {
    const aw = a.when();
    const bw = b.when();
    return aw < bw ? -1 : aw > bw ? 1 : 0;
  }

  static #isLive(timer: TimerHandle): boolean {
    return !timer.cancelled();
  }

  #popTimer(): TimerHandle {
    const top = this.#scheduledTimers.take()!;
    unscheduleTimer(top);
    if (top.cancelled()) this.#cancelledTimerCount--;
    return top;
  }

  #dropCancelledTop(): void {
    const timers = this.#scheduledTimers;
    while (timers.length > 0 && timers.peek()!.cancelled()) this.#popTimer();
  }

  #onTimerCancelled(timer: TimerHandle): void {
    this.#cancelledTimerCount++;
    const timers = this.#scheduledTimers;
    if (
      this.#cancelledTimerCount > EventLoop.#REBUILD_AFTER_CANCELLED &&
      this.#cancelledTimerCount >
        timers.length * EventLoop.#REBUILD_CANCELLED_SHARE
    ) {
      // The dropped timers are cancelled: nothing reads their `#scheduled`
      // again, so they need no unscheduling.
      timers.retain(EventLoop.#isLive);
      this.#cancelledTimerCount = 0;
    } else if (timers.peek() === timer) {
      this.#dropCancelledTop();
    } else {
      return;
    }
    if (!this.#virtualTime) this.#armHostTimer();
  }

  #armHostTimer(): void {
    this.#dropCancelledTop();
    const next = this.#scheduledTimers.peek();
    if (next === undefined) {
      this.#disarmHostTimer();
      return;
    }
    const when = next.when();
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
    if (this.#runScheduled || this.#batchActive) return;
    this.#noteHostTurn();
    this.#runOnceOutsideTasks();
  };

  // --- Internals: failures nobody retrieved -----------------------------

  #noteUnretrieved(future: Future<unknown>, add: boolean): void {
    if (add) this.#unretrieved.add(future);
    else this.#unretrieved.forget(future);
  }

  // --- The accessors, for the sections below -----------------------------

  static {
    scheduleStep = (loop, step, argument) => loop.#scheduleStep(step, argument);
    liveTasksOf = (loop) => loop.#liveTasks;
    noteTaskStarted = (loop, task) => loop.#noteTaskStarted(task);
    noteTaskBlocked = (loop, blocked) => loop.#noteTaskBlocked(blocked);
    noteTaskDone = (loop, task, wasBlocked) =>
      loop.#noteTaskDone(task, wasBlocked);
    noteForeignWait = (loop, delta) => loop.#noteForeignWait(delta);
    noteUnretrieved = (loop, future, add) => loop.#noteUnretrieved(future, add);
    loopTimeline = (loop) => loop.#timeline;
    runOnLoopNow = (loop, callback) => loop.#runOnLoopNow(callback);
    loopYieldFuture = (loop) => loop.#yieldFuture();
    loopHostTurns = (loop) => loop.#hostTurns;
    noteResumed = (loop, task) => loop.#noteResumed(task);
    noteSuspended = (loop, task, finished = false) =>
      loop.#noteSuspended(task, finished);
    loopBatchCount = (loop) => loop.#batchCount;
    timerCancelled = (loop, timer) => loop.#onTimerCancelled(timer);
    callLaterWithArgument = (loop, delay, callback, argument) =>
      loop.#callLaterWithArgument(delay, callback, argument);
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
  const loop = contextLoop() ?? loopBeingRun;
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
  const running = contextLoop() ?? loopBeingRun;
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
  checkSetEventLoopArgument(loop);
  defaultLoop = loop;
}

// The loop for library calls: the running one, else the default.
function currentLoop(): EventLoop {
  return getEventLoop();
}

// ===========================================================================
// §5 Futures
// Holds: Future, Awaiter (one `await` of a future), IoFuture (a wait on the
//   outside world, the one place foreign waits are counted), isFuture,
//   wrapFuture, ensureFuture.
// Rule: a future settles once, and nothing runs inside setResult(): each
//   done callback and each awaiter's wake-up is a step of its own on the
//   loop. A wake-up whose task was cancelled in between throws
//   CancelledError instead (asyncio's "must cancel").
// Relies on: §1 Errors, §2 Argument checks, §4 Event loop (scheduleStep,
//   the loop's counts); back-edge: §6 Tasks, through taskWillWait and
//   taskWakes, since awaiting registers the task.
// Used by: every later section; the loop's batch runs wakeAwaiter.
// ===========================================================================
//
// The futures' side of `await future` in a task (the loop's side, and
// `await sleep(0)` whole, are written down at the loop's ready queue):
// 1. `then()` makes an Awaiter and adds it to `#callbacks`; taskWillWait
//    (Task #willWait) makes it one of the task's waits and, unless a
//    cancellation is pending, tells the loop the task suspended.
// 2. `setResult()` -> `#complete()` schedules one step per callback: for an
//    awaiter, `wakeAwaiter` with the awaiter as its argument.
// 3. The batch runs `wakeAwaiter` (Future #wakeAwaiter): the awaiter leaves
//    the task's waits (taskWakes), the loop learns it resumed the task
//    (noteResumed), and the promise `then()` returned settles, with
//    CancelledError if the task was cancelled in between; the coroutine
//    goes on in a microtask.

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

// The handlers `then` got: called as a promise calls its handlers.
type AwaitHandler = (value: unknown) => unknown;

// The handlers of an internal wait (awaitWaiter): a lock's or a queue's
// code after its `await waiter`. They get the awaiter, which carries the
// primitive (`subject`) and what the wait needs (`argument`), so that a
// wait makes no closures.
type WaiterHandler = (awaiter: Awaiter, value: unknown) => unknown;

// The bits of Awaiter `flags`: one field rather than three booleans, as an
// awaiter lives as long as its wait, and a pending task has one or more.
const AWAITER_FIRED = 1;
const AWAITER_MUST_CANCEL = 2;
// Reached by its task's cancel(), or cancelled as it was made, by its
// task's pending `#mustCancel`: its wake-up delivers that cancellation.
const AWAITER_CARRIES_TASK_CANCEL = 4;
// The same for the cancel of a scope it was made in (CancelScope).
const AWAITER_CARRIES_SCOPE_CANCEL = 8;

// One `await` of a future by code running in `task` (null: outside any
// task): the callbacks `then` got, and the promise it returned.
// Invariants: AWAITER_FIRED is set once, when the wake-up step runs; until
// then the awaiter is one of its task's waits (Task #waits).
// AWAITER_MUST_CANCEL: the task was cancelled after the future settled but
// before this wake-up ran ("must cancel"), so the await throws
// CancelledError(`cancelMessage`) instead of handing over the outcome,
// which stays where it was.
// `subject` is null for an await made with `then`; else the wait is
// internal (awaitWaiter), and its handlers are WaiterHandlers run for
// `subject`, with `argument`.
class Awaiter {
  flags = 0;
  // With AWAITER_MUST_CANCEL: the message of the latest cancel() that
  // reached this wait (see Task `#cancelMessage` for why it is kept here).
  cancelMessage: string | undefined = undefined;
  resolve!: (value: unknown) => void;
  reject!: (reason: unknown) => void;
  // The promise `then` returns. Made with an executor rather than
  // Promise.withResolvers(), which costs more on JavaScriptCore (Bun).
  readonly promise: Promise<unknown> = new Promise((resolve, reject) => {
    this.resolve = resolve;
    this.reject = reject;
  });
  readonly future: Future<unknown>;
  // Where the await was made: its task, or the innermost cancel scope of
  // the task it was made in; null outside any task. One field for both,
  // as an awaiter lives as long as its wait.
  readonly frame: TaskFrame | null;
  readonly onFulfilled: AwaitHandler | WaiterHandler | null | undefined;
  readonly onRejected: AwaitHandler | WaiterHandler | null | undefined;
  subject: object | null = null;
  argument: unknown = undefined;

  constructor(
    future: Future<unknown>,
    frame: TaskFrame | null,
    onFulfilled: AwaitHandler | WaiterHandler | null | undefined,
    onRejected: AwaitHandler | WaiterHandler | null | undefined,
  ) {
    this.future = future;
    this.frame = frame;
    this.onFulfilled = onFulfilled;
    this.onRejected = onRejected;
  }

  // The task the await was made in, or null.
  get task(): Task<unknown> | null {
    const frame = this.frame;
    return frame === null ? null : frameTask(frame);
  }

  // The innermost cancel scope the await was made in, or null.
  get scope(): CancelScope | null {
    const frame = this.frame;
    return frame !== null && isCancelScope(frame) ? frame : null;
  }
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
    awaiter.resolve(
      awaiter.subject === null
        ? (handler as AwaitHandler)(value)
        : (handler as WaiterHandler)(awaiter, value),
    );
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

// Module-private access to a future's internals, for the tasks, the
// waiting functions and the loop's batch, filled in by Future's static block.
let futureState: (future: Future<unknown>) => FutureState;
let futureAwaitedBy: (future: Future<unknown>) => Future<unknown>[];
let futureValue: (future: Future<unknown>) => unknown;
let futureCancelledError: (future: Future<unknown>) => CancelledError;
// The message a cancelled future was cancelled with, without taking the
// error a task keeps (see Future #cancelledError).
let futureCancelMessage: (future: Future<unknown>) => string | undefined;
// A task ended by a CancelledError keeps it for its first reader.
let keepCancelledError: (
  future: Future<unknown>,
  error: CancelledError,
) => void;
// The state part of `toString()`, for subclasses that describe themselves.
let describeFutureState: (future: Future<unknown>) => string;
// The step that wakes one `await` of a settled future (see Awaiter).
let wakeAwaiter: (awaiter: Awaiter) => void;
// An internal await of a lock's or a queue's waiter, pending (WaiterList.add
// just made it): as `waiter.then()`, with WaiterHandlers run for `subject`
// with `argument`. Their code needs no task's context: one that waits
// again enters its task's (waitAgainIn).
let awaitWaiter: (
  waiter: Future<unknown>,
  onWoken: WaiterHandler,
  onFailed: WaiterHandler,
  subject: object,
  argument: unknown,
) => Promise<unknown>;

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
  // The invariants:
  // - `#state` leaves PENDING once (#complete), never to return; `#value`
  //   is the result (FULFILLED) or the error (REJECTED), else undefined.
  // - `#cancelMessage`: what cancel() was given (undefined: no message);
  //   read only once the state is CANCELLED.
  // - `#cancelledError`: the CancelledError a task ended with, handed to
  //   the first reader of its outcome (then null: later readers get a new
  //   one with `#cancelMessage`), as asyncio.
  // - `#callbacks` holds the done callbacks and awaiters while PENDING, in
  //   the order they came; #complete empties it for good, scheduling one
  //   step per entry. One in a slot of its own (the common case), several
  //   in an array: most futures are awaited once, and an array each costs.
  // - `#scheduled`: the done callbacks scheduled at completion whose steps
  //   have not run, and in an array, `#scheduledIndex` is the next one's.
  //   Awaiters are not kept here: their step carries them.
  // - `#retrieved`: something read the outcome or awaited the future. A
  //   REJECTED future is listed among its loop's failures nobody retrieved
  //   only while this is false.
  #loop: EventLoop;
  #state: FutureState = PENDING;
  #value: unknown = undefined;
  #cancelMessage: string | undefined = undefined;
  #cancelledError: CancelledError | null = null;
  #callbacks: FutureCallback | FutureCallback[] | null = null;
  #scheduled: DoneCallback<unknown> | DoneCallback<unknown>[] | null = null;
  #scheduledIndex = 0;
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
    checkExceptionArgument(error, "setException()");
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
    this.#markRetrieved();
    if (this.#state !== PENDING) {
      // Awaiting a done future is not a task switch, as in asyncio: the
      // outcome is handed over at once, whatever became of its loop.
      const settled: Promise<T> = this.#state === FULFILLED
        ? Promise.resolve(this.#value as T)
        : Promise.reject(
          this.#state === CANCELLED ? this.#makeCancelledError() : this.#value,
        );
      return (onfulfilled == null && onrejected == null
        ? settled
        : settled.then(onfulfilled, onrejected)) as Promise<R1 | R2>;
    }
    const awaiter = new Awaiter(
      this as Future<unknown>,
      runningFrame(),
      onfulfilled as AwaitHandler | null | undefined,
      onrejected,
    );
    return this.#register(awaiter) as Promise<R1 | R2>;
  }

  // A new awaiter of this pending future joins its callbacks and its task's
  // waits; or, if its task may not await this future, fails at once.
  #register(awaiter: Awaiter): Promise<unknown> {
    const task = awaiter.task;
    if (task !== null) {
      const refusal = task === (this as Future<unknown>)
        ? new RuntimeError(`Task cannot await on itself: ${task}`)
        : task.getLoop() !== this.#loop
        ? new RuntimeError(
          `Task ${task} got Future ${this} attached to a different loop`,
        )
        : null;
      if (refusal !== null) {
        // In a microtask, as a rejected promise's handlers would run.
        RESOLVED_VOID.then(() => settleAwaiter(awaiter, REJECTED, refusal));
        return awaiter.promise;
      }
    }
    this.#addCallback(awaiter);
    if (task !== null) taskWillWait(task, awaiter);
    return awaiter.promise;
  }

  static #awaitWaiter(
    waiter: Future<unknown>,
    onWoken: WaiterHandler,
    onFailed: WaiterHandler,
    subject: object,
    argument: unknown,
  ): Promise<unknown> {
    const awaiter = new Awaiter(waiter, runningFrame(), onWoken, onFailed);
    awaiter.subject = subject;
    awaiter.argument = argument;
    waiter.#markRetrieved();
    return waiter.#register(awaiter);
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
    const kept = this.#cancelledError;
    if (kept !== null) {
      this.#cancelledError = null;
      return kept;
    }
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
    this.#callbacks = null;
    // As in asyncio, each callback is a step of its own, scheduled now: one
    // removed afterwards still runs, and a task woken by one runs to its
    // next suspension before the next callback runs. The done callbacks
    // wait in `#scheduled`, in order, each step taking the next.
    const loop = this.#loop;
    if (!Array.isArray(callbacks)) {
      if (callbacks instanceof Awaiter) {
        scheduleStep(loop, wakeAwaiter, callbacks);
      } else {
        this.#scheduled = callbacks as DoneCallback<unknown>;
        scheduleStep(loop, Future.#runNextCallback, this as Future<unknown>);
      }
      return;
    }
    const scheduled: DoneCallback<unknown>[] = [];
    for (const callback of callbacks) {
      if (callback instanceof Awaiter) {
        scheduleStep(loop, wakeAwaiter, callback);
      } else {
        scheduled.push(callback as DoneCallback<unknown>);
        scheduleStep(loop, Future.#runNextCallback, this as Future<unknown>);
      }
    }
    this.#scheduled = scheduled;
  }

  static #runNextCallback(future: Future<unknown>): void {
    const scheduled = future.#scheduled;
    let callback: DoneCallback<unknown>;
    if (Array.isArray(scheduled)) {
      callback = scheduled[future.#scheduledIndex++];
      if (future.#scheduledIndex === scheduled.length) {
        future.#scheduled = null;
        future.#scheduledIndex = 0;
      }
    } else {
      callback = scheduled!;
      future.#scheduled = null;
    }
    try {
      callback(future);
    } catch (error) {
      future.#loop.callExceptionHandler({
        message: `Exception in done callback ${callback.name || "anonymous"}()`,
        exception: error,
        future,
      });
    }
  }

  // Who waits on this future: the tasks awaiting it, and the futures that
  // watch it through a tagged done callback (gather, task groups).
  #awaitedBy(): Future<unknown>[] {
    const callbacks = this.#callbacks;
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
  }

  // The step that wakes one await of this future, now settled: it hands the
  // awaiting code the outcome, or CancelledError if its task was cancelled
  // in between (AWAITER_MUST_CANCEL). Runs once per awaiter.
  static #wakeAwaiter(awaiter: Awaiter): void {
    if ((awaiter.flags & AWAITER_FIRED) !== 0) return;
    awaiter.flags |= AWAITER_FIRED;
    const future = awaiter.future;
    let state = future.#state;
    let value = future.#value;
    const task = awaiter.task;
    const resumes = task !== null && taskWakes(task, awaiter);
    if (resumes) noteResumed(future.#loop, task);
    if (state === CANCELLED) {
      state = REJECTED;
      value = future.#makeCancelledError();
    } else if (
      (awaiter.flags & AWAITER_MUST_CANCEL) !== 0 &&
      !(state === REJECTED && value instanceof CancelledError)
    ) {
      // Must-cancel: the task was cancelled after the future settled but
      // before it could resume. It sees CancelledError here; what the
      // future handed it stays with the future's owner, not lost, even
      // if the task has ended meanwhile (a branch of a Promise.all that
      // another branch's cancel ended). A CancelledError already on its
      // way is kept: the first message wins, as in asyncio.
      state = REJECTED;
      value = new CancelledError(awaiter.cancelMessage);
    }
    settleAwaiter(
      awaiter,
      state as typeof FULFILLED | typeof REJECTED,
      value,
    );
  }

  static {
    futureState = (future) => future.#state;
    futureAwaitedBy = (future) => future.#awaitedBy();
    futureValue = (future) => future.#value;
    futureCancelledError = (future) => future.#makeCancelledError();
    futureCancelMessage = (future) => future.#cancelMessage;
    keepCancelledError = (future, error) => {
      future.#cancelledError = error;
    };
    describeFutureState = (future) => future.#describeState();
    wakeAwaiter = Future.#wakeAwaiter;
    awaitWaiter = Future.#awaitWaiter;
  }
}

// A future for something the outside world will do: a promise wrapped by
// wrapFuture(), a connection, a lookup, a job in a worker. While it is
// pending, a virtual clock must not jump (the outcome may come any moment),
// so it counts as a foreign wait of its loop, from its making to the moment
// it is settled or cancelled. This is the one place foreign waits are
// counted. It reads as a plain Future, as asyncio's would.
class IoFuture<T> extends Future<T> {
  #counted = true;

  constructor(loop: EventLoop) {
    super(loop);
    noteForeignWait(loop, 1);
  }

  override setResult(value: T): void {
    super.setResult(value);
    this.#uncount();
  }

  override setException(error: unknown): void {
    super.setException(error);
    this.#uncount();
  }

  override cancel(msg?: string): boolean {
    if (!super.cancel(msg)) return false;
    this.#uncount();
    return true;
  }

  override get [Symbol.toStringTag](): string {
    return "Future";
  }

  override toString(): string {
    return `<Future ${describeFutureState(this)}>`;
  }

  #uncount(): void {
    if (!this.#counted) return;
    this.#counted = false;
    noteForeignWait(this.getLoop(), -1);
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
  // Pending, it holds a virtual clock still: see IoFuture.
  const future = new IoFuture<T>(owner);
  // Called outside any task, so that no task registers as waiting on it.
  taskContext.exit(() =>
    promise.then(
      (value) => {
        if (!future.done() && !owner.isClosed()) future.setResult(value);
      },
      (error) => {
        if (!future.done() && !owner.isClosed()) failWith(future, error);
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

// ===========================================================================
// §6 Tasks
// Holds: Task, createTask, currentTask, allTasks, sleep, and the cancel
//   scopes' state (cancelScope and the accessors beside it).
// Rule: a task runs its coroutine inside `taskContext`, so every library
//   await made in its context is one of its waits; cancel() reaches all of
//   them, or, with none, is delivered at the task's next library await. A
//   wait that lost a race never eats the cancellation (see Task's
//   invariants). A cancel scope's cancel does the same for the waits made
//   inside the scope only.
// Relies on: §4 Event loop (taskContext, the live list, the counts),
//   §5 Futures. Used by: §9 Runners, §7 Waiting and timeouts, §8 Task
//   groups, §10 Synchronization primitives, §11 Queues, and the loop's
//   createTask and batch.
// ===========================================================================

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

// A task's #liveIndex once it has left its loop's live list.
const NOT_LIVE = -1;
// The bits of a task's #flags, one per boolean of its state.
const TASK_STARTED = 1;
const TASK_SUSPENDED = 2;
const TASK_MUST_CANCEL = 4;
const TASK_PENDING_CLEAR = 8;

// A task's #cancelTurn before its first cancel(): no host turn count is
// negative, so cancelWantsQuiet() never holds for it.
const NO_CANCEL_YET = -1;

// Module-private access to a task's cancellation state, for futures, the
// loop's batch and timeout scopes, filled in by Task's static block.
// The task's code registered `awaiter`: it is now one of the task's waits.
let taskWillWait: (task: Task<unknown>, awaiter: Awaiter) => void;
// `awaiter` wakes: it leaves the task's waits. False if the task is done,
// and the wake-up is then nothing of the task's.
let taskWakes: (task: Task<unknown>, awaiter: Awaiter) => boolean;
// A bare yield (asyncio's `sleep(0)`): the current task waits for one step
// of its own at the end of the ready queue.
let yieldAwaiter: (loop: EventLoop) => Promise<void>;
// The step that starts a task.
let taskStartStep: Step;
// How many of the task's cancellations it has not seen yet arrived while it
// was away, awaiting a promise the loop cannot see (or while only a helper's
// or a lost branch's wait was pending).
let cancelsArrivedWhileAway: (task: Task<unknown>) => number;
// Whether `awaiter`'s wake-up delivers a cancellation made since the host's
// latest turn: it waits for a host turn.
let cancelWantsQuiet: (awaiter: Awaiter, hostTurns: number) => boolean;
// The loop resumed `task` and it showed no sign of life until the
// microtasks ran dry: it was not blocked on what woke it.
let taskStalled: (task: Task<unknown>) => void;
// A scope cancels its own body (a deadline passed, a child of the group
// failed): as cancel(), counted by cancelling(), but reaching only the
// waits made inside the scope. False if the task is done.
let cancelScope: (scope: CancelScope) => boolean;
// The scope takes back its cancel, if it made one (uncancel()).
let takeBackScopeCancel: (scope: CancelScope) => void;
// The cancel requests not taken back that reach code running in `scope`
// (null: the task's own code): the task's own (cancel() calls) and those
// of the scopes around it, not those of scopes beside it.
let cancelsReaching: (task: Task<unknown>, scope: CancelScope | null) => number;
// A task group's re-cancel (gh-116720): the cancellation reaching code in
// `scope` is to be delivered anew at the next await made there.
let cancelAgain: (task: Task<unknown>, scope: CancelScope | null) => void;

// A new cancel scope of `task`, the task the caller runs in (inTask), inside
// the scope the caller runs in, if any: a timeout's or a task group's, on
// entry.
function openCancelScope(task: Task<unknown>): CancelScope {
  const frame = taskContext.getStore();
  return new CancelScope(
    task,
    frame !== undefined && isCancelScope(frame) ? frame : null,
  );
}

// Whether a wait made in `inner` (null: the task's own code) was made
// inside `scope`.
function scopeContains(scope: CancelScope, inner: CancelScope | null): boolean {
  for (let each = inner; each !== null; each = each.parent) {
    if (each === scope) return true;
  }
  return false;
}

// Whether a cancellation of `scope` or of a scope around it is on its way.
function scopeMustCancel(scope: CancelScope | null): boolean {
  for (let each = scope; each !== null; each = each.parent) {
    if (each.mustCancel) return true;
  }
  return false;
}

/**
 * A coroutine running concurrently, as asyncio's `Task`: it is a
 * {@linkcode Future} of the coroutine's result, so awaiting it waits for the
 * coroutine to finish.
 *
 * **A task owns every library await made in its context** while it is
 * pending: its coroutine's, and those of helpers it starts without awaiting,
 * of every branch of `Promise.all`/`race`/`any`/`allSettled`, and of the
 * callbacks it registers (timers, event listeners), since the task's context
 * follows all of them. Cancelling it (`task.cancel()`) reaches every library
 * await pending in that context (a sleep, a queue, a lock, a future, another
 * task), so `CancelledError` is thrown at the await the coroutine is really
 * blocked on; a wait that lost a race is cancelled too and never eats the
 * cancellation. With no library await pending (the task is running, or awaits
 * a promise the loop cannot see), the cancellation is delivered at its next
 * library await. The coroutine may catch it and clean up; `task.signal` is
 * aborted at the same moment, for foreign APIs like `fetch`. Once the task is
 * done, an await made in its context behaves as if outside any task.
 *
 * The body of a {@linkcode timeout} or a {@linkcode taskGroup} is a cancel
 * scope of the task: its own cancel (the deadline passed, a child failed)
 * reaches only the waits made inside the body, so code of the task running
 * beside it (a race branch, a helper) goes on. `cancelling()` counts it until
 * the scope exits, as in asyncio; it does not abort `signal`.
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
  // The coroutine function, until the task starts it (then null).
  #coro: Coro<T> | null;
  // The task's number until its default name `Task-<number>` is first
  // asked for: most tasks never are.
  #name: string | number;
  // The task's slot in its loop's live list while it is not done; -1 after.
  #liveIndex = NOT_LIVE;
  // The task's booleans, as bits of one field (a field each would cost a
  // slot each in every task): TASK_STARTED, and those of the cancellation
  // state below, `#mustCancel` standing for TASK_MUST_CANCEL and so on.
  // TASK_STARTED is set as the coroutine function is called; a task
  // cancelled before that never calls it.
  #flags = 0;

  // A task's cancellation state, and what the loop counts as blocked. The
  // invariants (checked against cancel, uncancel, #willWait, #wakes,
  // #finish, #start, Future.then and Future.#wakeAwaiter):
  //
  // - `#waits` holds the awaiter of every library await made in the task's
  //   context whose wake-up has not run: its coroutine's, and those of the
  //   helpers, `Promise.all`/`race` branches and callbacks that run in its
  //   context. One in a slot of its own, several in an array. An awaiter
  //   joins in #willWait (from Future.then and sleep(0)) and leaves in
  //   #wakes, when its wake-up step runs; #finish drops the rest (null),
  //   and their wake-ups then find the task done. cancel() reaches every
  //   one (#cancelWait): a pending future is cancelled, a settled one whose
  //   wake-up has not run is marked must-cancel. So a wait that lost a race
  //   is cancelled along with the rest and never eats a cancellation.
  // - Blocked, for virtual time: a started task that is not done counts as
  //   unblocked on its loop exactly while `#waits` is null (noteTaskBlocked
  //   as `#waits` leaves and returns to null; #retire evens the count up
  //   for a task that ends unblocked). A task away on a foreign promise is
  //   unblocked: a virtual clock does not jump at once under it.
  // - `#suspended`: the task's last event was an await made (#willWait),
  //   not a wake-up (#wakes): it waits on the loop. False while it runs or
  //   awaits a promise the loop cannot see.
  // - `#mustCancel`: a cancellation is on its way and not yet delivered.
  //   Set by every cancel(). While set, every library await the task makes
  //   is cancelled as it is made (a carrier, below), so that a helper or a
  //   race branch cannot take it alone. Cleared when it is delivered (see
  //   `#pendingClear`), when uncancel() brings `#cancelRequests` to 0, when
  //   the task is cancelled before it starts (#start), and when the
  //   coroutine returns a result first: the task then ends cancelled.
  // - Carriers: an awaiter that cancel() reached, or that was made while
  //   `#mustCancel` was set, has AWAITER_CARRIES_TASK_CANCEL; its wake-up
  //   delivers the cancellation (or is a lost branch's, see below). It
  //   stays set.
  // - Scopes: the body of a timeout scope or a task group runs in a
  //   CancelScope of the task (§4), and its cancel of itself (#cancelScope)
  //   counts in `#cancelRequests` as asyncio's task.cancel() does, but
  //   reaches only the waits made inside it (AWAITER_CARRIES_SCOPE_CANCEL),
  //   and while the scope's `mustCancel` is set, every wait made inside it
  //   is cancelled as it is made. It sets neither `#mustCancel` nor
  //   `signal` (the scope has a signal of its own): code of the task
  //   outside the scope goes on uncancelled.
  // - `#pendingClear`: the task was just woken by a carrier with
  //   `#mustCancel` set, or with the `mustCancel` of a scope around the
  //   wait set (#wakes); `#pendingClearScope` is the scope the wait was
  //   made in. If the task then goes on (makes an await, or ends), it was
  //   blocked on that wait and saw the cancellation: `#mustCancel`, and
  //   the `mustCancel` of that scope and of those around it, are cleared
  //   (#cancelDelivered): one CancelledError delivers every cancel made
  //   before it, as in asyncio. If it shows no sign of life before the
  //   microtasks run dry (the loop's taskStalled), the wait was a branch it
  //   had left (a race it lost) and they stay. Reset by a new cancel(),
  //   which is to be delivered anew, and by any other wake-up.
  // - `#cancelsWhileAway`: how many cancel() calls from outside the task's
  //   context, once it has started, came since `#mustCancel` was last
  //   cleared, suspended or not (the wait a cancel reached may be a
  //   helper's or a lost branch's while the coroutine still runs). The
  //   coroutine may enter a timeout scope before it sees those
  //   cancellations (it awaits a foreign promise), where asyncio would have
  //   raised them first; the scope does not count them as its own
  //   (cancelsArrivedWhileAway, at most its own requests, and none once a
  //   wait handed the cancellation to the task, `#pendingClear`). Several:
  //   a lost branch's timeout scope and another task may both cancel it.
  //   Reset with `#mustCancel` (#clearMustCancel); read only together with
  //   it.
  // - `#cancelRequests`: cancel() calls not taken back by uncancel(), and
  //   the cancels of its scopes (#cancelScope) not taken back, of which
  //   there are `#scopeCancels` (at most `#cancelRequests`).
  // - `#cancelMessage`: the message `#mustCancel` delivers at the task's
  //   next await, or ends it with; undefined is "no message". The latest
  //   cancel() sets it, except while the task is suspended with a
  //   cancellation already on its way: then the first message stays, as in
  //   asyncio, where it travels in the waited-for future that the first
  //   cancel() cancelled. The message is kept in two other places, each a
  //   different fact, not a copy: a future cancel() cancelled keeps its own
  //   (Future #cancelMessage), which its awaiter wakes with; a settled wait
  //   whose wake-up cancel() reached keeps the message of the latest cancel
  //   that reached it (Awaiter.cancelMessage), which CPython 3.14 raises
  //   there too ("second" after `cancel("first"); cancel("second")`).
  // - `#cancelTurn`: the loop's host turn count at the latest cancel(), so
  //   that the batch lets the host run before delivering it (see
  //   cancelWantsQuiet()).
  // - `#abortController`: made when `signal` is first read; aborted by the
  //   first cancel() after that, or at once if one is pending; renewed
  //   after uncancel() brings `#cancelRequests` to 0.
  #waits: Awaiter | Awaiter[] | null = null;
  #pendingClearScope: CancelScope | null = null;
  #scopeCancels = 0;
  #cancelsWhileAway = 0;
  #cancelMessage: string | undefined = undefined;
  #cancelRequests = 0;
  #cancelTurn = NO_CANCEL_YET;
  #abortController: AbortController | null = null;

  #hasFlag(flag: number): boolean {
    return (this.#flags & flag) !== 0;
  }

  /**
   * A task running `coro` on `options.loop` (default: the running loop, or
   * the default loop). Prefer {@linkcode createTask}.
   */
  constructor(coro: Coro<T>, options: TaskOptions & { loop?: EventLoop } = {}) {
    checkCreateTaskArguments(coro, options);
    const loop = options.loop ?? currentLoop();
    super(loop);
    const number = ++taskCounter;
    this.#name = options.name === undefined ? number : String(options.name);
    // A promise handed over whole can only be stopped being waited for: wrap
    // it, so that cancelling the task at least ends the wait.
    this.#coro = typeof coro === "function" ? coro : wrapFuture(coro, loop);
    const live = liveTasksOf(loop);
    this.#liveIndex = live.length;
    live.push(this);
    loopTimeline(loop)?.record(this, "created", loop.time());
    // An eager task runs inside the caller's step, so the loop waits for
    // the caller, not for it.
    if (options.eagerStart) Task.#start(this);
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
    this.#cancelTurn = loopHostTurns(this.getLoop());
    const controller = this.#abortController;
    if (controller !== null && !controller.signal.aborted) {
      controller.abort(new CancelledError(msg));
    }
    Task.#cancelWaits(this, null, msg);
    // Until one of the waits reached wakes the task with the cancellation,
    // whatever it awaits next is cancelled too: it may be running (a branch
    // made a wait, the rest of it goes on), or away on a foreign promise.
    // asyncio's message: the last of the cancels that found the task not
    // waiting; a cancel that reached a wait leaves the one already set.
    if (!this.#hasFlag(TASK_SUSPENDED) || !this.#hasFlag(TASK_MUST_CANCEL)) {
      this.#cancelMessage = msg;
    }
    this.#flags |= TASK_MUST_CANCEL;
    // A new cancellation, to be delivered anew.
    this.#flags &= ~TASK_PENDING_CLEAR;
    this.#pendingClearScope = null;
    // From outside, even while suspended: the wait it reached may be a
    // helper's, and the coroutine, still running, enters a scope before
    // the cancellation is delivered.
    if (this.#hasFlag(TASK_STARTED) && runningTask() !== this) {
      this.#cancelsWhileAway++;
    }
    if (!this.#hasFlag(TASK_SUSPENDED)) {
      if (this.#hasFlag(TASK_STARTED) && this.getLoop().getDebug()) {
        this.#watchUndelivered();
      }
    }
    return true;
  }

  // Cancels one wait for the task (`carries`: AWAITER_CARRIES_TASK_CANCEL)
  // or for a scope (AWAITER_CARRIES_SCOPE_CANCEL): its future if it is
  // pending (its waiter then wakes with CancelledError), else the wake-up
  // already scheduled.
  static #cancelWait(
    awaiter: Awaiter,
    msg: string | undefined,
    carries: number,
  ): void {
    awaiter.flags |= carries;
    const future = awaiter.future;
    if (!future.done() && future.cancel(msg)) return;
    awaiter.flags |= AWAITER_MUST_CANCEL;
    awaiter.cancelMessage = msg;
  }

  static #cancelScope(scope: CancelScope): boolean {
    const task = scope.task;
    if (task.done()) return false;
    task.#cancelRequests++;
    task.#scopeCancels++;
    scope.cancelRequested = true;
    // A closed scope's body is done: the cancel only counts, for the
    // scope's exit to take back.
    if (scope.closed) return true;
    scope.mustCancel = true;
    Task.#cancelWaits(task, scope, undefined);
    return true;
  }

  // Cancels the waits of `task`: all of them for the task's own cancel
  // (`scope` null), else those made inside `scope`.
  static #cancelWaits(
    task: Task<unknown>,
    scope: CancelScope | null,
    msg: string | undefined,
  ): void {
    const waits = task.#waits;
    if (waits === null) return;
    const carries = scope === null
      ? AWAITER_CARRIES_TASK_CANCEL
      : AWAITER_CARRIES_SCOPE_CANCEL;
    // A copy: a wait cancelled here may leave the list at once.
    for (const awaiter of waits instanceof Awaiter ? [waits] : waits.slice()) {
      if (scope === null || scopeContains(scope, awaiter.scope)) {
        Task.#cancelWait(awaiter, msg, carries);
      }
    }
  }

  static #takeBackScopeCancel(scope: CancelScope): void {
    if (!scope.cancelRequested) return;
    scope.cancelRequested = false;
    const task = scope.task;
    if (task.#scopeCancels > 0) task.#scopeCancels--;
    task.uncancel();
  }

  // The task's own cancel requests: those not of its scopes.
  #ownCancels(): number {
    return Math.max(0, this.#cancelRequests - this.#scopeCancels);
  }

  static #cancelsReaching(
    task: Task<unknown>,
    scope: CancelScope | null,
  ): number {
    let count = task.#ownCancels();
    for (let each = scope; each !== null; each = each.parent) {
      if (each.cancelRequested) count++;
    }
    return count;
  }

  static #cancelAgain(task: Task<unknown>, scope: CancelScope | null): void {
    if (task.#ownCancels() > 0) {
      // Taken back and made again: the count stays the same.
      task.uncancel();
      task.cancel();
      return;
    }
    for (let each = scope; each !== null; each = each.parent) {
      if (each.cancelRequested && !each.closed) {
        each.mustCancel = true;
        return;
      }
    }
  }

  #clearMustCancel(): void {
    this.#flags &= ~(TASK_MUST_CANCEL | TASK_PENDING_CLEAR);
    this.#cancelsWhileAway = 0;
    this.#pendingClearScope = null;
  }

  // The task went on after a wait woke it with a cancellation: see
  // `#pendingClear`.
  #cancelDelivered(): void {
    let scope = this.#pendingClearScope;
    for (; scope !== null; scope = scope.parent) scope.mustCancel = false;
    this.#clearMustCancel();
  }

  // Debug mode: a cancellation that stays undelivered, because the task
  // awaits a promise the loop cannot see, is worth a warning.
  #watchUndelivered(): void {
    const loop = this.getLoop();
    loop.callLater(loop.slowCallbackDuration, () => {
      if (!this.#hasFlag(TASK_MUST_CANCEL) || this.done()) return;
      console.warn(
        `asyncio: task "${this.getName()}" was cancelled ${loop.slowCallbackDuration} ms ago and has not seen it: it awaits a promise the loop cannot cancel. Pass task.signal to it, or wrap it with wrapFuture().`,
      );
    });
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
        this.#clearMustCancel();
        if (this.#abortController?.signal.aborted) this.#abortController = null;
      }
    }
    return this.#cancelRequests;
  }

  /**
   * Aborted when the task is asked to cancel (`cancel()`); pass it to
   * `fetch` and other APIs that take an `AbortSignal`. Its reason is the
   * `CancelledError`. A timeout scope's expiry does not abort it, as that
   * cancels only the scope's body: pass the scope's `cm.signal` there.
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
    const name = this.#name;
    return typeof name === "string" ? name : this.#name = `Task-${name}`;
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
    return `<Task ${describeFutureState(this)} name='${this.getName()}'>`;
  }

  // The first step: run the coroutine function inside the task's context,
  // to its first suspension, before the loop's next step.
  static #step(task: Task<unknown>): void {
    // Resumed before it runs: it may suspend (or finish) inside #start.
    noteResumed(task.getLoop(), task);
    Task.#start(task);
    if (!task.#hasFlag(TASK_STARTED)) noteSuspended(task.getLoop(), task);
  }

  static #start(task: Task<unknown>): void {
    const loop = task.getLoop();
    if (task.#hasFlag(TASK_MUST_CANCEL)) {
      // Cancelled before it ever ran: its function is never called.
      task.#flags &= ~TASK_MUST_CANCEL;
      task.#coro = null;
      Future.prototype.cancel.call(task);
      keepCancelledError(task, new CancelledError(task.#cancelMessage));
      Task.#retire(task, true);
      return;
    }
    task.#flags |= TASK_STARTED;
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

  // The coroutine's promise settles in the context its `then` was called
  // in: the task's own, never one of its scopes.
  static #coroutineReturned(value: unknown): void {
    (taskContext.getStore() as Task<unknown>).#finish(FULFILLED, value);
  }

  static #coroutineThrew(error: unknown): void {
    (taskContext.getStore() as Task<unknown>).#finish(REJECTED, error);
  }

  #finish(state: typeof FULFILLED | typeof REJECTED, value: unknown): void {
    if (this.done()) return;
    const blocked = this.#waits !== null;
    if (this.#hasFlag(TASK_PENDING_CLEAR)) this.#cancelDelivered();
    if (state === REJECTED && value instanceof CancelledError) {
      Future.prototype.cancel.call(this);
      keepCancelledError(this, value);
    } else if (this.#hasFlag(TASK_MUST_CANCEL) && state === FULFILLED) {
      // Cancelled right before the coroutine returned: asyncio ends such a
      // task cancelled, not with its result.
      this.#flags &= ~TASK_MUST_CANCEL;
      Future.prototype.cancel.call(this, this.#cancelMessage);
    } else if (state === FULFILLED) {
      Future.prototype.setResult.call(this, value);
    } else {
      Future.prototype.setException.call(this, value);
    }
    // Waits still registered (a branch that lost a race) are nothing of
    // the task's any more: their wake-ups find it done.
    this.#waits = null;
    Task.#retire(this, blocked);
    noteSuspended(this.getLoop(), this, true);
  }

  // A task is done: it leaves its loop's live list, in O(1) (the last task
  // moves into its slot), and the loop's count of running tasks.
  static #retire(task: Task<unknown>, wasBlocked: boolean): void {
    const index = task.#liveIndex;
    if (index >= 0) {
      const live = liveTasksOf(task.getLoop());
      const last = live.pop()!;
      if (last !== task) {
        live[index] = last;
        last.#liveIndex = index;
      }
      task.#liveIndex = NOT_LIVE;
    }
    noteTaskDone(task.getLoop(), task, wasBlocked);
  }

  // The task's code made an await: `awaiter` joins the task's waits.
  static #willWait(task: Task<unknown>, awaiter: Awaiter): void {
    const loop = task.getLoop();
    const waits = task.#waits;
    if (waits === null) {
      task.#waits = awaiter;
      if (task.#hasFlag(TASK_STARTED)) noteTaskBlocked(loop, true);
    } else if (waits instanceof Awaiter) {
      task.#waits = [waits, awaiter];
    } else {
      waits.push(awaiter);
    }
    loopTimeline(loop)?.record(task, "waiting", loop.time());
    task.#flags |= TASK_SUSPENDED;
    if (task.#hasFlag(TASK_PENDING_CLEAR)) task.#cancelDelivered();
    if (task.#hasFlag(TASK_MUST_CANCEL)) {
      // Cancelled as it is made. No word to the loop that the task
      // suspended: it may go on (a Promise.race branch that settled at
      // once), so the loop waits until its microtasks run dry, and the
      // task returning meanwhile still ends cancelled.
      Task.#cancelWait(
        awaiter,
        task.#cancelMessage,
        AWAITER_CARRIES_TASK_CANCEL,
      );
      return;
    }
    if (scopeMustCancel(awaiter.scope)) {
      // The same, inside a scope that cancelled itself.
      Task.#cancelWait(awaiter, undefined, AWAITER_CARRIES_SCOPE_CANCEL);
      return;
    }
    noteSuspended(loop, task);
  }

  // `awaiter`'s wake-up runs: it leaves the task's waits. False if the task
  // is done, and the wake-up is then nothing of the task's.
  static #wakes(task: Task<unknown>, awaiter: Awaiter): boolean {
    if (task.done()) return false;
    task.#flags &= ~(TASK_SUSPENDED | TASK_PENDING_CLEAR);
    task.#pendingClearScope = null;
    // Woken with the cancellation: it is delivered if the task goes on
    // from here, as a task blocked on this wait does (see #pendingClear).
    const flags = awaiter.flags;
    if (
      ((flags & AWAITER_CARRIES_TASK_CANCEL) !== 0 &&
        task.#hasFlag(TASK_MUST_CANCEL)) ||
      ((flags & AWAITER_CARRIES_SCOPE_CANCEL) !== 0 &&
        scopeMustCancel(awaiter.scope))
    ) {
      task.#flags |= TASK_PENDING_CLEAR;
      task.#pendingClearScope = awaiter.scope;
    }
    const waits = task.#waits;
    if (waits === awaiter) {
      task.#waits = null;
    } else if (Array.isArray(waits)) {
      const index = waits.indexOf(awaiter);
      if (index >= 0) waits.splice(index, 1);
      if (waits.length === 1) task.#waits = waits[0];
      return true;
    } else {
      return true;
    }
    const loop = task.getLoop();
    noteTaskBlocked(loop, false);
    loopTimeline(loop)?.record(task, "running", loop.time());
    return true;
  }

  // A bare yield: an await of the loop's always-pending yield future, woken
  // by a step of its own at the end of the ready queue.
  static #yield(loop: EventLoop): Promise<void> {
    const awaiter = new Awaiter(
      loopYieldFuture(loop),
      runningFrame(),
      null,
      null,
    );
    const task = awaiter.task;
    if (task !== null) Task.#willWait(task, awaiter);
    scheduleStep(loop, wakeAwaiter, awaiter);
    return awaiter.promise as Promise<void>;
  }

  static #stalled(task: Task<unknown>): void {
    task.#flags &= ~TASK_PENDING_CLEAR;
    task.#pendingClearScope = null;
  }

  static #cancelWantsQuiet(awaiter: Awaiter, hostTurns: number): boolean {
    const task = awaiter.task;
    return (awaiter.flags & AWAITER_CARRIES_TASK_CANCEL) !== 0 &&
      task !== null && !task.done() &&
      task.#cancelTurn === hostTurns;
  }

  static #cancelsArrivedWhileAway(task: Task<unknown>): number {
    return task.#hasFlag(TASK_MUST_CANCEL) &&
        !task.#hasFlag(TASK_PENDING_CLEAR)
      ? Math.min(task.#cancelsWhileAway, task.#ownCancels())
      : 0;
  }

  static {
    taskWillWait = Task.#willWait;
    taskWakes = Task.#wakes;
    taskStartStep = Task.#step as Step;
    taskStalled = Task.#stalled;
    cancelScope = Task.#cancelScope;
    takeBackScopeCancel = Task.#takeBackScopeCancel;
    cancelsReaching = Task.#cancelsReaching;
    cancelAgain = Task.#cancelAgain;
    cancelWantsQuiet = Task.#cancelWantsQuiet;
    cancelsArrivedWhileAway = Task.#cancelsArrivedWhileAway;
    yieldAwaiter = Task.#yield;
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
  checkCreateTaskArguments(coro, options);
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
  return runningTask();
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

function finishSleep<T>(future: SleepFuture<T>, value?: T): void {
  future.timer = null;
  if (!future.done()) future.setResult(value as T);
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
  if (ms <= 0) {
    // A bare yield, one loop step, as asyncio's `sleep(0)`.
    const yielded = yieldAwaiter(loop);
    return (value === undefined
      ? yielded
      : yielded.then(() => value)) as Promise<T>;
  }
  const future = new SleepFuture<T>(loop);
  // Without a value, the timer holds the future alone: no array per sleep.
  future.timer = value === undefined
    ? callLaterWithArgument(loop, ms, finishSleep, future)
    : loop.callLater(ms, finishSleep, future, value);
  // Registering the wait here, where the task calls sleep(), and handing
  // back a native promise spares V8 the slower await of a thenable.
  return future.then();
}

// ===========================================================================
// §7 Waiting and timeouts
// Holds: gather, wait, waitFor, asCompleted, shield, Timeout, timeout,
//   timeoutAt, and runScope (the enter/body/exit shape of a scope, shared
//   with task groups).
// Rule: each is built from futures and done callbacks, as in asyncio. A
//   scope's body runs in a cancel scope of the task (runScope), so the
//   deadline cancels the body alone. Only the cancellation a timeout scope
//   caused becomes a TimeoutError; one from outside stays a CancelledError.
// Relies on: §4 Event loop, §5 Futures, §6 Tasks.
// Used by: §9 Runners (gather), §8 Task groups (runScope, inTask), and
//   programs.
// ===========================================================================

// Wakes the one future a waiting function awaits, unless it is done
// already: woken by an earlier event, or cancelled along with its task.
// asyncio's _release_waiter.
function releaseWaiter(waiter: Future<void>): void {
  if (!waiter.done()) waiter.setResult();
}

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

  // `unique` lists each child once: the same future may be given twice.
  constructor(
    children: Future<unknown>[],
    unique: readonly Future<unknown>[],
    returnExceptions: boolean,
    loop: EventLoop,
  ) {
    super(loop);
    this.#children = children;
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
          failWith(this, child.exception());
          return;
        }
      }
      if (finished === unique.length) {
        if (this.#cancelRequested) {
          // As asyncio, the error comes from the last child: its kept
          // CancelledError, or one with no message.
          super.setException(futureCancelledError(children.at(-1)!));
          return;
        }
        const results = children.map((child) => {
          const state = futureState(child);
          // As asyncio: the cancel message, not the error a task keeps.
          if (state === CANCELLED) {
            return new CancelledError(futureCancelMessage(child));
          }
          if (state === REJECTED) return child.exception();
          return futureValue(child);
        });
        super.setResult(results as T);
      }
    };
    markAwaitedBy(onChildDone, this);
    // Children done already count at once, after the others are watched:
    // when all are done, gather() is done as it returns (asyncio 3.12+).
    const doneAlready: Future<unknown>[] = [];
    for (const child of unique) {
      if (child.done()) doneAlready.push(child);
      else child.addDoneCallback(onChildDone);
    }
    for (const child of doneAlready) onChildDone(child);
  }

  override cancel(msg?: string): boolean {
    if (this.done()) return false;
    let cancelledAny = false;
    for (const child of this.#children) {
      if (child.cancel(msg)) cancelledAny = true;
    }
    if (cancelledAny) this.#cancelRequested = true;
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
  let futuresGiven = 0;
  for (let i = 0; i < list.length; i++) {
    if (list[i] instanceof Future) futuresGiven++;
    else requireCoro(list[i], "gather()", `aws[${i}]`);
  }
  const loop = currentLoop();
  const children = list.map((aw) => ensureFuture(aw, loop));
  if (children.length === 0) {
    const empty = new Future<unknown[]>(loop);
    empty.setResult([]);
    return empty;
  }
  // Only futures given as such can repeat: new tasks never do.
  const unique = futuresGiven > 1 ? [...new Set(children)] : children;
  return new GatheringFuture<unknown[]>(
    children,
    unique,
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
export function wait<F extends Future<unknown>>(
  aws: Iterable<F>,
  options: WaitOptions = {},
): Promise<[Set<F>, Set<F>]> {
  checkWaitArguments(aws, options);
  return waitBody(aws, options);
}

async function waitBody<F extends Future<unknown>>(
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
  const timer = timeoutMs === null
    ? null
    : loop.callLater(timeoutMs, releaseWaiter, waiter);
  let remaining = futures.size;
  const onDone = (future: Future<unknown>) => {
    remaining--;
    if (
      remaining <= 0 || returnWhen === FIRST_COMPLETED ||
      (returnWhen === FIRST_EXCEPTION && futureState(future) === REJECTED)
    ) {
      releaseWaiter(waiter);
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
export function waitFor<T>(
  aw: Coro<T> | Future<T>,
  ms: number | null,
): Promise<T> {
  checkWaitForArguments(aw, ms);
  return waitForBody(aw, ms);
}

async function waitForBody<T>(
  aw: Coro<T> | Future<T>,
  ms: number | null,
): Promise<T> {
  if (!(aw instanceof Future)) requireCoro(aw, "waitFor()", "aw");
  const limit = requireOptionalMilliseconds(ms, "waitFor()", "ms");
  if (limit !== null && limit <= 0) {
    // As asyncio: the work is cancelled (a coroutine function, before it
    // ever runs) and waited for; what it ends with decides.
    const future = ensureFuture(aw);
    if (future.done()) return future.result();
    await cancelAndWait(future);
    try {
      return future.result();
    } catch (error) {
      if (!(error instanceof CancelledError)) throw error;
      throw new TimeoutError(`timed out after ${limit} ms`, { cause: error });
    }
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
  const release = () => releaseWaiter(waiter);
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
  requireIterable(aws, "asCompleted()", "aws");
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
    if (waiter !== null) releaseWaiter(waiter);
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
    if (!outer.cancelled()) copyOutcome(future, outer);
  };
  inner.addDoneCallback(onInnerDone);
  outer.addDoneCallback(() => {
    if (inner.done()) return;
    // Nobody waits for the inner work any more: if it fails, say so as it
    // happens (asyncio 3.14), rather than as "never retrieved" much later.
    inner.removeDoneCallback(onInnerDone);
    inner.removeDoneCallback(reportShieldedFailure);
    inner.addDoneCallback(reportShieldedFailure);
  });
  return outer;
}

function reportShieldedFailure(inner: Future<unknown>): void {
  if (inner.cancelled()) return;
  const error = inner.exception();
  if (error === null) return;
  inner.getLoop().callExceptionHandler({
    message: `${
      error instanceof Error ? error.name : typeof error
    } exception in shielded future`,
    exception: error,
    future: inner,
  });
}

function copyOutcome<T>(source: Future<T>, target: Future<T>): void {
  switch (futureState(source)) {
    case CANCELLED:
      target.cancel(); // asyncio's shield passes no message on
      break;
    case REJECTED:
      failWith(target, source.exception());
      break;
    default:
      target.setResult(futureValue(source) as T);
  }
}

// Runs `scope` in a new task when called outside any task, so that scopes
// that must cancel "the current task" also work at a notebook's top level.
function inTask<T>(scope: (task: Task<unknown>) => Promise<T>): Promise<T> {
  const task = runningTask();
  if (task !== null) return scope(task);
  return currentLoop().createTask(() =>
    scope(currentTask()!)
  ) as unknown as Promise<T>;
}

// The shape of asyncio's `async with`, which timeout scopes and task
// groups share: enter the scope, run the body, and exit with how the body
// ended. The body runs in the cancel scope `enter` opens, so the scope's
// cancel reaches its waits and no others; the scope closes as the body
// ends. The exit may throw in the body's place (a TimeoutError, an
// ExceptionGroup); if it does not, the body's outcome stands. A synchronous
// exit is not awaited, so that the scope ends in the same microtask as
// its body.
async function runScope<S, T>(
  scope: S,
  enter: (scope: S) => CancelScope,
  body: (scope: S) => PromiseLike<T> | T,
  exit: (scope: S, error: unknown, failed: boolean) => void | Promise<void>,
): Promise<T> {
  const cancelScope = enter(scope);
  let result: T;
  try {
    result = await taskContext.run(cancelScope, runScopeBody, body, scope);
  } catch (error) {
    cancelScope.close();
    const exiting = exit(scope, error, true);
    if (exiting !== undefined) await exiting;
    throw error;
  }
  cancelScope.close();
  const exiting = exit(scope, undefined, false);
  if (exiting !== undefined) await exiting;
  return result;
}

// A scope's body, awaited inside its cancel scope: what it returns (a
// future, say) is awaited there too, so the scope's cancel reaches it.
async function runScopeBody<S, T>(
  body: (scope: S) => PromiseLike<T> | T,
  scope: S,
): Promise<T> {
  return await body(scope);
}

const TIMEOUT_CREATED = 0;
const TIMEOUT_ENTERED = 1;
const TIMEOUT_EXPIRING = 2;
const TIMEOUT_EXPIRED = 3;
const TIMEOUT_EXITED = 4;
// Each state's name in errors, indexed by state.
const TIMEOUT_STATE_NAMES = [
  "created",
  "active",
  "expiring",
  "expired",
  "finished",
];

let enterTimeout: (
  cm: Timeout,
  task: Task<unknown>,
  delay: number | null,
) => CancelScope;
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
  // The invariants:
  // - `#state` moves CREATED -> ENTERED (enterTimeout) -> EXITED
  //   (exitTimeout), or ENTERED -> EXPIRING (the deadline passed and the
  //   task was cancelled) -> EXPIRED (exitTimeout). `#when` can move only
  //   in CREATED and ENTERED.
  // - `#handle`: the loop timer for `#when`, armed exactly while ENTERED
  //   with a deadline; null in every other state.
  // - `#task`: the task running the scope, from entry on; `#cancelScope`,
  //   the cancel scope its body runs in, which its expiry cancels.
  // - `#cancelsAtEntry`: the cancel requests reaching the body at entry
  //   (cancelsReaching: the task's own and those of the scopes around it),
  //   less those that arrived while the task was away.
  //   Leaving EXPIRING, the scope takes back its cancel, and turns
  //   CancelledError into TimeoutError only if the cancels reaching the
  //   body are then no more than this: a cancel from outside stays a
  //   CancelledError. The cancels of scopes beside this one (in another
  //   race branch) are not counted, on either side: they never reach it.
  // - `#delay`: the ms timeout() was given, for the error's message; null
  //   for timeoutAt().
  // - `#abortController`: made when `signal` is first read; aborted once
  //   the scope expires.
  #when: number | null;
  #state = TIMEOUT_CREATED;
  #task: Task<unknown> | null = null;
  #cancelScope: CancelScope | null = null;
  #handle: Handle | null = null;
  #cancelsAtEntry = 0;
  #delay: number | null = null;
  #abortController: AbortController | null = null;

  /** A scope with deadline `when` (loop time, ms), or none for `null`. */
  constructor(when: number | null) {
    this.#when = requireOptionalMilliseconds(when, "Timeout()", "when");
  }

  /**
   * Aborted when the deadline passes: pass it to foreign APIs that take an
   * `AbortSignal`, so that `timeout(500, (cm) => fetch(url, { signal:
   * cm.signal }))` really stops the fetch.
   */
  get signal(): AbortSignal {
    this.#abortController ??= new AbortController();
    if (this.expired() && !this.#abortController.signal.aborted) {
      this.#abortController.abort(this.#timeoutError());
    }
    return this.#abortController.signal;
  }

  #timeoutError(cause?: unknown): TimeoutError {
    const message = this.#delay !== null
      ? `timed out after ${this.#delay} ms`
      : `timed out: deadline ${this.#when} passed`;
    return cause === undefined
      ? new TimeoutError(message)
      : new TimeoutError(message, { cause });
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
          TIMEOUT_STATE_NAMES[this.#state]
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
    cancelScope(this.#cancelScope!);
    this.#state = TIMEOUT_EXPIRING;
    this.#handle = null;
    this.#abortController?.abort(this.#timeoutError());
  };

  #enter(task: Task<unknown>, delay: number | null): CancelScope {
    if (this.#state !== TIMEOUT_CREATED) {
      throw new RuntimeError("Timeout has already been entered");
    }
    this.#delay = delay;
    this.#task = task;
    const scope = this.#cancelScope = openCancelScope(task);
    // The cancellations that came while the task was away (on a foreign
    // promise) and that it has not seen yet belong outside the scope: in
    // asyncio they would have been raised before the scope was entered.
    // They are not counted as the scope's own, so they are never turned
    // into a TimeoutError.
    this.#cancelsAtEntry = cancelsReaching(task, scope.parent) -
      cancelsArrivedWhileAway(task);
    this.#state = TIMEOUT_ENTERED;
    this.reschedule(this.#when);
    return scope;
  }

  #exit(error: unknown, failed: boolean): void {
    this.#handle?.cancel();
    this.#handle = null;
    if (this.#state === TIMEOUT_EXPIRING) {
      this.#state = TIMEOUT_EXPIRED;
      const scope = this.#cancelScope!;
      takeBackScopeCancel(scope);
      if (
        failed && error instanceof CancelledError &&
        cancelsReaching(this.#task!, scope.parent) <= this.#cancelsAtEntry
      ) {
        // Only the cancellation this scope caused becomes a TimeoutError.
        throw this.#timeoutError(error);
      }
    } else if (this.#state === TIMEOUT_ENTERED) {
      this.#state = TIMEOUT_EXITED;
    }
  }

  static {
    enterTimeout = (cm, task, delay) => cm.#enter(task, delay);
    exitTimeout = (cm, error, failed) => cm.#exit(error, failed);
  }
}

/**
 * Runs `body` with a deadline `ms` from now (`null`: none). When it passes,
 * the body is cancelled at its current await, and once it has unwound the
 * scope throws {@linkcode TimeoutError}. Only the cancellation the scope
 * caused is converted: a cancellation from outside stays `CancelledError`.
 * `cm.reschedule()` moves the deadline.
 *
 * The deadline cancels the body alone: the waits made inside it, and in the
 * helpers and callbacks it started. Other code of the task running beside
 * the scope (another branch of a `Promise.race`) is not cancelled. asyncio
 * cancels the task, which is the same when the body is all it runs.
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
    runScope(
      new Timeout(delay === null ? null : task.getLoop().time() + delay),
      (cm) => enterTimeout(cm, task, delay),
      body,
      exitTimeout,
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
  return inTask((task) =>
    runScope(
      new Timeout(deadline),
      (cm) => enterTimeout(cm, task, null),
      body,
      exitTimeout,
    )
  );
}

// ===========================================================================
// §8 Task groups
// Holds: TaskGroup, taskGroup.
// Rule: structured concurrency: the scope ends only after every task it
//   started; the first failure cancels the rest and the body (its cancel
//   scope, not the parent's other code); the group's own cancel is taken
//   back on exit, and a cancel from outside survives the errors
//   (gh-116720).
// Relies on: §5 Futures, §6 Tasks (cancel/uncancel on the task running the
//   scope), §7 Waiting and timeouts (runScope, inTask).
// Used by: programs; the call graph follows its tasks to the parent.
// ===========================================================================

let enterGroup: (group: TaskGroup, parent: Task<unknown>) => CancelScope;
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
  // The invariants:
  // - `#parentTask`: the task running the scope, from entry on.
  // - `#tasks`: the group's tasks whose done callback has not run. A task
  //   leaves only in #onTaskDone, on the loop, even one that finished
  //   inside createTask() (an eager task, gh-128550).
  // - `#errors`: the errors of the failed tasks, then the body's own at
  //   exit; handed to the ExceptionGroup the exit throws, and emptied.
  // - `#entered` turns true once, on entry; `#exiting`, once the body is
  //   done. A task may still start while exiting, as long as one runs.
  // - `#aborting`: the group has cancelled its tasks (one failed, the body
  //   failed, or the parent was cancelled from outside while the group
  //   waited); no task may start any more.
  // - `#parentCancelRequested`: the group cancelled its parent once, to
  //   stop the body after a task failed; the exit takes that cancel back
  //   with uncancel(), so it never reaches the code around the scope. The
  //   cancel is of `#bodyScope`, the cancel scope the body runs in: it
  //   reaches the body's waits, not those of other code of the parent.
  // - `#allDone`: exists only while the exit waits for `#tasks` to empty;
  //   the last task's done callback resolves it.
  #parentTask: Task<unknown> | null = null;
  #bodyScope: CancelScope | null = null;
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
    // Watched even if it is done already (an eager task that finished): its
    // done callback runs on the loop, never here, or its failure would
    // cancel the body before createTask() returns (gh-128550).
    this.#tasks.add(task);
    task.addDoneCallback(this.#onTaskDone as DoneCallback<T>);
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
      cancelScope(this.#bodyScope!);
    }
  };

  #enter(parent: Task<unknown>): CancelScope {
    if (this.#entered) {
      throw new RuntimeError("TaskGroup has already been entered");
    }
    this.#entered = true;
    this.#parentTask = parent;
    markAwaitedBy(this.#onTaskDone, parent);
    return this.#bodyScope = openCancelScope(parent);
  }

  // Waits for every task of the group, then throws what the scope ends
  // with: the ExceptionGroup of their errors, or the cancellation from
  // outside; nothing if the body's own outcome stands.
  async #exit(error: unknown, failed: boolean): Promise<void> {
    this.#exiting = true;
    let propagateCancellation: unknown =
      failed && error instanceof CancelledError ? error : null;
    if (failed && !this.#aborting) this.#abort();
    const loop = this.#parentTask!.getLoop();
    while (this.#tasks.size > 0) {
      this.#allDone ??= loop.createFuture<boolean>();
      try {
        await this.#allDone;
      } catch (cancelled) {
        if (!this.#aborting) {
          // The task running the group is being cancelled from outside.
          propagateCancellation = cancelled;
          this.#abort();
        }
      }
      this.#allDone = null;
    }
    const parent = this.#parentTask!;
    const around = this.#bodyScope!.parent;
    if (this.#parentCancelRequested) {
      takeBackScopeCancel(this.#bodyScope!);
      if (cancelsReaching(parent, around) === 0) propagateCancellation = null;
    }
    if (propagateCancellation !== null && this.#errors.length === 0) {
      throw propagateCancellation;
    }
    if (failed && !(error instanceof CancelledError)) {
      this.#errors.push(error);
    }
    if (this.#errors.length > 0) {
      // A cancel from outside must survive the errors (gh-116720): take
      // it back and make it again, so the parent's next await raises
      // CancelledError and its count of requests stays the same.
      if (cancelsReaching(parent, around) > 0) cancelAgain(parent, around);
      const errors = this.#errors;
      this.#errors = [];
      throw new ExceptionGroup("unhandled errors in a TaskGroup", errors);
    }
  }

  static {
    enterGroup = (group, parent) => group.#enter(parent);
    exitGroup = (group, error, failed) => group.#exit(error, failed);
  }
}

/**
 * Runs `body` with a {@linkcode TaskGroup} and waits for every task it
 * started: asyncio's `async with TaskGroup() as tg`. When a task fails, the
 * other tasks and the body are cancelled, and the scope throws an
 * {@linkcode ExceptionGroup} of every error (the body's included). The
 * body's cancel reaches only the waits made inside it, not other code of the
 * task running beside the group (another branch of a `Promise.race`).
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
  return inTask((parent) =>
    runScope(
      new TaskGroup(),
      (group) => enterGroup(group, parent),
      body,
      exitGroup,
    )
  );
}

// ===========================================================================
// §9 Runners
// Holds: run, Runner, RunOptions, and the shutdown of leftover tasks.
// Rule: a fresh loop for the main coroutine, and an orderly end: what is
//   left is cancelled and awaited, so its `finally` blocks run, before the
//   loop closes; a task stuck on a promise the loop cannot cancel is
//   reported after SHUTDOWN_GRACE_MS rather than hanging run().
// Relies on: §4 Event loop, §5 Futures, §6 Tasks, §7 Waiting and timeouts
//   (gather, for the leftovers). Used by: programs, as their entry point.
// ===========================================================================

/** Options for {@linkcode run} and {@linkcode Runner}. */
export interface RunOptions extends LoopOptions {
  /**
   * Whether Ctrl-C (SIGINT) cancels the main task, as asyncio's Runner
   * does; default true. It is installed only while a coroutine runs, and
   * only when nothing else listens for SIGINT. The first Ctrl-C cancels the
   * main task, so its `finally` blocks run, and `run()` then throws
   * {@linkcode KeyboardInterrupt}; a second one exits at once (code 130).
   */
  handleSignals?: boolean;
}

// At shutdown, a leftover task that lets this much real time pass with no
// loop step, after being cancelled, awaits a promise the loop cannot cancel:
// run() reports it and returns rather than hang. Long enough for a foreign
// operation whose signal was aborted to settle.
const SHUTDOWN_GRACE_MS = 500;

// The process exits with this code on a second Ctrl-C, as a shell reports
// a process killed by SIGINT (128 + 2).
const SIGINT_EXIT_CODE = 130;

// Resolves to true once `future` is done, or to false once the loop has run
// no step for SHUTDOWN_GRACE_MS of real time while it is still pending.
function doneOrStuck(
  loop: EventLoop,
  future: Future<unknown>,
): Future<boolean> {
  const outcome = loop.createFuture<boolean>();
  let batchesSeen = -1; // none yet: the first check only takes the count
  let timer: ReturnType<typeof setTimeout> | undefined;
  const check = () => {
    if (outcome.done()) return;
    const batches = loopBatchCount(loop);
    if (batches === batchesSeen) {
      outcome.setResult(false);
      return;
    }
    batchesSeen = batches;
    timer = setTimeout(check, SHUTDOWN_GRACE_MS);
  };
  future.addDoneCallback(() => {
    clearTimeout(timer);
    if (!outcome.done()) outcome.setResult(true);
  });
  check();
  return outcome;
}

// Tasks started while the leftovers unwind (by code a finished task left
// running) are cancelled in further rounds, up to this many: a program
// that keeps starting tasks as it is cancelled must still end.
const SHUTDOWN_ROUNDS = 8;

// Closes the loop in the same microtask as the check that found no task
// left: code a finished task left running (a helper after a host timer)
// must not start a task in between, on a loop about to close under it.
async function cancelAllTasksAndClose(loop: EventLoop): Promise<void> {
  const reported = new Set<Task<unknown>>();
  for (let round = 0; round < SHUTDOWN_ROUNDS; round++) {
    const leftover = liveTasksOf(loop).filter((task) =>
      !task.done() && !reported.has(task)
    );
    if (leftover.length === 0) break;
    await cancelLeftovers(loop, leftover, reported);
  }
  loop.close();
}

async function cancelLeftovers(
  loop: EventLoop,
  leftover: Task<unknown>[],
  reported: Set<Task<unknown>>,
): Promise<void> {
  for (const task of leftover) task.cancel();
  const finished = gather(leftover, { returnExceptions: true });
  await loop.runUntilComplete(doneOrStuck(loop, finished));
  for (const task of leftover) {
    if (!task.done()) {
      reported.add(task);
      loop.callExceptionHandler({
        message:
          `run() could not finish task "${task.getName()}": it was cancelled but awaits a promise the loop cannot cancel. Pass task.signal to it, or wrap it with wrapFuture().`,
        task,
      });
      continue;
    }
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
    checkLoopOptions(options, "Runner()");
    this.#options = { ...options };
  }

  /**
   * Runs `coro` as a task on the runner's loop until it is done. Ctrl-C
   * cancels that task (see {@linkcode RunOptions.handleSignals}).
   */
  run<T>(coro: Coro<T>): Promise<T> {
    requireCoro(coro, "Runner.run()", "coro");
    return this.#run(coro);
  }

  async #run<T>(coro: Coro<T>): Promise<T> {
    if (runningTask() !== null) {
      throw new RuntimeError(
        "Runner.run() cannot be called from a running event loop",
      );
    }
    requireCoro(coro, "Runner.run()", "coro");
    const loop = this.getLoop();
    const task = ensureFuture(coro, loop);
    let interrupts = 0;
    const onSigint = () => {
      interrupts++;
      if (interrupts === 1 && !task.done()) {
        task.cancel();
        return;
      }
      process.exit(SIGINT_EXIT_CODE);
    };
    const handleSignals = this.#options.handleSignals !== false &&
      process.listenerCount("SIGINT") === 0;
    if (handleSignals) process.on("SIGINT", onSigint);
    try {
      return await loop.runUntilComplete(task);
    } catch (error) {
      if (
        error instanceof CancelledError && interrupts > 0 &&
        task instanceof Task && task.uncancel() === 0
      ) {
        throw new KeyboardInterrupt(undefined, { cause: error });
      }
      throw error;
    } finally {
      if (handleSignals) process.off("SIGINT", onSigint);
    }
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
      await cancelAllTasksAndClose(loop);
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
export function run<T>(
  main: Coro<T>,
  options: RunOptions = {},
): Promise<T> {
  checkRunArguments(main, options);
  return runMain(main, options);
}

async function runMain<T>(
  main: Coro<T>,
  options: RunOptions = {},
): Promise<T> {
  if (runningTask() !== null) {
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

// ===========================================================================
// §10 Synchronization primitives
// Holds: WaiterList, the line of futures that tasks wait in (queues use it
// too); Lock, Event, Condition, Semaphore, BoundedSemaphore, Barrier; and
// FairUnits, the one acquire/release mechanism of Lock and Semaphore.
// Rule: a woken waiter takes what it was woken for as its task resumes, and
// one cancelled in between wakes the next waiter in its place.
// Relies on: §1 Errors, §2 Argument checks, §4 Event loop, §5 Futures (each
// waiter is one), §3 Internal collections (prefixWorthCompacting).
// Used by: §11 Queues (WaiterList, Event); Barrier uses Lock and Condition.
// ===========================================================================

// Holes left by waiters unlisted from the middle of a WaiterList are
// squeezed out once there are more than this many and they are most of the
// line: a few holes cost less to skip than to squeeze.
const SQUEEZE_HOLES_MIN = 32;

// The futures of the tasks waiting on one primitive, oldest first: asyncio's
// deque of waiters. A waiter unlists its own future when its task resumes
// (asyncio's `finally: remove(fut)`), so a woken or cancelled future stays
// listed until then, and counts. Unlisting from the middle leaves a hole,
// skipped, and squeezed out once holes are most of the list; the head is
// never a hole. Bound to the loop of its first waiter, as asyncio's
// _LoopBoundMixin, except that a closed loop lets go of it.
class WaiterList<T> {
  #items: (Future<T> | null)[] = [];
  #head = 0;
  #holes = 0;
  #loop: EventLoop | null = null;

  // How many futures are listed.
  get size(): number {
    return this.#items.length - this.#head - this.#holes;
  }

  // A new waiter at the back of the line.
  add(owner: object): Future<T> {
    const loop = getEventLoop();
    if (loop !== this.#loop) this.#bind(loop, owner);
    const future = new Future<T>(loop);
    this.#items.push(future);
    return future;
  }

  first(): Future<T> | undefined {
    return this.#head < this.#items.length
      ? this.#items[this.#head]!
      : undefined;
  }

  // Unlists and returns the first future.
  shift(): Future<T> | undefined {
    const items = this.#items;
    if (this.#head === items.length) return undefined;
    const future = items[this.#head]!;
    items[this.#head++] = null;
    this.#skipHoles();
    return future;
  }

  // Unlists `future`; false if it is not listed.
  remove(future: Future<T>): boolean {
    const items = this.#items;
    if (items[this.#head] === future) {
      items[this.#head++] = null;
      this.#skipHoles();
      return true;
    }
    const index = items.indexOf(future, this.#head + 1);
    if (index < 0) return false;
    items[index] = null;
    if (
      ++this.#holes > SQUEEZE_HOLES_MIN &&
      2 * this.#holes > items.length - this.#head
    ) {
      this.#squeeze((entry) => entry !== null);
    }
    return true;
  }

  // The one way a waiter leaves the line when its wait failed (cancelled,
  // nearly always): it is unlisted, a pending one cancelled first so that
  // nothing wakes it any more. True if it had been woken: then what it was
  // woken for is still there, and the caller must wake another waiter in
  // its place, as asyncio's locks and queues each do by hand.
  leave(waiter: Future<T>): boolean {
    waiter.cancel();
    this.remove(waiter);
    return !waiter.cancelled();
  }

  // Whether no listed waiter may still run for what it waits for: each
  // was cancelled while waiting (or none is listed).
  allCancelled(): boolean {
    const items = this.#items;
    for (let i = this.#head; i < items.length; i++) {
      const future = items[i];
      if (future !== null && !future.cancelled()) return false;
    }
    return true;
  }

  // The first listed future not yet woken or cancelled.
  firstPending(): Future<T> | undefined {
    const items = this.#items;
    for (let i = this.#head; i < items.length; i++) {
      const future = items[i];
      if (future !== null && !future.done()) return future;
    }
    return undefined;
  }

  // Wakes up to `n` listed futures with `value`, oldest first; they stay
  // listed.
  wakeListed(value: T, n: number): void {
    const items = this.#items;
    let woken = 0;
    for (let i = this.#head; i < items.length && woken < n; i++) {
      const future = items[i];
      if (future !== null && !future.done()) {
        future.setResult(value);
        woken++;
      }
    }
  }

  // Unlists futures, oldest first, until one is pending, and wakes that
  // one with `value` (asyncio's queues do so); false if none was pending.
  wakeNextUnlisting(value: T): boolean {
    for (;;) {
      const future = this.shift();
      if (future === undefined) return false;
      if (!future.done()) {
        future.setResult(value);
        return true;
      }
    }
  }

  // Unlists every future, waking the pending ones with `value`.
  wakeAllUnlisting(value: T): void {
    while (this.wakeNextUnlisting(value));
  }

  // Unlists the futures that are done, for waiters that do not unlist
  // themselves (Event's); called as the list grows, so it stays O(1)
  // amortized.
  dropDone(): void {
    this.#squeeze((entry) => entry !== null && !entry.done());
  }

  #skipHoles(): void {
    const items = this.#items;
    let head = this.#head;
    while (head < items.length && items[head] === null) {
      head++;
      this.#holes--;
    }
    if (head === items.length && drainedWorthResetting(head)) {
      items.length = 0;
      head = 0;
    } else if (prefixWorthCompacting(head, items.length)) {
      items.splice(0, head);
      head = 0;
    }
    this.#head = head;
  }

  #squeeze(keep: (entry: Future<T> | null) => boolean): void {
    const items = this.#items;
    let kept = 0;
    for (let i = this.#head; i < items.length; i++) {
      const entry = items[i];
      if (keep(entry)) items[kept++] = entry;
    }
    items.length = kept;
    this.#head = 0;
    this.#holes = 0;
  }

  #bind(loop: EventLoop, owner: object): void {
    if (this.#loop !== null && !this.#loop.isClosed()) {
      throw new RuntimeError(
        `${owner.constructor.name} is bound to a different event loop`,
      );
    }
    // The old loop is closed: its waiters can never run again.
    this.#items.length = 0;
    this.#head = 0;
    this.#holes = 0;
    this.#loop = loop;
  }
}

// Built as asyncio 3.14 builds them. Each waiter is a future of its own in a
// first-in-first-out WaiterList. A wake-up only completes that future: the
// waiter stays listed, and what it was woken for (the lock, a unit, a
// notification) is taken by the waiter's own code as its task resumes,
// which also unlists it. So a newcomer cannot slip in before a woken
// waiter, nothing is handed to a task that is no longer there, and a woken
// waiter that is cancelled before it runs ("must cancel": its await throws
// CancelledError although its future has a result) passes the wake-up on
// (WaiterList.leave tells it so). Lock and Semaphore run that resuming code
// as the handlers of an internal await of the waiter's future
// (awaitWaiter), which saves an async function and two closures per wait.

// Which waiter a freed unit wakes. Lock wakes the first waiter only, and
// only if it is still pending (asyncio's `_wake_up_first`): a first waiter
// that was cancelled but has not left yet wakes the next as it leaves.
// Semaphore wakes the first waiter still pending (`_wake_up_next`).
type WakePolicy = "first" | "first pending";

// The units of a Lock (one) or a Semaphore (its value) and the line of
// tasks waiting for one: the acquire/release mechanism the two share, with
// asyncio 3.14's Semaphore's bookkeeping. A freed unit is set aside for the
// waiter it wakes; that waiter takes it as its task resumes, or, cancelled
// in between, gives it back and wakes another in its place.
class FairUnits {
  // Invariants: `#free` counts the units nobody holds and none is set
  // aside for. `#setAside` counts the listed waiters that were woken (their
  // future has a result) and whose task has not resumed yet: one unit set
  // aside for each. A newcomer takes a free unit at once only while every
  // listed waiter is cancelled, so nobody gets ahead of one that may run.
  #free: number;
  #setAside = 0;
  #waiters = new WaiterList<void>();
  #wakes: WakePolicy;
  // The Lock or Semaphore: WaiterList names it in its errors.
  #owner: { release(): void };
  // What acquire() resolves to: releases the owner at the end of a `using`.
  #granted: Disposable;
  #acquired: Promise<Disposable> | null = null;

  constructor(units: number, owner: { release(): void }, wakes: WakePolicy) {
    this.#free = units;
    this.#owner = owner;
    this.#wakes = wakes;
    this.#granted = { [Symbol.dispose]: () => owner.release() };
  }

  // Free units: not held, and not set aside for a woken waiter.
  get free(): number {
    return this.#free;
  }

  // Whether every unit is held by a task: none is free or set aside.
  allHeld(): boolean {
    return this.#free === 0 && this.#setAside === 0;
  }

  // Whether acquire() would have to wait: no unit is free, or a waiter that
  // may still run is in line.
  mustWait(): boolean {
    return this.#free === 0 || !this.#waiters.allCancelled();
  }

  // Takes a unit at once if acquire() need not wait.
  tryTake(): boolean {
    if (this.mustWait()) return false;
    this.#free--;
    return true;
  }

  // Takes a unit, waiting in line if need be; resolves to `#granted`.
  acquire(): Promise<Disposable> {
    if (this.tryTake()) {
      return this.#acquired ??= Promise.resolve(this.#granted);
    }
    const waiter = this.#waiters.add(this.#owner);
    return awaitWaiter(
      waiter,
      FairUnits.#resume,
      FairUnits.#leave,
      this,
      undefined,
    ) as Promise<Disposable>;
  }

  // A unit comes back: it is set aside for the next waiter, if there is one.
  giveBack(): void {
    this.#free++;
    this.#wakeNext();
  }

  // A woken waiter's task resumes: it takes the unit set aside for it.
  static #resume(awaiter: Awaiter): Disposable {
    const units = awaiter.subject as FairUnits;
    units.#waiters.remove(awaiter.future as Future<void>);
    units.#setAside--;
    units.#wakeWhileFree();
    return units.#granted;
  }

  // A waiter's wait failed (it was cancelled, while waiting or after being
  // woken): it leaves the line, and a unit set aside for it goes on.
  static #leave(awaiter: Awaiter, error: unknown): never {
    const units = awaiter.subject as FairUnits;
    if (units.#waiters.leave(awaiter.future as Future<void>)) {
      units.#setAside--;
      units.#free++;
    }
    units.#wakeWhileFree();
    throw error;
  }

  // Waiters that came while units were set aside wait for those to be
  // taken: wake as many as there are free units now.
  #wakeWhileFree(): void {
    while (this.#free > 0 && this.#wakeNext());
  }

  #wakeNext(): boolean {
    const next = this.#wakes === "first"
      ? this.#waiters.first()
      : this.#waiters.firstPending();
    // A done first waiter (for "first") was woken already, or was cancelled
    // and wakes the next one itself as it leaves.
    if (next === undefined || next.done()) return false;
    this.#free--;
    this.#setAside++;
    next.setResult();
    return true;
  }
}

let tryAcquireLock: (lock: Lock) => boolean;

/**
 * A mutual exclusion lock, as asyncio's `Lock`: one task holds it at a time.
 * `acquire()` resolves to a `Disposable`, so `using` releases it at the end
 * of the block (asyncio's `async with lock:`).
 *
 * Fair: waiters get the lock in the order they asked for it. `release()`
 * frees the lock and wakes the first waiter, which takes the lock as it
 * runs. In between, `locked()` is already `false`, yet a newcomer still
 * queues behind the woken waiter; and if that waiter is cancelled before it
 * runs, it wakes the next one. Releasing a lock nobody holds is a
 * `RuntimeError`, even while a woken waiter has not run yet.
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
  // One unit: free, set aside for the woken first waiter, or held by the
  // task that holds the lock (`locked()` is true only then).
  #unit = new FairUnits(1, this, "first");

  /** A free lock. */
  constructor() {
    requireNoArguments(arguments, "Lock()");
  }

  /**
   * Waits until the lock is free, takes it, and resolves to a `Disposable`
   * that releases it: `using _ = await lock.acquire();`.
   */
  acquire(): Promise<Disposable> {
    return this.#unit.acquire();
  }

  // Free, and no waiter that may still run is in line: asyncio lets a
  // newcomer take the lock only then.
  #tryAcquire(): boolean {
    return this.#unit.tryTake();
  }

  /**
   * Releases the lock and wakes the first waiter, if there is one.
   *
   * @throws {RuntimeError} if the lock is not locked.
   */
  release(): void {
    if (!this.locked()) throw new RuntimeError("Lock is not acquired");
    this.#unit.giveBack();
  }

  /** Whether a task holds the lock. */
  locked(): boolean {
    return this.#unit.allHeld();
  }

  static {
    tryAcquireLock = (lock) => lock.#tryAcquire();
  }
}

// Event drops its cancelled waits in bulk once this many are listed, then
// each time the line has doubled since: O(1) amortized per wait, and small
// lines are never scanned.
const EVENT_DROP_DONE_MIN = 64;

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
  // Invariant: while `#isSet`, no wait is listed (set() wakes and unlists
  // them all, and wait() returns at once). A listed wait is pending, or was
  // cancelled and is dropped in bulk once the line reaches `#dropDoneAt`.
  #isSet = false;
  #waiters = new WaiterList<true>();
  #dropDoneAt = EVENT_DROP_DONE_MIN;

  /** An event whose flag is not set. */
  constructor() {
    requireNoArguments(arguments, "Event()");
  }

  /** Sets the flag and wakes every task waiting for it. */
  set(): void {
    if (this.#isSet) return;
    this.#isSet = true;
    this.#waiters.wakeAllUnlisting(true);
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
    const waiters = this.#waiters;
    // Nothing unlists a cancelled wait: drop them in bulk as they pile up.
    if (waiters.size >= this.#dropDoneAt) {
      waiters.dropDone();
      this.#dropDoneAt = Math.max(EVENT_DROP_DONE_MIN, 2 * waiters.size);
    }
    return waiters.add(this) as unknown as Promise<true>;
  }
}

/**
 * A condition variable, as asyncio's `Condition`: tasks holding its lock
 * `wait()` until another task holding it calls `notify()`. Several
 * conditions may share one {@linkcode Lock}, passed to the constructor.
 *
 * `wait()` always re-acquires the lock before it returns or throws, even
 * when cancelled. A waiter that leaves `wait()` with an error (cancelled,
 * or timed out by {@linkcode waitFor}) notifies the next waiter in its
 * place, in case it had been notified itself (asyncio 3.13+): so no
 * notification is lost, and a waiter may wake without one, which
 * condition variables allow (check the state again, or use `waitFor()`).
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
  // Invariant: a task inside wait() has its future listed here from before
  // it releases the lock until its wait ends (woken, or failed), and holds
  // the lock again before wait() returns or throws. notify() wakes listed
  // futures in place; each waiter unlists its own.
  #waiters = new WaiterList<boolean>();

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
   * throwing `CancelledError`, and passes a notification it may have had
   * on to the next waiter.
   *
   * @throws {RuntimeError} if the lock is not held.
   */
  async wait(): Promise<true> {
    if (!this.#lock.locked()) {
      throw new RuntimeError("cannot wait on un-acquired lock");
    }
    const waiter = this.#waiters.add(this);
    this.#lock.release();
    try {
      let failure: { error: unknown } | null = null;
      try {
        // then(): the task registers as the waiter now, not a job later.
        await waiter.then();
      } catch (error) {
        failure = { error };
      }
      this.#waiters.remove(waiter);
      for (;;) {
        try {
          await this.#lock.acquire();
          break;
        } catch (error) {
          // Anything but a cancellation would spin: it goes out as it is.
          if (!(error instanceof CancelledError)) throw error;
          failure = { error };
        }
      }
      if (failure !== null) throw failure.error;
      return true;
    } catch (error) {
      // It may have been notified before it failed: notify another.
      this.#notify(1);
      throw error;
    }
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
    this.#notify(count);
  }

  #notify(n: number): void {
    this.#waiters.wakeListed(false, n);
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
 * Fair, like {@linkcode Lock}: `release()` sets a unit aside for the oldest
 * waiter and wakes it; a newcomer never takes a unit while a waiter that
 * may still run is in line, and a woken waiter cancelled before it runs
 * passes its unit on. The value must be a non-negative integer (or
 * `Infinity`).
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
  // Its units: `free` counts those not held and not set aside for a woken
  // waiter (asyncio's `_value`).
  #units: FairUnits;
  // Most free units a release may leave: Infinity, or a BoundedSemaphore's
  // initial value.
  #limit = Infinity;

  /**
   * A semaphore with `value` free units.
   *
   * @throws {TypeError} if `value` is not a number.
   * @throws {RangeError} if it is negative or not an integer.
   */
  constructor(value = 1) {
    const units = requireNonNegativeInteger(
      value,
      `${new.target.name}()`,
      "value",
    );
    this.#units = new FairUnits(units, this, "first pending");
  }

  /**
   * Takes a unit, waiting for one if there is none, and resolves to a
   * `Disposable` that gives it back: `using _ = await semaphore.acquire();`.
   */
  acquire(): Promise<Disposable> {
    return this.#units.acquire();
  }

  /**
   * Gives a unit back, waking the oldest waiter if there is one.
   *
   * @throws {RangeError} for a {@linkcode BoundedSemaphore} released more
   * times than it was acquired (asyncio raises `ValueError`).
   */
  release(): void {
    if (this.#units.free >= this.#limit) {
      throw new RangeError("BoundedSemaphore released too many times");
    }
    this.#units.giveBack();
  }

  /**
   * Whether `acquire()` would have to wait: no unit is free, or a waiter
   * that may still run is in line.
   */
  locked(): boolean {
    return this.#units.mustWait();
  }

  #setLimit(limit: number): void {
    this.#limit = limit;
  }

  static {
    limitSemaphore = (semaphore, limit) => semaphore.#setLimit(limit);
  }
}

/**
 * A {@linkcode Semaphore} that refuses to be released more times than it was
 * acquired, catching that bug early: asyncio's `BoundedSemaphore`. The
 * over-release is a `RangeError` (asyncio raises `ValueError`).
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

// A barrier's rounds, as asyncio's _BarrierState.
const FILLING = 0; // parties arrive
const DRAINING = 1; // full: its parties leave; newcomers wait for the next
const RESETTING = 2; // reset(): its parties leave with BrokenBarrierError
const BROKEN = 3; // abort(): every wait fails until reset()

/**
 * A barrier, as asyncio's `Barrier`: each of `parties` tasks calls `wait()`,
 * and all of them go on together once the last one arrives. Each gets an
 * index from 0 to `parties - 1`, in order of arrival (distinct, unless a
 * party left early: indexes count the parties there are).
 *
 * A round that has filled drains: its parties leave one by one, and tasks
 * that call `wait()` meanwhile wait for the next round. A waiter cancelled
 * before the barrier fills simply leaves it. `reset()` makes the current
 * waiters throw {@linkcode BrokenBarrierError} and starts afresh; `abort()`
 * makes current waiters, draining parties included, and later ones throw
 * it, until `reset()`.
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
  #lock = new Lock();
  #condition = new Condition(this.#lock);
  // Invariants: `#state` and `#count` change only with `#lock` held. A
  // round goes FILLING -> DRAINING when the last party arrives, and back to
  // FILLING when the last one out leaves (`#count` back to 0); RESETTING
  // likewise ends with the last one out. While DRAINING or RESETTING,
  // newcomers wait at the entrance; BROKEN lasts until reset().
  #state = FILLING;
  // Parties inside wait(), past the entrance.
  #count = 0;

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
    // Taken at once when free, so that, as in asyncio, a party that need
    // not wait runs through without a pause holding the lock.
    if (tryAcquireLock(this.#lock)) return this.#passHoldingLock();
    return this.#acquireAndPass();
  }

  async #acquireAndPass(): Promise<number> {
    await this.#lock.acquire();
    return await this.#passHoldingLock();
  }

  async #passHoldingLock(): Promise<number> {
    try {
      // Wait while the last round drains or resets.
      if (!this.#open()) await this.#condition.waitFor(this.#open);
      if (this.#state === BROKEN) {
        throw new BrokenBarrierError("Barrier aborted");
      }
      const index = this.#count++;
      try {
        if (index + 1 === this.#parties) {
          this.#state = DRAINING;
          this.#condition.notifyAll();
        } else {
          if (this.#state === FILLING) {
            await this.#condition.waitFor(this.#notFilling);
          }
          if (this.#state === BROKEN || this.#state === RESETTING) {
            throw new BrokenBarrierError("Abort or reset of barrier");
          }
        }
        return index;
      } finally {
        this.#count--;
        if (this.#count === 0) {
          // The last one out: the next round may start.
          if (this.#state === DRAINING || this.#state === RESETTING) {
            this.#state = FILLING;
          }
          this.#condition.notifyAll();
        }
      }
    } finally {
      this.#lock.release();
    }
  }

  #open = (): boolean => this.#state !== DRAINING && this.#state !== RESETTING;

  #notFilling = (): boolean => this.#state !== FILLING;

  // Runs `change` holding the lock, as asyncio's `async with cond:`; at
  // once when the lock is free, as there asyncio does not suspend either.
  #withLock(change: () => void): Promise<void> {
    if (tryAcquireLock(this.#lock)) {
      try {
        change();
      } finally {
        this.#lock.release();
      }
      return RESOLVED_VOID;
    }
    return (async () => {
      await this.#lock.acquire();
      try {
        change();
      } finally {
        this.#lock.release();
      }
    })();
  }

  /**
   * Breaks the current round: its waiters throw
   * {@linkcode BrokenBarrierError}. Once they are gone, the barrier is
   * usable again, even after {@linkcode Barrier.abort}.
   */
  reset(): Promise<void> {
    return this.#withLock(() => {
      if (this.#count > 0) {
        // Filling or draining: the parties inside leave broken, and the
        // last one out starts the next round.
        if (this.#state !== RESETTING) this.#state = RESETTING;
      } else {
        this.#state = FILLING;
      }
      this.#condition.notifyAll();
    });
  }

  /**
   * Breaks the barrier for good: current waiters, draining parties
   * included, and future ones throw {@linkcode BrokenBarrierError} (until
   * {@linkcode Barrier.reset}).
   */
  abort(): Promise<void> {
    return this.#withLock(() => {
      this.#state = BROKEN;
      this.#condition.notifyAll();
    });
  }

  /** How many tasks must wait for the barrier to let them through. */
  get parties(): number {
    return this.#parties;
  }

  /** How many tasks are waiting in the round that is filling (else 0). */
  get nWaiting(): number {
    return this.#state === FILLING ? this.#count : 0;
  }

  /** Whether the barrier is broken by {@linkcode Barrier.abort}. */
  get broken(): boolean {
    return this.#state === BROKEN;
  }
}

// ===========================================================================
// §11 Queues
// Holds: Queue, PriorityQueue, LifoQueue, and pythonOrder, the order a
// PriorityQueue gives its items by default.
// Rule: items stay in the store until a get() takes one; a woken getter or
// putter checks again as it runs, and one woken then cancelled wakes the
// next in its place.
// Relies on: §1 Errors, §2 Argument checks, §3 Internal collections (Deque,
// Stack, BinaryHeap), §5 Futures (awaitWaiter), §6 Tasks (taskContext),
// and §10 Synchronization primitives (WaiterList, Event).
// Used by: nothing else in the file.
// ===========================================================================

// One Queue class, whose items live in an ItemStore (a Deque, a BinaryHeap
// or a Stack), built as asyncio 3.14 builds it. As items stay in the store
// until a get() takes one, the queue never holds more than maxsize and
// never reorders. Blocked getters and putters wait in WaiterLists; put and
// get wake the oldest one, which checks again as it runs, and waits again
// at the back of the line if a newcomer got there first. As Lock's, the
// waits run the code after asyncio's `await` as the handlers of an
// internal await (awaitWaiter); one that must wait again does so in its
// task's context, as its own await would.

// Where a queue keeps its items; the order of `take()` is the queue's kind.
interface ItemStore<T> {
  readonly length: number;
  push(item: T): void;
  take(): T | undefined;
  clear(): void;
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

// Waits again from a `then` handler, which runs outside any task, as an
// await made where `awaiter` was (the task that called put() or get(), and
// its scope): so that cancelling that task, or the scope, still reaches the
// new wait.
function waitAgainIn<R>(awaiter: Awaiter, wait: () => R): R {
  const frame = awaiter.frame;
  return frame === null ? wait() : taskContext.run(frame, wait);
}

let useStore: <T>(queue: Queue<T>, store: ItemStore<T>) => void;

/**
 * A first-in-first-out queue for tasks, as asyncio's `Queue`: `put()` waits
 * while the queue is full (`maxsize` items; 0 or less means unbounded),
 * `get()` waits while it is empty. Cancelling a waiting `put()` or `get()`
 * loses nothing: a cancelled `put()` never enqueues its item, and a
 * cancelled `get()` takes none.
 *
 * `join()` waits until every item put has been marked done with
 * `taskDone()`. `shutdown()` stops it: `put()` throws
 * {@linkcode QueueShutDown} at once, `get()` once the queue is empty (or at
 * once with `shutdown(true)`, which drops the items). `for await` takes
 * items until the queue is shut down and empty.
 *
 * As in asyncio, items stay in the queue until a `get()` takes one: an item
 * put while a getter waits counts in `qsize()` until that getter runs and
 * takes it, so the queue never holds more than `maxsize` items and never
 * changes their order. A woken getter or putter checks again as it runs: if
 * a newcomer took the item (or the free slot) first, it waits again, at
 * the back of the line. As with any promise, an item that is itself a
 * promise or a {@linkcode Future} is awaited by `await queue.get()`: box
 * it (`{ task }`) to pass it along as is.
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
  // Invariants: `#items` holds every item put and not yet taken, never more
  // than a positive `#maxsize` (an item put for a woken getter counts until
  // that getter runs and takes it). A getter or putter is listed from when
  // it must wait until it is woken, which unlists it, or its wait fails
  // and it leaves; each put wakes the oldest listed getter, each take the
  // oldest listed putter. `#unfinishedTasks` counts items put and not yet
  // marked done; `#finished`, made by the first join() that must wait, is
  // set exactly while that count is 0. Once `#shutDown`, nothing is put,
  // and nobody starts waiting.
  #maxsize: number;
  #items: ItemStore<T> = new Deque<T>();
  #getters = new WaiterList<void>();
  #putters = new WaiterList<void>();
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
   * How many items are in the queue, counting one put for a waiting getter
   * that has not run yet to take it.
   */
  qsize(): number {
    return this.#items.length;
  }

  /** Whether the queue has no items. */
  empty(): boolean {
    return this.#items.length === 0;
  }

  /** Whether there is no room for another item (never, when unbounded). */
  full(): boolean {
    return this.#maxsize > 0 && this.#items.length >= this.#maxsize;
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
    return this.#waitForRoom(item);
  }

  // asyncio's put() loop, waiting while the queue is full. The handlers are
  // the code after its `await putter`, run as the putter's task resumes: it
  // puts at once if there is room, or waits again if a newcomer took it.
  #waitForRoom(item: T): Promise<void> {
    return awaitWaiter(
      this.#putters.add(this),
      Queue.#putterWoken,
      Queue.#putterFailed,
      this,
      item,
    ) as Promise<void>;
  }

  static #putterWoken(awaiter: Awaiter): void | Promise<void> {
    const queue = awaiter.subject as Queue<unknown>;
    const item = awaiter.argument;
    if (queue.#shutDown || !queue.full()) return queue.putNowait(item);
    return waitAgainIn(awaiter, () => queue.#waitForRoom(item));
  }

  static #putterFailed(awaiter: Awaiter, error: unknown): never {
    const queue = awaiter.subject as Queue<unknown>;
    // Woken for a free slot it will not fill: wake the next putter.
    if (
      queue.#putters.leave(awaiter.future as Future<void>) && !queue.full()
    ) {
      queue.#putters.wakeNextUnlisting(undefined);
    }
    throw error;
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
    this.#items.push(item);
    if (this.#unfinishedTasks++ === 0) this.#finished?.clear();
    this.#getters.wakeNextUnlisting(undefined);
  }

  /**
   * Takes the next item, waiting for one while the queue is empty.
   *
   * @throws {QueueShutDown} once the queue is shut down and empty.
   */
  get(): Promise<T> {
    if (this.#items.length > 0 || this.#shutDown) {
      try {
        return Promise.resolve(this.getNowait());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return this.#waitForItem();
  }

  // asyncio's get() loop, waiting while the queue is empty; the handlers
  // are the code after its `await getter`, as in #waitForRoom.
  #waitForItem(): Promise<T> {
    return awaitWaiter(
      this.#getters.add(this),
      Queue.#getterWoken,
      Queue.#getterFailed,
      this,
      undefined,
    ) as Promise<T>;
  }

  static #getterWoken(awaiter: Awaiter): unknown {
    const queue = awaiter.subject as Queue<unknown>;
    if (queue.#items.length > 0 || queue.#shutDown) return queue.getNowait();
    return waitAgainIn(awaiter, () => queue.#waitForItem());
  }

  static #getterFailed(awaiter: Awaiter, error: unknown): never {
    const queue = awaiter.subject as Queue<unknown>;
    // Woken for an item it will not take: wake the next getter.
    if (
      queue.#getters.leave(awaiter.future as Future<void>) &&
      queue.#items.length > 0
    ) {
      queue.#getters.wakeNextUnlisting(undefined);
    }
    throw error;
  }

  /**
   * Takes the next item at once.
   *
   * @throws {QueueEmpty} if the queue is empty.
   * @throws {QueueShutDown} if it is empty and shut down.
   */
  getNowait(): T {
    if (this.#items.length === 0) {
      throw this.#shutDown ? new QueueShutDown() : new QueueEmpty();
    }
    const item = this.#items.take() as T;
    this.#putters.wakeNextUnlisting(undefined);
    return item;
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
      const dropped = this.#items.length;
      this.#items.clear();
      this.#unfinishedTasks = Math.max(0, this.#unfinishedTasks - dropped);
      if (this.#unfinishedTasks === 0) this.#finished?.set();
    }
    // Each wakes, checks again, and throws QueueShutDown (a getter once the
    // queue is empty).
    this.#getters.wakeAllUnlisting(undefined);
    this.#putters.wakeAllUnlisting(undefined);
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

  #useStore(store: ItemStore<T>): void {
    this.#items = store;
  }

  static {
    useStore = (queue, store) => queue.#useStore(store);
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
    useStore(this, new BinaryHeap<T>(compare));
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
    useStore(this, new Stack<T>());
  }
}

// ===========================================================================
// §12 I/O plumbing
// Holds: what every transport is built from. settleIo and awaitRuntimeEvent
//   (the one wait for a runtime object to be ready: connect, listening,
//   spawn, a TLS handshake), awaitConnectionMade (the one wait for a new
//   transport's connectionMade), IoLatch, postToLoop and callProtocol (the one
//   way to call a protocol), write flow control
//   (water marks, WriteFlowControl, StreamWriteEnd, DrainControl), the
//   resources a loop closes, and Inbox (reads delivered in order).
// Rule: a runtime event reaches a protocol only through Inbox, postToLoop or
//   runOnLoopNow, on the loop, and a protocol callback runs only through
//   callProtocol, which reports the callback that threw. A wait for the
//   outside world is an IoFuture, so that a virtual clock holds still.
// Relies on: §4 Event loop (callSoon, runOnLoopNow, the exception handler),
//   §5 Futures (IoFuture). Used by: §13 Transports and protocols, §14 Streams,
//   §16 Subprocesses, §17 Executors, §19 Name resolution, EventLoop.close().
// ===========================================================================

// Settles an I/O future from a runtime event, unless it is already settled
// or its loop is gone (a closed loop cannot schedule the wake-up).
function settleIo<T>(future: Future<T>, error: unknown, value?: T): void {
  if (future.done() || future.getLoop().isClosed()) return;
  if (error === undefined) future.setResult(value as T);
  else future.setException(error);
}

// What awaitRuntimeEvent() needs of a runtime object (a socket, a listener,
// a child process): Node's EventEmitter, as every runtime has it.
interface RuntimeEmitter {
  once(event: string, listener: (error: Error) => void): unknown;
  off(event: string, listener: (error: Error) => void): unknown;
}

// How one wait for a runtime object to be ready goes.
interface RuntimeWait {
  // The event that means ready; left out when `start` reports it itself.
  ready?: string;
  // Starts the operation, once the listeners are on: `settle()` ends the
  // wait (with an error: fails it). Returns what undoes its own hooks.
  start?: (settle: (error?: unknown) => void) => (() => void) | void;
  // The error the "error" event's error becomes.
  error?: (error: Error) => unknown;
  // Lets go of the half-made object when the wait fails or is cancelled.
  undo: () => void;
}

// Waits, cancellably, until `emitter` is ready (connected, listening,
// spawned, through its handshake), or fails with its "error" event. Pending,
// the wait holds a virtual clock still (IoFuture). However it ends, every
// listener it added comes off; unless it ended ready, `undo()` has run.
async function awaitRuntimeEvent(
  loop: EventLoop,
  emitter: RuntimeEmitter,
  wait: RuntimeWait,
): Promise<void> {
  const future = new IoFuture<void>(loop);
  const settle = (error?: unknown) => settleIo(future, error);
  const onError = (error: Error) =>
    settle(wait.error === undefined ? error : wait.error(error));
  const onReady = () => settle(undefined);
  emitter.once("error", onError);
  if (wait.ready !== undefined) emitter.once(wait.ready, onReady);
  let unhook: (() => void) | null = null;
  try {
    const started = wait.start?.(settle);
    if (typeof started === "function") unhook = started;
    await future;
  } catch (error) {
    // A start that threw leaves the future pending: cancelled, it stops
    // holding the clock, and has no error for anyone to retrieve.
    if (!future.done()) future.cancel();
    wait.undo();
    throw error;
  } finally {
    emitter.off("error", onError);
    if (wait.ready !== undefined) emitter.off(wait.ready, onReady);
    if (unhook !== null) unhook();
  }
}

// Makes a transport, handing it the future its protocol's connectionMade
// settles, and returns it once that has run: asyncio's create_connection()
// and its kin return the transport only then. A connectionMade that threw
// has ended the transport and fails the wait; `onFailure` lets go of the
// transport when the wait fails otherwise (cancelled).
async function awaitConnectionMade<T>(
  loop: EventLoop,
  make: (made: IoFuture<void>) => T,
  onFailure?: (transport: T) => void,
): Promise<T> {
  const made = new IoFuture<void>(loop);
  const transport = make(made);
  try {
    await made;
  } catch (error) {
    onFailure?.(transport);
    throw error;
  }
  return transport;
}

// A one-shot flag that tasks can wait for: closed connections, a server
// with no clients left, an exited child.
class IoLatch {
  #loop: EventLoop;
  #isSet = false;
  #waiters: IoFuture<void>[] = [];

  constructor(loop: EventLoop) {
    this.#loop = loop;
  }

  isSet(): boolean {
    return this.#isSet;
  }

  set(): void {
    if (this.#isSet) return;
    this.#isSet = true;
    for (const waiter of this.#waiters) settleIo(waiter, undefined);
    this.#waiters = [];
  }

  async wait(): Promise<void> {
    if (this.#isSet) return;
    const waiter = new IoFuture<void>(this.#loop);
    this.#waiters.push(waiter);
    try {
      await waiter;
    } finally {
      const index = this.#waiters.indexOf(waiter);
      if (index >= 0) this.#waiters.splice(index, 1);
    }
  }
}

// Runs a protocol callback as a loop callback, unless the loop is closed.
function postToLoop<A extends unknown[]>(
  loop: EventLoop,
  callback: (...args: A) => unknown,
  ...args: A
): void {
  if (!loop.isClosed()) loop.callSoon(callback, ...args);
}

// Server and Process objects are made by the library only: their
// constructors throw without this token, which no user holds.
const MADE_INSIDE: unique symbol = Symbol("made inside @aio/asyncio");

// What callProtocol() returns for a callback that threw, once reported.
class ProtocolFailure {
  /** What the callback threw. */
  error: unknown;

  constructor(error: unknown) {
    this.error = error;
  }
}

// Every transport calls its protocol through here. A callback that throws
// is reported as asyncio reports it, and asyncio treats it as fatal for the
// transport: the caller gets a ProtocolFailure and aborts or closes it (all
// but connectionLost, after which there is nothing left to end).
function callProtocol<R>(
  loop: EventLoop,
  transport: BaseTransport,
  what: string,
  call: () => R,
): R | ProtocolFailure {
  try {
    return call();
  } catch (error) {
    loop.callExceptionHandler({
      message: `Fatal error: protocol.${what}() call failed.`,
      exception: error,
      transport,
    });
    return new ProtocolFailure(error);
  }
}

// Runtime buffers are Node Buffers; protocols get plain Uint8Array views of
// the same memory, so that equality checks and subclass quirks do not leak.
function plainBytes(chunk: Uint8Array): Uint8Array {
  return chunk.constructor === Uint8Array
    ? chunk
    : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

// asyncio's write-buffer high-water mark: writing pauses above it.
const DEFAULT_HIGH_WATER = 64 * 1024;
// asyncio derives each water mark from the other one given: low is a
// quarter of high, so that writing resumes well before it pauses again.
const HIGH_TO_LOW_WATER = 4;

// Checks and completes water marks as asyncio does.
function waterMarks(
  high: number | undefined,
  low: number | undefined,
): [low: number, high: number] {
  const h = high ??
    (low === undefined ? DEFAULT_HIGH_WATER : HIGH_TO_LOW_WATER * low);
  const l = low ?? Math.floor(h / HIGH_TO_LOW_WATER);
  if (!(h >= l && l >= 0)) {
    throw new RangeError(
      `setWriteBufferLimits(): high (${h}) must be >= low (${l}) must be >= 0`,
    );
  }
  return [l, h];
}

// The pause/resume half of write flow control, shared by every transport
// that writes to a runtime stream: it calls the protocol's pauseWriting()
// when the buffer passes the high-water mark, and resumeWriting() when it
// drains to the low-water mark.
class WriteFlowControl {
  #loop: EventLoop;
  #bufferSize: () => number;
  #protocol: () => BaseProtocol;
  #transport: BaseTransport;
  #low = DEFAULT_HIGH_WATER / HIGH_TO_LOW_WATER;
  #high = DEFAULT_HIGH_WATER;
  #paused = false;
  #resumePosted = false;

  constructor(
    loop: EventLoop,
    transport: BaseTransport,
    bufferSize: () => number,
    protocol: () => BaseProtocol,
  ) {
    this.#loop = loop;
    this.#transport = transport;
    this.#bufferSize = bufferSize;
    this.#protocol = protocol;
  }

  limits(): [low: number, high: number] {
    return [this.#low, this.#high];
  }

  setLimits(high?: number, low?: number): void {
    [this.#low, this.#high] = waterMarks(high, low);
    this.afterWrite();
    this.afterFlush();
  }

  afterWrite(): void {
    if (this.#paused || this.#bufferSize() <= this.#high) return;
    this.#paused = true;
    callProtocol(
      this.#loop,
      this.#transport,
      "pauseWriting",
      () => this.#protocol().pauseWriting(),
    );
  }

  // Called from the runtime's write callbacks, so the resume is posted. A
  // write that failed resumes nobody: the connection is lost, and a drain()
  // waiting must get that error, not a resume that looks like success.
  afterFlush = (error?: Error | null): void => {
    if (error) return;
    if (!this.#paused || this.#resumePosted) return;
    if (this.#bufferSize() > this.#low) return;
    this.#resumePosted = true;
    postToLoop(this.#loop, this.#resume);
  };

  #resume = (): void => {
    this.#resumePosted = false;
    if (!this.#paused || this.#bufferSize() > this.#low) return;
    this.#paused = false;
    callProtocol(
      this.#loop,
      this.#transport,
      "resumeWriting",
      () => this.#protocol().resumeWriting(),
    );
  };
}

// What each loop owns and must close when it closes, as asyncio's closing
// loop leaves no socket behind: servers still listening, connections not
// yet lost, children still running. Each entry describes itself (for the
// debug-mode warning) and knows how to let go at once.
interface OwnedResource {
  describe(): string;
  release(): void;
}

const ownedResources = new WeakMap<EventLoop, Set<OwnedResource>>();

function trackResource(loop: EventLoop, resource: OwnedResource): void {
  let owned = ownedResources.get(loop);
  if (owned === undefined) ownedResources.set(loop, owned = new Set());
  owned.add(resource);
}

function untrackResource(loop: EventLoop, resource: OwnedResource): void {
  ownedResources.get(loop)?.delete(resource);
}

// Called by EventLoop.close(): nothing the loop owned may keep the process
// alive once it is closed. In debug mode each is named, as asyncio's
// ResourceWarning names an unclosed transport.
function closeOwnedResources(loop: EventLoop): void {
  const owned = ownedResources.get(loop);
  if (owned === undefined) return;
  ownedResources.delete(loop);
  for (const resource of owned) {
    if (loop.getDebug()) {
      console.warn(
        `ResourceWarning: unclosed ${resource.describe()}, closed by the closing loop`,
      );
    }
    try {
      resource.release();
    } catch {
      // Already gone at the runtime's level: nothing left to close.
    }
  }
}

const END_OF_STREAM = Symbol("end of stream");

// asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES.
const LOST_WRITES_BEFORE_WARNING = 5;

// Queues what a runtime stream hands over and delivers it on the loop, in
// order, holding it while paused: the common core of the read transports.
class Inbox<T> {
  #loop: EventLoop;
  #deliver: (item: T) => void;
  #items: T[] = [];
  #posted = false;
  #paused = false;

  constructor(loop: EventLoop, deliver: (item: T) => void, paused = false) {
    this.#loop = loop;
    this.#deliver = deliver;
    this.#paused = paused;
  }

  // Called from the runtime's events, each a turn of the host of its own:
  // like asyncio's loop after a poll, the loop runs the delivery at once,
  // so a protocol can answer inside the event, as a bare server would.
  push(item: T): void {
    this.#items.push(item);
    if (this.#paused || this.#posted) return;
    this.#posted = true;
    runOnLoopNow(this.#loop, this.#run);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#post();
  }

  clear(): void {
    this.#items.length = 0;
  }

  // Moves what is queued into `out` (the end of stream stays behind).
  drainInto(out: T[]): void {
    for (const item of this.#items.splice(0)) {
      if (item !== END_OF_STREAM) out.push(item);
    }
  }

  #post(): void {
    if (this.#posted || this.#items.length === 0) return;
    this.#posted = true;
    postToLoop(this.#loop, this.#run);
  }

  #run = (): void => {
    this.#posted = false;
    const items = this.#items;
    while (items.length > 0 && !this.#paused) this.#deliver(items.shift()!);
  };
}

// The error of a connection that ended under a read, a drain or a TLS
// handshake, as asyncio's ConnectionResetError.
function connectionLostError(): Error {
  return Object.assign(new Error("Connection lost"), {
    name: "ConnectionResetError",
    code: "ECONNRESET",
  });
}

// The write end of a runtime stream, as both pipe transports use it (the
// one connectWritePipe() makes, and a child's stdin): writes under flow
// control, end of file by closing, and the buffer's size and limits. Each
// transport keeps one in a private field and forwards to it.
class StreamWriteEnd {
  readonly stream: Writable;
  readonly flow: WriteFlowControl;
  closing = false;

  constructor(
    loop: EventLoop,
    transport: BaseTransport,
    stream: Writable,
    protocol: () => BaseProtocol,
  ) {
    this.stream = stream;
    this.flow = new WriteFlowControl(
      loop,
      transport,
      () => stream.writableLength,
      protocol,
    );
  }

  extraInfo(name: string, defaultValue?: unknown): unknown {
    return name === "pipe" ? this.stream : defaultValue;
  }

  write(data: Uint8Array | string): void {
    requireBytes(data, "write()");
    if (data.length === 0 || this.closing) return;
    this.stream.write(data, this.flow.afterFlush);
    this.flow.afterWrite();
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.stream.end();
  }

  abort(): void {
    this.closing = true;
    this.stream.destroy();
  }
}

// What a StreamWriter needs from its protocol: to wait while the transport
// has paused writing, and to know when the connection has closed.
class DrainControl {
  #loop: EventLoop;
  #paused = false;
  #lost = false;
  #lostError: Error | null = null;
  #waiters: IoFuture<void>[] = [];
  #closed: IoLatch;

  constructor(loop: EventLoop) {
    this.#loop = loop;
    this.#closed = new IoLatch(loop);
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#wakeAll(null);
  }

  lose(error: Error | null): void {
    this.#lost = true;
    this.#lostError = error;
    this.#closed.set();
    this.#wakeAll(error);
  }

  // Not async: the common case, nothing to wait for, costs no promise of
  // its own (drain() follows every write of a stream server).
  drain(): Promise<void> {
    if (this.#lost) {
      return Promise.reject(this.#lostError ?? connectionLostError());
    }
    if (!this.#paused) return RESOLVED_VOID;
    return this.#waitForResume();
  }

  async #waitForResume(): Promise<void> {
    const waiter = new IoFuture<void>(this.#loop);
    this.#waiters.push(waiter);
    try {
      await waiter;
    } finally {
      const index = this.#waiters.indexOf(waiter);
      if (index >= 0) this.#waiters.splice(index, 1);
    }
  }

  async waitClosed(): Promise<void> {
    await this.#closed.wait();
    if (this.#lostError !== null) throw this.#lostError;
  }

  #wakeAll(error: Error | null): void {
    for (const waiter of this.#waiters) {
      if (error === null) settleIo(waiter, undefined);
      else if (!waiter.done()) {
        waiter.setException(error);
        waiter.exception(); // the drain() awaiting it reports it
      }
    }
    this.#waiters = [];
  }
}

// The protocols that StreamWriter can drain through.
interface DrainableProtocol {
  readonly drainControl: DrainControl;
}

// Each StreamReaderProtocol's DrainControl, kept out of its public face.
const drainControls = new WeakMap<BaseProtocol, DrainControl>();

function drainControlOf(protocol: BaseProtocol): DrainControl | null {
  const own = drainControls.get(protocol);
  if (own !== undefined) return own;
  const control = (protocol as Partial<DrainableProtocol>).drainControl;
  return control instanceof DrainControl ? control : null;
}

// ===========================================================================
// §13 Transports and protocols
// Holds: asyncio's low level for I/O. The protocol classes, the transport
//   interfaces and their options; SocketTransport (TCP, TLS, Unix),
//   startTls, Server, UdpTransport, and the pipe transports of
//   connectReadPipe/connectWritePipe, each with the function an EventLoop
//   I/O method delegates to (createConnectionOn, createServerOn, ...).
// Rule: a transport owns its runtime object (node:net, node:tls, node:dgram,
//   a stream) and hands what arrives to its protocol on the loop, where
//   getRunningLoop() works: received data through an Inbox, which runs the
//   delivery at once inside the runtime's event (runOnLoopNow), as asyncio's
//   loop does after a poll; every other event (made, lost, resumed, a UDP
//   datagram) posted with callSoon (postToLoop).
// Relies on: §12 I/O plumbing, §4 Event loop, §5 Futures (IoFuture).
// Used by: EventLoop's I/O methods, §14 Streams, §16 Subprocesses.
// ===========================================================================

/**
 * An address, shaped as Python gives it: `[host, port]` for TCP and UDP, the
 * path for a Unix socket.
 *
 * @example
 * ```ts
 * import type { SocketAddress } from "@aio/asyncio";
 *
 * const tcp: SocketAddress = ["127.0.0.1", 8888];
 * const unix: SocketAddress = "/tmp/echo.sock";
 * console.log(tcp, unix);
 * ```
 */
export type SocketAddress = [host: string, port: number] | string;

/**
 * The base of every protocol: the callbacks about the connection itself.
 * Subclass {@linkcode Protocol}, {@linkcode BufferedProtocol},
 * {@linkcode DatagramProtocol} or {@linkcode SubprocessProtocol} and override
 * what you need; the defaults do nothing.
 *
 * @example
 * ```ts
 * import { BaseProtocol } from "@aio/asyncio";
 *
 * class Quiet extends BaseProtocol {
 *   override connectionLost(exc: Error | null) {
 *     console.log("lost", exc?.message ?? "cleanly");
 *   }
 * }
 * new Quiet().connectionLost(null); // lost cleanly
 * ```
 */
export class BaseProtocol {
  /** The connection is up; `transport` is how to talk back. */
  connectionMade(_transport: BaseTransport): void {}

  /**
   * The connection is gone: `exc` is the error that ended it, or `null` when
   * it was closed normally. Called once, and last.
   */
  connectionLost(_exc: Error | null): void {}

  /** The transport's write buffer went over its high-water mark: stop writing. */
  pauseWriting(): void {}

  /** The write buffer drained to its low-water mark: writing may go on. */
  resumeWriting(): void {}
}

/**
 * A stream protocol (TCP, TLS, Unix sockets): bytes arrive in
 * `dataReceived`, in chunks of any size, and the end in `eofReceived`.
 *
 * @example An echo protocol
 * ```ts
 * import { Protocol, type Transport } from "@aio/asyncio";
 *
 * class Echo extends Protocol {
 *   #transport: Transport | null = null;
 *   override connectionMade(transport: Transport) {
 *     this.#transport = transport;
 *   }
 *   override dataReceived(data: Uint8Array) {
 *     this.#transport!.write(data);
 *   }
 * }
 * console.log(typeof new Echo().dataReceived); // "function"
 * ```
 */
export class Protocol extends BaseProtocol {
  /** The connection is up; `transport` is how to talk back. */
  override connectionMade(_transport: Transport): void {}

  /** Some bytes arrived. The array is the protocol's to keep. */
  dataReceived(_data: Uint8Array): void {}

  /**
   * The peer will send no more. Return `true` to keep the connection open
   * for writing (a half-close); anything else closes the transport.
   */
  eofReceived(): boolean | void {}
}

// A BufferedProtocol's default buffer when there is no size hint: as much
// as one read of a runtime stream hands over (Node's 64 KiB high-water mark).
const DEFAULT_RECEIVE_BUFFER = 64 * 1024;

/**
 * A stream protocol that receives into buffers it provides, to save a copy:
 * the transport asks `getBuffer(sizeHint)` for space, fills it, and reports
 * how much with `bufferUpdated(nbytes)`.
 *
 * @example
 * ```ts
 * import { BufferedProtocol } from "@aio/asyncio";
 *
 * class Counter extends BufferedProtocol {
 *   #buffer = new Uint8Array(4096);
 *   received = 0;
 *   override getBuffer() {
 *     return this.#buffer;
 *   }
 *   override bufferUpdated(nbytes: number) {
 *     this.received += nbytes;
 *   }
 * }
 * console.log(new Counter().received); // 0
 * ```
 */
export class BufferedProtocol extends BaseProtocol {
  /** The connection is up; `transport` is how to talk back. */
  override connectionMade(_transport: Transport): void {}

  /**
   * Space to receive into; `sizeHint` is how many bytes are waiting (a
   * hint). The default allocates a new array each time.
   */
  getBuffer(sizeHint: number): Uint8Array {
    return new Uint8Array(sizeHint > 0 ? sizeHint : DEFAULT_RECEIVE_BUFFER);
  }

  /** `nbytes` bytes were written at the start of the last buffer given. */
  bufferUpdated(_nbytes: number): void {}

  /** As {@linkcode Protocol.eofReceived}: `true` keeps the writing side open. */
  eofReceived(): boolean | void {}
}

/**
 * A UDP protocol: each datagram arrives whole in `datagramReceived`, with the
 * address it came from.
 *
 * @example
 * ```ts
 * import { DatagramProtocol, type SocketAddress } from "@aio/asyncio";
 *
 * class Printer extends DatagramProtocol {
 *   override datagramReceived(data: Uint8Array, addr: SocketAddress) {
 *     console.log(new TextDecoder().decode(data), "from", addr);
 *   }
 * }
 * new Printer().datagramReceived(new TextEncoder().encode("hi"), ["127.0.0.1", 9]);
 * ```
 */
export class DatagramProtocol extends BaseProtocol {
  /** The endpoint is ready; `transport` sends datagrams. */
  override connectionMade(_transport: DatagramTransport): void {}

  /** A datagram arrived from `addr`. */
  datagramReceived(_data: Uint8Array, _addr: SocketAddress): void {}

  /** A send or receive failed (for instance ICMP port unreachable). */
  errorReceived(_exc: Error): void {}
}

/**
 * A protocol for a child process started with
 * {@linkcode EventLoop.subprocessExec}: output arrives per pipe (fd 1 is
 * stdout, fd 2 stderr), and `processExited` tells when the child ended.
 *
 * @example
 * ```ts
 * import { getEventLoop, SubprocessProtocol } from "@aio/asyncio";
 *
 * class Collect extends SubprocessProtocol {
 *   output = "";
 *   override pipeDataReceived(fd: number, data: Uint8Array) {
 *     if (fd === 1) this.output += new TextDecoder().decode(data);
 *   }
 * }
 * const [transport, protocol] = await getEventLoop().subprocessExec(
 *   () => new Collect(), "echo", ["hello"],
 * );
 * await transport.wait();
 * console.log(protocol.output); // "hello\n"
 * transport.close();
 * ```
 */
export class SubprocessProtocol extends BaseProtocol {
  /** The child is running; `transport` controls it. */
  override connectionMade(_transport: SubprocessTransport): void {}

  /** The child wrote `data` to pipe `fd` (1: stdout, 2: stderr). */
  pipeDataReceived(_fd: number, _data: Uint8Array): void {}

  /** Pipe `fd` closed (0: stdin, 1: stdout, 2: stderr). */
  pipeConnectionLost(_fd: number, _exc: Error | null): void {}

  /** The child exited; its pipes may still hold output to read. */
  processExited(): void {}
}

/**
 * What every transport can do: describe itself, and close.
 *
 * @example
 * ```ts
 * import { openConnection, startServer } from "@aio/asyncio";
 *
 * await using server = await startServer((_r, w) => w.close(), "127.0.0.1", 0);
 * const [host, port] = server.sockets[0].getsockname() as [string, number];
 * const [, writer] = await openConnection(host, port);
 * const transport = writer.transport;
 * console.log(transport.getExtraInfo("peername")); // [ "127.0.0.1", port ]
 * transport.close();
 * ```
 */
export interface BaseTransport {
  /**
   * Facts about the connection: `"peername"` and `"sockname"` (a
   * {@linkcode SocketAddress}), `"socket"` (the runtime's socket object),
   * and for TLS `"peercert"`, `"cipher"` and `"sslObject"`. Anything
   * unknown gives `defaultValue`.
   */
  getExtraInfo(name: string, defaultValue?: unknown): unknown;
  /** Whether the transport is closing or closed. */
  isClosing(): boolean;
  /**
   * Closes the transport: buffered data is still sent, then the protocol's
   * `connectionLost(null)` is called.
   */
  close(): void;
  /** Hands the transport's events to another protocol from now on. */
  setProtocol(protocol: BaseProtocol): void;
  /** The protocol that gets the transport's events. */
  getProtocol(): BaseProtocol;
}

/**
 * The reading side of a transport, with flow control: pause it while you
 * cannot keep up.
 *
 * @example
 * ```ts
 * import type { ReadTransport } from "@aio/asyncio";
 *
 * function backOff(transport: ReadTransport) {
 *   if (transport.isReading()) transport.pauseReading();
 * }
 * console.log(typeof backOff); // "function"
 * ```
 */
export interface ReadTransport extends BaseTransport {
  /** Whether data is being delivered to the protocol (not paused). */
  isReading(): boolean;
  /** Stops delivering data until {@linkcode ReadTransport.resumeReading}. */
  pauseReading(): void;
  /** Delivers data again, starting with what arrived while paused. */
  resumeReading(): void;
}

/**
 * The writing side of a transport. Writes never block: they go to a buffer,
 * and when the buffer grows past its high-water mark the protocol's
 * `pauseWriting()` is called, then `resumeWriting()` once it drains to the
 * low-water mark.
 *
 * @example
 * ```ts
 * import type { WriteTransport } from "@aio/asyncio";
 *
 * function send(transport: WriteTransport, text: string) {
 *   transport.setWriteBufferLimits(1 << 20); // pause at 1 MiB
 *   transport.write(text);
 *   return transport.getWriteBufferSize();
 * }
 * console.log(typeof send); // "function"
 * ```
 */
export interface WriteTransport extends BaseTransport {
  /**
   * Queues `data` for sending; a string is encoded as UTF-8. The array is
   * handed to the runtime as it is, not copied: do not change it after.
   */
  write(data: Uint8Array | string): void;
  /** Writes each item of `list`, in order. */
  writelines(list: Iterable<Uint8Array | string>): void;
  /** Closes the sending side once the buffer is flushed (a half-close). */
  writeEof(): void;
  /** Whether {@linkcode WriteTransport.writeEof} is supported. */
  canWriteEof(): boolean;
  /**
   * Closes at once, dropping buffered data; the protocol's
   * `connectionLost(null)` follows.
   */
  abort(): void;
  /** How many bytes are buffered, not yet handed to the system. */
  getWriteBufferSize(): number;
  /** The `[low, high]` water marks, in bytes. */
  getWriteBufferLimits(): [low: number, high: number];
  /**
   * Sets the water marks: asyncio's defaults are 64 KiB high and a quarter
   * of it low; with only `high` given, low is a quarter of it.
   */
  setWriteBufferLimits(high?: number, low?: number): void;
}

/**
 * A two-way byte stream transport: TCP, TLS or a Unix socket.
 *
 * @example
 * ```ts
 * import { getEventLoop, Protocol, startServer } from "@aio/asyncio";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   writer.write(await reader.read(100));
 *   writer.close();
 * }, "127.0.0.1", 0);
 * const [host, port] = server.sockets[0].getsockname() as [string, number];
 * const [transport] = await getEventLoop().createConnection(
 *   () => new Protocol(), host, port,
 * );
 * transport.write("ping");
 * transport.close();
 * ```
 */
export interface Transport extends ReadTransport, WriteTransport {}

/**
 * A UDP endpoint: sends datagrams with {@linkcode DatagramTransport.sendto}.
 *
 * @example
 * ```ts
 * import { DatagramProtocol, getEventLoop } from "@aio/asyncio";
 *
 * const [transport] = await getEventLoop().createDatagramEndpoint(
 *   () => new DatagramProtocol(), { localAddr: ["127.0.0.1", 0] },
 * );
 * transport.sendto("hello", transport.getExtraInfo("sockname") as [string, number]);
 * transport.close();
 * ```
 */
export interface DatagramTransport extends BaseTransport {
  /**
   * Sends one datagram to `addr`; on an endpoint made with a `remoteAddr`,
   * leave `addr` out (or give that same address).
   */
  sendto(data: Uint8Array | string, addr?: [host: string, port: number]): void;
  /** Closes at once, dropping datagrams not yet sent. */
  abort(): void;
  /** How many bytes are queued, not yet sent. */
  getWriteBufferSize(): number;
}

/**
 * Control of a child process started with
 * {@linkcode EventLoop.subprocessExec} or
 * {@linkcode EventLoop.subprocessShell}.
 *
 * @example
 * ```ts
 * import { getEventLoop, SubprocessProtocol } from "@aio/asyncio";
 *
 * const [transport] = await getEventLoop().subprocessExec(
 *   () => new SubprocessProtocol(), "sleep", ["10"],
 * );
 * transport.terminate();
 * console.log(await transport.wait()); // -15: ended by SIGTERM
 * transport.close();
 * ```
 */
export interface SubprocessTransport extends BaseTransport {
  /** The child's process id. */
  getPid(): number;
  /**
   * The exit status: the exit code, or minus the signal number when a
   * signal ended it, or `null` while it runs.
   */
  getReturncode(): number | null;
  /**
   * The transport of pipe `fd` (0: stdin, a {@linkcode WriteTransport}; 1
   * and 2: stdout and stderr, {@linkcode ReadTransport}s), or `null` when
   * that stream is not a pipe.
   */
  getPipeTransport(fd: number): ReadTransport | WriteTransport | null;
  /** Sends `signal` (a name like `"SIGINT"`, or a number) to the child. */
  sendSignal(signal: string | number): void;
  /** Sends SIGTERM. */
  terminate(): void;
  /** Sends SIGKILL. */
  kill(): void;
  /**
   * Waits until the child has exited and its pipes are closed, and returns
   * the exit status (as {@linkcode SubprocessTransport.getReturncode}).
   */
  wait(): Promise<number>;
}

/** TLS settings, for the `tls` option of connections and servers. */
export interface TlsOptions {
  /** Certificate authorities to trust (PEM), instead of the system's. */
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  /** This side's certificate chain (PEM); a server needs one. */
  cert?: string | Uint8Array;
  /** This side's private key (PEM); a server needs one. */
  key?: string | Uint8Array;
  /**
   * Check the peer's certificate (default `true` for clients); `false` is
   * for tests only.
   */
  rejectUnauthorized?: boolean;
  /** The name to send (SNI) and check the certificate against; default host. */
  serverHostname?: string;
  /** Application protocols to offer (ALPN), such as `["h2", "http/1.1"]`. */
  alpnProtocols?: string[];
}

/** Options for {@linkcode EventLoop.createConnection} and {@linkcode openConnection}. */
export interface ConnectionOptions {
  /** Connect with TLS: `true` for the system's defaults, or settings. */
  tls?: boolean | TlsOptions;
  /** Bind the local end to this `[host, port]` before connecting. */
  localAddr?: [host: string, port: number];
}

/** Options for {@linkcode EventLoop.createServer} and {@linkcode startServer}. */
export interface ServerOptions {
  /** Serve TLS with these settings (`cert` and `key` required). */
  tls?: TlsOptions;
  /** The listen backlog; default 511 (asyncio: 100, which drops bursts). */
  backlog?: number;
  /** Start accepting at once (default `true`); else call `startServing()`. */
  startServing?: boolean;
  /**
   * Let several servers, in this process or others, listen on the same
   * address and port, the system spreading connections among them
   * (SO_REUSEPORT; Linux and the BSDs).
   */
  reusePort?: boolean;
}

/** Options for {@linkcode EventLoop.startTls} and {@linkcode StreamWriter.startTls}. */
export interface StartTlsOptions extends TlsOptions {
  /**
   * Be the TLS server of the handshake (`cert` and `key` required); default
   * `false`. {@linkcode StreamWriter.startTls} decides it itself: the
   * server's side of a connection is the server.
   */
  serverSide?: boolean;
  /**
   * Give up on a handshake that takes longer, in ms: the connection is
   * aborted, and the await fails with `ConnectionAbortedError`. Default
   * 60000, as asyncio.
   */
  handshakeTimeout?: number;
}

/** Options for {@linkcode EventLoop.createDatagramEndpoint}. */
export interface DatagramEndpointOptions {
  /** Bind to this `[host, port]`; port 0 picks a free one. */
  localAddr?: [host: string, port: number];
  /** Connect to this `[host, port]`: `sendto()` then needs no address. */
  remoteAddr?: [host: string, port: number];
  /** 4 or 6; default from the addresses given, else 4. */
  family?: 4 | 6;
  /** Let several sockets bind the same address (SO_REUSEADDR). */
  reuseAddress?: boolean;
  /** Allow sending to broadcast addresses. */
  allowBroadcast?: boolean;
}

// Hands `data` to a stream protocol: dataReceived(), or for a
// BufferedProtocol, into the buffers its getBuffer() lends, as many as the
// data needs.
function feedProtocol(
  protocol: Protocol | BufferedProtocol,
  data: Uint8Array,
): void {
  if (!(protocol instanceof BufferedProtocol)) {
    protocol.dataReceived(data);
    return;
  }
  let offset = 0;
  while (offset < data.length) {
    const buffer = protocol.getBuffer(data.length - offset);
    if (buffer.length === 0) {
      throw new RuntimeError("getBuffer() returned an empty buffer");
    }
    const n = Math.min(buffer.length, data.length - offset);
    buffer.set(data.subarray(offset, offset + n));
    protocol.bufferUpdated(n);
    offset += n;
  }
}

// What a transport hands over when start_tls takes its socket: the socket,
// the bytes received but not yet delivered, and the server it belongs to.
interface ReleasedSocket {
  socket: net.Socket;
  undelivered: Uint8Array[];
  server: Server | null;
  extra: Record<string, unknown>;
}
let releaseSocket: (transport: SocketTransport) => ReleasedSocket;

// A TCP, TLS or Unix stream socket as an asyncio Transport. What arrives is
// queued in an Inbox and delivered on the loop; pausing reading stops both
// the runtime socket and the delivery, so nothing is lost or reordered.
class SocketTransport implements Transport {
  #loop: EventLoop;
  #socket: net.Socket;
  #protocol: Protocol | BufferedProtocol;
  #extra: Record<string, unknown>;
  #server: Server | null;
  #isTls: boolean;
  #flow: WriteFlowControl;
  #inbox: Inbox<Uint8Array | typeof END_OF_STREAM>;
  #reading = true;
  #closing = false;
  #eofWritten = false;
  #lost = false;
  #failed = false;
  #lostWrites = 0;
  #error: Error | null = null;

  // `connected`: the protocol is already connected (start_tls hands it a
  // new transport), so connectionMade is not called again.
  constructor(
    loop: EventLoop,
    socket: net.Socket,
    protocol: Protocol | BufferedProtocol,
    extra: Record<string, unknown>,
    server: Server | null,
    made: IoFuture<void> | null,
    connected = false,
  ) {
    this.#loop = loop;
    this.#socket = socket;
    this.#protocol = protocol;
    this.#extra = extra;
    this.#server = server;
    this.#isTls = socket instanceof tls.TLSSocket;
    this.#inbox = new Inbox(loop, this.#deliver);
    this.#flow = new WriteFlowControl(
      loop,
      this,
      () => socket.writableLength,
      () => this.#protocol,
    );
    if (!connected) postToLoop(loop, this.#connectionMade, made);
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("error", this.#fail);
    socket.on("close", this.#onClose);
    trackResource(loop, this.#owned);
  }

  #owned: OwnedResource = {
    describe: () => {
      const peer = this.#extra.peername;
      return `transport to ${
        Array.isArray(peer) ? peer.join(":") : String(peer || "a Unix socket")
      }`;
    },
    release: () => {
      this.#closing = true;
      this.#socket.destroy();
    },
  };

  #onData = (chunk: Uint8Array): void => this.#receive(plainBytes(chunk));
  #onEnd = (): void => this.#receive(END_OF_STREAM);
  #onClose = (): void => postToLoop(this.#loop, this.#connectionLost);

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    if (name === "socket") return this.#socket;
    if (this.#isTls) {
      const socket = this.#socket as tls.TLSSocket;
      if (name === "peercert") return socket.getPeerCertificate();
      if (name === "cipher") return socket.getCipher();
      if (name === "sslObject") return socket;
    }
    return name in this.#extra ? this.#extra[name] : defaultValue;
  }

  isClosing(): boolean {
    return this.#closing;
  }

  setProtocol(protocol: BaseProtocol): void {
    this.#protocol = protocol as Protocol;
  }

  getProtocol(): BaseProtocol {
    return this.#protocol;
  }

  isReading(): boolean {
    return this.#reading && !this.#closing;
  }

  pauseReading(): void {
    if (this.#closing || !this.#reading) return;
    this.#reading = false;
    this.#inbox.pause();
    this.#socket.pause();
  }

  resumeReading(): void {
    if (this.#closing || this.#reading) return;
    this.#reading = true;
    this.#inbox.resume();
    this.#socket.resume();
  }

  write(data: Uint8Array | string): void {
    requireBytes(data, "write()");
    if (this.#eofWritten) {
      throw new RuntimeError("Cannot call write() after writeEof()");
    }
    if (data.length === 0) return;
    // As asyncio: a write to a lost connection goes nowhere, the next
    // drain() raises the error that ended it, and from the fifth such write
    // on each one is logged, so a loop that never drains is not silent.
    if (this.#failed || this.#socket.destroyed) {
      if (++this.#lostWrites >= LOST_WRITES_BEFORE_WARNING) {
        console.warn(
          "asyncio: socket.send() raised exception: write() to a lost connection",
        );
      }
      return;
    }
    if (this.#closing) return;
    this.#socket.write(data, this.#flow.afterFlush);
    this.#flow.afterWrite();
  }

  writelines(list: Iterable<Uint8Array | string>): void {
    for (const data of list) this.write(data);
  }

  writeEof(): void {
    if (this.#closing || this.#eofWritten) return;
    if (!this.canWriteEof()) {
      throw new RuntimeError("writeEof() is not supported over TLS");
    }
    this.#eofWritten = true;
    this.#socket.end();
  }

  canWriteEof(): boolean {
    // As asyncio: TLS has no half-close.
    return !this.#isTls;
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#inbox.clear();
    const socket = this.#socket;
    // Flush what is buffered, then let go of the socket entirely.
    if (socket.writableFinished) {
      socket.destroy();
    } else {
      socket.once("finish", () => socket.destroy());
      if (!socket.writableEnded) socket.end();
    }
  }

  abort(): void {
    this.#closing = true;
    this.#inbox.clear();
    this.#socket.destroy();
  }

  getWriteBufferSize(): number {
    return this.#socket.writableLength;
  }

  getWriteBufferLimits(): [low: number, high: number] {
    return this.#flow.limits();
  }

  setWriteBufferLimits(high?: number, low?: number): void {
    this.#flow.setLimits(high, low);
  }

  #connectionMade = (made: IoFuture<void> | null): void => {
    const outcome = callProtocol(
      this.#loop,
      this,
      "connectionMade",
      () => this.#protocol.connectionMade(this),
    );
    if (outcome instanceof ProtocolFailure) {
      this.abort();
      if (made !== null) settleIo(made, outcome.error);
      return;
    }
    if (made !== null) settleIo(made, undefined);
  };

  #receive(item: Uint8Array | typeof END_OF_STREAM): void {
    if (!this.#closing) this.#inbox.push(item);
  }

  #deliver = (item: Uint8Array | typeof END_OF_STREAM): void => {
    if (this.#closing) return;
    if (item === END_OF_STREAM) this.#deliverEof();
    else this.#deliverData(item);
  };

  #deliverData(data: Uint8Array): void {
    const protocol = this.#protocol;
    const outcome = callProtocol(
      this.#loop,
      this,
      "dataReceived",
      () => feedProtocol(protocol, data),
    );
    if (outcome instanceof ProtocolFailure) this.abort();
  }

  #deliverEof(): void {
    const keepOpen = callProtocol(
      this.#loop,
      this,
      "eofReceived",
      () => this.#protocol.eofReceived(),
    );
    if (keepOpen instanceof ProtocolFailure) {
      this.abort();
      return;
    }
    if (keepOpen !== true || this.#isTls) this.close();
  }

  // A socket error (ECONNRESET, EPIPE, ...) ends the connection at once, as
  // asyncio's fatal error does: it is closing from now on, and the protocol
  // hears of it on the next loop step rather than whenever the runtime gets
  // round to its "close" event (Deno: several writes later).
  #fail = (error: Error): void => {
    this.#error ??= error;
    if (this.#failed) return;
    this.#failed = true;
    this.#closing = true;
    this.#socket.destroy();
    postToLoop(this.#loop, this.#connectionLost);
  };

  #connectionLost = (): void => {
    if (this.#lost) return;
    this.#lost = true;
    this.#closing = true;
    this.#inbox.clear();
    untrackResource(this.#loop, this.#owned);
    callProtocol(
      this.#loop,
      this,
      "connectionLost",
      () => this.#protocol.connectionLost(this.#error),
    );
    if (this.#server !== null) detachFromServer(this.#server, this);
  };

  // Gives the socket up to start_tls: this transport goes quiet for good
  // (no more callbacks, writes dropped), and hands over what it received
  // but has not delivered, so that no handshake byte is lost.
  #release(): ReleasedSocket {
    if (this.#closing || this.#isTls || this.#socket.destroyed) {
      throw new RuntimeError(
        this.#isTls
          ? "startTls(): the transport is already over TLS"
          : "startTls(): the transport is closing",
      );
    }
    const undelivered: Uint8Array[] = [];
    this.#inbox.drainInto(undelivered);
    this.#closing = this.#lost = true;
    const socket = this.#socket;
    socket.off("data", this.#onData);
    socket.off("end", this.#onEnd);
    socket.off("error", this.#fail);
    untrackResource(this.#loop, this.#owned); // the new transport tracks itself
    socket.off("close", this.#onClose);
    return { socket, undelivered, server: this.#server, extra: this.#extra };
  }

  static {
    releaseSocket = (transport) => transport.#release();
  }
}

function tcpAddress(address: string | undefined, port: number | undefined) {
  return address === undefined ? undefined : [address, port ?? 0];
}

// What both ends of a TLS connection take. (Node's types ask for Buffers
// where any Uint8Array works.)
type NodeTlsOptions = tls.SecureContextOptions & tls.CommonConnectionOptions;
function nodeTlsOptions(options: TlsOptions): NodeTlsOptions {
  return {
    ca: options.ca,
    cert: options.cert,
    key: options.key,
    rejectUnauthorized: options.rejectUnauthorized,
    ALPNProtocols: options.alpnProtocols,
  } as NodeTlsOptions;
}

// Where a stream connection goes: a TCP host and port, or a Unix path.
type StreamTarget = { host: string; port: number } | { path: string };

// Connects a runtime socket to `target`, waiting cancellably: a cancelled
// connect destroys the half-made socket.
async function connectSocket(
  loop: EventLoop,
  target: StreamTarget,
  options: ConnectionOptions,
): Promise<net.Socket> {
  const wantsTls = options.tls !== undefined && options.tls !== false;
  const tlsOptions = typeof options.tls === "object" ? options.tls : {};
  let socket: net.Socket;
  if (wantsTls) {
    const servername = tlsOptions.serverHostname ??
      ("host" in target && net.isIP(target.host) === 0
        ? target.host
        : undefined);
    const connectOptions: tls.ConnectionOptions = {
      ...target,
      ...nodeTlsOptions(tlsOptions),
      servername,
    };
    socket = tls.connect(connectOptions);
  } else {
    socket = net.connect({
      ...target,
      ...(options.localAddr === undefined ? {} : {
        localAddress: options.localAddr[0],
        localPort: options.localAddr[1],
      }),
      allowHalfOpen: true,
    } as net.NetConnectOpts);
  }
  await awaitRuntimeEvent(loop, socket, {
    ready: wantsTls ? "secureConnect" : "connect",
    undo: () => socket.destroy(),
  });
  return socket;
}

function streamExtraInfo(
  socket: net.Socket,
  target: StreamTarget | null,
  serverPath: string | null,
): Record<string, unknown> {
  if (target !== null && "path" in target) {
    return { peername: target.path, sockname: "" };
  }
  if (serverPath !== null) return { peername: "", sockname: serverPath };
  return {
    peername: tcpAddress(socket.remoteAddress, socket.remotePort),
    sockname: tcpAddress(socket.localAddress, socket.localPort),
  };
}

async function createStreamConnection<P extends Protocol | BufferedProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  target: StreamTarget,
  options: ConnectionOptions,
): Promise<[Transport, P]> {
  const socket = await connectSocket(loop, target, options);
  let protocol: P;
  try {
    protocol = protocolFactory();
  } catch (error) {
    socket.destroy();
    throw error;
  }
  const transport = await awaitConnectionMade(
    loop,
    (made) =>
      new SocketTransport(
        loop,
        socket,
        protocol,
        streamExtraInfo(socket, target, null),
        null,
        made,
      ),
    (transport) => transport.abort(),
  );
  return [transport, protocol];
}

// EventLoop.createConnection(): checks the arguments at the call.
function createConnectionOn<P extends Protocol | BufferedProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  host: string,
  port: number,
  options: ConnectionOptions,
): Promise<[Transport, P]> {
  requireFactory(protocolFactory, "createConnection()");
  requireHostPort(host, port, "createConnection()");
  return createStreamConnection(loop, protocolFactory, { host, port }, options);
}

// EventLoop.createUnixConnection(): checks the arguments at the call.
function createUnixConnectionOn<P extends Protocol | BufferedProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  path: string,
  options: ConnectionOptions,
): Promise<[Transport, P]> {
  requireFactory(protocolFactory, "createUnixConnection()");
  requirePath(path, "createUnixConnection()");
  return createStreamConnection(loop, protocolFactory, { path }, options);
}

// asyncio's default limit for a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT_MS = 60_000;

// EventLoop.startTls(): checks the arguments at the call.
function startTlsOn(
  loop: EventLoop,
  transport: Transport,
  protocol: Protocol | BufferedProtocol,
  options: StartTlsOptions,
): Promise<Transport> {
  checkStartTlsArguments(transport, protocol, options);
  return upgradeToTls(
    loop,
    transport as unknown as SocketTransport,
    protocol,
    options,
  );
}

// asyncio's error for a TLS handshake that outlived its timeout.
function handshakeTimeoutError(timeout: number): Error {
  return Object.assign(
    new Error(
      `SSL handshake is taking longer than ${timeout} ms: aborting the connection`,
    ),
    { name: "ConnectionAbortedError", code: "ECONNABORTED" },
  );
}

// STARTTLS: takes the socket from `transport` at once (before any await,
// so that the peer's first handshake bytes reach TLS, not the protocol),
// runs the handshake over it, and returns a new transport that delivers to
// the same protocol, which is not told connectionMade again.
async function upgradeToTls(
  loop: EventLoop,
  transport: SocketTransport,
  protocol: Protocol | BufferedProtocol,
  options: StartTlsOptions,
): Promise<Transport> {
  const { socket, undelivered, server, extra } = releaseSocket(transport);
  for (let i = undelivered.length - 1; i >= 0; i--) {
    socket.unshift(undelivered[i]);
  }
  let secure: tls.TLSSocket;
  if (options.serverSide) {
    secure = new tls.TLSSocket(socket, {
      ...nodeTlsOptions(options),
      isServer: true,
    });
  } else {
    const peer = extra.peername;
    const host = Array.isArray(peer) ? String(peer[0]) : "";
    secure = tls.connect({
      socket,
      ...nodeTlsOptions(options),
      servername: options.serverHostname ??
        (net.isIP(host) === 0 && host !== "" ? host : undefined),
    } as tls.ConnectionOptions);
  }
  const timeout = options.handshakeTimeout ?? TLS_HANDSHAKE_TIMEOUT_MS;
  await awaitRuntimeEvent(loop, secure, {
    ready: options.serverSide ? "secure" : "secureConnect",
    start: (settle) => {
      // A peer that hangs up mid-handshake may leave no error event behind,
      // and on a half-open socket (as servers' are), not even a close.
      const onClose = () => settle(connectionLostError());
      secure.once("end", onClose);
      secure.once("close", onClose);
      socket.once("close", onClose);
      const timer = setTimeout(
        () => settle(handshakeTimeoutError(timeout)),
        timeout,
      );
      return () => {
        clearTimeout(timer);
        secure.off("end", onClose);
        secure.off("close", onClose);
        socket.off("close", onClose);
      };
    },
    undo: () => {
      secure.destroy();
      socket.destroy();
      if (server !== null) detachFromServer(server, transport);
    },
  });
  const upgraded = new SocketTransport(
    loop,
    secure,
    protocol,
    extra,
    server,
    null,
    true,
  );
  if (server !== null) {
    attachToServer(server, upgraded);
    detachFromServer(server, transport);
  }
  adoptTransport(protocol, upgraded);
  return upgraded;
}

/**
 * One listening socket of a {@linkcode Server}.
 *
 * @example
 * ```ts
 * import { startServer } from "@aio/asyncio";
 *
 * await using server = await startServer(() => {}, "127.0.0.1", 0);
 * console.log(server.sockets[0].getsockname()); // [ "127.0.0.1", 40123 ]
 * ```
 */
export interface ServerSocket {
  /** The address it listens on: `[host, port]`, or the Unix socket's path. */
  getsockname(): SocketAddress;
}

// A connection of the server's ended (or moved to start_tls's transport).
let detachFromServer: (server: Server, transport: SocketTransport) => void;
// start_tls's new transport is one of the server's connections.
let attachToServer: (server: Server, transport: SocketTransport) => void;

/**
 * A listening server, from {@linkcode startServer},
 * {@linkcode startUnixServer}, {@linkcode EventLoop.createServer} or
 * {@linkcode EventLoop.createUnixServer}. Each accepted connection gets its
 * own protocol (or, for the stream servers, a reader and writer).
 *
 * `close()` stops listening; connections already made go on until they
 * end, and `waitClosed()` waits for that (asyncio 3.12). `await using`
 * closes the server, closes its clients and waits.
 *
 * @example
 * ```ts
 * import { openConnection, startServer } from "@aio/asyncio";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   writer.write(await reader.readline());
 *   await writer.drain();
 *   writer.close();
 * }, "127.0.0.1", 0);
 * const [host, port] = server.sockets[0].getsockname() as [string, number];
 * const [reader, writer] = await openConnection(host, port);
 * writer.write("hello\n");
 * console.log(new TextDecoder().decode(await reader.readline())); // "hello\n"
 * writer.close();
 * ```
 */
export class Server {
  #loop: EventLoop;
  // One listening socket per address: a Unix path, or each host given
  // (every interface: IPv4's and IPv6's wildcard addresses).
  #listeners: net.Server[] = [];
  #address: ServerAddress;
  #backlog: number;
  #reusePort: boolean;
  #protocolFactory: () => Protocol | BufferedProtocol;
  #clients = new Set<SocketTransport>();
  #listening = false;
  #closed = false;
  #listenerClosed = false;
  #makeListener: () => net.Server;
  #allClosed: IoLatch;
  #servingForever: IoFuture<void> | null = null;

  /**
   * Not for users: {@linkcode startServer}, {@linkcode startUnixServer} and
   * the loop's `createServer()` make servers. Called otherwise, throws.
   *
   * @throws {TypeError} Always, when called from outside the library.
   */
  constructor(
    token: symbol,
    loop: EventLoop,
    protocolFactory: () => Protocol | BufferedProtocol,
    address: ServerAddress,
    options: ServerOptions,
  ) {
    if (token !== MADE_INSIDE) {
      throw new TypeError(
        "Server objects are made by startServer() and the loop's createServer()",
      );
    }
    this.#loop = loop;
    this.#protocolFactory = protocolFactory;
    this.#address = address;
    this.#backlog = options.backlog ?? DEFAULT_BACKLOG;
    this.#reusePort = options.reusePort === true;
    this.#allClosed = new IoLatch(loop);
    const onConnection = (socket: net.Socket) => this.#accept(socket);
    // A TLS server is not half-open until the handshake is done: on Node, a
    // client that gives up mid-handshake (an untrusted certificate) only
    // half-closes, and a half-open socket that never got its handshake
    // would never close, nor let waitClosed() return. #accept() makes the
    // connection half-open once it is secure.
    this.#makeListener = () => {
      const listener = options.tls === undefined
        ? net.createServer({ allowHalfOpen: true }, onConnection)
        : tls.createServer(
          { ...nodeTlsOptions(options.tls), allowHalfOpen: false },
          onConnection,
        );
      // A failed TLS handshake concerns that client only.
      listener.on("tlsClientError", () => {});
      return listener;
    };
  }

  /** The loop the server belongs to. */
  getLoop(): EventLoop {
    return this.#loop;
  }

  /**
   * The listening sockets, each with `getsockname()`: one per address
   * (with host `null`, IPv4's `0.0.0.0` and IPv6's `::`).
   */
  get sockets(): ServerSocket[] {
    if (!this.#listening || this.#closed) return [];
    return this.#listeners.map((listener) => ({
      getsockname(): SocketAddress {
        const address = listener.address();
        if (address === null) return "";
        if (typeof address === "string") return address;
        return [address.address, address.port];
      },
    }));
  }

  /** Whether the server accepts connections. */
  isServing(): boolean {
    return this.#listening && !this.#closed;
  }

  /** Starts accepting connections, if it does not already. */
  async startServing(): Promise<void> {
    if (this.#closed) throw new RuntimeError(`Server is closed`);
    if (!this.#listening) await this.#startListening();
  }

  /**
   * Accepts connections until the task running this is cancelled; then
   * closes the server and waits for it, and re-throws the cancellation.
   */
  async serveForever(): Promise<void> {
    if (this.#servingForever !== null) {
      throw new RuntimeError("serveForever() is already running");
    }
    if (this.#closed) throw new RuntimeError("Server is closed");
    await this.startServing();
    const forever = this.#servingForever = new IoFuture<void>(this.#loop);
    try {
      await forever;
    } catch (error) {
      if (error instanceof CancelledError) {
        this.close();
        await this.waitClosed().catch(() => {});
      }
      throw error;
    } finally {
      this.#servingForever = null;
    }
  }

  /**
   * Stops listening. Connections already accepted go on; see
   * {@linkcode Server.closeClients}.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    untrackResource(this.#loop, this.#owned);
    let open = this.#listening ? this.#listeners.length : 0;
    if (open === 0) this.#listenerClosed = true;
    for (let i = 0; open > 0 && i < this.#listeners.length; i++) {
      this.#listeners[i].close(() => {
        if (--open > 0) return;
        this.#listenerClosed = true;
        this.#checkAllClosed();
      });
    }
    this.#servingForever?.cancel();
    this.#checkAllClosed();
  }

  /** Closes every client connection (their buffers are flushed first). */
  closeClients(): void {
    for (const transport of [...this.#clients]) transport.close();
  }

  /** Aborts every client connection at once. */
  abortClients(): void {
    for (const transport of [...this.#clients]) transport.abort();
  }

  /** Waits until the server is closed and all its connections have ended. */
  async waitClosed(): Promise<void> {
    await this.#allClosed.wait();
  }

  /** Closes the server and its clients, and waits: `await using server = …`. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    this.closeClients();
    await this.waitClosed();
  }

  #accept(socket: net.Socket): void {
    const loop = this.#loop;
    if (this.#closed || loop.isClosed()) {
      socket.destroy();
      return;
    }
    socket.on("error", () => {}); // until the transport takes over
    // Half-open from here on, as the TCP server's sockets are: the protocol
    // answers an end of stream before the transport closes.
    socket.allowHalfOpen = true;
    let protocol: Protocol | BufferedProtocol;
    try {
      protocol = this.#protocolFactory();
    } catch (error) {
      loop.callExceptionHandler({
        message: "Error in the server's protocol factory",
        exception: error,
      });
      socket.destroy();
      return;
    }
    const extra = streamExtraInfo(socket, null, this.#address.path ?? null);
    this.#clients.add(
      new SocketTransport(loop, socket, protocol, extra, this, null),
    );
  }

  #owned: OwnedResource = {
    describe: () => {
      const where = this.sockets[0]?.getsockname();
      return `server listening on ${
        Array.isArray(where) ? where.join(":") : where
      }`;
    },
    release: () => this.close(),
  };

  #checkAllClosed(): void {
    if (this.#closed && this.#listenerClosed && this.#clients.size === 0) {
      this.#allClosed.set();
    }
  }

  // Opens the listening sockets: all of them, or none (a failure closes
  // those already open, and the server with them).
  async #startListening(): Promise<void> {
    const { hosts, port, path } = this.#address;
    const loop = this.#loop;
    const listeners: net.Server[] = [];
    try {
      if (path !== undefined) {
        removeStaleUnixSocket(path);
        listeners.push(
          await listenOn(loop, this.#makeListener(), {
            path,
            backlog: this.#backlog,
          }),
        );
      }
      for (const host of hosts ?? []) {
        try {
          listeners.push(
            await listenOn(loop, this.#makeListener(), {
              host,
              port,
              backlog: this.#backlog,
              reusePort: this.#reusePort,
              // As asyncio: an IPv6 socket serves IPv6 only, so that
              // IPv4's wildcard can take the same port.
              ipv6Only: net.isIPv6(host),
            }),
          );
        } catch (error) {
          // As asyncio (bpo-30945): a family the system lacks is skipped.
          const code = (error as { code?: string }).code;
          if (code !== "EADDRNOTAVAIL" && code !== "EAFNOSUPPORT") {
            throw error;
          }
          if (hosts!.length === 1) throw error;
        }
      }
    } catch (error) {
      for (const listener of listeners) listener.close();
      this.#closed = this.#listenerClosed = true;
      throw error;
    }
    this.#listeners = listeners;
    this.#listening = true;
    trackResource(this.#loop, this.#owned);
    // Errors after listening (rare: EMFILE on accept) go to the handler.
    for (const listener of listeners) {
      listener.on("error", (error: Error) => {
        if (!loop.isClosed()) {
          loop.callExceptionHandler({
            message: "Error on a listening socket",
            exception: error,
          });
        }
      });
    }
  }

  #detach(transport: SocketTransport): void {
    this.#clients.delete(transport);
    this.#checkAllClosed();
  }

  #attach(transport: SocketTransport): void {
    this.#clients.add(transport);
  }

  static {
    detachFromServer = (server, transport) => server.#detach(transport);
    attachToServer = (server, transport) => server.#attach(transport);
  }
}

// The listen backlog by default: Node's (asyncio's 100 drops the connections
// of a burst); the kernel caps it at its somaxconn.
const DEFAULT_BACKLOG = 511;

// Where a server listens: a Unix path, or hosts and a port.
type ServerAddress = { hosts?: string[]; port?: number; path?: string };

// Deno's node:net leaves IPV6_V6ONLY off whatever it is told: there its
// IPv6 wildcard socket also takes IPv4, and one socket serves both.
const IPV6_SERVES_IPV4 = "Deno" in globalThis;

// Every interface, as asyncio's host None or "": IPv4's and IPv6's
// wildcard addresses, a socket each.
const EVERY_INTERFACE = IPV6_SERVES_IPV4 ? ["::"] : ["0.0.0.0", "::"];

// The hosts a server listens on, from its `host` argument.
function serverHosts(host: string | readonly string[] | null): string[] {
  if (host === null || host === "") return EVERY_INTERFACE;
  if (typeof host === "string") return [host];
  return host.flatMap((h) => (h ?? "") === "" ? EVERY_INTERFACE : [h]);
}

// Listens, waiting cancellably; a listener that fails is closed.
async function listenOn(
  loop: EventLoop,
  listener: net.Server,
  options: net.ListenOptions & { reusePort?: boolean },
): Promise<net.Server> {
  await awaitRuntimeEvent(loop, listener, {
    ready: "listening",
    start: () => void listener.listen(options),
    undo: () => {
      if (listener.listening) listener.close();
    },
  });
  return listener;
}

// As asyncio: a socket file left by a server that died is removed before
// binding, but any other kind of file is an error for listen() to report.
function removeStaleUnixSocket(path: string): void {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // Nothing there, or not ours to remove: listen() reports it.
  }
}

async function createStreamServer(
  loop: EventLoop,
  protocolFactory: () => Protocol | BufferedProtocol,
  address: ServerAddress,
  options: ServerOptions,
): Promise<Server> {
  const server = new Server(
    MADE_INSIDE,
    loop,
    protocolFactory,
    address,
    options,
  );
  if (options.startServing !== false) await server.startServing();
  return server;
}

// EventLoop.createServer(): checks the arguments at the call.
function createServerOn(
  loop: EventLoop,
  protocolFactory: () => Protocol | BufferedProtocol,
  host: string | readonly string[] | null,
  port: number,
  options: ServerOptions,
): Promise<Server> {
  requireFactory(protocolFactory, "createServer()");
  requireServerArguments(host, port, options, "createServer()");
  return createStreamServer(
    loop,
    protocolFactory,
    { hosts: serverHosts(host), port },
    options,
  );
}

// EventLoop.createUnixServer(): checks the arguments at the call.
function createUnixServerOn(
  loop: EventLoop,
  protocolFactory: () => Protocol | BufferedProtocol,
  path: string,
  options: ServerOptions,
): Promise<Server> {
  requireFactory(protocolFactory, "createUnixServer()");
  requirePath(path, "createUnixServer()");
  return createStreamServer(loop, protocolFactory, { path }, options);
}

// A UDP socket as an asyncio DatagramTransport.
class UdpTransport implements DatagramTransport {
  #loop: EventLoop;
  #socket: dgram.Socket;
  #protocol: DatagramProtocol;
  #remote: [string, number] | null;
  #queuedBytes = 0;
  #closing = false;
  #closed = false;
  #extra: Record<string, unknown>;

  constructor(
    loop: EventLoop,
    socket: dgram.Socket,
    protocol: DatagramProtocol,
    remote: [string, number] | null,
    made: IoFuture<void>,
  ) {
    this.#loop = loop;
    this.#socket = socket;
    this.#protocol = protocol;
    this.#remote = remote;
    const local = socket.address();
    this.#extra = {
      sockname: [local.address, local.port],
      peername: remote ?? undefined,
      socket,
    };
    postToLoop(loop, () => {
      this.#call("connectionMade", this);
      settleIo(made, undefined);
    });
    socket.on("message", (message: Uint8Array, from: dgram.RemoteInfo) => {
      if (this.#closing) return;
      postToLoop(
        loop,
        () =>
          this.#call("datagramReceived", plainBytes(message), [
            from.address,
            from.port,
          ]),
      );
    });
    socket.on("error", (error: Error) => {
      postToLoop(loop, () => this.#call("errorReceived", error));
    });
    socket.on("close", () => {
      this.#closed = true;
      untrackResource(loop, this.#owned);
      postToLoop(loop, () => this.#call("connectionLost", null));
    });
    trackResource(loop, this.#owned);
  }

  #owned: OwnedResource = {
    describe: () => `datagram transport on ${this.#extra.sockname}`,
    release: () => this.abort(),
  };

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    const value = this.#extra[name];
    return value === undefined ? defaultValue : value;
  }

  isClosing(): boolean {
    return this.#closing;
  }

  setProtocol(protocol: BaseProtocol): void {
    this.#protocol = protocol as DatagramProtocol;
  }

  getProtocol(): BaseProtocol {
    return this.#protocol;
  }

  sendto(data: Uint8Array | string, addr?: [string, number]): void {
    requireBytes(data, "sendto()");
    const remote = this.#remote;
    if (
      remote !== null && addr !== undefined &&
      (addr[0] !== remote[0] || addr[1] !== remote[1])
    ) {
      throw new RangeError(
        `sendto(): addr must be left out or be ${remote}, got ${addr}`,
      );
    }
    if (remote === null && addr === undefined) {
      throw new TypeError(
        "sendto(): addr is required: the endpoint is not connected",
      );
    }
    if (this.#closing) return;
    const size = typeof data === "string"
      ? new TextEncoder().encode(data).length
      : data.length;
    this.#queuedBytes += size;
    const sent = (error: Error | null) => {
      this.#queuedBytes -= size;
      if (error) {
        postToLoop(this.#loop, () => this.#call("errorReceived", error));
      }
      if (this.#closing && this.#queuedBytes === 0) this.#closeSocket();
    };
    if (remote !== null) this.#socket.send(data, sent);
    else this.#socket.send(data, addr![1], addr![0], sent);
  }

  getWriteBufferSize(): number {
    return this.#queuedBytes;
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    if (this.#queuedBytes === 0) this.#closeSocket();
  }

  abort(): void {
    this.#closing = true;
    this.#closeSocket();
  }

  #closeSocket(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#socket.close();
    }
  }

  #call(method: keyof DatagramProtocol, ...args: unknown[]): void {
    const protocol = this.#protocol;
    const outcome = callProtocol(
      this.#loop,
      this,
      method,
      () => (protocol[method] as (...args: unknown[]) => void)(...args),
    );
    if (outcome instanceof ProtocolFailure && method !== "connectionLost") {
      this.abort();
    }
  }
}

async function createUdpEndpoint<P extends DatagramProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  options: DatagramEndpointOptions,
): Promise<[DatagramTransport, P]> {
  const { localAddr, remoteAddr } = options;
  const host = localAddr?.[0] ?? remoteAddr?.[0] ?? "";
  const family = options.family ?? (net.isIPv6(host) ? 6 : 4);
  const socket = dgram.createSocket({
    type: family === 6 ? "udp6" : "udp4",
    reuseAddr: options.reuseAddress === true,
  });
  // Ready once bound, and connected when there is a remote address.
  const bindAndConnect = (settle: (error?: unknown) => void) => {
    const bound = () => {
      if (options.allowBroadcast) socket.setBroadcast(true);
      if (remoteAddr === undefined) settle();
      else socket.connect(remoteAddr[1], remoteAddr[0], () => settle());
    };
    socket.bind({ port: localAddr?.[1] ?? 0, address: localAddr?.[0] }, bound);
  };
  await awaitRuntimeEvent(loop, socket, {
    start: bindAndConnect,
    undo: () => {
      try {
        socket.close();
      } catch {
        // Never bound: nothing to close.
      }
    },
  });
  let protocol: P;
  try {
    protocol = protocolFactory();
  } catch (error) {
    socket.close();
    throw error;
  }
  const remote: [string, number] | null = remoteAddr === undefined
    ? null
    : [remoteAddr[0], remoteAddr[1]];
  const transport = await awaitConnectionMade(
    loop,
    (made) => new UdpTransport(loop, socket, protocol, remote, made),
    (transport) => transport.abort(),
  );
  return [transport, protocol];
}

// EventLoop.createDatagramEndpoint(): checks the arguments at the call.
function createDatagramEndpointOn<P extends DatagramProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  options: DatagramEndpointOptions,
): Promise<[DatagramTransport, P]> {
  requireFactory(protocolFactory, "createDatagramEndpoint()");
  for (const addr of [options.localAddr, options.remoteAddr]) {
    if (addr !== undefined) {
      requireHostPort(addr[0], addr[1], "createDatagramEndpoint()");
    }
  }
  return createUdpEndpoint(loop, protocolFactory, options);
}

/**
 * What {@linkcode EventLoop.connectReadPipe} reads from: a Node-style
 * readable stream (`process.stdin`, a child's stdout, `fs.createReadStream`),
 * a web `ReadableStream` (`Deno.stdin.readable`, `Bun.stdin.stream()`), or an
 * open file descriptor number.
 *
 * @example
 * ```ts
 * import type { ReadablePipe } from "@aio/asyncio";
 * import process from "node:process";
 *
 * const pipes: ReadablePipe[] = [process.stdin, new Blob(["x"]).stream(), 0];
 * console.log(pipes.length); // 3
 * ```
 */
export type ReadablePipe = Readable | ReadableStream<Uint8Array> | number;

/**
 * What {@linkcode EventLoop.connectWritePipe} writes to: a Node-style
 * writable stream (`process.stdout`), a web `WritableStream`, or an open
 * file descriptor number.
 *
 * @example
 * ```ts
 * import type { WritablePipe } from "@aio/asyncio";
 * import process from "node:process";
 *
 * const pipes: WritablePipe[] = [process.stdout, new WritableStream(), 1];
 * console.log(pipes.length); // 3
 * ```
 */
export type WritablePipe = Writable | WritableStream<Uint8Array> | number;

function readableOf(pipe: unknown): Readable {
  if (typeof pipe === "number" && Number.isInteger(pipe) && pipe >= 0) {
    return fs.createReadStream("", { fd: pipe, autoClose: true });
  }
  if (pipe instanceof ReadableStream) return NodeReadable.fromWeb(pipe);
  if (
    pipe !== null && typeof pipe === "object" &&
    typeof (pipe as Readable).on === "function" &&
    typeof (pipe as Readable).pause === "function"
  ) return pipe as Readable;
  throw new TypeError(
    `connectReadPipe(): pipe must be a readable stream or a file descriptor, got ${
      describeValue(pipe)
    }`,
  );
}

function writableOf(pipe: unknown): Writable {
  if (typeof pipe === "number" && Number.isInteger(pipe) && pipe >= 0) {
    return fs.createWriteStream("", { fd: pipe, autoClose: true });
  }
  if (pipe instanceof WritableStream) return NodeWritable.fromWeb(pipe);
  if (
    pipe !== null && typeof pipe === "object" &&
    typeof (pipe as Writable).write === "function" &&
    typeof (pipe as Writable).end === "function"
  ) return pipe as Writable;
  throw new TypeError(
    `connectWritePipe(): pipe must be a writable stream or a file descriptor, got ${
      describeValue(pipe)
    }`,
  );
}

// The read end of a pipe (stdin, a FIFO, any readable stream) as asyncio's
// read pipe transport: data goes to dataReceived; at the end, eofReceived
// and then connectionLost(null); an error ends it with connectionLost(exc).
class ReadPipeTransport implements ReadTransport {
  #loop: EventLoop;
  #stream: Readable;
  #protocol: Protocol;
  #inbox: Inbox<Uint8Array | typeof END_OF_STREAM>;
  #error: Error | null = null;
  #closing = false;
  #paused = false;
  #lost = false;

  constructor(
    loop: EventLoop,
    stream: Readable,
    protocol: Protocol,
    made: IoFuture<void>,
  ) {
    this.#loop = loop;
    this.#stream = stream;
    this.#protocol = protocol;
    // Held until connectionMade has run.
    this.#inbox = new Inbox(loop, this.#deliver, true);
    postToLoop(loop, this.#connectionMade, made);
    stream.on("data", (chunk: Uint8Array | string) => {
      if (!this.#closing) this.#inbox.push(plainBytes(toBytes(chunk)));
    });
    stream.on("end", () => this.#inbox.push(END_OF_STREAM));
    stream.on("error", (error: Error) => {
      this.#error ??= error;
      this.#inbox.push(END_OF_STREAM);
    });
    stream.on("close", () => this.#inbox.push(END_OF_STREAM));
  }

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return name === "pipe" ? this.#stream : defaultValue;
  }

  isClosing(): boolean {
    return this.#closing;
  }

  setProtocol(protocol: BaseProtocol): void {
    this.#protocol = protocol as Protocol;
  }

  getProtocol(): BaseProtocol {
    return this.#protocol;
  }

  isReading(): boolean {
    return !this.#closing && !this.#paused;
  }

  pauseReading(): void {
    if (this.#closing || this.#paused) return;
    this.#paused = true;
    this.#inbox.pause();
    this.#stream.pause();
  }

  resumeReading(): void {
    if (this.#closing || !this.#paused) return;
    this.#paused = false;
    this.#inbox.resume();
    this.#stream.resume();
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#inbox.clear();
    this.#stream.destroy();
    postToLoop(this.#loop, this.#connectionLost);
  }

  #connectionMade = (made: IoFuture<void>): void => {
    const outcome = callProtocol(
      this.#loop,
      this,
      "connectionMade",
      () => this.#protocol.connectionMade(this as unknown as Transport),
    );
    if (outcome instanceof ProtocolFailure) {
      this.close();
      settleIo(made, outcome.error);
      return;
    }
    settleIo(made, undefined);
    if (!this.#paused) this.#inbox.resume();
  };

  #deliver = (item: Uint8Array | typeof END_OF_STREAM): void => {
    if (this.#closing) return;
    const protocol = this.#protocol;
    if (item !== END_OF_STREAM) {
      const outcome = callProtocol(
        this.#loop,
        this,
        "dataReceived",
        () => protocol.dataReceived(item),
      );
      if (outcome instanceof ProtocolFailure) this.close();
      return;
    }
    this.#closing = true;
    if (this.#error === null) {
      // The end of the pipe ends the transport whatever eofReceived says.
      callProtocol(
        this.#loop,
        this,
        "eofReceived",
        () => protocol.eofReceived(),
      );
    }
    this.#connectionLost();
  };

  #connectionLost = (): void => {
    if (this.#lost) return;
    this.#lost = true;
    callProtocol(
      this.#loop,
      this,
      "connectionLost",
      () => this.#protocol.connectionLost(this.#error),
    );
  };
}

// The write end of a pipe (stdout, a FIFO, any writable stream) as
// asyncio's write pipe transport, with write flow control. writeEof()
// closes it, as asyncio's does: a pipe has no half-close.
class WritePipeTransport implements WriteTransport {
  #loop: EventLoop;
  #end: StreamWriteEnd;
  #protocol: BaseProtocol;
  #error: Error | null = null;
  #lost = false;

  constructor(
    loop: EventLoop,
    stream: Writable,
    protocol: BaseProtocol,
    made: IoFuture<void>,
  ) {
    this.#loop = loop;
    this.#protocol = protocol;
    this.#end = new StreamWriteEnd(loop, this, stream, () => this.#protocol);
    postToLoop(loop, this.#connectionMade, made);
    // The reader went away (EPIPE) or the stream failed: connectionLost
    // reports it.
    stream.on("error", (error: Error) => {
      this.#error ??= error;
      this.#end.closing = true;
      postToLoop(loop, this.#connectionLost);
    });
    stream.on("close", () => postToLoop(loop, this.#connectionLost));
    stream.on("finish", () => postToLoop(loop, this.#connectionLost));
  }

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return this.#end.extraInfo(name, defaultValue);
  }

  isClosing(): boolean {
    return this.#end.closing;
  }

  setProtocol(protocol: BaseProtocol): void {
    this.#protocol = protocol;
  }

  getProtocol(): BaseProtocol {
    return this.#protocol;
  }

  write(data: Uint8Array | string): void {
    this.#end.write(data);
  }

  writelines(list: Iterable<Uint8Array | string>): void {
    for (const data of list) this.#end.write(data);
  }

  writeEof(): void {
    this.#end.close();
  }

  canWriteEof(): boolean {
    return true;
  }

  close(): void {
    this.#end.close();
  }

  abort(): void {
    this.#end.abort();
    postToLoop(this.#loop, this.#connectionLost);
  }

  getWriteBufferSize(): number {
    return this.#end.stream.writableLength;
  }

  getWriteBufferLimits(): [low: number, high: number] {
    return this.#end.flow.limits();
  }

  setWriteBufferLimits(high?: number, low?: number): void {
    this.#end.flow.setLimits(high, low);
  }

  #connectionMade = (made: IoFuture<void>): void => {
    const outcome = callProtocol(
      this.#loop,
      this,
      "connectionMade",
      () => this.#protocol.connectionMade(this),
    );
    if (outcome instanceof ProtocolFailure) {
      this.abort();
      settleIo(made, outcome.error);
      return;
    }
    settleIo(made, undefined);
  };

  #connectionLost = (): void => {
    if (this.#lost) return;
    this.#lost = true;
    this.#end.closing = true;
    callProtocol(
      this.#loop,
      this,
      "connectionLost",
      () => this.#protocol.connectionLost(this.#error),
    );
  };
}

async function connectPipe<T extends BaseTransport, P extends BaseProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  makeTransport: (protocol: P, made: IoFuture<void>) => T,
): Promise<[T, P]> {
  const protocol = protocolFactory();
  const transport = await awaitConnectionMade(
    loop,
    (made) => makeTransport(protocol, made),
  );
  return [transport, protocol];
}

function connectReadablePipe<P extends Protocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  stream: Readable,
): Promise<[ReadTransport, P]> {
  return connectPipe(
    loop,
    protocolFactory,
    (protocol, made) => new ReadPipeTransport(loop, stream, protocol, made),
  );
}

function connectWritablePipe<P extends BaseProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  stream: Writable,
): Promise<[WriteTransport, P]> {
  return connectPipe(
    loop,
    protocolFactory,
    (protocol, made) => new WritePipeTransport(loop, stream, protocol, made),
  );
}

// EventLoop.connectReadPipe(): checks the arguments at the call.
function connectReadPipeOn<P extends Protocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  pipe: ReadablePipe,
): Promise<[ReadTransport, P]> {
  requireFactory(protocolFactory, "connectReadPipe()");
  return connectReadablePipe(loop, protocolFactory, readableOf(pipe));
}

// EventLoop.connectWritePipe(): checks the arguments at the call.
function connectWritePipeOn<P extends BaseProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  pipe: WritablePipe,
): Promise<[WriteTransport, P]> {
  requireFactory(protocolFactory, "connectWritePipe()");
  return connectWritablePipe(loop, protocolFactory, writableOf(pipe));
}

// ===========================================================================
// §14 Streams
// Holds: asyncio's high level for connections. StreamReader buffers what a
//   protocol receives and hands it out by size, line or separator;
//   StreamWriter writes through the transport and drain()s while its buffer
//   is over the high-water mark; StreamReaderProtocol joins the two to a
//   transport; openConnection, startServer and their Unix forms.
// Rule: bytes stay in the reader's buffer until a read takes them, so a read
//   cancelled while waiting loses nothing.
// Relies on: §12 I/O plumbing (DrainControl), §13 Transports and protocols,
//   §6 Tasks (a server's client callback runs as a task).
// Used by: §16 Subprocesses (Process's pipes).
// ===========================================================================

// asyncio's _DEFAULT_LIMIT: the longest line or separated chunk a reader
// takes, and half of what it buffers before pausing its transport.
const DEFAULT_STREAM_LIMIT = 64 * 1024;
// As asyncio's reader, a reader pauses its transport once it buffers this
// many times its limit, and resumes it at the limit.
const PAUSE_AT_LIMITS = 2;
// A reader's buffer grows to at least this many bytes, doubling from there:
// small chunks then stop costing a reallocation each.
const MIN_READ_BUFFER = 4096;

const encoder = new TextEncoder();

function toBytes(data: Uint8Array | string): Uint8Array {
  return typeof data === "string" ? encoder.encode(data) : data;
}

// The index of `needle` in `haystack` at or after `from`, or -1.
function indexOfBytes(
  haystack: Uint8Array,
  needle: Uint8Array,
  from: number,
): number {
  const first = needle[0];
  const last = haystack.length - needle.length;
  for (let i = haystack.indexOf(first, from); i !== -1 && i <= last;) {
    let j = 1;
    while (j < needle.length && haystack[i + j] === needle[j]) j++;
    if (j === needle.length) return i;
    i = haystack.indexOf(first, i + 1);
  }
  return -1;
}

const NO_BYTES: Uint8Array = new Uint8Array(0);

let feedOwnedData: (reader: StreamReader, data: Uint8Array) => void;
let replaceReaderTransport: (
  reader: StreamReader,
  transport: ReadTransport,
) => void;

/**
 * Reads from a connection or a child's pipe, with a buffer: asyncio's
 * `StreamReader`. {@linkcode openConnection} and the servers make them;
 * `feedData()` and `feedEof()` fill one by hand, for tests.
 *
 * Every read waits cancellably, and a cancelled read consumes nothing: the
 * bytes stay buffered for the next read. The `limit` (default 64 KiB) bounds
 * how long a line or separated chunk may be, and how much is buffered before
 * the transport is paused.
 *
 * @example Reading lines
 * ```ts
 * import { StreamReader } from "@aio/asyncio";
 *
 * const reader = new StreamReader();
 * reader.feedData(new TextEncoder().encode("one\ntwo\n"));
 * reader.feedEof();
 * for await (const line of reader) {
 *   console.log(new TextDecoder().decode(line)); // "one\n", then "two\n"
 * }
 * ```
 */
export class StreamReader {
  #limit: number;
  #loop: EventLoop;
  #buffer: Uint8Array = NO_BYTES;
  #start = 0;
  #end = 0;
  #eof = false;
  #waiter: IoFuture<void> | null = null;
  #exception: Error | null = null;
  #transport: ReadTransport | null = null;
  #paused = false;

  /**
   * A reader whose lines may be up to `limit` bytes, on `loop` (default: the
   * running loop, or the default loop).
   */
  constructor(limit: number = DEFAULT_STREAM_LIMIT, loop?: EventLoop) {
    if (typeof limit !== "number" || !(limit > 0)) {
      throw new RangeError(
        `StreamReader(): limit must be a positive number of bytes, got ${
          describeValue(limit)
        }`,
      );
    }
    this.#limit = limit;
    this.#loop = loop ?? getEventLoop();
  }

  /** The error the stream failed with, or `null`. */
  exception(): Error | null {
    return this.#exception;
  }

  /** Fails the stream: reads waiting or to come throw `error`. */
  setException(error: Error): void {
    this.#exception = error;
    const waiter = this.#waiter;
    if (waiter !== null && !waiter.done()) waiter.setException(error);
  }

  /** Attaches the transport, so the reader can pause it when it is full. */
  setTransport(transport: ReadTransport): void {
    if (this.#transport !== null) {
      throw new RuntimeError("StreamReader already has a transport");
    }
    this.#transport = transport;
  }

  /** Adds `data` to the buffer and wakes a waiting read. */
  feedData(data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(
        `feedData(): data must be a Uint8Array, got ${describeValue(data)}`,
      );
    }
    this.#feed(data, false);
  }

  // `owned`: the bytes are the reader's to keep (a chunk fresh from the
  // runtime, nobody else's), so an empty buffer may adopt them uncopied.
  #feed(data: Uint8Array, owned: boolean): void {
    if (this.#eof) throw new RuntimeError("feedData() after feedEof()");
    if (data.length === 0) return;
    if (owned && this.#start === this.#end) {
      this.#buffer = data;
      this.#start = 0;
      this.#end = data.length;
    } else {
      this.#append(data);
    }
    this.#wakeWaiter();
    if (
      this.#transport !== null && !this.#paused &&
      this.#length > PAUSE_AT_LIMITS * this.#limit
    ) {
      this.#transport.pauseReading();
      this.#paused = true;
    }
  }

  /** Marks the end of the stream and wakes a waiting read. */
  feedEof(): void {
    this.#eof = true;
    this.#wakeWaiter();
  }

  /** Whether the stream has ended and the buffer is empty. */
  atEof(): boolean {
    return this.#eof && this.#length === 0;
  }

  /**
   * Reads up to `n` bytes, waiting until at least one is there; with `n`
   * negative (the default), reads everything until the end. At the end of
   * the stream, returns an empty array.
   */
  read(n = -1): Promise<Uint8Array> {
    requireInteger(n, "read()", "n");
    return this.#read(n);
  }

  async #read(n: number): Promise<Uint8Array> {
    this.#throwIfFailed();
    if (n === 0) return new Uint8Array(0);
    if (n < 0) {
      while (!this.#eof) await this.#waitForData("read");
      return this.#take(this.#length);
    }
    if (this.#length === 0 && !this.#eof) await this.#waitForData("read");
    return this.#take(Math.min(n, this.#length));
  }

  /**
   * Reads one line, up to and including `\n`. At the end of the stream,
   * returns what is left (maybe empty, maybe without `\n`).
   *
   * @throws {RangeError} when the line is longer than the limit; the line
   * is discarded (what was read of it, and the rest when it is there).
   */
  async readline(): Promise<Uint8Array> {
    try {
      return await this.#readuntil(NEWLINES);
    } catch (error) {
      if (error instanceof IncompleteReadError) return error.partial;
      if (!(error instanceof LimitOverrunError)) throw error;
      const buffered = this.#view();
      const consumed = error.consumed;
      const separatorThere = indexOfBytes(buffered, NEWLINE, consumed) ===
        consumed;
      this.#take(separatorThere ? consumed + 1 : this.#length);
      throw new RangeError(error.message, { cause: error });
    }
  }

  /**
   * Reads up to and including `separator` (a string is taken as UTF-8). Given
   * an array of separators, reads up to the first match to end in the
   * stream (asyncio 3.13's tuple of separators).
   *
   * @throws {IncompleteReadError} at the end of the stream without the
   * separator; `partial` holds the rest of the stream, which is consumed.
   * @throws {LimitOverrunError} when no separator is found within the limit;
   * the data stays in the buffer, and `consumed` says how much to skip.
   */
  readuntil(
    separator: Uint8Array | string | Array<Uint8Array | string> = NEWLINE,
  ): Promise<Uint8Array> {
    return this.#readuntil(separatorsOf(separator));
  }

  async #readuntil(separators: Uint8Array[]): Promise<Uint8Array> {
    this.#throwIfFailed();
    const shortest = separators[0].length;
    const longest = separators[separators.length - 1].length;
    let offset = 0;
    let found: number;
    let sepLength = 0;
    for (;;) {
      const buffered = this.#view();
      if (buffered.length - offset >= shortest) {
        // As asyncio 3.13: of several separators, the match that ends first
        // wins (the shortest, when two end at the same byte).
        found = -1;
        let end = Infinity;
        for (const sep of separators) {
          const at = sep.length === 1
            ? buffered.indexOf(sep[0], offset)
            : indexOfBytes(buffered, sep, offset);
          if (at !== -1 && at + sep.length < end) {
            end = at + sep.length;
            found = at;
            sepLength = sep.length;
          }
        }
        if (found !== -1) break;
        offset = Math.max(0, buffered.length + 1 - longest);
        if (offset > this.#limit) {
          throw new LimitOverrunError(
            "Separator is not found, and chunk exceed the limit",
            offset,
          );
        }
      }
      if (this.#eof) {
        throw new IncompleteReadError(this.#take(this.#length), null);
      }
      await this.#waitForData("readuntil");
    }
    if (found > this.#limit) {
      throw new LimitOverrunError(
        "Separator is found, but chunk is longer than limit",
        found,
      );
    }
    return this.#take(found + sepLength);
  }

  /**
   * Reads exactly `n` bytes.
   *
   * @throws {IncompleteReadError} when the stream ends first; `partial`
   * holds the bytes there were, which are consumed.
   */
  readexactly(n: number): Promise<Uint8Array> {
    requireInteger(n, "readexactly()", "n", 0);
    return this.#readexactly(n);
  }

  async #readexactly(n: number): Promise<Uint8Array> {
    this.#throwIfFailed();
    while (this.#length < n) {
      if (this.#eof) {
        throw new IncompleteReadError(this.#take(this.#length), n);
      }
      await this.#waitForData("readexactly");
    }
    return this.#take(n);
  }

  /** Iterates over the lines, as `readline()` reads them, to the end. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      const line = await this.readline();
      if (line.length === 0) return;
      yield line;
    }
  }

  get #length(): number {
    return this.#end - this.#start;
  }

  #view(): Uint8Array {
    return this.#buffer.subarray(this.#start, this.#end);
  }

  #append(data: Uint8Array): void {
    const length = this.#length;
    if (this.#end + data.length > this.#buffer.length) {
      if (length + data.length <= this.#buffer.length / 2) {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      } else {
        const grown = new Uint8Array(
          Math.max(
            2 * this.#buffer.length,
            length + data.length,
            MIN_READ_BUFFER,
          ),
        );
        grown.set(this.#view());
        this.#buffer = grown;
      }
      this.#start = 0;
      this.#end = length;
    }
    this.#buffer.set(data, this.#end);
    this.#end += data.length;
  }

  // Removes and returns the first `n` bytes, resuming a paused transport
  // once the buffer is back under the limit.
  #take(n: number): Uint8Array {
    let out: Uint8Array;
    if (n === this.#end - this.#start) {
      // Everything: hand the bytes over uncopied and let the buffer go, so
      // that nothing written later can change what the caller holds.
      out = this.#buffer.subarray(this.#start, this.#end);
      this.#buffer = NO_BYTES;
      this.#start = this.#end = 0;
    } else {
      out = this.#buffer.slice(this.#start, this.#start + n);
      this.#start += n;
    }
    if (this.#paused && this.#length <= this.#limit) {
      this.#paused = false;
      this.#transport!.resumeReading();
    }
    return out;
  }

  #throwIfFailed(): void {
    if (this.#exception !== null) throw this.#exception;
  }

  // start_tls's new transport reads; the old one, paused or not, is gone.
  #replaceTransport(transport: ReadTransport): void {
    this.#transport = transport;
    this.#paused = false;
  }

  static {
    feedOwnedData = (reader, data) => reader.#feed(data, true);
    replaceReaderTransport = (reader, transport) =>
      reader.#replaceTransport(transport);
  }

  #wakeWaiter(): void {
    const waiter = this.#waiter;
    if (waiter !== null && !waiter.done()) waiter.setResult();
  }

  async #waitForData(caller: string): Promise<void> {
    if (this.#waiter !== null) {
      throw new RuntimeError(
        `${caller}() called while another task is already waiting for incoming data`,
      );
    }
    if (this.#paused) {
      this.#paused = false;
      this.#transport!.resumeReading();
    }
    const waiter = this.#waiter = new IoFuture<void>(this.#loop);
    try {
      await waiter;
    } finally {
      if (this.#waiter === waiter) this.#waiter = null;
    }
  }
}

const NEWLINE = new Uint8Array([10]);
const NEWLINES = [NEWLINE];

// readuntil()'s separator, checked before the buffer is touched: bytes or a
// string (UTF-8), or a non-empty array of them; each non-empty. Sorted by
// length, shortest first.
function separatorsOf(separator: unknown): Uint8Array[] {
  const one = (value: unknown, argument: string): Uint8Array => {
    if (typeof value !== "string" && !(value instanceof Uint8Array)) {
      throw new TypeError(
        `readuntil(): ${argument} must be a Uint8Array or a string, got ${
          describeValue(value)
        }`,
      );
    }
    const bytes = toBytes(value);
    if (bytes.length === 0) {
      throw new RangeError(`readuntil(): ${argument} must not be empty`);
    }
    return bytes;
  };
  if (!Array.isArray(separator)) return [one(separator, "separator")];
  if (separator.length === 0) {
    throw new RangeError("readuntil(): separator must not be an empty array");
  }
  return separator.map((item, i) => one(item, `separator[${i}]`))
    .sort((a, b) => a.length - b.length);
}

/**
 * The callback a stream server runs for each client: it gets the client's
 * reader and writer, and runs as a task of its own.
 */
export type ClientConnectedCallback = (
  reader: StreamReader,
  writer: StreamWriter,
) => unknown;

// Points a StreamReaderProtocol (and its reader) at the transport that
// start_tls made; other protocols need nothing.
let adoptTransport: (protocol: BaseProtocol, transport: Transport) => void;
// Whether a StreamReaderProtocol is a server's (it has a client callback).
let isServerProtocol: (protocol: BaseProtocol) => boolean;

/**
 * The protocol that joins a transport to a {@linkcode StreamReader}: what
 * arrives is fed to the reader, and the transport's flow control reaches
 * {@linkcode StreamWriter.drain}. For a server, `clientConnected(reader,
 * writer)` runs as a task for each connection. asyncio's
 * `StreamReaderProtocol`; the stream functions make these, and
 * {@linkcode EventLoop.connectReadPipe} takes one to read stdin.
 *
 * @example Reading a pipe through a StreamReader
 * ```ts
 * import { getRunningLoop, run, StreamReader, StreamReaderProtocol } from "@aio/asyncio";
 * import { PassThrough } from "node:stream";
 *
 * await run(async () => {
 *   const pipe = new PassThrough();
 *   const reader = new StreamReader();
 *   await getRunningLoop().connectReadPipe(() => new StreamReaderProtocol(reader), pipe);
 *   pipe.end("one\ntwo\n");
 *   for await (const line of reader) console.log(new TextDecoder().decode(line));
 * });
 * ```
 */
export class StreamReaderProtocol extends Protocol {
  #drainControl: DrainControl;
  #loop: EventLoop;
  #reader: StreamReader;
  #clientConnected: ClientConnectedCallback | null;
  #clientTask: Task<unknown> | null = null;

  /**
   * A protocol feeding `reader`; `clientConnected`, for servers, runs for
   * each connection. `loop` defaults to the running loop, else the default.
   */
  constructor(
    reader: StreamReader,
    clientConnected: ClientConnectedCallback | null = null,
    loop?: EventLoop,
  ) {
    super();
    if (!(reader instanceof StreamReader)) {
      throw new TypeError(
        `StreamReaderProtocol(): reader must be a StreamReader, got ${
          describeValue(reader)
        }`,
      );
    }
    if (clientConnected !== null) {
      requireFunction(
        clientConnected,
        "StreamReaderProtocol()",
        "clientConnected",
      );
    }
    this.#loop = loop ?? getEventLoop();
    this.#reader = reader;
    this.#clientConnected = clientConnected;
    this.#drainControl = new DrainControl(this.#loop);
    drainControls.set(this, this.#drainControl);
  }

  /** Attaches the transport to the reader; for a server, starts the client. */
  override connectionMade(transport: Transport): void {
    this.#reader.setTransport(transport);
    const clientConnected = this.#clientConnected;
    if (clientConnected === null) return;
    const reader = this.#reader;
    const writer = new StreamWriter(transport, this, reader, this.#loop);
    const task = this.#loop.createTask(async () => {
      await clientConnected(reader, writer);
    });
    this.#clientTask = task;
    task.addDoneCallback(() => {
      this.#clientTask = null;
      if (task.cancelled()) return;
      const error = task.exception();
      if (error === null) return;
      this.#loop.callExceptionHandler({
        message: "Unhandled exception in the client-connected callback",
        exception: error,
        transport,
      });
      transport.close();
    });
  }

  /** Ends the reader: at its end, or failed with `exc`. */
  override connectionLost(exc: Error | null): void {
    if (exc === null) this.#reader.feedEof();
    else this.#reader.setException(exc);
    this.#drainControl.lose(exc);
  }

  /** Feeds `data` to the reader. */
  override dataReceived(data: Uint8Array): void {
    feedOwnedData(this.#reader, data);
  }

  /** Feeds the end to the reader, and keeps the writing side open. */
  override eofReceived(): boolean {
    this.#reader.feedEof();
    return true;
  }

  /** Makes `drain()` wait. */
  override pauseWriting(): void {
    this.#drainControl.pause();
  }

  /** Lets `drain()` return. */
  override resumeWriting(): void {
    this.#drainControl.resume();
  }

  static #adoptTransport(protocol: BaseProtocol, transport: Transport): void {
    if (protocol instanceof StreamReaderProtocol) {
      replaceReaderTransport(protocol.#reader, transport);
    }
  }

  static #isServerProtocol(protocol: BaseProtocol): boolean {
    return protocol instanceof StreamReaderProtocol &&
      protocol.#clientConnected !== null;
  }

  static {
    adoptTransport = StreamReaderProtocol.#adoptTransport;
    isServerProtocol = StreamReaderProtocol.#isServerProtocol;
  }
}

/**
 * Writes to a connection or a child's stdin: asyncio's `StreamWriter`.
 * `write()` never blocks; `await writer.drain()` after it waits while the
 * transport's buffer is over its high-water mark, which is how a fast
 * writer keeps pace with a slow reader.
 *
 * @example
 * ```ts
 * import { openConnection, startServer } from "@aio/asyncio";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   writer.write(await reader.read());
 *   writer.close();
 * }, "127.0.0.1", 0);
 * const [host, port] = server.sockets[0].getsockname() as [string, number];
 * const [reader, writer] = await openConnection(host, port);
 * writer.write("hello");
 * await writer.drain();
 * writer.writeEof();
 * console.log(new TextDecoder().decode(await reader.read())); // "hello"
 * writer.close();
 * await writer.waitClosed();
 * ```
 */
export class StreamWriter {
  #transport: WriteTransport;
  #protocol: BaseProtocol;
  #reader: StreamReader | null;
  #drainControl: DrainControl | null;

  /**
   * A writer over `transport`, whose `protocol` reports flow control;
   * `reader` is the same connection's reader, if any. The stream functions
   * make these. (`_loop` is accepted for asyncio's signature; unused.)
   */
  constructor(
    transport: WriteTransport,
    protocol: BaseProtocol,
    reader: StreamReader | null,
    _loop?: EventLoop,
  ) {
    this.#transport = transport;
    this.#protocol = protocol;
    this.#reader = reader;
    this.#drainControl = drainControlOf(protocol);
  }

  /**
   * Upgrades the connection to TLS in place (STARTTLS), after draining
   * what was written: asyncio's `StreamWriter.start_tls()`. The writer and
   * its reader then go over TLS. On a server's connection (a
   * {@linkcode startServer} client) this side is the TLS server and
   * `options` needs `cert` and `key`; on a client's, `ca` or the system's
   * authorities verify the server. See {@linkcode EventLoop.startTls}.
   *
   * @throws {TypeError} at the call, for a transport that cannot upgrade
   * (a pipe) or a server side without `cert` and `key`.
   * @throws {RuntimeError} at the call, when the connection is already over
   * TLS or closing.
   *
   * @example An SMTP-style client
   * ```ts
   * import type { StreamReader, StreamWriter } from "@aio/asyncio";
   *
   * async function secure(reader: StreamReader, writer: StreamWriter) {
   *   writer.write("STARTTLS\r\n");
   *   const reply = new TextDecoder().decode(await reader.readline());
   *   if (!reply.startsWith("220")) throw new Error(reply);
   *   await writer.startTls({ serverHostname: "mail.example.com" });
   *   writer.write("EHLO me\r\n"); // encrypted from here on
   * }
   * console.log(typeof secure); // "function"
   * ```
   */
  startTls(options: StartTlsOptions = {}): Promise<void> {
    const tlsOptions = {
      ...options,
      serverSide: options.serverSide ?? isServerProtocol(this.#protocol),
    };
    checkStartTlsArguments(this.#transport, this.#protocol, tlsOptions);
    return this.#startTls(tlsOptions);
  }

  async #startTls(options: StartTlsOptions): Promise<void> {
    await this.drain();
    this.#transport = await upgradeToTls(
      currentLoop(),
      this.#transport as unknown as SocketTransport,
      this.#protocol as Protocol,
      options,
    );
  }

  /** The transport underneath. */
  get transport(): WriteTransport {
    return this.#transport;
  }

  /** Queues `data` for sending (a string as UTF-8); see `drain()`. */
  write(data: Uint8Array | string): void {
    this.#transport.write(data);
  }

  /** Writes each item of `list`, in order. */
  writelines(list: Iterable<Uint8Array | string>): void {
    this.#transport.writelines(list);
  }

  /** Whether `writeEof()` is supported (not over TLS). */
  canWriteEof(): boolean {
    return this.#transport.canWriteEof();
  }

  /** Sends the end of the stream after the buffered data; reading goes on. */
  writeEof(): void {
    this.#transport.writeEof();
  }

  /** Closes the connection, after sending what is buffered. */
  close(): void {
    this.#transport.close();
  }

  /** Whether the connection is closing or closed. */
  isClosing(): boolean {
    return this.#transport.isClosing();
  }

  /**
   * Waits until the connection is closed; throws the error that ended it,
   * if one did.
   */
  async waitClosed(): Promise<void> {
    await this.#drainControl?.waitClosed();
  }

  /** As the transport's {@linkcode BaseTransport.getExtraInfo}. */
  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return this.#transport.getExtraInfo(name, defaultValue);
  }

  /**
   * Waits until the transport's write buffer is down to its low-water
   * mark; returns at once when it is not over the high-water mark.
   *
   * @throws the reader's error, if the connection failed, or a
   * `ConnectionResetError` (code `ECONNRESET`) if it is lost.
   */
  drain(): Promise<void> {
    const error = this.#reader?.exception();
    if (error) return Promise.reject(error);
    if (this.#transport.isClosing()) return this.#drainWhileClosing();
    return this.#drainControl?.drain() ?? RESOLVED_VOID;
  }

  async #drainWhileClosing(): Promise<void> {
    // Give the transport a step to report its connection lost, then raise
    // the error that ended it, if one did.
    await sleep(0);
    const error = this.#reader?.exception();
    if (error) throw error;
    await this.#drainControl?.drain();
  }
}

/** Options for {@linkcode openConnection} and {@linkcode openUnixConnection}. */
export interface StreamOptions extends ConnectionOptions {
  /** The reader's limit, in bytes; default 64 KiB. */
  limit?: number;
}

/** Options for {@linkcode startServer} and {@linkcode startUnixServer}. */
export interface StreamServerOptions extends ServerOptions {
  /** Each reader's limit, in bytes; default 64 KiB. */
  limit?: number;
}

async function openStreams(
  connect: (
    loop: EventLoop,
    factory: () => StreamReaderProtocol,
  ) => Promise<[Transport, StreamReaderProtocol]>,
  limit: number | undefined,
): Promise<[StreamReader, StreamWriter]> {
  const loop = getEventLoop();
  const reader = new StreamReader(limit, loop);
  const protocol = new StreamReaderProtocol(reader, null, loop);
  const [transport] = await connect(loop, () => protocol);
  return [reader, new StreamWriter(transport, protocol, reader, loop)];
}

/**
 * Connects to `host`:`port` over TCP (TLS with `tls`) and returns a reader
 * and a writer: asyncio's `open_connection()`. Fails at the await with the
 * system's error: `code` is `ECONNREFUSED`, `ENOTFOUND`, and so on.
 *
 * @example
 * ```ts
 * import { openConnection, startServer } from "@aio/asyncio";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   writer.write(await reader.readline());
 *   writer.close();
 * }, "127.0.0.1", 0);
 * const [host, port] = server.sockets[0].getsockname() as [string, number];
 * const [reader, writer] = await openConnection(host, port);
 * writer.write("ping\n");
 * console.log(new TextDecoder().decode(await reader.readline())); // "ping\n"
 * writer.close();
 * ```
 */
export function openConnection(
  host: string,
  port: number,
  options: StreamOptions = {},
): Promise<[StreamReader, StreamWriter]> {
  requireHostPort(host, port, "openConnection()");
  return openStreams(
    (loop, factory) => loop.createConnection(factory, host, port, options),
    options.limit,
  );
}

/**
 * Connects to the Unix socket at `path`: {@linkcode openConnection} for
 * Unix sockets.
 *
 * @example
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { openUnixConnection, startUnixServer } from "@aio/asyncio";
 *
 * const path = join(mkdtempSync(join(tmpdir(), "echo-")), "echo.sock");
 * await using _server = await startUnixServer(async (reader, writer) => {
 *   writer.write(await reader.readline());
 *   writer.close();
 * }, path);
 * const [reader, writer] = await openUnixConnection(path);
 * writer.write("over a Unix socket\n");
 * console.log(new TextDecoder().decode(await reader.readline()));
 * writer.close();
 * ```
 */
export function openUnixConnection(
  path: string,
  options: StreamOptions = {},
): Promise<[StreamReader, StreamWriter]> {
  requirePath(path, "openUnixConnection()");
  return openStreams(
    (loop, factory) => loop.createUnixConnection(factory, path, options),
    options.limit,
  );
}

function streamServerFactory(
  clientConnected: ClientConnectedCallback,
  options: StreamServerOptions,
  where: string,
): () => StreamReaderProtocol {
  requireFunction(clientConnected, where, "clientConnected");
  const loop = getEventLoop();
  return () =>
    new StreamReaderProtocol(
      new StreamReader(options.limit, loop),
      clientConnected,
      loop,
    );
}

/**
 * Listens on `host`:`port` (port 0: any free one) and runs
 * `clientConnected(reader, writer)` as a new task for each client:
 * asyncio's `start_server()`. Host `null` or `""` listens on every
 * interface, IPv4 and IPv6, with a socket each, as asyncio does (so with
 * port 0 each gets its own port; on Deno one socket serves both); a list of
 * hosts listens on each. A port in use fails at the await with code
 * `EADDRINUSE`.
 *
 * @example An echo server
 * ```ts
 * import { startServer } from "@aio/asyncio";
 *
 * await using server = await startServer(async (reader, writer) => {
 *   for await (const line of reader) {
 *     writer.write(line);
 *     await writer.drain();
 *   }
 *   writer.close();
 * }, "127.0.0.1", 0);
 * console.log("serving on", server.sockets[0].getsockname());
 * ```
 */
export function startServer(
  clientConnected: ClientConnectedCallback,
  host: string | readonly string[] | null,
  port: number,
  options: StreamServerOptions = {},
): Promise<Server> {
  const factory = streamServerFactory(
    clientConnected,
    options,
    "startServer()",
  );
  return getEventLoop().createServer(factory, host, port, options);
}

/**
 * {@linkcode startServer} on a Unix socket at `path`. A socket file left
 * there by an earlier server is replaced.
 *
 * @example
 * ```ts
 * import { mkdtempSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
 * import { startUnixServer } from "@aio/asyncio";
 *
 * const path = join(mkdtempSync(join(tmpdir(), "echo-")), "echo.sock");
 * await using server = await startUnixServer(async (reader, writer) => {
 *   writer.write(await reader.read());
 *   writer.close();
 * }, path);
 * console.log(server.sockets[0].getsockname() === path); // true
 * ```
 */
export function startUnixServer(
  clientConnected: ClientConnectedCallback,
  path: string,
  options: StreamServerOptions = {},
): Promise<Server> {
  const factory = streamServerFactory(
    clientConnected,
    options,
    "startUnixServer()",
  );
  return getEventLoop().createUnixServer(factory, path, options);
}

// ===========================================================================
// §15 Signals
// Holds: signal names and numbers (signalName), and the loop's signal
//   handlers behind EventLoop.addSignalHandler/removeSignalHandler.
// Rule: a handler is a node:process listener that runs the callback on its
//   loop with callSoon; a closed loop's listeners come off (EventLoop.close()
//   removes them, and one that fires after the close removes itself), so the
//   signal has its default effect again.
// Relies on: §4 Event loop, §2 Argument checks. Used by: EventLoop's signal
//   methods and close(), §16 Subprocesses (sendSignal, exit statuses).
// ===========================================================================

// The signals this system knows, by name.
const SIGNALS = osConstants.signals as Record<string, number>;

// A signal's name, from its name or number: node:process and
// node:child_process take names everywhere.
function signalName(signal: unknown, where: string): NodeJS.Signals {
  if (typeof signal === "string" && Object.hasOwn(SIGNALS, signal)) {
    return signal as NodeJS.Signals;
  }
  if (typeof signal === "number") {
    for (const name in SIGNALS) {
      if (SIGNALS[name] === signal) return name as NodeJS.Signals;
    }
  }
  throw new RangeError(
    `${where}: unknown signal ${
      describeValue(signal)
    }: give a name such as "SIGTERM", or its number`,
  );
}

// A loop's signal handlers, by signal name: each is a node:process
// listener that runs the callback on the loop.
type SignalListeners = Map<string, () => void>;

function addSignalListener(
  loop: EventLoop,
  listeners: SignalListeners,
  signal: string | number,
  callback: (...args: never[]) => unknown,
  args: unknown[],
): void {
  const name = signalName(signal, "addSignalHandler()");
  requireFunction(callback, "addSignalHandler()", "callback");
  if (name === "SIGKILL" || name === "SIGSTOP") {
    throw new RuntimeError(`${name} cannot be caught`);
  }
  if (loop.isClosed()) throw new RuntimeError("Event loop is closed");
  removeSignalListener(listeners, name);
  const listener = () => {
    if (loop.isClosed()) {
      // The loop is gone: let the signal have its default effect again.
      removeSignalListener(listeners, name);
      return;
    }
    loop.callSoon(callback as (...args: unknown[]) => unknown, ...args);
  };
  process.on(name, listener);
  listeners.set(name, listener);
}

function removeSignalListener(
  listeners: SignalListeners,
  signal: string | number,
): boolean {
  const name = signalName(signal, "removeSignalHandler()");
  const listener = listeners.get(name);
  if (listener === undefined) return false;
  process.off(name, listener);
  listeners.delete(name);
  return true;
}

// ===========================================================================
// §16 Subprocesses
// Holds: child processes. Low level: ChildProcessTransport over the runtime's
//   node:child_process, with one pipe transport per piped stdio stream,
//   feeding a SubprocessProtocol. High level: Process, whose stdin is a
//   StreamWriter and stdout/stderr StreamReaders; createSubprocessExec and
//   createSubprocessShell.
// Rule: the protocol hears nothing before its connectionMade; its pipes are
//   lost before the exit is told, and connectionLost comes last, as asyncio.
// Relies on: §12 I/O plumbing, §13 Transports and protocols, §14 Streams,
//   §15 Signals (signal names). Used by: EventLoop.subprocessExec/Shell.
// ===========================================================================

/**
 * For a child's `stdin`, `stdout` or `stderr`: connect it to a pipe, so
 * that {@linkcode Process} gets a writer or reader for it.
 *
 * @example
 * ```ts
 * import { createSubprocessExec, PIPE } from "@aio/asyncio";
 *
 * const child = await createSubprocessExec("echo", ["hi"], { stdout: PIPE });
 * console.log(await child.stdout!.read()); // the bytes of "hi\n"
 * await child.wait();
 * ```
 */
export const PIPE: -1 = -1;

/**
 * For a child's `stderr`: send it wherever `stdout` goes. With `stdout:
 * PIPE`, both arrive on `stdout`, interleaved as the chunks come.
 *
 * @example
 * ```ts
 * import { createSubprocessShell, PIPE, STDOUT } from "@aio/asyncio";
 *
 * const child = await createSubprocessShell("echo out; echo err >&2", {
 *   stdout: PIPE,
 *   stderr: STDOUT,
 * });
 * const [out] = await child.communicate();
 * console.log(new TextDecoder().decode(out!)); // both lines
 * ```
 */
export const STDOUT: -2 = -2;

/**
 * For a child's `stdin`, `stdout` or `stderr`: connect it to the null
 * device.
 *
 * @example
 * ```ts
 * import { createSubprocessExec, DEVNULL } from "@aio/asyncio";
 *
 * const child = await createSubprocessExec("ls", [], { stdout: DEVNULL });
 * console.log(await child.wait()); // 0
 * ```
 */
export const DEVNULL: -3 = -3;

/**
 * Options for starting a child process. Each of `stdin`, `stdout` and
 * `stderr` is {@linkcode PIPE}, {@linkcode DEVNULL}, `STDOUT` (for `stderr`
 * only), an open file descriptor number, or `null`/left out to share this
 * process's own.
 */
export interface SubprocessOptions {
  /** The child's standard input. */
  stdin?: number | null;
  /** The child's standard output. */
  stdout?: number | null;
  /** The child's standard error. */
  stderr?: number | null;
  /** The directory to run in; default this process's. */
  cwd?: string;
  /** The whole environment of the child; default this process's. */
  env?: Record<string, string>;
  /** For {@linkcode Process}: the readers' limit, in bytes; default 64 KiB. */
  limit?: number;
}

type NodeStdio = "pipe" | "ignore" | "inherit" | number;

function stdioFor(value: unknown, name: string, where: string): NodeStdio {
  if (value === null || value === undefined) return "inherit";
  if (value === PIPE) return "pipe";
  if (value === DEVNULL) return "ignore";
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) {
    return value;
  }
  throw new RangeError(
    `${where}: options.${name} must be PIPE, DEVNULL${
      name === "stderr" ? ", STDOUT" : ""
    }, a file descriptor or null, got ${describeValue(value)}`,
  );
}

function exitStatus(code: number | null, signal: string | null): number {
  if (code !== null) return code;
  return -(SIGNALS[signal ?? ""] ?? 0);
}

// How long a child's exit waits, at most, for its output pipes to end
// before it is told (real ms): Node reports the end of a pipe some
// milliseconds after the exit.
const EXIT_WAITS_FOR_PIPES_MS = 1000;

// What a pipe transport tells the child's transport: an object the child's
// transport keeps private, so that none of it is on a user's transport.
interface PipeOwner {
  whenStarted(callback: () => void): void;
  pipeData(fd: number, data: Uint8Array): void;
  pipeLost(fd: number, error: Error | null): void;
  pipeEnded(): void;
  protocol(): BaseProtocol;
}

// A child's pipe starts delivering: see ChildProcessTransport's #start().
let startPipeDelivery: (pipe: PipeReadTransport) => void;
// Whether a child's pipe has seen the end of all its runtime streams.
let hasPipeEnded: (pipe: PipeReadTransport) => boolean;

// A child's stdout or stderr pipe; with stderr sent to stdout, both runtime
// streams feed this one pipe, which ends when both have.

class PipeReadTransport implements ReadTransport {
  #streams: Readable[];
  #fd: number;
  #owner: PipeOwner;
  #inbox: Inbox<Uint8Array | typeof END_OF_STREAM>;
  #open: number;
  #error: Error | null = null;
  #closing = false;
  #paused = false;
  #lost = false;

  constructor(
    loop: EventLoop,
    owner: PipeOwner,
    fd: number,
    streams: Readable[],
  ) {
    this.#owner = owner;
    this.#fd = fd;
    this.#streams = streams;
    this.#open = streams.length;
    // Held until the child is known to run and connectionMade has run.
    this.#inbox = new Inbox(loop, this.#deliver, true);
    for (const stream of streams) {
      stream.on("data", (chunk: Uint8Array) => {
        if (!this.#closing) this.#inbox.push(plainBytes(chunk));
      });
      stream.on("error", (error: Error) => this.#error ??= error);
      // At the end of the stream, not only at the close of its handle, which
      // Node reports after the child's exit: as in asyncio, a child's pipes
      // are lost before its exit is told (see ChildProcessTransport).
      let ended = false;
      const onEnd = () => {
        if (ended) return;
        ended = true;
        if (--this.#open > 0) return;
        this.#inbox.push(END_OF_STREAM);
        owner.pipeEnded();
      };
      stream.on("end", onEnd);
      stream.on("close", onEnd);
    }
  }

  // Starts delivering, once the child's connectionMade has run.
  #start(): void {
    if (!this.#paused) this.#inbox.resume();
  }

  #hasEnded(): boolean {
    return this.#open === 0;
  }

  static {
    startPipeDelivery = (pipe) => pipe.#start();
    hasPipeEnded = (pipe) => pipe.#hasEnded();
  }

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return name === "pipe" ? this.#streams[0] : defaultValue;
  }

  isClosing(): boolean {
    return this.#closing;
  }

  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#inbox.clear();
    this.#inbox.resume();
    for (const stream of this.#streams) stream.destroy();
  }

  setProtocol(_protocol: BaseProtocol): void {
    throw new RuntimeError("a pipe's protocol is its process's");
  }

  getProtocol(): BaseProtocol {
    return this.#owner.protocol();
  }

  isReading(): boolean {
    return !this.#closing && !this.#paused;
  }

  pauseReading(): void {
    if (this.#closing || this.#paused) return;
    this.#paused = true;
    this.#inbox.pause();
    for (const stream of this.#streams) stream.pause();
  }

  resumeReading(): void {
    if (this.#closing || !this.#paused) return;
    this.#paused = false;
    this.#owner.whenStarted(() => this.#inbox.resume());
    for (const stream of this.#streams) stream.resume();
  }

  #deliver = (item: Uint8Array | typeof END_OF_STREAM): void => {
    if (item === END_OF_STREAM) {
      if (this.#lost) return;
      this.#lost = true;
      this.#closing = true;
      this.#owner.pipeLost(this.#fd, this.#error);
    } else if (!this.#closing) {
      this.#owner.pipeData(this.#fd, item);
    }
  };
}

// The child's stdin pipe is lost: see PipeWriteTransport's #markLost.
let losePipe: (pipe: PipeWriteTransport) => void;

// A child's stdin pipe.
class PipeWriteTransport implements WriteTransport {
  #end: StreamWriteEnd;
  #owner: PipeOwner;
  #error: Error | null = null;
  #lost = false;

  constructor(loop: EventLoop, owner: PipeOwner, stream: Writable) {
    this.#owner = owner;
    this.#end = new StreamWriteEnd(loop, this, stream, () => owner.protocol());
    // A child that exits without reading its input is no error of ours:
    // the pipe is just lost (EPIPE), as asyncio reports it.
    stream.on("error", (error: Error) => this.#error ??= error);
    // Lost once close() has flushed everything, as in asyncio, rather than
    // when the runtime closes the handle (Node: only at the child's exit).
    stream.on("finish", () => owner.whenStarted(this.#markLost));
    stream.on("close", () => owner.whenStarted(this.#markLost));
  }

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return this.#end.extraInfo(name, defaultValue);
  }

  isClosing(): boolean {
    return this.#end.closing;
  }

  setProtocol(_protocol: BaseProtocol): void {
    throw new RuntimeError("a pipe's protocol is its process's");
  }

  getProtocol(): BaseProtocol {
    return this.#owner.protocol();
  }

  write(data: Uint8Array | string): void {
    this.#end.write(data);
  }

  writelines(list: Iterable<Uint8Array | string>): void {
    for (const data of list) this.#end.write(data);
  }

  writeEof(): void {
    this.#end.close();
  }

  canWriteEof(): boolean {
    return true;
  }

  close(): void {
    this.#end.close();
  }

  abort(): void {
    this.#end.abort();
  }

  getWriteBufferSize(): number {
    return this.#end.stream.writableLength;
  }

  getWriteBufferLimits(): [low: number, high: number] {
    return this.#end.flow.limits();
  }

  setWriteBufferLimits(high?: number, low?: number): void {
    this.#end.flow.setLimits(high, low);
  }

  // Called when the runtime closed the stream, or the child is gone.
  #markLost = (): void => {
    if (this.#lost) return;
    this.#lost = true;
    this.#end.closing = true;
    if (!this.#end.stream.destroyed) this.#end.stream.destroy();
    this.#owner.pipeLost(0, this.#error);
  };

  static {
    losePipe = (pipe) => pipe.#markLost();
  }
}

// A running child as an asyncio SubprocessTransport. It listens to the
// child from the moment it is spawned (a quick child may be done before
// the runtime confirms it started) but tells the protocol nothing before
// startChildTransport(). It is finished when the runtime reports the child
// closed (exited, and its output pipes at their end): then the protocol's
// connectionLost runs and wait() returns.
let startChildTransport: (
  transport: ChildProcessTransport,
  made: IoFuture<void>,
) => void;

class ChildProcessTransport implements SubprocessTransport {
  #loop: EventLoop;
  #child: ChildProcess;
  #protocol: SubprocessProtocol;
  #pid: number;
  #returncode: number | null = null;
  #pipes = new Map<number, PipeReadTransport | PipeWriteTransport>();
  #finished: IoLatch;
  #closed = false;
  #started = false;
  #heldEvents: Array<() => void> = [];
  #exited = false;
  #exitTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #exitAnnounced = false;
  #exitTold = false;
  #closedByRuntime = false;
  #lostPipes = new Set<number>();
  #finishedCalled = false;
  // What its pipes call back into, kept off the transport's public face.
  #pipeOwner: PipeOwner = {
    whenStarted: (callback) => this.#whenStarted(callback),
    pipeData: (fd, data) => this.#pipeData(fd, data),
    pipeLost: (fd, error) => this.#pipeLost(fd, error),
    pipeEnded: () => this.#pipeEnded(),
    protocol: () => this.#protocol,
  };

  constructor(
    loop: EventLoop,
    child: ChildProcess,
    protocol: SubprocessProtocol,
    stderrToStdout: boolean,
  ) {
    this.#loop = loop;
    this.#child = child;
    this.#protocol = protocol;
    this.#pid = -1;
    this.#finished = new IoLatch(loop);
    if (child.stdin) {
      this.#pipes.set(
        0,
        new PipeWriteTransport(loop, this.#pipeOwner, child.stdin),
      );
    }
    const stdout = [child.stdout, stderrToStdout ? child.stderr : null]
      .filter((stream) => stream !== null);
    if (stdout.length > 0) {
      this.#pipes.set(
        1,
        new PipeReadTransport(loop, this.#pipeOwner, 1, stdout),
      );
    }
    if (child.stderr && !stderrToStdout) {
      this.#pipes.set(
        2,
        new PipeReadTransport(loop, this.#pipeOwner, 2, [child.stderr]),
      );
    }
    child.on("exit", (code: number | null, signal: string | null) => {
      this.#returncode ??= exitStatus(code, signal);
      // The child's stdin is gone with it (Node destroys it now).
      const stdin = this.#pipes.get(0);
      if (stdin instanceof PipeWriteTransport) {
        this.#whenStarted(() => losePipe(stdin));
      }
      this.#exited = true;
      // A dying child's pipes close before its exit is reported, so asyncio
      // sees them lost first. Node reports the exit first and the end of
      // the output up to some milliseconds later: the exit waits for it, but
      // not for long, as a pipe may stay open after the exit (a grandchild
      // holds it, or the protocol paused reading).
      this.#exitTimer = setTimeout(this.#announceExit, EXIT_WAITS_FOR_PIPES_MS);
      this.#pipeEnded();
    });
    child.on("close", (code: number | null, signal: string | null) => {
      this.#returncode ??= exitStatus(code, signal);
      this.#whenStarted(() => {
        this.#closedByRuntime = true;
        this.#maybeFinish();
      });
    });
    trackResource(loop, this.#owned);
  }

  // A closing loop closes the child's pipes and kills it if it still runs,
  // as asyncio's transport does when it is dropped unclosed.
  #owned: OwnedResource = {
    describe: () => `child process ${this.#child.pid ?? ""} (its pipes)`,
    release: () => {
      this.close();
      for (const pipe of this.#pipes.values()) {
        if (pipe instanceof PipeWriteTransport) pipe.abort();
      }
      this.#child.unref();
    },
  };

  // Tells the protocol the child runs, then what it did since.
  #start(made: IoFuture<void>): void {
    this.#pid = this.#child.pid!;
    postToLoop(this.#loop, () => {
      this.#call("connectionMade", this);
      settleIo(made, undefined);
      this.#started = true;
      for (const pipe of this.#pipes.values()) {
        if (pipe instanceof PipeReadTransport) startPipeDelivery(pipe);
      }
      for (const event of this.#heldEvents) postToLoop(this.#loop, event);
      this.#heldEvents = [];
    });
  }

  static {
    startChildTransport = (transport, made) => transport.#start(made);
  }

  #whenStarted(callback: () => void): void {
    if (this.#started) postToLoop(this.#loop, callback);
    else this.#heldEvents.push(callback);
  }

  getExtraInfo(name: string, defaultValue?: unknown): unknown {
    return name === "subprocess" ? this.#child : defaultValue;
  }

  isClosing(): boolean {
    return this.#closed;
  }

  setProtocol(protocol: BaseProtocol): void {
    this.#protocol = protocol as SubprocessProtocol;
  }

  getProtocol(): BaseProtocol {
    return this.#protocol;
  }

  getPid(): number {
    return this.#pid;
  }

  getReturncode(): number | null {
    return this.#returncode;
  }

  getPipeTransport(fd: number): ReadTransport | WriteTransport | null {
    return this.#pipes.get(fd) ?? null;
  }

  sendSignal(signal: string | number): void {
    const name = signalName(signal, "sendSignal()");
    // A child that has exited cannot be signalled, and its pid may be
    // someone else's by now: do nothing, as Python's Popen does.
    if (this.#returncode === null) this.#child.kill(name);
  }

  terminate(): void {
    this.sendSignal("SIGTERM");
  }

  kill(): void {
    this.sendSignal("SIGKILL");
  }

  async wait(): Promise<number> {
    await this.#finished.wait();
    return this.#returncode!;
  }

  /**
   * Closes the pipes, and kills the child if it is still running, as
   * asyncio does.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pipe of this.#pipes.values()) pipe.close();
    if (this.#returncode === null) this.#child.kill("SIGKILL");
  }

  #pipeData(fd: number, data: Uint8Array): void {
    this.#call("pipeDataReceived", fd, data);
  }

  #pipeLost(fd: number, error: Error | null): void {
    this.#call("pipeConnectionLost", fd, error);
    this.#lostPipes.add(fd);
    this.#maybeFinish();
  }

  #pipeEnded(): void {
    if (!this.#exited) return;
    for (const pipe of this.#pipes.values()) {
      if (pipe instanceof PipeReadTransport && !hasPipeEnded(pipe)) return;
    }
    this.#announceExit();
  }

  #announceExit = (): void => {
    if (this.#exitAnnounced) return;
    this.#exitAnnounced = true;
    clearTimeout(this.#exitTimer);
    this.#whenStarted(this.#tellExit);
  };

  #tellExit = (): void => {
    this.#exitTold = true;
    this.#call("processExited");
    this.#maybeFinish();
  };

  // As asyncio: connectionLost comes last, once the exit is told and every
  // output pipe is lost (delivered: a paused pipe may hold its end).
  #maybeFinish(): void {
    if (this.#finishedCalled || !this.#exitTold || !this.#closedByRuntime) {
      return;
    }
    for (const [fd, pipe] of this.#pipes) {
      if (pipe instanceof PipeReadTransport && !this.#lostPipes.has(fd)) return;
    }
    this.#finishedCalled = true;
    this.#finish();
  }

  #finish = (): void => {
    untrackResource(this.#loop, this.#owned);
    const stdin = this.#pipes.get(0);
    if (stdin instanceof PipeWriteTransport) losePipe(stdin);
    this.#closed = true;
    this.#call("connectionLost", null);
    this.#finished.set();
  };

  // A child outlives its protocol's errors: asyncio's subprocess transport
  // reports them and goes on.
  #call(method: keyof SubprocessProtocol, ...args: unknown[]): void {
    const protocol = this.#protocol;
    callProtocol(
      this.#loop,
      this,
      method,
      () => (protocol[method] as (...args: unknown[]) => void)(...args),
    );
  }
}

// Checks the arguments at once, then starts `program`: see startChild().
function spawnSubprocess<P extends SubprocessProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  program: string,
  args: readonly string[],
  options: SubprocessOptions,
  where: string,
): Promise<[SubprocessTransport, P]> {
  requireFactory(protocolFactory, where);
  if (typeof program !== "string" || program === "") {
    throw new TypeError(
      `${where}: program must be a non-empty string, got ${
        describeValue(program)
      }`,
    );
  }
  if (!Array.isArray(args) || args.some((arg) => typeof arg !== "string")) {
    throw new TypeError(
      `${where}: args must be an array of strings, got ${describeValue(args)}`,
    );
  }
  const stdin = stdioFor(options.stdin, "stdin", where);
  const stdout = stdioFor(options.stdout, "stdout", where);
  const stderrToStdout = options.stderr === STDOUT;
  const stderr = stderrToStdout
    ? stdout
    : stdioFor(options.stderr, "stderr", where);
  return startChild(loop, protocolFactory, program, [...args], {
    stdio: [stdin, stdout, stderr],
    cwd: options.cwd,
    env: options.env,
  }, stderrToStdout && stdout === "pipe");
}

// EventLoop.subprocessExec(): see spawnSubprocess().
function subprocessExecOn<P extends SubprocessProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  program: string,
  args: readonly string[],
  options: SubprocessOptions,
): Promise<[SubprocessTransport, P]> {
  return spawnSubprocess(
    loop,
    protocolFactory,
    program,
    args,
    options,
    "subprocessExec()",
  );
}

// EventLoop.subprocessShell(): `cmd` through `/bin/sh -c`.
function subprocessShellOn<P extends SubprocessProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  cmd: string,
  options: SubprocessOptions,
): Promise<[SubprocessTransport, P]> {
  if (typeof cmd !== "string") {
    throw new TypeError(
      `subprocessShell(): cmd must be a string, got ${describeValue(cmd)}`,
    );
  }
  return spawnSubprocess(
    loop,
    protocolFactory,
    "/bin/sh",
    ["-c", cmd],
    options,
    "subprocessShell()",
  );
}

// Starts `program` and waits until it runs, or fails with the system's
// error (ENOENT names the program) at the await.
async function startChild<P extends SubprocessProtocol>(
  loop: EventLoop,
  protocolFactory: () => P,
  program: string,
  args: string[],
  spawnOptions: childProcess.SpawnOptions,
  stderrToStdout: boolean,
): Promise<[SubprocessTransport, P]> {
  const protocol = protocolFactory();
  let child: ChildProcess;
  try {
    child = childProcess.spawn(program, args, spawnOptions);
  } catch (error) {
    throw spawnError(program, error);
  }
  child.on("error", () => {}); // after the start, errors (a failed kill) are not fatal
  const transport = new ChildProcessTransport(
    loop,
    child,
    protocol,
    stderrToStdout,
  );
  await awaitRuntimeEvent(loop, child, {
    ready: "spawn",
    error: (error) => spawnError(program, error),
    undo: () => {
      if (child.pid !== undefined && child.exitCode === null) child.kill();
    },
  });
  await awaitConnectionMade(loop, (made) => {
    startChildTransport(transport, made);
    return transport;
  });
  return [transport, protocol];
}

// The runtime's spawn error, with a message that names the program the
// same way on every runtime.
function spawnError(program: string, error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(error));
  const code = (error as { code?: string }).code;
  const reason = code === "ENOENT"
    ? "no such file or directory"
    : code === "EACCES"
    ? "permission denied"
    : error.message;
  return Object.assign(
    new Error(`cannot run "${program}": ${reason} (${code ?? "error"})`, {
      cause: error,
    }),
    { code, errno: (error as { errno?: number }).errno, path: program },
  );
}

// Connects a child's pipes to streams: a reader for stdout and stderr, a
// writer for stdin.
class SubprocessStreamProtocol extends SubprocessProtocol
  implements DrainableProtocol {
  readonly drainControl: DrainControl;
  stdin: StreamWriter | null = null;
  stdout: StreamReader | null = null;
  stderr: StreamReader | null = null;
  #limit: number | undefined;
  #loop: EventLoop;

  constructor(limit: number | undefined, loop: EventLoop) {
    super();
    this.#limit = limit;
    this.#loop = loop;
    this.drainControl = new DrainControl(loop);
  }

  override connectionMade(transport: SubprocessTransport): void {
    const stdin = transport.getPipeTransport(0) as WriteTransport | null;
    if (stdin !== null) {
      this.stdin = new StreamWriter(stdin, this, null, this.#loop);
    }
    this.stdout = this.#readerFor(transport.getPipeTransport(1));
    this.stderr = this.#readerFor(transport.getPipeTransport(2));
  }

  override pipeDataReceived(fd: number, data: Uint8Array): void {
    const reader = fd === 1 ? this.stdout : this.stderr;
    if (reader) feedOwnedData(reader, data);
  }

  override pipeConnectionLost(fd: number, exc: Error | null): void {
    if (fd === 0) {
      this.drainControl.lose(exc);
      return;
    }
    const reader = fd === 1 ? this.stdout : this.stderr;
    if (exc === null) reader?.feedEof();
    else reader?.setException(exc);
  }

  override pauseWriting(): void {
    this.drainControl.pause();
  }

  override resumeWriting(): void {
    this.drainControl.resume();
  }

  #readerFor(
    transport: ReadTransport | WriteTransport | null,
  ): StreamReader | null {
    if (transport === null) return null;
    const reader = new StreamReader(this.#limit, this.#loop);
    reader.setTransport(transport as ReadTransport);
    return reader;
  }
}

function isPipeClosedError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === "EPIPE" || code === "ECONNRESET";
}

/**
 * A child process started with {@linkcode createSubprocessExec} or
 * {@linkcode createSubprocessShell}: asyncio's `Process`. The streams set
 * to {@linkcode PIPE} are `stdin` (a {@linkcode StreamWriter}), `stdout` and
 * `stderr` ({@linkcode StreamReader}s); the others are `null`.
 *
 * @example Reading a child's output line by line while it runs
 * ```ts
 * import { createSubprocessShell, PIPE } from "@aio/asyncio";
 *
 * const child = await createSubprocessShell(
 *   "for i in 1 2 3; do echo $i; sleep 0.1; done",
 *   { stdout: PIPE },
 * );
 * for await (const line of child.stdout!) {
 *   console.log(new TextDecoder().decode(line).trim());
 * }
 * console.log(await child.wait()); // 0
 * ```
 */
export class Process {
  /** The child's process id. */
  readonly pid: number;
  /** A writer to the child's standard input, with `stdin: PIPE`. */
  readonly stdin: StreamWriter | null;
  /** A reader of the child's standard output, with `stdout: PIPE`. */
  readonly stdout: StreamReader | null;
  /** A reader of the child's standard error, with `stderr: PIPE`. */
  readonly stderr: StreamReader | null;
  #transport: SubprocessTransport;

  /**
   * Not for users: {@linkcode createSubprocessExec} and
   * {@linkcode createSubprocessShell} make processes. Called otherwise,
   * throws.
   *
   * @throws {TypeError} Always, when called from outside the library.
   */
  constructor(
    token: symbol,
    transport: SubprocessTransport,
    stdin: StreamWriter | null,
    stdout: StreamReader | null,
    stderr: StreamReader | null,
  ) {
    if (token !== MADE_INSIDE) {
      throw new TypeError(
        "Process objects are made by createSubprocessExec() and createSubprocessShell()",
      );
    }
    this.#transport = transport;
    this.pid = transport.getPid();
    this.stdin = stdin;
    this.stdout = stdout;
    this.stderr = stderr;
  }

  /**
   * The exit status once the child has exited, else `null`: the exit
   * code, or minus the number of the signal that ended it (as Python).
   */
  get returncode(): number | null {
    return this.#transport.getReturncode();
  }

  /**
   * Waits until the child exits (and its output pipes close), and returns
   * the exit status. Cancelling the wait leaves the child running.
   */
  wait(): Promise<number> {
    return this.#transport.wait();
  }

  /**
   * Sends `input` to stdin (if any) and closes it, reads stdout and stderr
   * to their end, waits for the child to exit, and returns `[stdout,
   * stderr]` (`null` for those not piped). A child that exits without
   * reading its input is not an error.
   */
  async communicate(
    input?: Uint8Array | string | null,
  ): Promise<[Uint8Array | null, Uint8Array | null]> {
    if (input !== undefined && input !== null) {
      requireBytes(input, "communicate()");
    }
    const { stdin, stdout, stderr } = this;
    const feed = async () => {
      if (stdin === null) return;
      try {
        if (input !== undefined && input !== null && input.length > 0) {
          stdin.write(input);
          await stdin.drain();
        }
      } catch (error) {
        if (!isPipeClosedError(error)) throw error;
      }
      stdin.close();
    };
    const readAll = (reader: StreamReader | null) => async () =>
      reader === null ? null : await reader.read();
    const [, out, err] = await gather([
      feed,
      readAll(stdout),
      readAll(stderr),
    ]) as [void, Uint8Array | null, Uint8Array | null];
    await this.wait();
    return [out, err];
  }

  /** Sends `signal` (a name like `"SIGINT"`, or a number) to the child. */
  sendSignal(signal: string | number): void {
    this.#transport.sendSignal(signal);
  }

  /** Sends SIGTERM to the child. */
  terminate(): void {
    this.#transport.terminate();
  }

  /** Sends SIGKILL to the child. */
  kill(): void {
    this.#transport.kill();
  }
}

function createProcess(
  start: (
    loop: EventLoop,
    factory: () => SubprocessStreamProtocol,
  ) => Promise<[SubprocessTransport, SubprocessStreamProtocol]>,
  limit: number | undefined,
): Promise<Process> {
  const loop = getEventLoop();
  return start(loop, () => new SubprocessStreamProtocol(limit, loop)).then((
    [transport, protocol],
  ) =>
    new Process(
      MADE_INSIDE,
      transport,
      protocol.stdin,
      protocol.stdout,
      protocol.stderr,
    )
  );
}

/**
 * Runs `program` with `args` (no shell involved) and returns its
 * {@linkcode Process}: asyncio's `create_subprocess_exec()`. A program that
 * cannot be found fails at the await, with code `ENOENT` and its name in the
 * message.
 *
 * @example
 * ```ts
 * import { createSubprocessExec, PIPE } from "@aio/asyncio";
 *
 * const cat = await createSubprocessExec("cat", [], { stdin: PIPE, stdout: PIPE });
 * const [out] = await cat.communicate("hello");
 * console.log(new TextDecoder().decode(out!), cat.returncode); // "hello" 0
 * ```
 */
export function createSubprocessExec(
  program: string,
  args: readonly string[] = [],
  options: SubprocessOptions = {},
): Promise<Process> {
  return createProcess(
    (loop, factory) => loop.subprocessExec(factory, program, args, options),
    options.limit,
  );
}

/**
 * Runs `cmd` through `/bin/sh -c` and returns its {@linkcode Process}:
 * asyncio's `create_subprocess_shell()`. Quote what you pass in it.
 *
 * @example
 * ```ts
 * import { createSubprocessShell, PIPE } from "@aio/asyncio";
 *
 * const child = await createSubprocessShell("echo $((6 * 7))", { stdout: PIPE });
 * const [out] = await child.communicate();
 * console.log(new TextDecoder().decode(out!)); // "42\n"
 * ```
 */
export function createSubprocessShell(
  cmd: string,
  options: SubprocessOptions = {},
): Promise<Process> {
  return createProcess(
    (loop, factory) => loop.subprocessShell(factory, cmd, options),
    options.limit,
  );
}

// ===========================================================================
// §17 Executors
// Holds: work on other cores. WorkerPoolExecutor runs jobs on a pool of
//   node:worker_threads workers, the one worker API that Deno, Bun and Node
//   share; each worker imports a module on its first job for it. A job names
//   a module and one of its exported functions (JavaScript cannot send a
//   closure to another thread); the arguments and the result are copied
//   (structured clone). Also the loop's default executor, and toThread.
// Rule: a worker runs one job at a time; cancelling a queued job drops it,
//   cancelling a running one terminates its worker, and a fresh worker is
//   started when a job needs one. An idle worker is unref'd, so a pool never
//   keeps the process alive by itself.
// Relies on: §5 Futures (IoFuture), §4 Event loop. Used by: EventLoop's
//   runInExecutor, setDefaultExecutor, shutdownDefaultExecutor and close().
// ===========================================================================

/**
 * Any module, as an executor sees it when it is not told the module's type:
 * functions by name.
 *
 * @example
 * ```ts
 * import type { ModuleFunctions } from "@aio/asyncio";
 *
 * const work: ModuleFunctions = { square: (n: number) => n * n };
 * console.log(work.square(4)); // 16
 * ```
 */
// deno-lint-ignore no-explicit-any
export type ModuleFunctions = Record<string, (...args: any[]) => unknown>;

/**
 * The names of the functions that module type `M` exports, for typed calls:
 * `FunctionNames<typeof import("./work.ts")>`.
 *
 * @example
 * ```ts
 * import type { FunctionNames } from "@aio/asyncio";
 *
 * const name: FunctionNames<typeof import("node:zlib")> = "gzipSync";
 * console.log(name); // gzipSync
 * ```
 */
export type FunctionNames<M> =
  & {
    [K in keyof M]: M[K] extends (...args: never[]) => unknown ? K : never;
  }[keyof M]
  & string;

/** Options for {@linkcode WorkerPoolExecutor}. */
export interface WorkerPoolOptions {
  /**
   * How many workers at most run at once; default the number of cores
   * (`os.availableParallelism()`). Workers are started as jobs need them.
   */
  maxWorkers?: number;
}

/** Options for {@linkcode WorkerPoolExecutor.shutdown}. */
export interface ShutdownOptions {
  /**
   * Wait for the queued and running jobs to finish and the workers to exit
   * (default `true`); with `false`, return at once while they go on.
   */
  wait?: boolean;
  /** Cancel the jobs that have not started (default `false`). */
  cancelFutures?: boolean;
}

// The code each worker runs: import a job's module (once), call the export,
// post back the result or the error. A reply that cannot be copied (a
// function, say) is reported as the error it is.
const WORKER_BOOTSTRAP = `
const { parentPort } = require("node:worker_threads");
const modules = new Map();
const describe = (e) => e instanceof Error
  ? { name: e.name, message: e.message, stack: e.stack, code: e.code }
  : { name: "Error", message: String(e) };
parentPort.on("message", async ({ module, name, args }) => {
  let reply;
  try {
    let loading = modules.get(module);
    if (loading === undefined) modules.set(module, loading = import(module));
    const fn = (await loading)[name];
    if (typeof fn !== "function") {
      throw new TypeError(module + ' exports no function named "' + name + '"');
    }
    reply = { ok: true, value: await fn(...args) };
  } catch (error) {
    reply = { ok: false, error: describe(error) };
  }
  try {
    parentPort.postMessage(reply);
  } catch (error) {
    parentPort.postMessage({ ok: false, error: describe(error) });
  }
});
`;

type WorkerReply =
  | { ok: true; value: unknown }
  | { ok: false; error: WorkerErrorReport };

interface WorkerErrorReport {
  name: string;
  message: string;
  stack?: string;
  code?: unknown;
}

const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

// The worker's error, rebuilt on this side: same class where it is a
// built-in one, same name, message and stack (the worker's frames), and
// code (as node:fs errors carry).
function errorFromWorker(report: WorkerErrorReport): Error {
  const error = new (BUILTIN_ERRORS[report.name] ?? Error)(report.message);
  if (error.name !== report.name) error.name = report.name;
  if (report.stack !== undefined) error.stack = report.stack;
  if (report.code !== undefined) {
    (error as Error & { code: unknown }).code = report.code;
  }
  return error;
}

// One job: a call of `name` in `module`, and the future that awaits it.
interface Job {
  module: string;
  name: string;
  args: unknown[];
  future: JobFuture<unknown>;
  // The thread running it, or null while queued (or once done).
  thread: PoolThread | null;
}

// One worker of a pool. `job` is what it runs, null while idle.
interface PoolThread {
  worker: Worker;
  job: Job | null;
  exited: Promise<void>;
}

// A job's future: cancelling it takes the job back from the pool.
class JobFuture<T> extends IoFuture<T> {
  #withdraw: () => void;

  constructor(loop: EventLoop, withdraw: () => void) {
    super(loop);
    this.#withdraw = withdraw;
  }

  override cancel(msg?: string): boolean {
    if (!super.cancel(msg)) return false;
    this.#withdraw();
    return true;
  }
}

function moduleSpecifier(module: unknown, where: string): string {
  if (module instanceof URL) return module.href;
  if (typeof module === "string" && module !== "") {
    // A URL (file:, data:, https:, node:) as it is; a path from the cwd.
    return /^[a-z][a-z0-9+.-]+:/i.test(module)
      ? module
      : pathToFileURL(resolvePath(module)).href;
  }
  throw new TypeError(
    `${where}: module must be a URL or a path, got ${describeValue(module)}`,
  );
}

let submitJob: (
  executor: WorkerPoolExecutor<unknown>,
  loop: EventLoop,
  module: string | URL | null,
  name: string,
  args: unknown[],
  where: string,
) => Future<unknown>;
let terminateExecutor: (executor: WorkerPoolExecutor<unknown>) => void;

/**
 * Runs functions exported by a module on a pool of worker threads, so that
 * CPU-bound or blocking work leaves the event loop free: asyncio's
 * `ThreadPoolExecutor` / `ProcessPoolExecutor`, shaped by what JavaScript
 * can send to another thread.
 *
 * **The difference from Python:** a closure cannot cross threads, so a job
 * is a module and the name of one of its exported functions (which may be
 * `async`). Arguments and the result are copied with the structured clone
 * algorithm (numbers, strings, arrays, plain objects, typed arrays, maps…);
 * a function or class instance cannot be sent. Each worker imports the
 * module on its first job, so module-level state is per worker.
 *
 * `run()` returns a {@linkcode Future}. Cancelling it, or the task awaiting
 * it, drops a job that has not started; a job that is running is stopped by
 * **terminating its worker** (no `finally` of the job runs), and a fresh
 * worker takes its place when a job needs one. An error thrown in the worker
 * arrives at the `await` with its class (for built-in errors), name,
 * message and the worker's stack.
 *
 * Workers start as jobs need them, up to `maxWorkers` (default: the number
 * of cores). Idle workers never keep the process alive; `shutdown()` (or
 * `await using`) ends them.
 *
 * With a type for the module, calls are checked:
 * `new WorkerPoolExecutor<typeof import("./work.ts")>(url)`.
 *
 * @example Hashing on other cores
 * ```ts
 * import { gather, run, WorkerPoolExecutor } from "@aio/asyncio";
 *
 * await using pool = new WorkerPoolExecutor<typeof import("node:crypto")>(
 *   "node:crypto",
 *   { maxWorkers: 2 },
 * );
 * await run(async () => {
 *   const keys = await gather([
 *     () => pool.run("pbkdf2Sync", "secret", "salt-1", 100_000, 32, "sha256"),
 *     () => pool.run("pbkdf2Sync", "secret", "salt-2", 100_000, 32, "sha256"),
 *   ]);
 *   console.log(keys.map((key) => key.length)); // [ 32, 32 ]
 * });
 * ```
 */
export class WorkerPoolExecutor<M = ModuleFunctions> {
  // The module `run()` calls into; null: only toThread() names modules.
  #module: string | null;
  #maxWorkers: number;
  // Every worker not yet exited, including those being terminated.
  #alive = new Set<PoolThread>();
  // The workers that take jobs: alive and not being terminated.
  #working = new Set<PoolThread>();
  // Working threads with no job, most recently idle last.
  #idle: PoolThread[] = [];
  #queue: Job[] = [];
  #shutdown = false;
  // Resolved each time nothing is queued or running.
  #drained: Array<() => void> = [];

  /**
   * A pool for the functions `module` exports (a URL, `import.meta`-relative
   * is best: `new URL("./work.ts", import.meta.url)`; a path is taken from
   * the current directory). Without a module, only jobs that name their own
   * run on it (the loop's default executor, {@linkcode toThread}).
   *
   * @throws {TypeError} for a module that is neither a URL nor a path.
   * @throws {RangeError} for a `maxWorkers` that is not a positive integer.
   */
  constructor(
    module: string | URL | null = null,
    options: WorkerPoolOptions = {},
  ) {
    this.#module = module === null
      ? null
      : moduleSpecifier(module, "WorkerPoolExecutor()");
    const max = options.maxWorkers ?? availableParallelism();
    if (!Number.isInteger(max) || max < 1) {
      throw new RangeError(
        `WorkerPoolExecutor(): options.maxWorkers must be a positive integer, got ${
          describeValue(max)
        }`,
      );
    }
    this.#maxWorkers = max;
  }

  /** How many workers may run at once. */
  get maxWorkers(): number {
    return this.#maxWorkers;
  }

  /**
   * Runs `name(...args)` from the pool's module on a worker, and returns
   * the future of its result. Outside a running loop the future belongs
   * to the default loop.
   *
   * @throws {RuntimeError} after `shutdown()`, or when the pool has no
   * module.
   * @throws {TypeError} for a name that is not a non-empty string.
   */
  run<K extends FunctionNames<M>>(
    name: K,
    ...args: M[K] extends (...args: infer A) => unknown ? A : never
  ): Future<
    M[K] extends (...args: never[]) => infer R ? Awaited<R> : never
  > {
    return submitJob(
      this,
      currentLoop(),
      null,
      name,
      args,
      "WorkerPoolExecutor.run()",
    ) as Future<
      M[K] extends (...args: never[]) => infer R ? Awaited<R> : never
    >;
  }

  /**
   * Stops taking jobs. With `wait` (the default), waits until the queued
   * and running jobs are done and every worker has exited; `cancelFutures`
   * cancels the jobs that have not started. Idle workers exit at once.
   */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    this.#shutdown = true;
    if (options.cancelFutures === true) {
      for (const job of [...this.#queue]) job.future.cancel();
    }
    this.#dispatch();
    if (options.wait === false) return;
    if (this.#queue.length > 0 || this.#idle.length < this.#working.size) {
      await new Promise<void>((resolve) => this.#drained.push(resolve));
    }
    await Promise.all([...this.#alive].map((thread) => thread.exited));
  }

  /** Shuts the pool down and waits: `await using pool = …`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }

  #submit(
    loop: EventLoop,
    module: string | URL | null,
    name: string,
    args: unknown[],
    where: string,
  ): Future<unknown> {
    requireFunctionName(name, where);
    const specifier = module === null
      ? this.#module
      : moduleSpecifier(module, where);
    if (specifier === null) {
      throw new RuntimeError(
        `${where}: this executor has no module: give it one, or use toThread(module, name)`,
      );
    }
    if (this.#shutdown) {
      throw new RuntimeError("cannot schedule new futures after shutdown");
    }
    const job: Job = {
      module: specifier,
      name,
      args,
      future: null as unknown as JobFuture<unknown>,
      thread: null,
    };
    job.future = new JobFuture(loop, () => this.#withdraw(job));
    this.#queue.push(job);
    this.#dispatch();
    return job.future;
  }

  // Hands queued jobs to idle workers, starting workers up to the limit.
  // Once shut down and out of jobs, idle workers are let go.
  #dispatch(): void {
    while (this.#queue.length > 0) {
      let thread = this.#idle.pop();
      if (thread === undefined) {
        if (this.#working.size >= this.#maxWorkers) break;
        thread = this.#startThread();
      }
      this.#assign(thread, this.#queue.shift()!);
    }
    if (this.#queue.length > 0) return;
    if (this.#shutdown) {
      for (const thread of this.#idle.splice(0)) this.#retire(thread);
    }
    if (this.#idle.length === this.#working.size) {
      for (const resolve of this.#drained.splice(0)) resolve();
    }
  }

  #startThread(): PoolThread {
    const worker = new Worker(WORKER_BOOTSTRAP, { eval: true });
    const thread: PoolThread = {
      worker,
      job: null,
      exited: null as unknown as Promise<void>,
    };
    thread.exited = new Promise((resolve) => {
      worker.once("exit", (code: number) => {
        this.#onExit(thread, code);
        resolve();
      });
    });
    worker.on("message", (reply: WorkerReply) => this.#onReply(thread, reply));
    worker.on("error", (error: Error) => this.#onCrash(thread, error));
    this.#alive.add(thread);
    this.#working.add(thread);
    return thread;
  }

  #assign(thread: PoolThread, job: Job): void {
    thread.job = job;
    job.thread = thread;
    // A worker with a job keeps the process alive, as a Python thread does.
    thread.worker.ref();
    try {
      thread.worker.postMessage({
        module: job.module,
        name: job.name,
        args: job.args,
      });
    } catch (error) {
      // Arguments that cannot be copied (DataCloneError).
      this.#release(thread);
      settleIo(job.future, error);
    }
  }

  // The thread's job is over: it goes back to the idle ones, unref'd.
  #release(thread: PoolThread): Job | null {
    const job = thread.job;
    if (job !== null) job.thread = null;
    thread.job = null;
    thread.worker.unref();
    this.#idle.push(thread);
    return job;
  }

  #onReply(thread: PoolThread, reply: WorkerReply): void {
    if (thread.job === null || !this.#working.has(thread)) return;
    const job = this.#release(thread)!;
    // Narrowed with `in`, which holds for consumers compiling without
    // strictNullChecks too.
    if ("error" in reply) settleIo(job.future, errorFromWorker(reply.error));
    else settleIo(job.future, undefined, reply.value);
    this.#dispatch();
  }

  // An error the job's module threw outside the job (in a timer, say):
  // the worker dies of it, and the job it ran fails with it.
  #onCrash(thread: PoolThread, error: Error): void {
    const job = thread.job;
    if (job === null) return;
    thread.job = job.thread = null;
    settleIo(job.future, error);
  }

  #onExit(thread: PoolThread, code: number): void {
    this.#alive.delete(thread);
    if (!this.#working.delete(thread)) return; // terminated by us
    const index = this.#idle.indexOf(thread);
    if (index >= 0) this.#idle.splice(index, 1);
    const job = thread.job;
    if (job !== null) {
      job.thread = null;
      settleIo(
        job.future,
        new RuntimeError(
          `the worker running ${job.name}() exited with code ${code}`,
        ),
      );
    }
    this.#dispatch();
  }

  // Terminates a worker; it leaves the working ones at once, and the
  // alive ones when it has exited.
  #retire(thread: PoolThread): void {
    this.#working.delete(thread);
    thread.job = null;
    thread.worker.terminate();
  }

  // A cancelled job: taken off the queue, or its worker terminated.
  #withdraw(job: Job): void {
    const thread = job.thread;
    if (thread === null) {
      const index = this.#queue.indexOf(job);
      if (index >= 0) this.#queue.splice(index, 1);
    } else {
      job.thread = null;
      this.#retire(thread);
    }
    this.#dispatch();
  }

  // Ends the pool at once: queued jobs cancelled, workers terminated.
  #terminate(): void {
    this.#shutdown = true;
    for (const job of this.#queue.splice(0)) job.future.cancel();
    for (const thread of [...this.#working]) this.#retire(thread);
    this.#idle.length = 0;
    this.#dispatch();
  }

  static {
    submitJob = (executor, loop, module, name, args, where) =>
      executor.#submit(loop, module, name, args, where);
    terminateExecutor = (executor) => executor.#terminate();
  }
}

// Each loop's default executor: made on first use by toThread(), replaced
// by setDefaultExecutor(), and `null` once shutdownDefaultExecutor() has
// been called, as asyncio refuses new work then.
const defaultExecutors = new WeakMap<
  EventLoop,
  WorkerPoolExecutor<unknown> | null
>();

function defaultExecutorOf(loop: EventLoop): WorkerPoolExecutor<unknown> {
  let executor = defaultExecutors.get(loop);
  if (executor === null) {
    throw new RuntimeError("Executor shutdown has been called");
  }
  if (executor === undefined) {
    executor = new WorkerPoolExecutor<unknown>();
    defaultExecutors.set(loop, executor);
  }
  return executor;
}

function setLoopExecutor(
  loop: EventLoop,
  executor: WorkerPoolExecutor<unknown>,
): void {
  if (!(executor instanceof WorkerPoolExecutor)) {
    throw new TypeError(
      `setDefaultExecutor(): executor must be a WorkerPoolExecutor, got ${
        describeValue(executor)
      }`,
    );
  }
  defaultExecutors.set(loop, executor);
}

function runInLoopExecutor(
  loop: EventLoop,
  executor: WorkerPoolExecutor<unknown>,
  name: string,
  args: unknown[],
): Future<unknown> {
  if (!(executor instanceof WorkerPoolExecutor)) {
    throw new TypeError(
      `runInExecutor(): executor must be a WorkerPoolExecutor (JavaScript cannot send a function to another thread, so there is no default executor for one: use toThread(module, name, ...args)), got ${
        describeValue(executor)
      }`,
    );
  }
  if (loop.isClosed()) throw new RuntimeError("Event loop is closed");
  return submitJob(executor, loop, null, name, args, "runInExecutor()");
}

async function shutdownLoopExecutor(loop: EventLoop): Promise<void> {
  const executor = defaultExecutors.get(loop);
  defaultExecutors.set(loop, null);
  await executor?.shutdown();
}

// A closing loop ends its default executor's workers at once: the futures
// of their jobs belong to the loop, which will run nothing more.
function terminateLoopExecutor(loop: EventLoop): void {
  const executor = defaultExecutors.get(loop);
  defaultExecutors.set(loop, null);
  if (executor) terminateExecutor(executor);
}

/**
 * Runs the function `name` that `module` exports on the loop's default
 * executor (a {@linkcode WorkerPoolExecutor} made on first use, one worker
 * per core), and returns the future of its result: asyncio's `to_thread()`.
 *
 * **The difference from Python:** `to_thread(f, *args)` sends a function;
 * JavaScript cannot send a closure to another thread, so name a module (a
 * URL, such as `new URL("./work.ts", import.meta.url)`, or `"node:zlib"`)
 * and one of its exported functions. Arguments and result are copied
 * (structured clone). Cancelling the awaiting task drops the job if it has
 * not started, or terminates the worker running it. The default executor
 * ends with `loop.shutdownDefaultExecutor()` or when the loop closes.
 *
 * @throws {RuntimeError} after the loop's `shutdownDefaultExecutor()`.
 * @throws {TypeError} for a module or name of the wrong kind.
 *
 * @example Compressing off the loop
 * ```ts
 * import { run, toThread } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const data = new TextEncoder().encode("hello ".repeat(10_000));
 *   const packed = await toThread<Uint8Array>("node:zlib", "gzipSync", data);
 *   console.log(data.length, "->", packed.length); // 60000 -> a few hundred
 * });
 * ```
 */
export function toThread<T = unknown>(
  module: string | URL,
  name: string,
  ...args: unknown[]
): Future<T> {
  const loop = currentLoop();
  return submitJob(
    defaultExecutorOf(loop),
    loop,
    moduleSpecifier(module, "toThread()"),
    requireFunctionName(name, "toThread()"),
    args,
    "toThread()",
  ) as Future<T>;
}

// ===========================================================================
// §18 Task factories
// Holds: what EventLoop.setTaskFactory() takes, and asyncio 3.12's eager
//   task factory, which starts every task at once, up to its first await.
// Rule: a factory makes the task; the loop only calls it.
// Relies on: §6 Tasks. Used by: EventLoop.createTask.
// ===========================================================================

/**
 * A task factory for {@linkcode EventLoop.setTaskFactory}: makes the task
 * that `loop.createTask(coro, options)` returns.
 *
 * @example A factory that names every task
 * ```ts
 * import { createTask, getRunningLoop, run, Task, type TaskFactory } from "@aio/asyncio";
 *
 * let count = 0;
 * const named: TaskFactory = (loop, coro, options) =>
 *   new Task(coro, { name: `job-${++count}`, ...options, loop });
 * await run(async () => {
 *   getRunningLoop().setTaskFactory(named);
 *   const task = createTask(async () => {});
 *   console.log(task.getName()); // job-1
 *   await task;
 * });
 * ```
 */
export type TaskFactory = <T>(
  loop: EventLoop,
  coro: Coro<T>,
  options: TaskOptions,
) => Task<T>;

/**
 * A task class, or any constructor with `Task`'s signature, for
 * {@linkcode createEagerTaskFactory}.
 *
 * @example
 * ```ts
 * import { Task, type TaskConstructor } from "@aio/asyncio";
 *
 * class LoggedTask<T> extends Task<T> {}
 * const constructors: TaskConstructor[] = [Task, LoggedTask];
 * console.log(constructors.length); // 2
 * ```
 */
export type TaskConstructor = new <T>(
  coro: Coro<T>,
  options: TaskOptions & { loop?: EventLoop },
) => Task<T>;

/**
 * A task factory whose tasks, made by `taskConstructor`, start eagerly
 * (unless a caller passes `eagerStart: false`): asyncio 3.12's
 * `create_eager_task_factory()`.
 *
 * @example Eager tasks of a Task subclass
 * ```ts
 * import { createEagerTaskFactory, createTask, getRunningLoop, run, Task } from "@aio/asyncio";
 *
 * class TracedTask<T> extends Task<T> {}
 * await run(async () => {
 *   getRunningLoop().setTaskFactory(createEagerTaskFactory(TracedTask));
 *   let started = false;
 *   const task = createTask(async () => {
 *     started = true;
 *   });
 *   console.log(started, task instanceof TracedTask); // true true
 *   await task;
 * });
 * ```
 */
export function createEagerTaskFactory(
  taskConstructor: TaskConstructor,
): TaskFactory {
  requireFunction(
    taskConstructor,
    "createEagerTaskFactory()",
    "taskConstructor",
  );
  return (loop, coro, options) =>
    new taskConstructor(coro, {
      ...options,
      loop,
      eagerStart: options.eagerStart ?? true,
    });
}

/**
 * The task factory that makes every task eager: it runs at once, inside
 * `createTask()`, up to its first `await` (asyncio 3.12's
 * `eager_task_factory`). A task may still ask for `eagerStart: false`.
 *
 * One difference from Python: an `async` function always settles its
 * promise in a microtask, so an eager task that never waits is done just
 * after `createTask()` returns, not inside it.
 *
 * @example
 * ```ts
 * import { createTask, eagerTaskFactory, getRunningLoop, run } from "@aio/asyncio";
 *
 * await run(async () => {
 *   getRunningLoop().setTaskFactory(eagerTaskFactory);
 *   const steps: string[] = [];
 *   const task = createTask(async () => {
 *     steps.push("task started");
 *   });
 *   steps.push("createTask returned");
 *   await task;
 *   console.log(steps); // [ "task started", "createTask returned" ]
 * });
 * ```
 */
export const eagerTaskFactory: TaskFactory = createEagerTaskFactory(Task);

// ===========================================================================
// §19 Name resolution
// Holds: EventLoop.getaddrinfo and getnameinfo, asyncio's, over node:dns:
//   the system resolver (getaddrinfo(3)), run by the runtime off the loop.
// Rule: results keep asyncio's tuple shape, with the runtime's 4 and 6 for
//   the address families; bad arguments throw at the call.
// Relies on: §12 I/O plumbing (settleIo), §5 Futures (IoFuture).
// Used by: EventLoop.getaddrinfo, EventLoop.getnameinfo.
// ===========================================================================

/**
 * `SOCK_STREAM`: a stream socket (TCP), in {@linkcode AddrInfo} and
 * {@linkcode GetaddrinfoOptions}.
 *
 * @example
 * ```ts
 * import { getRunningLoop, run, SOCK_STREAM } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const loop = getRunningLoop();
 *   const infos = await loop.getaddrinfo("127.0.0.1", 80, { type: SOCK_STREAM });
 *   console.log(infos.length); // 1
 * });
 * ```
 */
export const SOCK_STREAM = 1 as const;

/**
 * `SOCK_DGRAM`: a datagram socket (UDP), in {@linkcode AddrInfo} and
 * {@linkcode GetaddrinfoOptions}.
 *
 * @example
 * ```ts
 * import { getRunningLoop, run, SOCK_DGRAM } from "@aio/asyncio";
 *
 * await run(async () => {
 *   const loop = getRunningLoop();
 *   const [info] = await loop.getaddrinfo("127.0.0.1", 53, { type: SOCK_DGRAM });
 *   console.log(info[1] === SOCK_DGRAM, info[2]); // true 17
 * });
 * ```
 */
export const SOCK_DGRAM = 2 as const;

/**
 * One address from {@linkcode EventLoop.getaddrinfo}, as asyncio's 5-tuple
 * `(family, type, proto, canonname, sockaddr)`; the family is 4 or 6 (the
 * runtime's names for `AF_INET` and `AF_INET6`), and `sockaddr` is
 * `[host, port]` for both.
 *
 * @example
 * ```ts
 * import type { AddrInfo } from "@aio/asyncio";
 *
 * const info: AddrInfo = [4, 1, 6, "", ["127.0.0.1", 80]];
 * const [, , , , [host, port]] = info;
 * console.log(host, port); // 127.0.0.1 80
 * ```
 */
export type AddrInfo = [
  family: 4 | 6,
  type: typeof SOCK_STREAM | typeof SOCK_DGRAM,
  proto: number,
  canonname: string,
  sockaddr: [host: string, port: number],
];

/** Options for {@linkcode EventLoop.getaddrinfo}. */
export interface GetaddrinfoOptions {
  /** 4 or 6 for one family only; 0 (the default) for both. */
  family?: 0 | 4 | 6;
  /** {@linkcode SOCK_STREAM} or {@linkcode SOCK_DGRAM}; 0 (default): both. */
  type?: 0 | typeof SOCK_STREAM | typeof SOCK_DGRAM;
  /** 6 (TCP) or 17 (UDP); 0 (the default): what the type implies. */
  proto?: number;
  /**
   * Resolver hints from `node:dns` (`dns.ADDRCONFIG | dns.V4MAPPED`); their
   * values differ between runtimes, so take them from `node:dns`.
   */
  flags?: number;
}

const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;

// The system's answer as asyncio's tuples: each address once per socket
// type asked for, in the resolver's order.
function addrInfos(
  addresses: Array<{ address: string; family: number }>,
  port: number,
  options: GetaddrinfoOptions,
): AddrInfo[] {
  const { type = 0, proto = 0 } = options;
  const kinds: Array<[AddrInfo[1], number]> = [];
  if ((type === 0 || type === SOCK_STREAM) && proto !== IPPROTO_UDP) {
    kinds.push([SOCK_STREAM, IPPROTO_TCP]);
  }
  if ((type === 0 || type === SOCK_DGRAM) && proto !== IPPROTO_TCP) {
    kinds.push([SOCK_DGRAM, IPPROTO_UDP]);
  }
  const infos: AddrInfo[] = [];
  for (const { address, family } of addresses) {
    for (const [socketType, protocol] of kinds) {
      infos.push([
        family === 6 ? 6 : 4,
        socketType,
        protocol,
        "",
        [address, port],
      ]);
    }
  }
  return infos;
}

function resolverError(code: string, host: string): Error {
  return Object.assign(new Error(`getaddrinfo ${code} ${host}`), {
    code,
    hostname: host,
  });
}

async function lookupAddresses(
  loop: EventLoop,
  host: string | null,
  port: number,
  options: GetaddrinfoOptions,
): Promise<AddrInfo[]> {
  const family = options.family ?? 0;
  let addresses: Array<{ address: string; family: number }>;
  if (host === null || host === "") {
    // As getaddrinfo(3) without AI_PASSIVE: the loopback addresses.
    addresses = [{ address: "::1", family: 6 }, {
      address: "127.0.0.1",
      family: 4,
    }];
  } else {
    const looked = new IoFuture<Array<{ address: string; family: number }>>(
      loop,
    );
    dns.lookup(
      host,
      { all: true, family, hints: options.flags ?? 0 },
      (error, found) => settleIo(looked, error ?? undefined, found),
    );
    addresses = await looked;
  }
  // A numeric address of the other family comes back as it is: refuse it,
  // as getaddrinfo(3) does.
  if (family !== 0) addresses = addresses.filter((a) => a.family === family);
  if (addresses.length === 0) {
    throw resolverError("EAI_ADDRFAMILY", host ?? "");
  }
  return addrInfos(addresses, port, options);
}

// EventLoop.getaddrinfo(): checks the arguments at the call.
function getaddrinfoOn(
  loop: EventLoop,
  host: string | null,
  port: number | string | null,
  options: GetaddrinfoOptions,
): Promise<AddrInfo[]> {
  const number = checkAddrinfoArguments(host, port, options);
  return lookupAddresses(loop, host, number, options);
}

function lookupName(
  loop: EventLoop,
  sockaddr: unknown,
): Promise<[host: string, service: string]> {
  if (
    !Array.isArray(sockaddr) || typeof sockaddr[0] !== "string" ||
    net.isIP(sockaddr[0]) === 0
  ) {
    throw new TypeError(
      `getnameinfo(): sockaddr must be [ip address, port], got ${
        describeValue(sockaddr)
      }`,
    );
  }
  const port = requireService(sockaddr[1], "getnameinfo()");
  const looked = new IoFuture<[string, string]>(loop);
  dns.lookupService(
    sockaddr[0],
    port,
    (error, hostname, service) =>
      settleIo(looked, error ?? undefined, [hostname, service]),
  );
  return looked.then();
}

// ===========================================================================
// §20 Introspection
// Holds: which task awaits which (asyncio 3.14's call graphs):
//   captureCallGraph, formatCallGraph, printCallGraph.
// Rule: a future knows its waiters: the awaiters in its callbacks, and the
//   done callbacks that gather and task groups tag with the future they
//   serve. JavaScript keeps no suspended async frames, so a graph has no
//   call stacks.
// Relies on: §5 Futures, §6 Tasks. Used by: users only.
// ===========================================================================

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

// ===========================================================================
// §21 Timelines
// Holds: Timeline, a record of every task's life (created, running,
//   waiting, done) on a loop, drawn as text or SVG.
// Rule: only the loop writes into a timeline, through the TimelineRecorder
//   the timeline hands it (start when the loop is made, record at each
//   change of a task's state, stop when it closes). A task runs for
//   microseconds between waits that last seconds, so both drawings give a
//   running slice a minimum width (one character, a few pixels): otherwise
//   the moments when a task actually runs would vanish.
// Relies on: §4 Event loop (which records), §6 Tasks (a task's name), and
//   §5 Futures' state (futureState: a done task's outcome, read without
//   marking a failure as retrieved). Used by: the loop (LoopOptions.timeline).
// ===========================================================================

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

// What a loop writes into a timeline with: the timeline's private side,
// which no user can reach.
interface TimelineRecorder {
  // The loop starts recording (its creation).
  start(loop: EventLoop): void;
  // The loop stops recording (its close).
  stop(loop: EventLoop): void;
  // A task changed state at `time`, on the loop's clock.
  record(task: Task<unknown>, state: TimelineState, time: number): void;
}

let timelineRecorder: (timeline: Timeline) => TimelineRecorder;

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
 * import { writeFileSync } from "node:fs";
 * import { tmpdir } from "node:os";
 * import { join } from "node:path";
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
 * // The same as a picture, to open in a browser:
 * writeFileSync(join(tmpdir(), "timeline.svg"), timeline.toSVG());
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

  #recorder: TimelineRecorder = {
    start: (loop) => this.#startRecording(loop),
    stop: (loop) => this.#stopRecording(loop),
    record: (task, state, time) => this.#record(task, state, time),
  };

  static {
    timelineRecorder = (timeline) => timeline.#recorder;
  }

  #startRecording(loop: EventLoop): void {
    this.events.length = 0;
    this.#ids = new WeakMap();
    this.#names = [];
    this.#lastStates = [];
    this.#start = loop.time();
    this.#end = null;
  }

  #stopRecording(loop: EventLoop): void {
    this.#end = loop.time() - this.#start;
  }

  #record(task: Task<unknown>, state: TimelineState, time: number): void {
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
    const rows = this.#names.map((name, i): TimelineRow => ({
      id: i + 1,
      name,
      spans: [],
      end: null,
      outcome: null,
    }));
    const open: Array<{ state: TimelineSpan["state"]; from: number } | null> =
      rows.map((): null => null);
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
   * const svg = timeline.toSVG({ width: 600 });
   * console.log(svg.startsWith("<svg")); // true
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
