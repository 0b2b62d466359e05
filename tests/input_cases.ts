// Every misuse and bad argument tried against the library, the error each
// gets at the call, and what asyncio does with the same mistake. The test
// tests/input_test.ts runs each; README's "Bad input and misuse" table is
// made from this list (scripts/misuse_table.ts).
import {
  asCompleted,
  Barrier,
  BoundedSemaphore,
  Condition,
  createSubprocessExec,
  createTask,
  Event,
  EventLoop,
  Future,
  gather,
  getRunningLoop,
  InvalidStateError,
  LifoQueue,
  Lock,
  openConnection,
  PriorityQueue,
  Queue,
  run,
  Runner,
  RuntimeError,
  Semaphore,
  shield,
  sleep,
  startServer,
  StreamReader,
  type TaskGroup,
  taskGroup,
  timeout,
  wait,
  waitFor,
} from "../mod.ts";

/** One misuse: `call` must throw `error`, with a message matching `names`. */
export interface MisuseCase {
  /** The call, as a user would write it. */
  call: string;
  /** The error it gets here. */
  error: ErrorConstructor | typeof RuntimeError | typeof InvalidStateError;
  /** What the message must name (the argument, usually). */
  names: RegExp;
  /** What asyncio does with the same mistake. */
  asyncio: string;
  /**
   * Makes the mistake, inside a running loop (virtual time), with what
   * `prepare` made, if there is one.
   */
  attempt: (prepared?: unknown) => unknown;
  /** Makes, and may await, what the mistake needs (a finished group). */
  prepare?: () => Promise<unknown>;
}

const fn = () => sleep(1);
const done = () => {
  const future = new Future<number>();
  future.setResult(1);
  return future;
};
const reader = (text = "12345678") => {
  const r = new StreamReader();
  r.feedData(new TextEncoder().encode(text));
  return r;
};
// The same: a type the compiler would refuse, passed as plain JS would.
// deno-lint-ignore no-explicit-any
const any = (value: unknown): any => value;

