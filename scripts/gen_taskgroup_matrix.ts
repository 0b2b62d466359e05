// Writes tests/fixtures/taskgroup_matrix.json: the trace CPython 3.14 prints
// for every program of the task-group matrix that
// tests/taskgroup_matrix_test.ts runs on this library. CPython runs through
// pyodide (node_modules/pyodide), on a loop whose clock is virtual
// (1 unit = 1 ms), so the times in the traces are exact.
//
//   node scripts/gen_taskgroup_matrix.ts    (or: deno run -A …, bun …)
//
// The fixture records the SHA-256 of this file: the test refuses a fixture
// that an older version of this script wrote.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

// The dimensions, in the test's order; the test enumerates the same ones.
const CANCELS = ["none", "early", "exit", "double", "twice"] as const;
const CHILDREN = ["none", "sleep", "sleepOrCancel", "now"] as const;
const BODIES = ["none", "sleep", "sleepOrCancel", "now"] as const;
const NESTS = ["flat", "nested", "nestedSlow"] as const;
const EAGERS = ["lazy", "eager", "eagerChild"] as const;

// The program, in Python. Its TypeScript twin is in the test; the two are
// written line for line alike, so keep them so.
//
// - main starts `parent`, then cancels it: never ("none"); at 1 ms, before a
//   child fails after its sleep ("early"); 1 ms after the body of the (outer)
//   group has ended, while the group waits in its exit for the slow child
//   ("exit"); twice in a row at 1 ms ("double"); at 1 ms and again at 1.5 ms,
//   while the group waits in its exit ("twice"). No timer of the program is
//   due at 1.5 ms.
// - The failing child: none; fails after sleep(2) and is cancelled by a
//   cancel ("sleep"); fails after sleep(2) or right after its cancel,
//   whichever comes first ("sleepOrCancel"); fails before its first await
//   ("now").
// - The body: does not fail and ends after sleep(3) ("none"); fails after
//   sleep(3) ("sleep"); fails after sleep(3) or right after a cancel
//   ("sleepOrCancel"); fails at once ("now").
// - "flat": one group, the failing child first, then the slow child.
//   "nested": the slow child in the outer group, the failing child and the
//   body in an inner group inside the outer body. "nestedSlow": the other
//   way round, the failing child in the outer group, the slow child and the
//   body in the inner group; "exit" then means the inner group's exit.
// - The slow child sleeps 10 ms; cancelled, it cleans up for 3 ms under
//   shield, then lets the cancel through.
// - eager: "lazy", no child is eager; "eager", every child of the groups is
//   started with eager_start; "eagerChild", only the failing child is, so
//   the slow child's first step is scheduled while the failing one is done.
const PROGRAM = String.raw`
import asyncio, json
from asyncio import sleep, shield, create_task, current_task, CancelledError, TaskGroup, Event

class Boom(Exception):
    pass

def fmt(e):
    if isinstance(e, BaseExceptionGroup):
        return "[" + ", ".join(sorted(fmt(x) for x in e.exceptions)) + "]"
    if isinstance(e, CancelledError):
        return "CancelledError"
    if isinstance(e, Boom):
        return str(e)
    return type(e).__name__

async def program(cancel, child, body, nest, eager, trace):
    loop = asyncio.get_running_loop()
    def log(what):
        trace.append([round(loop.time(), 6), what])
    loop.set_exception_handler(lambda l, ctx: log("handler: " + fmt(ctx.get("exception"))))
    body_ended = Event()

    async def slow():
        log("slow: start")
        try:
            await sleep(10)
        except CancelledError:
            log("slow: cancelled")
            await shield(create_task(sleep(3)))
            log("slow: cleaned up")
            raise
        log("slow: done")

    async def failing():
        log("child: start")
        if child == "now":
            log("child: raise")
            raise Boom("child")
        try:
            await sleep(2)
        except CancelledError:
            log("child: cancelled")
            if child == "sleep":
                raise
        log("child: raise")
        raise Boom("child")

    async def body_action():
        log("body: start")
        if body == "now":
            log("body: raise")
            raise Boom("body")
        try:
            await sleep(3)
        except CancelledError:
            log("body: cancelled")
            if body != "sleepOrCancel":
                raise
        if body == "none":
            log("body: end")
            return
        log("body: raise")
        raise Boom("body")

    async def group_scope():
        if nest == "flat":
            async with TaskGroup() as tg:
                if child != "none":
                    tg.create_task(failing(), eager_start=eager != "lazy")
                    log("body: created child")
                tg.create_task(slow(), eager_start=eager == "eager")
                log("body: created slow")
                try:
                    await body_action()
                finally:
                    body_ended.set()
        elif nest == "nested":
            async with TaskGroup() as outer:
                outer.create_task(slow(), eager_start=eager == "eager")
                log("body: created slow")
                try:
                    async with TaskGroup() as inner:
                        if child != "none":
                            inner.create_task(failing(), eager_start=eager != "lazy")
                            log("body: created child")
                        await body_action()
                finally:
                    body_ended.set()
        else:
            async with TaskGroup() as outer:
                if child != "none":
                    outer.create_task(failing(), eager_start=eager != "lazy")
                    log("body: created child")
                async with TaskGroup() as inner:
                    inner.create_task(slow(), eager_start=eager == "eager")
                    log("body: created slow")
                    try:
                        await body_action()
                    finally:
                        body_ended.set()

    async def parent_fn():
        me = current_task()
        try:
            await group_scope()
            log("group: ok")
        except CancelledError:
            log("group: CancelledError")
        except BaseExceptionGroup as eg:
            log("group: " + fmt(eg))
        except BaseException as e:
            log("group: other " + fmt(e))
        try:
            await sleep(0)
            log("next await: ok")
        except CancelledError:
            log("next await: CancelledError")
        log("cancelling: " + str(me.cancelling()))

    parent = create_task(parent_fn())
    if cancel in ("early", "double", "twice"):
        await sleep(1)
        log("main: cancel " + str(parent.cancel()).lower())
        if cancel == "twice":
            await sleep(0.5)
        if cancel != "early":
            log("main: cancel " + str(parent.cancel()).lower())
    elif cancel == "exit":
        await body_ended.wait()
        await sleep(1)
        log("main: cancel " + str(parent.cancel()).lower())
    try:
        await parent
        log("main: parent ok")
    except CancelledError:
        log("main: parent CancelledError")

def run_matrix(combos_json):
    import sys
    out = {}
    ties = []
    for key, c in json.loads(combos_json):
        traces = []
        for order in (1, -1):
            set_tie_order(order)
            trace = []
            vrun(program(c["cancel"], c["child"], c["body"], c["nest"], c["eager"], trace))
            traces.append(trace)
        if traces[0] != traces[1]:
            ties.append(key)
        out[key] = traces[0]
    return json.dumps({"python": sys.version.split()[0], "traces": out, "ties": ties})
`;

