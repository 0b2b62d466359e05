// Differential conformance: random asyncio programs on this library (virtual
// time) and on CPython 3.14 (pyodide), traces compared.
//
//   deno run -A tests/conformance/cli.ts --seeds 0..499 [--lib path/to/mod.ts]
//       [--shrink] [--show N] [--save FILE] [--repeat N] [--write-fixture]
//   deno run -A tests/conformance/cli.ts --print SEED | --program FILE [--lib ...]
//   node tests/conformance/cli.ts ...      bun tests/conformance/cli.ts ...
//
// --lib         the library to judge (default: this checkout's mod.ts)
// --show N      print the first N divergent seeds in full (default 0), and
//               with --shrink, shrink up to N groups (default 5)
// --shrink      minimize one program per divergence group, print it in both
//               languages with both traces
// --write-fixture  store CPython's traces for these seeds in fixture.json,
//               which tests/conformance_test.ts compares against
// --print SEED  print one program in both languages and both traces
// --program FILE  run hand-written programs (JSON: a Program or a list), such
//               as differences.json: minimal programs for known differences
// --repeat N    run each program N times here: reports seeds whose trace
//               changes between runs (virtual time must be deterministic)
// --save FILE   with --shrink: the shrunk programs and traces as JSON

import process from "node:process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { resolve } from "node:path";
import { GEN_VERSION } from "./gen.ts";
import { emitPy, emitTsFunction } from "./emit.ts";
import { runTsSource } from "./runtime.ts";
import { loadPython } from "./python.ts";
import {
  checkSeed,
  compare,
  describeShrunk,
  hash,
  type Outcome,
  parseSeeds,
  shrink,
} from "./core.ts";

const FIXTURE = fileURLToPath(new URL("./fixture.json", import.meta.url));

