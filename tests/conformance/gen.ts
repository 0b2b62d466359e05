// Random asyncio programs as data, for the differential conformance test.
//
// A program is a list of coroutine functions (function 0 is `main`) over a
// fixed set of shared primitives. Both emitters (emit_ts.ts, emit_py.ts)
// turn the same data into source, so the only thing that can differ between
// the two traces is the asyncio implementation underneath.
//
// Termination: function i only spawns or calls functions j > i, loops are
// bounded, and main's body runs under a timeout, after which main cancels
// whatever is left (a few rounds) and prints each task's final state.

/** Bump when the generator's output for a seed changes: it keys the fixture. */
export const GEN_VERSION = "3";

export type QueueKind = "Queue" | "PriorityQueue" | "LifoQueue";

export type Prim =
  | { kind: "Lock" }
  | { kind: "Event" }
  | { kind: "Condition" }
  | { kind: "Semaphore"; value: number; bounded: boolean }
  | { kind: "Barrier"; parties: number }
  | { kind: QueueKind; maxsize: number };

/** Something awaitable: a fresh coroutine call, or a task looked up by name. */
export type Aw = { fn: number } | { task: string };

export type ReturnWhen =
  | "FIRST_COMPLETED"
  | "FIRST_EXCEPTION"
  | "ALL_COMPLETED";

/** How a `try` treats what it caught: re-raise never, only cancellations, or always. */
export type Reraise = "never" | "cancel" | "always";

export type Stmt =
  | { k: "sleep"; ms: number }
  | { k: "spawn"; fn: number; name: string; eager: boolean }
  | { k: "join"; name: string }
  | { k: "cancel"; name: string; msg: string | null }
  | { k: "uncancel" }
  | { k: "cancelling" }
  | { k: "call"; fn: number }
  | { k: "raise"; msg: string }
  | { k: "try"; body: Stmt[]; reraise: Reraise; fin: boolean }
  | { k: "repeat"; n: number; body: Stmt[] }
  | { k: "with"; prim: number; body: Stmt[] } // Lock, Condition, Semaphore
  | { k: "release"; prim: number } // bare release (Semaphore, Lock)
  | { k: "evSet"; prim: number }
  | { k: "evClear"; prim: number }
  | { k: "evWait"; prim: number }
  | { k: "cWait"; prim: number }
  | { k: "cWaitTimeout"; prim: number; ms: number }
  | { k: "notify"; prim: number; n: number; all: boolean }
  | { k: "bWait"; prim: number }
  | { k: "bAbort"; prim: number }
  | { k: "bReset"; prim: number }
  | { k: "qPut"; prim: number; v: number; nowait: boolean }
  | { k: "qGet"; prim: number; nowait: boolean }
  | { k: "qJoin"; prim: number }
  | { k: "qTaskDone"; prim: number }
  | { k: "qShutdown"; prim: number; immediate: boolean }
  | { k: "gather"; items: Aw[]; retEx: boolean }
  | {
    k: "wait";
    items: Aw[];
    names: string[];
    returnWhen: ReturnWhen;
    timeout: number | null;
  }
  | { k: "waitFor"; aw: Aw; ms: number | null }
  | { k: "asCompleted"; items: Aw[]; names: string[]; timeout: number | null }
  | { k: "timeout"; ms: number | null; body: Stmt[] }
  | {
    k: "taskGroup";
    children: { fn: number; name: string }[];
    body: Stmt[];
  }
  | { k: "shield"; aw: Aw };

export interface Program {
  version: string;
  seed: number;
  prims: Prim[];
  /** fns[0] is main. */
  fns: Stmt[][];
}

/** How long main's body may run before its timeout ends it. */
export const MAIN_LIMIT_MS = 1000;

// ---------------------------------------------------------------------------
// PRNG: mulberry32, seeded, the same sequence on every runtime.

export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = (seed * 0x9e3779b9 + 0x6d2b79f5) >>> 0;
  }
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}

// ---------------------------------------------------------------------------

