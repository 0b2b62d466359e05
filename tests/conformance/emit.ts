// Two emitters for one program: TypeScript on this library, and Python on
// asyncio. They are written side by side, statement by statement, so a
// difference between them is easy to spot in review.

import {
  type Aw,
  MAIN_LIMIT_MS,
  type Prim,
  type Program,
  type Stmt,
} from "./gen.ts";

const q = JSON.stringify;

function pyStr(s: string): string {
  return q(s); // ASCII names and messages only: JSON quoting is Python quoting
}

// ---------------------------------------------------------------------------
// TypeScript

const TS_IMPORTS = [
  "asCompleted",
  "Barrier",
  "BoundedSemaphore",
  "CancelledError",
  "Condition",
  "createTask",
  "currentTask",
  "Event",
  "gather",
  "getRunningLoop",
  "LifoQueue",
  "Lock",
  "PriorityQueue",
  "Queue",
  "Semaphore",
  "shield",
  "sleep",
  "taskGroup",
  "timeout",
  "wait",
  "waitFor",
];

function tsPrim(p: Prim): string {
  switch (p.kind) {
    case "Lock":
    case "Event":
    case "Condition":
      return `new ${p.kind}()`;
    case "Semaphore":
      return `new ${p.bounded ? "BoundedSemaphore" : "Semaphore"}(${p.value})`;
    case "Barrier":
      return `new Barrier(${p.parties})`;
    default:
      return `new ${p.kind}(${p.maxsize})`;
  }
}

function tsAw(a: Aw, label: string): string {
  return "fn" in a ? `() => f${a.fn}(${label})` : `tk(${q(a.task)})`;
}

/** Tasks for wait()/asCompleted(): fresh named tasks, or existing ones. */
function tsTasks(items: Aw[], names: string[]): string {
  return "[" +
    items.map((a, i) =>
      "fn" in a
        ? `sp(${q(names[i])}, () => f${a.fn}(${q(names[i])}))`
        : `tkOnly(${q(a.task)})`
    ).join(", ") + "].filter((t) => t !== undefined)";
}

function tsBlock(body: Stmt[], ind: string): string[] {
  return body.flatMap((s) => tsStmt(s, ind));
}

