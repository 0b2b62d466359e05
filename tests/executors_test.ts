import { test } from "node:test";
import assert from "node:assert/strict";
import {
  CancelledError,
  EventLoop,
  ExceptionGroup,
  getRunningLoop,
  run,
  RuntimeError,
  sleep,
  taskGroup,
  toThread,
  WorkerPoolExecutor,
} from "../mod.ts";
import type * as Work from "./executor_work.ts";

const WORK = new URL("./executor_work.ts", import.meta.url);

function cells(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(8));
}

function release(shared: Int32Array): void {
  Atomics.store(shared, 0, 1);
  Atomics.notify(shared, 0);
}

test("executor: run() calls a module's export on a worker and returns its result", async () => {
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, {
    maxWorkers: 2,
  });
  try {
    await run(async () => {
      assert.equal(await pool.run("fib", 20), 6765);
      assert.equal(await pool.run("double", 21), 42);
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: loop.runInExecutor() runs on the given executor", async () => {
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, {
    maxWorkers: 1,
  });
  try {
    await run(async () => {
      const loop = getRunningLoop();
      assert.equal(await loop.runInExecutor(pool, "fib", 10), 55);
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: the pool's size defaults to the number of cores", async () => {
  const { availableParallelism } = await import("node:os");
  const pool = new WorkerPoolExecutor(WORK);
  try {
    assert.equal(pool.maxWorkers, availableParallelism());
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: a worker's error arrives with its class, message and stack", async () => {
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, {
    maxWorkers: 1,
  });
  try {
    await run(async () => {
      const error = await pool.run("boom", "bad input").then(
        () => assert.fail("should have thrown"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof TypeError);
      assert.equal(error.message, "bad input");
      assert.match(error.stack ?? "", /boom/);
      assert.match(error.stack ?? "", /executor_work\.ts/);
      // The worker survives its job's error.
      assert.equal(await pool.run("fib", 5), 5);
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: a name the module does not export as a function fails at the await", async () => {
  const pool = new WorkerPoolExecutor(WORK, { maxWorkers: 1 });
  try {
    await run(async () => {
      await assert.rejects(pool.run("nothing"), {
        name: "TypeError",
        message: /exports no function named "nothing"/,
      });
      await assert.rejects(pool.run("notAFunction"), TypeError);
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: a result that cannot be copied fails at the await", async () => {
  const pool = new WorkerPoolExecutor(WORK, { maxWorkers: 1 });
  try {
    await run(async () => {
      await assert.rejects(pool.run("unsendable"), { name: "DataCloneError" });
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: bad arguments throw at the call", async () => {
  assert.throws(() => new WorkerPoolExecutor(42 as never), TypeError);
  assert.throws(
    () => new WorkerPoolExecutor(WORK, { maxWorkers: 0 }),
    RangeError,
  );
  const pool = new WorkerPoolExecutor(WORK, { maxWorkers: 1 });
  try {
    const bare = new WorkerPoolExecutor(null, { maxWorkers: 1 });
    try {
      await run(async () => {
        assert.throws(() => pool.run(42 as never), TypeError);
        assert.throws(() => bare.run("fib", 1), RuntimeError);
        assert.throws(
          () => getRunningLoop().runInExecutor(null as never, "fib" as never),
          /toThread/,
        );
        assert.throws(() => toThread(WORK, "" as never), TypeError);
      });
    } finally {
      await bare[Symbol.asyncDispose]();
    }
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: cancelling the task drops a job that has not started", async () => {
  const shared = cells();
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, {
    maxWorkers: 1,
  });
  try {
    await run(async () => {
      const held = pool.run("hold", shared); // takes the only worker
      const queued = pool.run("bump", shared);
      assert.equal(queued.cancel(), true);
      release(shared);
      assert.equal(await held, "released");
      assert.equal(await pool.run("bump", shared), 1); // the cancelled one never ran
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: cancelling a running job terminates its worker; a fresh one takes over", async () => {
  const shared = cells();
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, {
    maxWorkers: 1,
  });
  try {
    await run(async () => {
      const first = await pool.run("workerId");
      const task = getRunningLoop().createTask(() => pool.run("hold", shared));
      await sleep(0);
      task.cancel();
      await assert.rejects(task, CancelledError);
      const second = await pool.run("workerId");
      assert.notEqual(second, first);
    });
    // Never released: had the worker not been terminated, shutdown would hang.
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: in a taskGroup, a failing job cancels a running one", async () => {
  const shared = cells();
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, {
    maxWorkers: 2,
  });
  try {
    await run(async () => {
      const error = await taskGroup(async (tg) => {
        tg.createTask(() => pool.run("hold", shared));
        tg.createTask(() => pool.run("boom", "one failed"));
      }).catch((e: unknown) => e);
      assert.ok(error instanceof ExceptionGroup);
      assert.equal(error.exceptions.length, 1);
      assert.equal((error.exceptions[0] as Error).message, "one failed");
    });
  } finally {
    await pool[Symbol.asyncDispose]();
  }
});

test("executor: shutdown() waits for running jobs, then refuses new ones", async () => {
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, { maxWorkers: 1 });
  await run(async () => {
    const result = pool.run("fib", 25);
    const queued = pool.run("fib", 10);
    await pool.shutdown();
    assert.equal(result.done() && result.result(), 75025);
    assert.equal(queued.done() && queued.result(), 55);
    assert.throws(() => pool.run("fib", 1), {
      name: "RuntimeError",
      message: "cannot schedule new futures after shutdown",
    });
  });
});

test("executor: shutdown({ cancelFutures: true }) cancels the jobs not started", async () => {
  const shared = cells();
  const pool = new WorkerPoolExecutor<typeof Work>(WORK, { maxWorkers: 1 });
  await run(async () => {
    const held = pool.run("hold", shared);
    const queued = pool.run("bump", shared);
    const closing = pool.shutdown({ cancelFutures: true });
    assert.equal(queued.cancelled(), true);
    release(shared);
    await closing;
    assert.equal(await held, "released");
    assert.equal(Atomics.load(shared, 1), 0);
  });
});

test("toThread: runs a module's export on the loop's default executor", async () => {
  await run(async () => {
    assert.equal(await toThread<number>(WORK, "fib", 15), 610);
    const packed = await toThread<Uint8Array>(
      "node:zlib",
      "gzipSync",
      new Uint8Array(1000),
    );
    assert.ok(packed instanceof Uint8Array && packed.length < 100);
    await getRunningLoop().shutdownDefaultExecutor();
    assert.throws(() => toThread(WORK, "fib", 1), {
      name: "RuntimeError",
      message: "Executor shutdown has been called",
    });
  });
});

test("toThread: closing the loop shuts its default executor down", async () => {
  const loop = new EventLoop();
  const pool = new WorkerPoolExecutor(null, { maxWorkers: 1 });
  loop.setDefaultExecutor(pool);
  assert.equal(
    await loop.runUntilComplete(() => toThread<number>(WORK, "fib", 10)),
    55,
  );
  loop.close();
  assert.throws(() => pool.run("fib", 1), RuntimeError);
  assert.throws(
    () => loop.runInExecutor(pool, "fib", 1),
    { name: "RuntimeError", message: "Event loop is closed" },
  );
  await pool.shutdown(); // waits for the terminated worker to exit
});