interface Ctx {
  rng: Rng;
  prog: Program;
  nextTask: number;
  nextMsg: number;
  /** Task names handed out so far: later statements may refer to them. */
  names: string[];
  /** The function each task name runs: a name is spawned by one statement only. */
  fnOf: Map<string, number>;
}

interface Scope {
  fn: number;
  depth: number;
  /** Condition ids whose lock this scope holds. */
  heldConds: number[];
  /** In a `with` of a Lock/Semaphore: no blocking waits on others' progress. */
  inMain: boolean;
}

function primsOf(prog: Program, kinds: string[]): number[] {
  const ids: number[] = [];
  prog.prims.forEach((p, i) => {
    if (kinds.includes(p.kind)) ids.push(i);
  });
  return ids;
}

function newName(c: Ctx, fn: number): string {
  const name = `t${++c.nextTask}`;
  c.names.push(name);
  c.fnOf.set(name, fn);
  return name;
}

function msg(c: Ctx): string {
  return `m${++c.nextMsg}`;
}

function laterFn(c: Ctx, s: Scope): number | null {
  const n = c.prog.fns.length;
  if (s.fn + 1 >= n) return null;
  return c.rng.int(s.fn + 1, n - 1);
}

function someTask(c: Ctx): string {
  // Usually a task that exists by now; sometimes one that is spawned later.
  if (c.names.length === 0 || c.rng.chance(0.1)) return `t${c.nextTask + 1}`;
  return c.rng.pick(c.names);
}

/**
 * A task this scope may wait for: one running a later function. Waits then
 * always go from a function to a higher-numbered one, so no cycle of tasks
 * waits for itself (asyncio recurses without end cancelling such a cycle).
 */
function awaitableTask(c: Ctx, s: Scope): string {
  const ok = c.names.filter((n) => c.fnOf.get(n)! > s.fn);
  return ok.length === 0 ? "t0" : c.rng.pick(ok);
}

function aw(c: Ctx, s: Scope): Aw {
  const f = laterFn(c, s);
  if (f === null || (c.names.length > 0 && c.rng.chance(0.4))) {
    return { task: awaitableTask(c, s) };
  }
  return { fn: f };
}

function sleepMs(c: Ctx): number {
  return c.rng.pick([0, 0, 1, 1, 2, 3, 5, 7, 10]);
}

function timeoutMs(c: Ctx): number | null {
  return c.rng.pick([null, 0, 1, 2, 4, 6, 15]);
}

function block(c: Ctx, s: Scope, n: number): Stmt[] {
  const out: Stmt[] = [];
  for (let i = 0; i < n; i++) out.push(...stmt(c, s));
  return out;
}