function parseArgs(argv: string[]) {
  const opts = {
    seeds: "0..499",
    lib: undefined as string | undefined,
    shrink: false,
    show: undefined as number | undefined,
    writeFixture: false,
    save: undefined as string | undefined,
    print: undefined as number | undefined,
    program: undefined as string | undefined,
    repeat: 1,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new RangeError(`${a} needs a value`);
      return v;
    };
    if (a === "--seeds") opts.seeds = value();
    else if (a === "--lib") opts.lib = value();
    else if (a === "--shrink") opts.shrink = true;
    else if (a === "--save") opts.save = value();
    else if (a === "--show") opts.show = Number(value());
    else if (a === "--write-fixture") opts.writeFixture = true;
    else if (a === "--print") opts.print = Number(value());
    else if (a === "--program") opts.program = value();
    else if (a === "--repeat") opts.repeat = Number(value());
    else throw new RangeError(`unknown argument ${a}`);
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const libUrl = opts.lib === undefined
    ? new URL("../../mod.ts", import.meta.url).href
    : pathToFileURL(resolve(opts.lib)).href;
  const lib = await import(libUrl);
  const t0 = performance.now();
  const py = await loadPython();
  console.log(
    `CPython ${py.version} (pyodide, ${
      Math.round(performance.now() - t0)
    } ms to load); library ${libUrl}`,
  );

  if (opts.program !== undefined) {
    // A hand-written program: a Program, or a list of them, as JSON.
    const data = JSON.parse(readFileSync(opts.program, "utf8"));
    for (const prog of Array.isArray(data) ? data : [data]) {
      const o = await compare(lib, py, {
        version: GEN_VERSION,
        seed: -1,
        ...prog,
      });
      console.log(
        `\n=== ${prog.title ?? opts.program}: ${o.same ? "same" : o.key}`,
      );
      console.log(describeShrunk(o, opts.lib));
    }
    return;
  }
  if (opts.print !== undefined) {
    const o = await checkSeed(lib, py, opts.print);
    console.log(describeShrunk(o, opts.lib));
    return;
  }

  const seeds = parseSeeds(opts.seeds);
  const groups = new Map<string, Outcome[]>();
  const fixture: Record<string, { py: string; trace: string }> = {};
  let agree = 0;
  const unstable: number[] = [];
  // Outcomes other than a plain trace, per side: worth knowing about even
  // when both sides agree (a HANG on both is agreement, but a weak test).
  const abnormal = new Map<string, number[]>();
  const note = (side: string, trace: string[], seed: number) => {
    const last = trace.at(-1) ?? "";
    const m = /^(HANG|PYERR|RUNERR|COMPILE)\b/.exec(last);
    if (m) {
      abnormal.set(`${side} ${m[1]}`, [
        ...(abnormal.get(`${side} ${m[1]}`) ?? []),
        seed,
      ]);
    }
  };
  const t1 = performance.now();
  for (const seed of seeds) {
    const o = await checkSeed(lib, py, seed);
    if (opts.writeFixture) {
      fixture[seed] = { py: hash(emitPy(o.prog)), trace: o.py.join("\n") };
    }
    note("ts", o.ts, seed);
    note("py", o.py, seed);
    for (let i = 1; i < opts.repeat; i++) {
      const again = await runTsSource(lib, emitTsFunction(o.prog));
      if (again.join("\n") !== o.ts.join("\n")) {
        unstable.push(seed);
        break;
      }
    }
    if (o.same) agree++;
    else {
      const list = groups.get(o.key) ?? [];
      list.push(o);
      groups.set(o.key, list);
    }
  }
  const secs = ((performance.now() - t1) / 1000).toFixed(1);
  console.log(`${agree} of ${seeds.length} seeds agree (${secs} s)`);
  if (opts.repeat > 1) {
    console.log(
      `  this library gave another trace on a rerun (of ${opts.repeat} runs) for ${unstable.length} seeds${
        unstable.length ? ": " + unstable.slice(0, 12).join(" ") : ""
      }`,
    );
  }
  for (const [what, ids] of abnormal) {
    console.log(
      `  ${what}: ${ids.length} seeds (${ids.slice(0, 12).join(" ")}${
        ids.length > 12 ? " …" : ""
      })`,
    );
  }
  const sorted = [...groups.entries()].sort((a, b) =>
    b[1].length - a[1].length
  );
  if (sorted.length > 0) {
    console.log(`\n${sorted.length} divergence groups (first differing line):`);
  }
  for (const [key, list] of sorted) {
    const ids = list.map((o) => o.prog.seed);
    console.log(
      `${String(list.length).padStart(5)}  ${key}\n       seeds ${
        ids.slice(0, 12).join(" ")
      }${ids.length > 12 ? " …" : ""}`,
    );
  }
  const show = opts.show ?? 0;
  const divergent = sorted.flatMap(([, l]) => l).sort((a, b) =>
    a.prog.seed - b.prog.seed
  );
  for (const o of divergent.slice(0, opts.shrink ? 0 : show)) {
    console.log(`\n=== seed ${o.prog.seed}: ${o.key}`);
    console.log(describeShrunk(o, opts.lib));
  }
  if (opts.shrink) {
    const saved: unknown[] = [];
    for (const [key, list] of sorted.slice(0, opts.show ?? 5)) {
      const small = await shrink(lib, py, list[0]);
      saved.push({
        seed: list[0].prog.seed,
        key,
        seeds: list.length,
        prog: small.prog,
        ts: small.ts,
        py: small.py,
      });
      console.log(
        `\n=== group "${key}" (${list.length} seeds), seed ${
          list[0].prog.seed
        } shrunk`,
      );
      console.log(describeShrunk(small, opts.lib));
    }
    if (opts.save !== undefined) {
      writeFileSync(opts.save, JSON.stringify(saved, null, 1));
    }
  }
  if (opts.writeFixture) {
    const data = {
      about:
        "CPython's traces for tests/conformance_test.ts; regenerate with cli.ts --write-fixture",
      genVersion: GEN_VERSION,
      python: py.version,
      seeds: fixture,
    };
    writeFileSync(
      FIXTURE,
      JSON.stringify(data, null, 2) + "\n",
    );
    console.log(`wrote ${FIXTURE} (${seeds.length} seeds)`);
  }
}

await main();
// The library's loops and pyodide may keep handles open; the work is done.
process.exit(0);