// A loop whose selector, asked to wait, moves a virtual clock on instead.
// pyodide has its own running loop: set it aside while ours runs. And one
// arbitrary order made definite (see the comment in it).
const VIRTUAL_LOOP = String.raw`
import asyncio, asyncio.base_events as _be, heapq, selectors as _sel
class _VSel(_sel.BaseSelector):
    def __init__(self, loop): self.loop = loop; self.m = {}
    def register(self, f, e, d=None):
        k = _sel.SelectorKey(f, 0, e, d); self.m[f] = k; return k
    def unregister(self, f): return self.m.pop(f)
    def select(self, timeout=None):
        if timeout: self.loop._vt += timeout
        return []
    def close(self): pass
    def get_map(self): return self.m
class VLoop(_be.BaseEventLoop):
    def __init__(self):
        super().__init__(); self._vt = 0; self._selector = _VSel(self)
    def time(self): return self._vt
    def _process_events(self, ev): pass
    def _write_to_self(self): pass
    def call_at(self, when, callback, *args, context=None):
        timer = _NumberedTimer(when, callback, args, self, context)
        _timer_seq[0] += 1
        timer._seq = _timer_seq[0] * _timer_seq[1]
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer

# TaskGroup keeps its tasks in a set, and a failure cancels them in the set's
# order, which follows the tasks' addresses: arbitrary, so which of two
# children reacts to the group's cancel first is left undefined. Pin it to the
# order the tasks were created in, which is the order this library uses.
class _TasksInOrder:
    def __init__(self): self.d = {}
    def add(self, t): self.d[t] = None
    def discard(self, t): self.d.pop(t, None)
    def __iter__(self): return iter(self.d)
    def __len__(self): return len(self.d)
_tg_init = asyncio.TaskGroup.__init__
def _tg_init_in_order(self):
    _tg_init(self)
    self._tasks = _TasksInOrder()
asyncio.TaskGroup.__init__ = _tg_init_in_order

# Timers due at the same time run in heap order, which asyncio leaves
# undefined (this library runs them in the order they were scheduled). Each
# program runs with such timers in both orders, and the two traces must agree,
# so that no expected trace rests on it.
_timer_seq = [0, 1]
class _NumberedTimer(asyncio.TimerHandle):
    __slots__ = ("_seq",)
    def __lt__(self, other):
        return (self._when, self._seq) < (other._when, other._seq)
def set_tie_order(order):
    _timer_seq[1] = order

def vrun(main):
    saved = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        with asyncio.Runner(loop_factory=VLoop) as r: return r.run(main)
    finally:
        asyncio.events._set_running_loop(saved)
`;

