// Differential conformance: random asyncio programs must print the same
// trace on this library (virtual time) as on CPython 3.14.
//
// CPython's traces for the default seeds are in conformance/fixture.json
// (regenerate: `deno run -A tests/conformance/cli.ts --seeds 0..499
// --write-fixture`), so this test needs no Python unless it fails or is asked
// for more seeds than the fixture has: CONFORMANCE_SEEDS=20000 runs seeds
// 0..19999, loading CPython (pyodide) once for the ones beyond the fixture.
// On failure it prints the first divergences shrunk to a few statements.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import process from "node:process";
import * as lib from "../mod.ts";
import { GEN_VERSION, generate } from "./conformance/gen.ts";
import { emitPy } from "./conformance/emit.ts";
import {
  compare,
  describeShrunk,
  hash,
  type Outcome,
  shrink,
} from "./conformance/core.ts";
import { loadPython, type PythonRunner } from "./conformance/python.ts";

interface Fixture {
  genVersion: string;
  python: string;
  seeds: Record<string, { py: string; trace: string }>;
}

const fixture: Fixture = JSON.parse(
  readFileSync(new URL("./conformance/fixture.json", import.meta.url), "utf8"),
);
const SEEDS = Number(process.env.CONFORMANCE_SEEDS ?? 500);
const SHOW = 3;

test("conformance fixture matches the generator and emitter", () => {
  assert.equal(
    fixture.genVersion,
    GEN_VERSION,
    "fixture.json is for another generator version: regenerate it",
  );
  const stale: number[] = [];
  for (const [seed, entry] of Object.entries(fixture.seeds)) {
    if (hash(emitPy(generate(Number(seed)))) !== entry.py) {
      stale.push(Number(seed));
    }
  }
  assert.deepEqual(
    stale,
    [],
    "fixture.json was made from other Python programs: regenerate it",
  );
});

test(`conformance with CPython ${fixture.python}: ${SEEDS} random programs`, {
  timeout: 3_600_000,
}, async () => {
  let py: PythonRunner | undefined;
  const python = async () => (py ??= await loadPython());
  const failures: Outcome[] = [];
  for (let seed = 0; seed < SEEDS; seed++) {
    const entry = fixture.seeds[seed];
    const prog = generate(seed);
    const o = entry === undefined
      ? await compare(lib, await python(), prog)
      : await compare(
        lib,
        undefined,
        prog,
        entry.trace === "" ? [] : entry.trace.split("\n"),
      );
    if (!o.same) failures.push(o);
  }
  if (failures.length === 0) return;
  const p = await python();
  const shown: string[] = [];
  for (const o of failures.slice(0, SHOW)) {
    const small = await shrink(lib, p, o, 400);
    shown.push(`=== seed ${o.prog.seed}: ${o.key}\n${describeShrunk(small)}`);
  }
  assert.fail(
    `${failures.length} of ${SEEDS} programs trace differently from CPython ` +
      `(seeds ${failures.slice(0, 20).map((o) => o.prog.seed).join(" ")}${
        failures.length > 20 ? " …" : ""
      }).\n` +
      `The first ${shown.length}, shrunk (run tests/conformance/cli.ts --shrink for all groups):\n\n` +
      shown.join("\n\n"),
  );
});