function stmt(c: Ctx, s: Scope): Stmt[] {
  const r = c.rng;
  const deeper: Scope = { ...s, depth: s.depth + 1 };
  const canNest = s.depth < 2;
  const options: [number, () => Stmt[]][] = [
    [6, () => [{ k: "sleep", ms: sleepMs(c) }]],
    [3, () => {
      const f = laterFn(c, s);
      if (f === null) return [{ k: "sleep", ms: 0 }];
      return [{
        k: "spawn",
        fn: f,
        name: newName(c, f),
        eager: r.chance(0.25),
      }];
    }],
    [2, () => [{ k: "join", name: awaitableTask(c, s) }]],
    [3, () => {
      const out: Stmt[] = [{
        k: "cancel",
        name: someTask(c),
        msg: r.chance(0.5) ? msg(c) : null,
      }];
      // Twice in a row: the first message must win.
      if (r.chance(0.2)) {
        out.push({
          k: "cancel",
          name: (out[0] as { name: string }).name,
          msg: r.chance(0.5) ? msg(c) : null,
        });
      }
      return out;
    }],
    [1, () => [{ k: r.chance(0.5) ? "uncancel" : "cancelling" }]],
    [2, () => {
      const f = laterFn(c, s);
      return f === null ? [{ k: "cancelling" }] : [{ k: "call", fn: f }];
    }],
    [1, () => [{ k: "raise", msg: msg(c) }]],
    [canNest ? 4 : 0, () => {
      const reraise: Reraise = s.inMain
        ? r.pick(["cancel", "always"] as const)
        : r.pick(["never", "cancel", "cancel", "always"] as const);
      return [{
        k: "try",
        body: block(c, deeper, r.int(1, 3)),
        reraise,
        fin: r.chance(0.3),
      }];
    }],
    [
      canNest ? 1 : 0,
      () => [{
        k: "repeat",
        n: r.int(2, 3),
        body: block(c, deeper, r.int(1, 2)),
      }],
    ],
    [canNest ? 3 : 0, () => {
      const ids = primsOf(c.prog, ["Lock", "Semaphore", "Condition"]);
      if (ids.length === 0) return [];
      const id = r.pick(ids);
      const inner: Scope = c.prog.prims[id].kind === "Condition"
        ? { ...deeper, heldConds: [...s.heldConds, id] }
        : deeper;
      return [{ k: "with", prim: id, body: block(c, inner, r.int(1, 3)) }];
    }],
    [1, () => {
      const ids = primsOf(c.prog, ["Semaphore", "Lock"]);
      return ids.length === 0 ? [] : [{ k: "release", prim: r.pick(ids) }];
    }],
    [3, () => {
      const ids = primsOf(c.prog, ["Event"]);
      if (ids.length === 0) return [];
      const id = r.pick(ids);
      const which = r.int(0, 5);
      if (which <= 1) return [{ k: "evWait", prim: id }];
      if (which === 5) return [{ k: "evClear", prim: id }];
      const out: Stmt[] = [{ k: "evSet", prim: id }];
      // A cancel in the same loop turn as the wake-up it caused.
      if (r.chance(0.4)) {
        out.push({ k: "cancel", name: someTask(c), msg: msg(c) });
      }
      return out;
    }],
    [4, () => {
      const held = s.heldConds.length > 0 && r.chance(0.85)
        ? s.heldConds
        : primsOf(c.prog, ["Condition"]);
      if (held.length === 0) return [];
      const id = r.pick(held);
      const which = r.int(0, 4);
      if (which === 0) return [{ k: "cWait", prim: id }];
      if (which === 1) {
        return [{ k: "cWaitTimeout", prim: id, ms: r.int(1, 6) }];
      }
      const out: Stmt[] = [{
        k: "notify",
        prim: id,
        n: r.int(1, 2),
        all: which === 4,
      }];
      if (r.chance(0.3)) {
        out.push({ k: "cancel", name: someTask(c), msg: msg(c) });
      }
      return out;
    }],
    [2, () => {
      const ids = primsOf(c.prog, ["Barrier"]);
      if (ids.length === 0) return [];
      const id = r.pick(ids);
      const which = r.int(0, 5);
      if (which <= 3) return [{ k: "bWait", prim: id }];
      return [{ k: which === 4 ? "bAbort" : "bReset", prim: id }];
    }],
    [5, () => {
      const ids = primsOf(c.prog, ["Queue", "PriorityQueue", "LifoQueue"]);
      if (ids.length === 0) return [];
      const id = r.pick(ids);
      const which = r.int(0, 9);
      if (which <= 2) {
        return [{ k: "qPut", prim: id, v: r.int(0, 9), nowait: r.chance(0.4) }];
      }
      if (which <= 5) {
        const out: Stmt[] = [{ k: "qGet", prim: id, nowait: r.chance(0.3) }];
        if (r.chance(0.5)) out.push({ k: "qTaskDone", prim: id });
        return out;
      }
      if (which === 6) return [{ k: "qTaskDone", prim: id }];
      if (which === 7) return [{ k: "qJoin", prim: id }];
      if (which === 8 && r.chance(0.5)) {
        return [{ k: "qShutdown", prim: id, immediate: r.chance(0.5) }];
      }
      return [{ k: "qPut", prim: id, v: r.int(0, 9), nowait: true }];
    }],
    [2, () => {
      const n = r.int(1, 3);
      const items: Aw[] = [];
      for (let i = 0; i < n; i++) items.push(aw(c, s));
      return [{ k: "gather", items, retEx: r.chance(0.5) }];
    }],
    [2, () => {
      const n = r.int(1, 3);
      const items: Aw[] = [];
      const names: string[] = [];
      for (let i = 0; i < n; i++) {
        const a = aw(c, s);
        items.push(a);
        names.push("fn" in a ? newName(c, a.fn) : "");
      }
      if (r.chance(0.5)) {
        return [{
          k: "asCompleted",
          items,
          names,
          timeout: r.chance(0.6) ? null : r.int(1, 8),
        }];
      }
      return [{
        k: "wait",
        items,
        names,
        returnWhen: r.pick(
          ["FIRST_COMPLETED", "FIRST_EXCEPTION", "ALL_COMPLETED"] as const,
        ),
        timeout: r.chance(0.5) ? null : r.int(0, 8),
      }];
    }],
    [2, () => [{ k: "waitFor", aw: aw(c, s), ms: timeoutMs(c) }]],
    [2, () => [{ k: "shield", aw: aw(c, s) }]],
    [
      canNest ? 2 : 0,
      () => [{
        k: "timeout",
        ms: timeoutMs(c),
        body: block(c, deeper, r.int(1, 3)),
      }],
    ],
    [canNest ? 2 : 0, () => {
      const children: { fn: number; name: string }[] = [];
      const n = r.int(1, 3);
      for (let i = 0; i < n; i++) {
        const f = laterFn(c, s);
        if (f !== null) children.push({ fn: f, name: newName(c, f) });
      }
      return [{
        k: "taskGroup",
        children,
        body: block(c, deeper, r.int(0, 2)),
      }];
    }],
  ];
  let total = 0;
  for (const [w] of options) total += w;
  for (;;) {
    let x = r.next() * total;
    for (const [w, make] of options) {
      if ((x -= w) < 0) {
        const out = make();
        if (out.length > 0) return out;
        break;
      }
    }
  }
}