interface Combo {
  cancel: typeof CANCELS[number];
  child: typeof CHILDREN[number];
  body: typeof BODIES[number];
  nest: typeof NESTS[number];
  eager: typeof EAGERS[number];
}

/** The name of a program in the fixture and in the test. */
function comboKey(c: Combo): string {
  return `cancel=${c.cancel} child=${c.child} body=${c.body} ${c.nest}` +
    { lazy: "", eager: " eager", eagerChild: " eager-child" }[c.eager];
}

function allCombos(): Combo[] {
  const combos: Combo[] = [];
  for (const nest of NESTS) {
    for (const eager of EAGERS) {
      for (const cancel of CANCELS) {
        for (const child of CHILDREN) {
          for (const body of BODIES) {
            combos.push({ cancel, child, body, nest, eager });
          }
        }
      }
    }
  }
  return combos;
}

const here = fileURLToPath(import.meta.url);
const fixturePath = fileURLToPath(
  new URL("../tests/fixtures/taskgroup_matrix.json", import.meta.url),
);

async function main(): Promise<void> {
  const { loadPyodide } = await import("pyodide");
  const py = await loadPyodide();
  py.runPython(VIRTUAL_LOOP);
  py.runPython(PROGRAM);
  const combos = allCombos().map((c) => [comboKey(c), c]);
  const runMatrix = py.globals.get("run_matrix");
  const { python, traces: raw, ties } = JSON.parse(
    runMatrix(JSON.stringify(combos)),
  );
  // One line per event, "time what", as the test writes its own trace.
  const traces: Record<string, string[]> = {};
  for (const [key, trace] of Object.entries<[number, string][]>(raw)) {
    traces[key] = trace.map(([time, what]) => `${time} ${what}`);
  }
  if (ties.length > 0) {
    throw new Error(
      "these programs depend on the order of timers due at the same time:\n" +
        ties.join("\n"),
    );
  }
  if (!python.startsWith("3.14.")) {
    throw new Error(`pyodide runs Python ${python}, not 3.14`);
  }
  const fixture = {
    generator: "scripts/gen_taskgroup_matrix.ts",
    generatorSha256: createHash("sha256").update(readFileSync(here))
      .digest("hex"),
    python,
    traces,
  };
  writeFileSync(fixturePath, JSON.stringify(fixture, null, 2) + "\n");
  console.log(`${Object.keys(traces).length} traces -> ${fixturePath}`);
}

await main();