export const MISUSE: MisuseCase[] = [
  // Runners and the loop
  {
    call: "run(42)",
    error: TypeError,
    names: /run\(\): main must be a function/,
    asyncio: "ValueError (a coroutine was expected)",
    attempt: () => run(any(42)),
  },
  {
    call: 'run(fn, { virtualTime: "yes" })',
    error: TypeError,
    names: /options\.virtualTime must be true or false/,
    asyncio: "no such option",
    attempt: () => run(fn, any({ virtualTime: "yes" })),
  },
  {
    call: "run(fn, { debug: 1 })",
    error: TypeError,
    names: /options\.debug must be true or false/,
    asyncio: "accepted (truthy)",
    attempt: () => run(fn, any({ debug: 1 })),
  },
  {
    call: 'run(fn, "opts")',
    error: TypeError,
    names: /run\(\): options must be an object/,
    asyncio: "TypeError (same)",
    attempt: () => run(fn, any("opts")),
  },
  {
    call: "new Runner({ virtualTime: 1 })",
    error: TypeError,
    names: /Runner\(\): options\.virtualTime/,
    asyncio: "no such option",
    attempt: () => new Runner(any({ virtualTime: 1 })),
  },
  {
    call: "new Runner().run(42)",
    error: TypeError,
    names: /Runner\.run\(\): coro/,
    asyncio: "ValueError (a coroutine was expected)",
    attempt: () => new Runner().run(any(42)),
  },
  {
    call: "new EventLoop({ virtualTime: 1 })",
    error: TypeError,
    names: /EventLoop\(\): options\.virtualTime/,
    asyncio: "no such option",
    attempt: () => new EventLoop(any({ virtualTime: 1 })),
  },
  {
    call: "loop.runUntilComplete(42)",
    error: TypeError,
    names: /runUntilComplete\(\): future/,
    asyncio: "TypeError (same)",
    attempt: () => new EventLoop().runUntilComplete(any(42)),
  },
  {
    call: "loop.callSoon(42)",
    error: TypeError,
    names: /callSoon\(\): callback must be a function/,
    asyncio: "accepted; TypeError when it runs",
    attempt: () => new EventLoop().callSoon(any(42)),
  },
  {
    call: "loop.callLater(NaN, fn)",
    error: TypeError,
    names: /callLater\(\): delay/,
    asyncio: "accepted (a NaN deadline fires at once)",
    attempt: () => new EventLoop().callLater(NaN, fn),
  },
  {
    call: 'loop.callAt("1", fn)',
    error: TypeError,
    names: /callAt\(\): when/,
    asyncio: "TypeError (same)",
    attempt: () => new EventLoop().callAt(any("1"), fn),
  },
  {
    call: "closedLoop.callSoon(fn)",
    error: RuntimeError,
    names: /closed/,
    asyncio: "RuntimeError (same)",
    attempt: () => {
      const loop = new EventLoop();
      loop.close();
      return loop.callSoon(fn);
    },
  },
  {
    call: "closedLoop.createTask(fn)",
    error: RuntimeError,
    names: /closed/,
    asyncio: "RuntimeError (same)",
    attempt: () => {
      const loop = new EventLoop();
      loop.close();
      return loop.createTask(fn);
    },
  },
  {
    call: "closedLoop.runUntilComplete(fn)",
    error: RuntimeError,
    names: /Event loop is closed/,
    asyncio: "RuntimeError (same)",
    attempt: () => {
      const loop = new EventLoop();
      loop.close();
      return loop.runUntilComplete(fn);
    },
  },
  {
    call: "runningLoop.runUntilComplete(fn)",
    error: RuntimeError,
    names: /already running/,
    asyncio: "RuntimeError (same)",
    attempt: () => getRunningLoop().runUntilComplete(fn),
  },
  {
    call: "loop.setExceptionHandler(42)",
    error: TypeError,
    names: /setExceptionHandler\(\): handler/,
    asyncio: "TypeError (same)",
    attempt: () => new EventLoop().setExceptionHandler(any(42)),
  },
  // Tasks and futures
  {
    call: "createTask(42)",
    error: TypeError,
    names: /createTask\(\): coro/,
    asyncio: "TypeError (same)",
    attempt: () => createTask(any(42)),
  },
  {
    call: 'createTask(fn, "opts")',
    error: TypeError,
    names: /createTask\(\): options must be an object/,
    asyncio: "TypeError (same)",
    attempt: () => createTask(fn, any("opts")),
  },
  {
    call: 'createTask(fn, { eagerStart: "yes" })',
    error: TypeError,
    names: /options\.eagerStart must be true or false/,
    asyncio: "accepted (truthy)",
    attempt: () => createTask(fn, any({ eagerStart: "yes" })),
  },
  {
    call: "sleep(NaN)",
    error: TypeError,
    names: /sleep\(\): ms must be a number/,
    asyncio: "accepted: returns at once (a NaN deadline)",
    attempt: () => sleep(NaN),
  },
  {
    call: 'sleep("10")',
    error: TypeError,
    names: /sleep\(\): ms/,
    asyncio: "TypeError (same)",
    attempt: () => sleep(any("10")),
  },
  {
    call: "future.setException(42)",
    error: TypeError,
    names: /setException\(\): exception must be an Error, got 42/,
    asyncio: "TypeError (same)",
    attempt: () => new Future().setException(42),
  },
  {
    call: "doneFuture.setResult(2)",
    error: InvalidStateError,
    names: /already/,
    asyncio: "InvalidStateError (same)",
    attempt: () => done().setResult(2),
  },
  {
    call: "pendingFuture.result()",
    error: InvalidStateError,
    names: /Result is not set/,
    asyncio: "InvalidStateError (same)",
    attempt: () => new Future().result(),
  },
  {
    call: "task.setResult(1)",
    error: RuntimeError,
    names: /Task does not support setResult/,
    asyncio: "RuntimeError (same)",
    attempt: () => {
      const task = createTask(fn);
      try {
        task.setResult(undefined);
      } finally {
        task.cancel();
      }
    },
  },
  {
    call: "future.addDoneCallback(42)",
    error: TypeError,
    names: /addDoneCallback\(\): callback/,
    asyncio: "accepted; TypeError when it runs",
    attempt: () => new Future().addDoneCallback(any(42)),
  },
  // Waiting
  {
    call: "wait([])",
    error: RangeError,
    names: /wait\(\): aws is empty/,
    asyncio: "ValueError, at the await",
    attempt: () => wait([]),
  },
  {
    call: "wait([fn])",
    error: TypeError,
    names: /wait\(\): aws must hold futures or tasks/,
    asyncio: "AttributeError, at the await",
    attempt: () => wait([any(fn)]),
  },
  {
    call: "wait(42)",
    error: TypeError,
    names: /wait\(\): aws must be an iterable/,
    asyncio: "TypeError, at the await",
    attempt: () => wait(any(42)),
  },
  {
    call: 'wait(xs, { returnWhen: "bogus" })',
    error: RangeError,
    names: /options\.returnWhen must be FIRST_COMPLETED/,
    asyncio: "ValueError, at the await",
    attempt: () => wait([done()], any({ returnWhen: "bogus" })),
  },
  {
    call: 'wait(xs, { timeout: "1" })',
    error: TypeError,
    names: /wait\(\): options\.timeout must be a number/,
    asyncio: "TypeError, at the await",
    attempt: () => wait([done()], any({ timeout: "1" })),
  },
  {
    call: "waitFor(42, 10)",
    error: TypeError,
    names: /waitFor\(\): aw/,
    asyncio: "TypeError, at the await",
    attempt: () => waitFor(any(42), 10),
  },
  {
    call: 'waitFor(fn, "10")',
    error: TypeError,
    names: /waitFor\(\): ms must be a number/,
    asyncio: "TypeError, at the await",
    attempt: () => waitFor(fn, any("10")),
  },
  {
    call: "waitFor(fn, NaN)",
    error: TypeError,
    names: /waitFor\(\): ms must be a number/,
    asyncio: "accepted: TimeoutError at once",
    attempt: () => waitFor(fn, NaN),
  },
  {
    call: "gather(42)",
    error: TypeError,
    names: /gather\(\)/,
    asyncio: "TypeError (same)",
    attempt: () => gather(any(42)),
  },
  {
    call: "gather([42])",
    error: TypeError,
    names: /gather\(\): aws\[0\]/,
    asyncio: "TypeError (same)",
    attempt: () => gather([any(42)]),
  },
  {
    call: "shield(42)",
    error: TypeError,
    names: /shield\(\)|ensureFuture\(\)/,
    asyncio: "TypeError (same)",
    attempt: () => shield(any(42)),
  },
  {
    call: "asCompleted(42)",
    error: TypeError,
    names: /asCompleted\(\): aws must be an iterable/,
    asyncio: "TypeError (same)",
    attempt: () => asCompleted(any(42)),
  },
  {
    call: 'timeout("1", body)',
    error: TypeError,
    names: /timeout\(\): ms/,
    asyncio: "TypeError, on entering",
    attempt: () => timeout(any("1"), fn),
  },
  {
    call: "timeout(10, 42)",
    error: TypeError,
    names: /timeout\(\): body must be a function/,
    asyncio: "(no body: a context manager)",
    attempt: () => timeout(10, any(42)),
  },
  {
    call: "finishedGroup.createTask(fn)",
    error: RuntimeError,
    names: /TaskGroup is finished/,
    asyncio: "RuntimeError (same)",
    prepare: async () => {
      let group: TaskGroup | undefined;
      await taskGroup(async (tg) => {
        group = tg;
      });
      return group;
    },
    attempt: (group) => (group as TaskGroup).createTask(fn),
  },
  {
    call: "taskGroup(42)",
    error: TypeError,
    names: /taskGroup\(\): body must be a function/,
    asyncio: "(no body: a context manager)",
    attempt: () => taskGroup(any(42)),
  },
  // Synchronization and queues
  {
    call: "new Lock(42)",
    error: TypeError,
    names: /Lock\(\) takes no arguments/,
    asyncio: "TypeError (same)",
    attempt: () => new (Lock as new (x: unknown) => Lock)(42),
  },
  {
    call: "new Event(1)",
    error: TypeError,
    names: /Event\(\) takes no arguments/,
    asyncio: "TypeError (same)",
    attempt: () => new (Event as new (x: unknown) => Event)(1),
  },
  {
    call: "lock.release() (not locked)",
    error: RuntimeError,
    names: /Lock is not acquired/,
    asyncio: "RuntimeError (same)",
    attempt: () => new Lock().release(),
  },
  {
    call: "new Condition(42)",
    error: TypeError,
    names: /Condition\(\): lock must be a Lock/,
    asyncio: "AttributeError",
    attempt: () => new Condition(any(42)),
  },
  {
    call: "condition.notify() (lock not held)",
    error: RuntimeError,
    names: /lock/i,
    asyncio: "RuntimeError (same)",
    attempt: () => new Condition().notify(),
  },
  {
    call: "new Semaphore(-1)",
    error: RangeError,
    names: /Semaphore\(\): value/,
    asyncio: "ValueError (same)",
    attempt: () => new Semaphore(-1),
  },
  {
    call: 'new Semaphore("2")',
    error: TypeError,
    names: /Semaphore\(\): value must be a number/,
    asyncio: "TypeError (same)",
    attempt: () => new Semaphore(any("2")),
  },
  {
    call: "new BoundedSemaphore(1).release()",
    error: RangeError,
    names: /released too many times|BoundedSemaphore/,
    asyncio: "ValueError (same)",
    attempt: () => new BoundedSemaphore(1).release(),
  },
  {
    call: "new Barrier(0)",
    error: RangeError,
    names: /Barrier\(\): parties/,
    asyncio: "ValueError (same)",
    attempt: () => new Barrier(0),
  },
  {
    call: 'new Queue("10")',
    error: TypeError,
    names: /Queue\(\): maxsize must be a number/,
    asyncio: "accepted; fails at first put",
    attempt: () => new Queue(any("10")),
  },
  {
    call: "new LifoQueue(NaN)",
    error: TypeError,
    names: /LifoQueue\(\): maxsize/,
    asyncio: "accepted (never full)",
    attempt: () => new LifoQueue(NaN),
  },
  {
    call: "new PriorityQueue(0, { compare: 42 })",
    error: TypeError,
    names: /PriorityQueue\(\): options\.compare/,
    asyncio: "(no such option)",
    attempt: () => new PriorityQueue(0, any({ compare: 42 })),
  },
  {
    call: "queue.taskDone() (nothing to be done)",
    error: RangeError,
    names: /taskDone\(\)/,
    asyncio: "ValueError (same)",
    attempt: () => new Queue().taskDone(),
  },
  // Streams
  {
    call: "reader.read(NaN)",
    error: TypeError,
    names: /read\(\): n must be an integer, got NaN/,
    asyncio: "TypeError, at the await",
    attempt: () => reader().read(NaN),
  },
  {
    call: "reader.read(1.5)",
    error: TypeError,
    names: /read\(\): n must be an integer, got 1\.5/,
    asyncio: "TypeError, at the await",
    attempt: () => reader().read(1.5),
  },
  {
    call: 'reader.read("3")',
    error: TypeError,
    names: /read\(\): n must be an integer, got "3"/,
    asyncio: "TypeError, at the await",
    attempt: () => reader().read(any("3")),
  },
  {
    call: 'reader.feedData("hello")',
    error: TypeError,
    names: /feedData\(\): data must be a Uint8Array/,
    asyncio: "TypeError (same)",
    attempt: () => reader().feedData(any("hello")),
  },
  {
    call: "reader.readuntil(42)",
    error: TypeError,
    names: /readuntil\(\): separator must be a Uint8Array or a string/,
    asyncio: "TypeError, at the await",
    attempt: () => reader().readuntil(any(42)),
  },
  {
    call: 'reader.readuntil("")',
    error: RangeError,
    names: /readuntil\(\): separator must not be empty/,
    asyncio: "ValueError, at the await",
    attempt: () => reader().readuntil(""),
  },
  {
    call: "reader.readuntil([])",
    error: RangeError,
    names: /readuntil\(\): separator must not be an empty array/,
    asyncio: "ValueError, at the await",
    attempt: () => reader().readuntil([]),
  },
  {
    call: 'reader.readuntil(["\\n", 7])',
    error: TypeError,
    names: /readuntil\(\): separator\[1\]/,
    asyncio: "TypeError, at the await",
    attempt: () => reader().readuntil(["\n", any(7)]),
  },
  {
    call: "reader.readexactly(-1)",
    error: RangeError,
    names: /readexactly\(\): n must be >= 0, got -1/,
    asyncio: "ValueError, at the await",
    attempt: () => reader().readexactly(-1),
  },
  {
    call: "reader.readexactly(NaN)",
    error: TypeError,
    names: /readexactly\(\): n must be an integer, got NaN/,
    asyncio: "TypeError, at the await",
    attempt: () => reader().readexactly(NaN),
  },
  {
    call: "new StreamReader(0)",
    error: RangeError,
    names: /StreamReader\(\): limit/,
    asyncio: "ValueError (same)",
    attempt: () => new StreamReader(0),
  },
  {
    call: "reader.feedData(bytes) after feedEof()",
    error: RuntimeError,
    names: /feedData\(\) after feedEof\(\)/,
    asyncio: "AssertionError",
    attempt: () => {
      const r = reader();
      r.feedEof();
      r.feedData(new Uint8Array(1));
    },
  },
  {
    call: 'openConnection("127.0.0.1", 70000)',
    error: RangeError,
    names: /openConnection\(\): port must be an integer from 0 to 65535/,
    asyncio: "OverflowError, at the await",
    attempt: () => openConnection("127.0.0.1", 70000),
  },
  {
    call: "openConnection(42, 80)",
    error: TypeError,
    names: /openConnection\(\): host must be a string/,
    asyncio: "TypeError, at the await",
    attempt: () => openConnection(any(42), 80),
  },
  {
    call: 'startServer(42, "127.0.0.1", 0)',
    error: TypeError,
    names: /startServer\(\): clientConnected must be a function/,
    asyncio: "accepted; fails per client",
    attempt: () => startServer(any(42), "127.0.0.1", 0),
  },
  // Subprocesses
  {
    call: "createSubprocessExec(42)",
    error: TypeError,
    names: /program must be a non-empty string/,
    asyncio: "TypeError, at the await",
    attempt: () => createSubprocessExec(any(42)),
  },
  {
    call: 'createSubprocessExec("ls", "-l")',
    error: TypeError,
    names: /args must be an array of strings/,
    asyncio: "(takes *args)",
    attempt: () => createSubprocessExec("ls", any("-l")),
  },
  {
    call: 'createSubprocessExec("ls", [], { stdout: 7.5 })',
    error: RangeError,
    names: /options\.stdout must be PIPE, DEVNULL/,
    asyncio: "TypeError, at the await",
    attempt: () => createSubprocessExec("ls", [], any({ stdout: 7.5 })),
  },
];