function prim(r: Rng): Prim {
  switch (r.int(0, 6)) {
    case 0:
      return { kind: "Lock" };
    case 1:
      return { kind: "Event" };
    case 2:
      return { kind: "Condition" };
    case 3:
      return { kind: "Semaphore", value: r.int(1, 2), bounded: r.chance(0.5) };
    case 4:
      return { kind: "Barrier", parties: r.int(2, 3) };
    default:
      return {
        kind: r.pick(["Queue", "Queue", "PriorityQueue", "LifoQueue"] as const),
        maxsize: r.pick([0, 1, 2]),
      };
  }
}

/** The program for `seed`: the same data on every runtime. */
export function generate(seed: number): Program {
  const rng = new Rng(seed);
  const nPrims = rng.int(1, 3);
  const prims: Prim[] = [];
  for (let i = 0; i < nPrims; i++) prims.push(prim(rng));
  const nFns = rng.int(3, 5);
  const prog: Program = { version: GEN_VERSION, seed, prims, fns: [] };
  for (let i = 0; i < nFns; i++) prog.fns.push([]);
  const c: Ctx = {
    rng,
    prog,
    nextTask: 0,
    nextMsg: 0,
    names: [],
    fnOf: new Map(),
  };
  // main spawns first, so tasks have names to refer to; the others follow.
  for (let i = 0; i < nFns; i++) {
    const s: Scope = { fn: i, depth: 0, heldConds: [], inMain: i === 0 };
    const body: Stmt[] = [];
    if (i === 0) {
      const spawns = rng.int(1, 3);
      for (let j = 0; j < spawns; j++) {
        const fn = rng.int(1, nFns - 1);
        body.push({
          k: "spawn",
          fn,
          name: newName(c, fn),
          eager: rng.chance(0.2),
        });
      }
    }
    body.push(...block(c, s, rng.int(i === 0 ? 3 : 1, i === 0 ? 7 : 4)));
    prog.fns[i] = body;
  }
  return prog;
}