function tsStmt(s: Stmt, ind: string): string[] {
  const I = ind + "  ";
  const P = "prim" in s ? `P${s.prim}` : "";
  switch (s.k) {
    case "sleep":
      return [`${ind}await sleep(${s.ms});`, `${ind}tr(me, "s${s.ms}");`];
    case "spawn":
      return [
        s.eager
          ? `${ind}sp(${q(s.name)}, eager(${q(s.name)}, () => f${s.fn}(${
            q(s.name)
          })), true);`
          : `${ind}sp(${q(s.name)}, () => f${s.fn}(${q(s.name)}));`,
        `${ind}tr(me, "spawn ${s.name}");`,
      ];
    case "join":
      return [
        `${ind}{`,
        `${I}const t = tkOnly(${q(s.name)});`,
        `${I}if (t === undefined) tr(me, "nojoin ${s.name}");`,
        `${I}else tr(me, "joined ${s.name} " + fmt(await t));`,
        `${ind}}`,
      ];
    case "cancel":
      return [
        `${ind}{`,
        `${I}const t = T.get(${q(s.name)});`,
        `${I}tr(me, "cancel ${s.name} " + (t === undefined ? "none" : fmt(t.cancel(${
          s.msg === null ? "" : q(s.msg)
        }))));`,
        `${ind}}`,
      ];
    case "uncancel":
      return [`${ind}tr(me, "uncancel " + currentTask().uncancel());`];
    case "cancelling":
      return [`${ind}tr(me, "cancelling " + currentTask().cancelling());`];
    case "call":
      return [`${ind}tr(me, "called " + fmt(await f${s.fn}(me)));`];
    case "raise":
      return [`${ind}throw new Boom(${q(s.msg)});`];
    case "try": {
      const rethrow = s.reraise === "always"
        ? `${I}throw e;`
        : s.reraise === "cancel"
        ? `${I}if (e instanceof CancelledError) throw e;`
        : null;
      return [
        `${ind}try {`,
        ...tsBlock(s.body, I),
        `${ind}} catch (e) {`,
        `${I}tr(me, "caught " + desc(e));`,
        ...(rethrow ? [rethrow] : []),
        ...(s.fin ? [`${ind}} finally {`, `${I}tr(me, "fin");`] : []),
        `${ind}}`,
      ];
    }
    case "repeat":
      return [
        `${ind}for (let i = 0; i < ${s.n}; i++) {`,
        ...tsBlock(s.body, I),
        `${ind}}`,
      ];
    case "with":
      return [
        `${ind}await ${P}.acquire();`,
        `${ind}try {`,
        `${I}tr(me, "acq ${P}");`,
        ...tsBlock(s.body, I),
        `${ind}} finally {`,
        `${I}${P}.release();`,
        `${ind}}`,
      ];
    case "release":
      return [`${ind}${P}.release();`, `${ind}tr(me, "rel ${P}");`];
    case "evSet":
      return [`${ind}${P}.set();`, `${ind}tr(me, "set ${P}");`];
    case "evClear":
      return [`${ind}${P}.clear();`, `${ind}tr(me, "clear ${P}");`];
    case "evWait":
      return [`${ind}await ${P}.wait();`, `${ind}tr(me, "ev ${P}");`];
    case "cWait":
      return [`${ind}await ${P}.wait();`, `${ind}tr(me, "cwoke ${P}");`];
    case "cWaitTimeout":
      return [
        `${ind}await waitFor(() => ${P}.wait(), ${s.ms});`,
        `${ind}tr(me, "cwoke ${P}");`,
      ];
    case "notify":
      return [
        s.all ? `${ind}${P}.notifyAll();` : `${ind}${P}.notify(${s.n});`,
        `${ind}tr(me, "notified ${P}");`,
      ];
    case "bWait":
      return [`${ind}tr(me, "bw ${P} " + fmt(await ${P}.wait()));`];
    case "bAbort":
      return [`${ind}await ${P}.abort();`, `${ind}tr(me, "abort ${P}");`];
    case "bReset":
      return [`${ind}await ${P}.reset();`, `${ind}tr(me, "reset ${P}");`];
    case "qPut":
      return [
        s.nowait
          ? `${ind}${P}.putNowait(${s.v});`
          : `${ind}await ${P}.put(${s.v});`,
        `${ind}tr(me, "put ${P} ${s.v}");`,
      ];
    case "qGet":
      return [
        `${ind}tr(me, "got ${P} " + fmt(${
          s.nowait ? `${P}.getNowait()` : `await ${P}.get()`
        }));`,
      ];
    case "qJoin":
      return [`${ind}await ${P}.join();`, `${ind}tr(me, "qjoined ${P}");`];
    case "qTaskDone":
      return [`${ind}${P}.taskDone();`, `${ind}tr(me, "done ${P}");`];
    case "qShutdown":
      return [
        `${ind}${P}.shutdown(${s.immediate});`,
        `${ind}tr(me, "shut ${P}");`,
      ];
    case "gather":
      return [
        `${ind}tr(me, "gathered " + fmt(await gather([${
          s.items.map((a, i) => tsAw(a, `me + "/g${i}"`)).join(", ")
        }], { returnExceptions: ${s.retEx} })));`,
      ];
    case "wait":
      return [
        `${ind}{`,
        `${I}const ws = ${tsTasks(s.items, s.names)};`,
        `${I}if (ws.length === 0) tr(me, "wait none");`,
        `${I}else {`,
        `${I}  const [d, p] = await wait(ws, { returnWhen: ${q(s.returnWhen)}${
          s.timeout === null ? "" : `, timeout: ${s.timeout}`
        } });`,
        `${I}  tr(me, "waited " + names(d) + " " + names(p));`,
        `${I}}`,
        `${ind}}`,
      ];
    case "asCompleted":
      return [
        `${ind}{`,
        `${I}const ws = ${tsTasks(s.items, s.names)};`,
        `${I}if (ws.length === 0) tr(me, "ac none");`,
        `${I}else {`,
        `${I}  for await (const f of asCompleted(ws${
          s.timeout === null ? "" : `, { timeout: ${s.timeout} }`
        })) {`,
        `${I}    tr(me, "ac " + f.getName() + " " + fmt(await f));`,
        `${I}  }`,
        `${I}}`,
        `${ind}}`,
      ];
    case "waitFor":
      return [
        `${ind}tr(me, "wf " + fmt(await waitFor(${
          tsAw(s.aw, 'me + "/w"')
        }, ${s.ms})));`,
      ];
    case "shield":
      return [
        `${ind}tr(me, "sh " + fmt(await shield(${tsAw(s.aw, 'me + "/s"')})));`,
      ];
    case "timeout":
      return [
        `${ind}await timeout(${s.ms}, async () => {`,
        ...tsBlock(s.body, I),
        `${ind}});`,
        `${ind}tr(me, "tmo ok");`,
      ];
    case "taskGroup":
      return [
        `${ind}await taskGroup(async (tg) => {`,
        ...s.children.flatMap((c) => [
          `${I}T.set(${q(c.name)}, tg.createTask(() => f${c.fn}(${
            q(c.name)
          }), { name: ${q(c.name)} }));`,
          `${I}tr(me, "tg spawn ${c.name}");`,
        ]),
        ...tsBlock(s.body, I),
        `${ind}});`,
        `${ind}tr(me, "tg ok");`,
      ];
  }
}

