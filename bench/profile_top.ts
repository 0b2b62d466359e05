/**
 * The top frames of a CPU profile (`.cpuprofile`, as written by
 * `deno run --cpu-prof`, `bun --cpu-prof` and `node --cpu-prof`), as
 * markdown: self time by function, and total (inclusive) time of the
 * library's own functions.
 *
 *     deno run -A bench/profile_top.ts FILE.cpuprofile [--top 15]
 */
import { table } from "./harness.ts";

type Frame = {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
};
type Node = { id: number; callFrame: Frame; children?: number[] };
type Profile = {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
};

const file = Deno.args[0];
const topIndex = Deno.args.indexOf("--top");
const TOP = topIndex >= 0 ? Number(Deno.args[topIndex + 1]) : 15;
const profile: Profile = JSON.parse(Deno.readTextFileSync(file));

const byId = new Map<number, Node>();
const parent = new Map<number, number>();
for (const n of profile.nodes) byId.set(n.id, n);
for (const n of profile.nodes) {
  for (const c of n.children ?? []) parent.set(c, n.id);
}

function keyOf(f: Frame): string {
  const name = f.functionName || "(anonymous)";
  if (!f.url) return name;
  const base = f.url.replace(/^.*\//, "");
  return `${name} ${base}:${f.lineNumber + 1}`;
}
const isOurs = (f: Frame) => /\/mod\.ts$/.test(f.url);

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
// A sample's time is the gap to the next sample.
for (let i = 0; i < profile.samples.length; i++) {
  const dt = (profile.timeDeltas[i + 1] ?? 0) / 1000;
  if (dt <= 0) continue;
  all += dt;
  let id: number | undefined = profile.samples[i];
  const leaf = byId.get(id)!;
  self.set(keyOf(leaf.callFrame), (self.get(keyOf(leaf.callFrame)) ?? 0) + dt);
  const seen = new Set<string>();
  while (id !== undefined) {
    const f = byId.get(id)!.callFrame;
    if (isOurs(f)) {
      const k = keyOf(f);
      if (!seen.has(k)) {
        seen.add(k);
        total.set(k, (total.get(k) ?? 0) + dt);
      }
    }
    id = parent.get(id);
  }
}

const pct = (ms: number) => `${(100 * ms / all).toFixed(1)}%`;
const top = (what: string, m: Map<string, number>) =>
  table(
    [what, "ms", "share"],
    [...m].sort((a, b) => b[1] - a[1]).slice(0, TOP).map((
      [k, ms],
    ) => [k, ms.toFixed(0), pct(ms)]),
  );
console.log(
  [
    `${file}: ${all.toFixed(0)} ms sampled`,
    "",
    ...top("self time: function", self),
    "",
    ...top("total time, mod.ts functions", total),
  ].join("\n"),
);
