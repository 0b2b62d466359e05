/**
 * One implementation's run of every workload it can express, in this
 * process, as JSON on stdout: what `bench/all.sh` collects for each runtime
 * and `bench/report.ts` puts side by side.
 *
 *     deno run -A --v8-flags=--expose-gc bench/suite.ts --impl ours [--quick] [--only lock]
 *     bun bench/suite.ts --impl effect
 *     node --expose-gc bench/suite.ts --impl p-limit
 *
 * Implementations: floor (bare promises), ours (`../mod.ts`), and the peers
 * effect, effection, async-mutex, p-limit. Each is run in a process of its
 * own, so one's JIT feedback and heap do not reach the others'.
 * Progress goes to stderr.
 */
import {
  argv,
  flag,
  fmtOps,
  measure,
  type Measurement,
  OPS,
  printJsonAndExit,
  runtimeKey,
  runtimeName,
  SCALE,
  type Workload,
  WORKLOADS,
  type Workloads,
} from "./harness.ts";

const IMPLS: Record<string, () => Promise<{ workloads: Workloads }>> = {
  floor: () => import("./impl/floor.ts"),
  ours: () => import("./impl/ours.ts"),
  effect: () => import("./peers/effect.ts"),
  effection: () => import("./peers/effection.ts"),
  "async-mutex": () => import("./peers/async_mutex.ts"),
  "p-limit": () => import("./peers/p_limit.ts"),
};

const impl = flag("--impl") ?? "ours";
const only = flag("--only");
if (!(impl in IMPLS)) {
  throw new RangeError(
    `--impl must be one of ${Object.keys(IMPLS).join(", ")}, not ${impl}`,
  );
}

type Outcome = Measurement | { error: string };
const results: Partial<Record<Workload, Outcome>> = {};
let workloads: Workloads = {};
let importError: string | undefined;
try {
  workloads = (await IMPLS[impl]()).workloads;
} catch (e) {
  importError = e instanceof Error ? e.message : String(e);
}
for (const w of WORKLOADS) {
  if (only !== undefined && !only.split(",").includes(w)) continue;
  if (importError !== undefined) {
    results[w] = { error: `import failed: ${importError}` };
    continue;
  }
  const fn = workloads[w];
  if (fn === undefined) continue;
  try {
    const m = await measure(fn, OPS[w], `${impl}/${w}`);
    results[w] = m;
    console.error(
      `# ${runtimeName} ${impl}/${w}: ${fmtOps(m.ops)} ops/s (median ${
        m.medianMs.toFixed(1)
      } ms of ${m.runsMs.length}), ${fmtOps(m.cpuOps)} per CPU s`,
    );
  } catch (e) {
    const error = e instanceof Error ? e.message : String(e);
    results[w] = { error };
    console.error(`# ${runtimeName} ${impl}/${w}: ERROR ${error}`);
  }
}
printJsonAndExit({
  runtime: runtimeKey,
  runtimeName,
  impl,
  scale: SCALE,
  args: argv,
  results,
});