/** The program's TypeScript body: the shared helpers come from `rt`. */
export function emitTsBody(prog: Program): string {
  const lines: string[] = [];
  prog.prims.forEach((p, i) => lines.push(`const P${i} = ${tsPrim(p)};`));
  prog.fns.forEach((body, i) => {
    lines.push("");
    lines.push(`async function f${i}(me) {`);
    lines.push(...tsBlock(body, "  "));
    lines.push(`  return "r${i}";`);
    lines.push("}");
  });
  return lines.join("\n");
}

/** The source given to `new Function("lib", "rt", ...)`: returns main. */
export function emitTsFunction(prog: Program): string {
  return [
    `const { ${TS_IMPORTS.join(", ")} } = lib;`,
    `const { T, tr, fmt, desc, names, sp, eager, tk, tkOnly, Boom, main } = rt;`,
    emitTsBody(prog),
    "return () => main(f0);",
  ].join("\n");
}

/** A stand-alone TypeScript program, for people to read and run. */
export function emitTsProgram(prog: Program, libPath = "../../mod.ts"): string {
  return [
    `// conformance program, generator ${prog.version}, seed ${prog.seed}`,
    `import * as lib from ${q(libPath)};`,
    `import { makeRuntime } from "./runtime.ts";`,
    `const rt = makeRuntime(lib);`,
    emitTsFunction(prog).replace(/^return .*$/m, ""),
    `await lib.run(() => main(f0), { virtualTime: true });`,
    `console.log(rt.trace.join("\\n"));`,
  ].join("\n");
}

// ---------------------------------------------------------------------------
// Python

function pyPrim(p: Prim): string {
  switch (p.kind) {
    case "Lock":
    case "Event":
    case "Condition":
      return `asyncio.${p.kind}()`;
    case "Semaphore":
      return `asyncio.${
        p.bounded ? "BoundedSemaphore" : "Semaphore"
      }(${p.value})`;
    case "Barrier":
      return `asyncio.Barrier(${p.parties})`;
    default:
      return `asyncio.${p.kind}(${p.maxsize})`;
  }
}

function pyAw(a: Aw, label: string): string {
  return "fn" in a ? `f${a.fn}(${label})` : `tk(${pyStr(a.task)})`;
}

function pyTasks(items: Aw[], names: string[]): string {
  return "[t for t in [" +
    items.map((a, i) =>
      "fn" in a
        ? `sp(${pyStr(names[i])}, f${a.fn}(${pyStr(names[i])}))`
        : `tk_only(${pyStr(a.task)})`
    ).join(", ") + "] if t is not None]";
}

const PY_NONE = (x: number | null) => (x === null ? "None" : String(x));

function pyBlock(body: Stmt[], ind: string): string[] {
  const out = body.flatMap((s) => pyStmt(s, ind));
  return out.length === 0 ? [`${ind}pass`] : out;
}

