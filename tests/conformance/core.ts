// Running one program on both sides, comparing, grouping and shrinking.

import { type Aw, generate, type Program, type Stmt } from "./gen.ts";
import { emitPy, emitTsFunction, emitTsProgram } from "./emit.ts";
import { type Lib, runTsSource } from "./runtime.ts";
import type { PythonRunner } from "./python.ts";

export interface Outcome {
  prog: Program;
  ts: string[];
  py: string[];
  same: boolean;
  key: string;
}

/** FNV-1a, 32 bits, as hex: ties a fixture entry to the Python it came from. */
export function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, "0");
}

export function parseSeeds(spec: string): number[] {
  const out: number[] = [];
  for (const part of spec.split(",")) {
    const m = /^(\d+)(?:\.\.(\d+))?$/.exec(part.trim());
    if (!m) throw new RangeError(`--seeds: expected N or A..B, got "${part}"`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    for (let s = a; s <= b; s++) out.push(s);
  }
  return out;
}

function event(line: string | undefined): string {
  if (line === undefined) return "<end>";
  // Drop time and task label; numbers become #, so one cause groups together.
  const parts = line.split(" ");
  const rest = /^\d/.test(parts[0]) ? parts.slice(2).join(" ") : line;
  return rest.replace(/\b[tPmr]?\d+\b/g, (w) => w.replace(/\d+/, "#"));
}

/** The first differing line of two traces, with times and names taken out. */
export function divergenceKey(ts: string[], py: string[]): string {
  let i = 0;
  while (i < ts.length && i < py.length && ts[i] === py[i]) i++;
  if (i === ts.length && i === py.length) return "";
  const a = ts[i];
  const b = py[i];
  if (
    a !== undefined && b !== undefined && a.split(" ")[0] !== b.split(" ")[0] &&
    event(a) === event(b)
  ) {
    return `time of: ${event(a)}`;
  }
  return `ts: ${event(a)}  |  py: ${event(b)}`;
}

/** Runs `prog` here, and on CPython unless its trace is `expected` already. */
export async function compare(
  lib: Lib,
  py: PythonRunner | undefined,
  prog: Program,
  expected?: string[],
): Promise<Outcome> {
  const ts = await runTsSource(lib, emitTsFunction(prog));
  if (expected === undefined && py === undefined) {
    throw new TypeError("compare(): no Python and no expected trace");
  }
  const pyTrace = expected ?? py!.run(emitPy(prog));
  const key = divergenceKey(ts, pyTrace);
  return { prog, ts, py: pyTrace, same: key === "", key };
}

export function checkSeed(
  lib: Lib,
  py: PythonRunner,
  seed: number,
): Promise<Outcome> {
  return compare(lib, py, generate(seed));
}

// ---------------------------------------------------------------------------
// Shrinking: greedy delta debugging over statements. A candidate is kept when
// it still diverges with the same key, so the shrink stays on one cause.

type Body = Stmt[];

function bodiesOf(s: Stmt): Body[] {
  switch (s.k) {
    case "try":
    case "repeat":
    case "with":
    case "timeout":
    case "taskGroup":
      return [s.body];
    default:
      return [];
  }
}

function allBodies(prog: Program): Body[] {
  const out: Body[] = [];
  const visit = (b: Body) => {
    out.push(b);
    for (const s of b) for (const inner of bodiesOf(s)) visit(inner);
  };
  for (const f of prog.fns) visit(f);
  return out;
}

const clone = (p: Program): Program => structuredClone(p);

/** Every smaller variant of `prog`, biggest cuts first. */
function* candidates(prog: Program): Generator<Program> {
  const nBodies = allBodies(prog).length;
  // Chunks of statements, halving.
  for (let bi = 0; bi < nBodies; bi++) {
    const len = allBodies(prog)[bi].length;
    for (
      let size = len;
      size >= 1;
      size = size === 1 ? 0 : Math.ceil(size / 2)
    ) {
      for (let at = 0; at + size <= len; at += size) {
        const p = clone(prog);
        allBodies(p)[bi].splice(at, size);
        yield p;
      }
      if (size === 1) break;
    }
  }
  // Unwrap a compound statement into its body; simplify single statements.
  for (let bi = 0; bi < nBodies; bi++) {
    const len = allBodies(prog)[bi].length;
    for (let at = 0; at < len; at++) {
      const s = allBodies(prog)[bi][at];
      const inner = bodiesOf(s);
      if (inner.length > 0) {
        const p = clone(prog);
        const b = allBodies(p)[bi];
        b.splice(at, 1, ...(bodiesOf(b[at])[0]));
        yield p;
      }
      const simpler = simplify(s);
      for (const alt of simpler) {
        const p = clone(prog);
        allBodies(p)[bi][at] = alt;
        yield p;
      }
    }
  }
}

function simplify(s: Stmt): Stmt[] {
  const out: Stmt[] = [];
  const dropItem = (items: Aw[], f: (i: number) => Stmt) => {
    if (items.length > 1) {
      for (let i = 0; i < items.length; i++) out.push(f(i));
    }
  };
  switch (s.k) {
    case "repeat":
      if (s.n > 1) out.push({ ...s, n: 1 });
      break;
    case "try":
      if (s.fin) out.push({ ...s, fin: false });
      break;
    case "taskGroup":
      for (let i = 0; i < s.children.length; i++) {
        out.push({ ...s, children: s.children.filter((_, j) => j !== i) });
      }
      break;
    case "gather":
      dropItem(
        s.items,
        (i) => ({ ...s, items: s.items.filter((_, j) => j !== i) }),
      );
      break;
    case "wait":
    case "asCompleted":
      dropItem(s.items, (i) => ({
        ...s,
        items: s.items.filter((_, j) => j !== i),
        names: s.names.filter((_, j) => j !== i),
      }));
      if (s.timeout !== null) out.push({ ...s, timeout: null });
      break;
    case "cancel":
      if (s.msg !== null) out.push({ ...s, msg: null });
      break;
    case "spawn":
      if (s.eager) out.push({ ...s, eager: false });
      break;
    case "sleep":
      if (s.ms > 1) out.push({ ...s, ms: 1 });
      if (s.ms > 0) out.push({ ...s, ms: 0 });
      break;
  }
  return out;
}

/** Drops functions nothing reaches and primitives nothing uses, renumbering. */
export function tidy(prog: Program): Program {
  const p = clone(prog);
  const usedFns = new Set<number>([0]);
  const usedPrims = new Set<number>();
  const walk = (b: Body) => {
    for (const s of b) {
      const o = s as Record<string, unknown>;
      if (typeof o.prim === "number") usedPrims.add(o.prim);
      if (typeof o.fn === "number") usedFns.add(o.fn);
      for (
        const a of [...((o.items as Aw[]) ?? []), ...(o.aw ? [o.aw as Aw] : [])]
      ) {
        if ("fn" in a) usedFns.add(a.fn);
      }
      if (s.k === "taskGroup") {
        for (const c of s.children) usedFns.add(c.fn);
      }
      for (const inner of bodiesOf(s)) walk(inner);
    }
  };
  // Reachability from main only would need a fixpoint; a function body
  // referring to another counts even if itself unreached: keep it simple.
  p.fns.forEach(walk);
  const fnMap = new Map<number, number>();
  const keptFns: Body[] = [];
  p.fns.forEach((b, i) => {
    if (usedFns.has(i)) {
      fnMap.set(i, keptFns.length);
      keptFns.push(b);
    }
  });
  const primMap = new Map<number, number>();
  const keptPrims = p.prims.filter((_, i) => usedPrims.has(i));
  [...usedPrims].sort((a, b) => a - b).forEach((old, i) => primMap.set(old, i));
  const renumber = (b: Body) => {
    for (const s of b) {
      const o = s as Record<string, unknown>;
      if (typeof o.prim === "number") o.prim = primMap.get(o.prim);
      if (typeof o.fn === "number") o.fn = fnMap.get(o.fn);
      for (
        const a of [...((o.items as Aw[]) ?? []), ...(o.aw ? [o.aw as Aw] : [])]
      ) {
        if ("fn" in a) a.fn = fnMap.get(a.fn)!;
      }
      if (s.k === "taskGroup") {
        for (const c of s.children) c.fn = fnMap.get(c.fn)!;
      }
      for (const inner of bodiesOf(s)) renumber(inner);
    }
  };
  keptFns.forEach(renumber);
  p.fns = keptFns;
  p.prims = keptPrims;
  return p;
}

export async function shrink(
  lib: Lib,
  py: PythonRunner,
  start: Outcome,
  budget = 2000,
): Promise<Outcome> {
  let best = start;
  let tries = 0;
  let progress = true;
  while (progress && tries < budget) {
    progress = false;
    for (const cand of candidates(best.prog)) {
      if (++tries > budget) break;
      const o = await compare(lib, py, cand);
      if (!o.same && o.key === start.key) {
        best = o;
        progress = true;
        break;
      }
    }
  }
  const tidied = await compare(lib, py, tidy(best.prog));
  return !tidied.same && tidied.key === start.key ? tidied : best;
}

export function statementCount(prog: Program): number {
  return allBodies(prog).reduce((n, b) => n + b.length, 0);
}

/** Both traces side by side from the first difference, marked. */
export function sideBySide(ts: string[], py: string[]): string {
  const width =
    Math.max(20, ...ts.map((l) => l.length), ...py.map((l) => l.length)) + 2;
  const lines = [`  ${"this library".padEnd(width)}CPython`];
  const n = Math.max(ts.length, py.length);
  for (let i = 0; i < n; i++) {
    const a = ts[i] ?? "";
    const b = py[i] ?? "";
    lines.push(`${a === b ? " " : "*"} ${a.padEnd(width)}${b}`);
  }
  return lines.join("\n");
}

export function describeShrunk(o: Outcome, libPath?: string): string {
  return [
    `--- TypeScript (${statementCount(o.prog)} statements)`,
    emitTsProgram(o.prog, libPath),
    "--- Python",
    emitPy(o.prog),
    "--- traces (* marks lines that differ)",
    sideBySide(o.ts, o.py),
  ].join("\n");
}
