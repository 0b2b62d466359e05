// The TypeScript side's helpers: the same names and output as PY_PRELUDE in
// emit.ts, on the library given (any checkout of mod.ts).

import { MAIN_LIMIT_MS } from "./gen.ts";

// deno-lint-ignore no-explicit-any
export type Lib = any;
// deno-lint-ignore no-explicit-any
type AnyTask = any;

/** Error names that differ only by the JS convention for Python's class. */
const PY_NAMES: Record<string, string> = { RangeError: "ValueError" };

export interface Runtime {
  trace: string[];
  closed: boolean;
  T: Map<string, AnyTask>;
  tr(me: string, ev: string): void;
  fmt(v: unknown): string;
  desc(e: unknown): string;
  names(tasks: Iterable<AnyTask>): string;
  sp(name: string, coro: () => unknown, eager?: boolean): AnyTask;
  eager(name: string, fn: () => Promise<unknown>): () => Promise<unknown>;
  tk(name: string): unknown;
  tkOnly(name: string): AnyTask | undefined;
  Boom: new (msg: string) => Error;
  main(f0: (me: string) => Promise<unknown>): Promise<void>;
}

function fmtTime(t: number): string {
  return Number.isInteger(t) ? String(t) : String(Math.round(t * 1000) / 1000);
}

export function makeRuntime(lib: Lib): Runtime {
  class Boom extends Error {
    constructor(msg: string) {
      super(msg);
      this.name = "Boom";
    }
  }
  const rt: Runtime = {
    trace: [],
    closed: false,
    T: new Map(),
    tr(me, ev) {
      if (rt.closed) return;
      rt.trace.push(`${fmtTime(lib.getRunningLoop().time())} ${me} ${ev}`);
    },
    desc(e) {
      if (e instanceof lib.ExceptionGroup) {
        return "ExceptionGroup[" +
          (e as { exceptions: unknown[] }).exceptions.map(rt.desc).join(",") +
          "]";
      }
      if (!(e instanceof Error)) return `NonError(${String(e)})`;
      const raw = e instanceof lib.CancelledError
        ? "CancelledError"
        : e.constructor.name;
      const name = PY_NAMES[raw] ?? raw;
      if (e instanceof Boom || e instanceof lib.CancelledError) {
        return `${name}:${e.message}`;
      }
      return name;
    },
    fmt(v) {
      if (v === null || v === undefined) return "None";
      if (typeof v === "boolean") return v ? "true" : "false";
      if (Array.isArray(v)) return "[" + v.map(rt.fmt).join(",") + "]";
      if (v instanceof Error) return rt.desc(v);
      return String(v);
    },
    names(tasks) {
      return "[" + [...tasks].map((t) => t.getName()).sort().join(",") + "]";
    },
    sp(name, coro, eager = false) {
      const t = lib.createTask(
        coro,
        eager ? { name, eagerStart: true } : { name },
      );
      rt.T.set(name, t);
      return t;
    },
    eager(name, fn) {
      // See eager() in PY_PRELUDE.
      return async () => {
        rt.tr(name, "eager");
        await lib.sleep(0);
        return await fn();
      };
    },
    tkOnly(name) {
      const t = rt.T.get(name);
      return t === undefined || t === lib.currentTask() ? undefined : t;
    },
    tk(name) {
      const t = rt.tkOnly(name);
      return t === undefined ? () => Promise.resolve("none") : t;
    },
    Boom,
    async main(f0) {
      try {
        await lib.timeout(MAIN_LIMIT_MS, () => f0("main"));
        rt.tr("main", "end");
      } catch (e) {
        rt.tr("main", "main " + rt.desc(e));
      }
      for (let i = 0; i < 5; i++) {
        const pending = [...rt.T.values()].filter((t) => !t.done());
        if (pending.length === 0) break;
        for (const t of pending) t.cancel();
        await lib.wait(pending, { timeout: 100 });
      }
      for (const name of [...rt.T.keys()].sort()) {
        rt.tr("main", name + " " + state(rt, rt.T.get(name)));
      }
      rt.closed = true;
    },
  };
  return rt;
}

function state(rt: Runtime, t: AnyTask): string {
  if (!t.done()) return "pending";
  if (t.cancelled()) return "cancelled";
  const e = t.exception();
  if (e !== null && e !== undefined) return "exc " + rt.desc(e);
  return "ok " + rt.fmt(t.result());
}

/** Runs one program's emitted function on `lib` under virtual time. */
export async function runTsSource(
  lib: Lib,
  fnSource: string,
  hangAfterMs = 1500,
): Promise<string[]> {
  const rt = makeRuntime(lib);
  let main: () => Promise<void>;
  try {
    main = new Function("lib", "rt", fnSource)(lib, rt);
  } catch (e) {
    return ["COMPILE " + String(e)];
  }
  let loop: Lib = null;
  let finished = false;
  const running = lib.run(async () => {
    loop = lib.getRunningLoop();
    loop.setExceptionHandler(() => {});
    await main();
  }, { virtualTime: true }).then(
    () => null,
    (e: unknown) => "RUNERR " + rt.desc(e),
  ).finally(() => {
    finished = true;
  });
  // A deadlock under virtual time leaves nothing scheduled: no error, just a
  // promise that never settles. Watch for a stall in real time instead.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stalled = new Promise<string>((resolve) => {
    let lastLen = -1;
    let lastTime = -1;
    let still = 0;
    const poll = () => {
      if (finished) return;
      const now = loop === null ? -1 : loop.time();
      if (rt.trace.length === lastLen && now === lastTime) still++;
      else still = 0;
      lastLen = rt.trace.length;
      lastTime = now;
      if (still * 50 >= hangAfterMs) resolve("HANG");
      else timer = setTimeout(poll, 50);
    };
    timer = setTimeout(poll, 50);
  });
  const outcome = await Promise.race([running, stalled]);
  clearTimeout(timer);
  rt.closed = true;
  const trace = [...rt.trace];
  if (outcome !== null) trace.push(outcome);
  return trace;
}