function pyStmt(s: Stmt, ind: string): string[] {
  const I = ind + "    ";
  const P = "prim" in s ? `P${s.prim}` : "";
  switch (s.k) {
    case "sleep":
      return [`${ind}await asyncio.sleep(${s.ms})`, `${ind}tr(me, "s${s.ms}")`];
    case "spawn":
      return [
        s.eager
          ? `${ind}sp(${pyStr(s.name)}, eager(${pyStr(s.name)}, f${s.fn}(${
            pyStr(s.name)
          })), True)`
          : `${ind}sp(${pyStr(s.name)}, f${s.fn}(${pyStr(s.name)}))`,
        `${ind}tr(me, "spawn ${s.name}")`,
      ];
    case "join":
      return [
        `${ind}t = tk_only(${pyStr(s.name)})`,
        `${ind}if t is None: tr(me, "nojoin ${s.name}")`,
        `${ind}else: tr(me, "joined ${s.name} " + fmt(await t))`,
      ];
    case "cancel":
      return [
        `${ind}t = T.get(${pyStr(s.name)})`,
        `${ind}tr(me, "cancel ${s.name} " + ("none" if t is None else fmt(t.cancel(${
          s.msg === null ? "" : pyStr(s.msg)
        }))))`,
      ];
    case "uncancel":
      return [
        `${ind}tr(me, "uncancel " + fmt(asyncio.current_task().uncancel()))`,
      ];
    case "cancelling":
      return [
        `${ind}tr(me, "cancelling " + fmt(asyncio.current_task().cancelling()))`,
      ];
    case "call":
      return [`${ind}tr(me, "called " + fmt(await f${s.fn}(me)))`];
    case "raise":
      return [`${ind}raise Boom(${pyStr(s.msg)})`];
    case "try": {
      const rethrow = s.reraise === "always"
        ? `${I}raise`
        : s.reraise === "cancel"
        ? `${I}if isinstance(e, asyncio.CancelledError): raise`
        : null;
      return [
        `${ind}try:`,
        ...pyBlock(s.body, I),
        `${ind}except BaseException as e:`,
        `${I}tr(me, "caught " + desc(e))`,
        ...(rethrow ? [rethrow] : []),
        ...(s.fin ? [`${ind}finally:`, `${I}tr(me, "fin")`] : []),
      ];
    }
    case "repeat":
      return [`${ind}for _ in range(${s.n}):`, ...pyBlock(s.body, I)];
    case "with":
      return [
        `${ind}async with ${P}:`,
        `${I}tr(me, "acq ${P}")`,
        ...pyBlock(s.body, I),
      ];
    case "release":
      return [`${ind}${P}.release()`, `${ind}tr(me, "rel ${P}")`];
    case "evSet":
      return [`${ind}${P}.set()`, `${ind}tr(me, "set ${P}")`];
    case "evClear":
      return [`${ind}${P}.clear()`, `${ind}tr(me, "clear ${P}")`];
    case "evWait":
      return [`${ind}await ${P}.wait()`, `${ind}tr(me, "ev ${P}")`];
    case "cWait":
      return [`${ind}await ${P}.wait()`, `${ind}tr(me, "cwoke ${P}")`];
    case "cWaitTimeout":
      return [
        `${ind}await asyncio.wait_for(${P}.wait(), ${s.ms})`,
        `${ind}tr(me, "cwoke ${P}")`,
      ];
    case "notify":
      return [
        s.all ? `${ind}${P}.notify_all()` : `${ind}${P}.notify(${s.n})`,
        `${ind}tr(me, "notified ${P}")`,
      ];
    case "bWait":
      return [`${ind}tr(me, "bw ${P} " + fmt(await ${P}.wait()))`];
    case "bAbort":
      return [`${ind}await ${P}.abort()`, `${ind}tr(me, "abort ${P}")`];
    case "bReset":
      return [`${ind}await ${P}.reset()`, `${ind}tr(me, "reset ${P}")`];
    case "qPut":
      return [
        s.nowait
          ? `${ind}${P}.put_nowait(${s.v})`
          : `${ind}await ${P}.put(${s.v})`,
        `${ind}tr(me, "put ${P} ${s.v}")`,
      ];
    case "qGet":
      return [
        `${ind}tr(me, "got ${P} " + fmt(${
          s.nowait ? `${P}.get_nowait()` : `await ${P}.get()`
        }))`,
      ];
    case "qJoin":
      return [`${ind}await ${P}.join()`, `${ind}tr(me, "qjoined ${P}")`];
    case "qTaskDone":
      return [`${ind}${P}.task_done()`, `${ind}tr(me, "done ${P}")`];
    case "qShutdown":
      return [
        `${ind}${P}.shutdown(${s.immediate ? "True" : "False"})`,
        `${ind}tr(me, "shut ${P}")`,
      ];
    case "gather":
      return [
        `${ind}tr(me, "gathered " + fmt(await asyncio.gather(${
          s.items.map((a, i) => pyAw(a, `me + "/g${i}"`)).join(", ")
        }, return_exceptions=${s.retEx ? "True" : "False"})))`,
      ];
    case "wait":
      return [
        `${ind}ws = ${pyTasks(s.items, s.names)}`,
        `${ind}if not ws: tr(me, "wait none")`,
        `${ind}else:`,
        `${I}d, p = await asyncio.wait(ws, return_when=asyncio.${s.returnWhen}, timeout=${
          PY_NONE(s.timeout)
        })`,
        `${I}tr(me, "waited " + names(d) + " " + names(p))`,
      ];
    case "asCompleted":
      return [
        `${ind}ws = ${pyTasks(s.items, s.names)}`,
        `${ind}if not ws: tr(me, "ac none")`,
        `${ind}else:`,
        `${I}async for f in as_completed(ws, timeout=${PY_NONE(s.timeout)}):`,
        `${I}    tr(me, "ac " + f.get_name() + " " + fmt(await f))`,
      ];
    case "waitFor":
      return [
        `${ind}tr(me, "wf " + fmt(await asyncio.wait_for(${
          pyAw(s.aw, 'me + "/w"')
        }, ${PY_NONE(s.ms)})))`,
      ];
    case "shield":
      return [
        `${ind}tr(me, "sh " + fmt(await asyncio.shield(${
          pyAw(s.aw, 'me + "/s"')
        })))`,
      ];
    case "timeout":
      return [
        `${ind}async with asyncio.timeout(${PY_NONE(s.ms)}):`,
        ...pyBlock(s.body, I),
        `${ind}tr(me, "tmo ok")`,
      ];
    case "taskGroup":
      return [
        `${ind}async with TaskGroup() as tg:`,
        ...s.children.flatMap((c) => [
          `${I}T[${pyStr(c.name)}] = tg.create_task(f${c.fn}(${
            pyStr(c.name)
          }), name=${pyStr(c.name)})`,
          `${I}tr(me, "tg spawn ${c.name}")`,
        ]),
        ...(s.children.length === 0 && s.body.length === 0
          ? [`${I}pass`]
          : s.body.flatMap((x) => pyStmt(x, I))),
        `${ind}tr(me, "tg ok")`,
      ];
  }
}

/** The program's Python: runs after PY_PRELUDE in the same namespace. */
export function emitPy(prog: Program): string {
  const lines: string[] = [
    `# conformance program, generator ${prog.version}, seed ${prog.seed}`,
  ];
  lines.push("def make_prims():");
  if (prog.prims.length === 0) lines.push("    pass");
  else lines.push("    global " + prog.prims.map((_, i) => `P${i}`).join(", "));
  prog.prims.forEach((p, i) => lines.push(`    P${i} = ${pyPrim(p)}`));
  prog.fns.forEach((body, i) => {
    lines.push("");
    lines.push(`async def f${i}(me):`);
    lines.push(...pyBlock(body, "    "));
    lines.push(`    return "r${i}"`);
  });
  return lines.join("\n") + "\n";
}

/**
 * Python helpers every program runs on: the virtual-time loop, the trace,
 * and main's wrapper (main's body under a timeout, then a bounded clean-up
 * that cancels what is left and prints each task's final state).
 */
export const PY_PRELUDE = `
import asyncio, heapq, itertools
from asyncio import base_events, events

class Deadlock(Exception):
    pass

class VirtualSelector:
    """select(timeout) moves the loop's clock instead of sleeping."""
    def __init__(self, loop):
        self.loop = loop
    def select(self, timeout):
        if timeout is None:
            raise Deadlock()
        self.loop.now += timeout
        return []
    def close(self):
        pass

_timer_order = itertools.count()

class OrderedTimer(events.TimerHandle):
    # Equal deadlines fire in scheduling order, as they do in the library.
    # asyncio leaves that order undefined (its heap decides); fixing it here
    # keeps a documented difference out of the comparison.
    __slots__ = ("order",)
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.order = next(_timer_order)
    def __lt__(self, other):
        if self._when == other._when:
            return self.order < other.order
        return self._when < other._when

class VirtualLoop(base_events.BaseEventLoop):
    """A loop whose clock is virtual, in milliseconds: sleep(5) is 5 ms."""
    def __init__(self):
        super().__init__()
        self.now = 0
        self._selector = VirtualSelector(self)
        self._clock_resolution = 1e-9
        self.set_exception_handler(lambda loop, context: None)
    def time(self):
        return self.now
    def call_at(self, when, callback, *args, context=None):
        self._check_closed()
        timer = OrderedTimer(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer
    def _process_events(self, event_list):
        pass
    def _write_to_self(self):
        pass

class OrderedSet(dict):
    def add(self, x):
        self[x] = None
    def discard(self, x):
        self.pop(x, None)

class TaskGroup(asyncio.TaskGroup):
    # asyncio's TaskGroup keeps its children in a set, so it cancels them in
    # an order that depends on memory addresses. Creation order (the
    # library's) keeps that undefined order out of the comparison.
    def __init__(self):
        super().__init__()
        self._tasks = OrderedSet()

class AsCompleted(asyncio.tasks._AsCompletedIterator):
    # asyncio's as_completed() puts its inputs in a set, so inputs that are
    # done already come out in an order that depends on memory addresses.
    # Input order (the library's) keeps that undefined order out.
    def __init__(self, aws, timeout):
        self._done = asyncio.Queue()
        self._timeout_handle = None
        loop = asyncio.get_running_loop()
        todo = list(dict.fromkeys(asyncio.ensure_future(aw) for aw in dict.fromkeys(aws)))
        for f in todo:
            f.add_done_callback(self._handle_completion)
        if todo and timeout is not None:
            self._timeout_handle = loop.call_later(timeout, self._handle_timeout)
        self._todo = set(todo)
        self._todo_left = len(todo)

def as_completed(aws, timeout=None):
    return AsCompleted(aws, timeout)

class Boom(Exception):
    pass

TRACE = []
CLOSED = [False]
T = {}

def fmt_time(t):
    return str(int(t)) if t == int(t) else str(round(t, 3))

def tr(me, ev):
    if not CLOSED[0]:
        TRACE.append(fmt_time(asyncio.get_running_loop().time()) + " " + me + " " + ev)

def desc(e):
    if isinstance(e, BaseExceptionGroup):
        return "ExceptionGroup[" + ",".join(desc(x) for x in e.exceptions) + "]"
    name = type(e).__name__
    if isinstance(e, (Boom, asyncio.CancelledError)):
        return name + ":" + (str(e.args[0]) if e.args and e.args[0] is not None else "")
    return name

def fmt(v):
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(fmt(x) for x in v) + "]"
    if isinstance(v, BaseException):
        return desc(v)
    return str(v)

def names(tasks):
    return "[" + ",".join(sorted(t.get_name() for t in tasks)) + "]"

def sp(name, coro, eager=False):
    t = asyncio.create_task(coro, name=name, eager_start=True) if eager else asyncio.create_task(coro, name=name)
    T[name] = t
    return t

def tk_only(name):
    t = T.get(name)
    return None if t is None or t is asyncio.current_task() else t

async def eager(me, coro):
    # Only the part before the first await runs eagerly in both languages:
    # JavaScript cannot go on past an await synchronously, even one that
    # asyncio would not suspend at (a free lock, a finished coroutine).
    tr(me, "eager")
    await asyncio.sleep(0)
    return await coro

async def nothing():
    return "none"

def tk(name):
    t = tk_only(name)
    return nothing() if t is None else t

def state(t):
    if not t.done():
        return "pending"
    if t.cancelled():
        return "cancelled"
    if t.exception() is not None:
        return "exc " + desc(t.exception())
    return "ok " + fmt(t.result())

async def main():
    make_prims()
    try:
        async with asyncio.timeout(${MAIN_LIMIT_MS}):
            await f0("main")
        tr("main", "end")
    except BaseException as e:
        tr("main", "main " + desc(e))
    for _ in range(5):
        pending = [t for t in T.values() if not t.done()]
        if not pending:
            break
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=100)
    for name in sorted(T):
        tr("main", name + " " + state(T[name]))
    CLOSED[0] = True

def run_program():
    saved = events._get_running_loop()
    events._set_running_loop(None)
    loop = VirtualLoop()
    try:
        try:
            loop.run_until_complete(main())
        except Deadlock:
            TRACE.append("HANG")
        except BaseException as e:
            TRACE.append("PYERR " + type(e).__name__ + " " + str(e))
        else:
            # asyncio.run's last step. When a leftover task can never end
            # (it re-acquires a lock held by a task waiting for it), asyncio
            # hangs here; the library's run() always returns, by design.
            left = asyncio.all_tasks(loop)
            for t in left:
                t.cancel()
            try:
                if left:
                    loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            except Deadlock:
                pass
    finally:
        for t in asyncio.all_tasks(loop):
            t._log_destroy_pending = False
        loop.close()
        events._set_running_loop(saved)
    return "\\n".join(TRACE)
`;
