// What several test files need: one helper per job.

import assert from "node:assert/strict";
import {
  createTask,
  eagerTaskFactory,
  getRunningLoop,
  run,
  type Server,
  sleep,
  type Task,
  waitFor,
  type WriteTransport,
} from "../mod.ts";

// Runs `main` on a virtual clock: timing is exact and instant. With
// `eager`, the loop's tasks start eagerly (eagerTaskFactory).
export function vrun<T>(
  main: () => Promise<T>,
  { eager = false }: { eager?: boolean } = {},
): Promise<T> {
  if (!eager) return run(main, { virtualTime: true });
  return run(() => {
    getRunningLoop().setTaskFactory(eagerTaskFactory);
    return main();
  }, { virtualTime: true });
}

// The options of run() for a virtual clock: run(main, virtual).
export const virtual = { virtualTime: true } as const;

// The scope tests (gather, timeout, taskGroup) run twice, as CPython's
// test_taskgroups.py does: with tasks that first run on a later loop step,
// and with eager tasks, which run up to their first await when created.
export const TASK_STARTS = [
  { eager: false, suffix: "" },
  { eager: true, suffix: " (eager tasks)" },
] as const;

// Resolves after `count` loop steps: tasks created or woken before it have
// run up to their next await when it returns.
export async function steps(count = 1): Promise<void> {
  for (let i = 0; i < count; i++) await sleep(0);
}

// A seeded PRNG (mulberry32), so that random storms replay exactly.
export function seededRandom(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Steps the loop until `done()` holds; fails rather than hang.
export async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (done()) return;
    await steps();
  }
  assert.fail("the condition never held");
}

// The seeded cancellation storms (sync_test.ts, queues_test.ts) run
// SYNC_STORM_SEEDS seeds each (default 30) from SYNC_STORM_FIRST_SEED.
const env = (globalThis as { process?: { env: Record<string, string> } })
  .process?.env ?? {};
const STORM_SEEDS = Number(env.SYNC_STORM_SEEDS ?? 30);
const FIRST_SEED = Number(env.SYNC_STORM_FIRST_SEED ?? 1);

// Runs `storm` once per seed; a failure names its seed.
export async function forEachSeed(
  storm: (seed: number) => Promise<void>,
): Promise<void> {
  for (let seed = FIRST_SEED; seed < FIRST_SEED + STORM_SEEDS; seed++) {
    try {
      await storm(seed);
    } catch (error) {
      console.error(`storm failed with seed ${seed}`);
      throw Object.assign(
        new Error(`seed ${seed}: ${(error as Error).message}`),
        { cause: error },
      );
    }
  }
}

// Cancels `task` after a random delay, from a task of its own, so that
// cancellations land in the same loop steps as the traffic's wake-ups.
export function cancelLater(random: () => number, task: Task<unknown>): void {
  const delay = Math.floor(random() * 4) * (random() < 0.5 ? 0 : 1) +
    Math.floor(random() * 20);
  createTask(async () => {
    await sleep(delay);
    if (random() < 0.5) await steps(); // a step later, now and then
    task.cancel();
  });
}

// Cancels one of `doomed` still running: the oldest (wake-ups go to the
// oldest waiter) or one at random. Called right after a release or a put,
// it often hits the task just woken, before it runs ("must cancel").
export function cancelOneOf(
  random: () => number,
  doomed: Task<unknown>[],
): void {
  const running = doomed.filter((task) => !task.done());
  if (running.length === 0) return;
  const pick = random() < 0.5 ? 0 : Math.floor(random() * running.length);
  running[pick].cancel();
}

// Awaits `op` directly, or through waitFor() with a short random timeout.
export function maybeTimed<T>(random: () => number, op: () => Promise<T>) {
  if (random() < 0.7) return op();
  return waitFor(op, Math.floor(random() * 4));
}

export const bytesOf = (text: string) => new TextEncoder().encode(text);

export const textOf = (bytes: Uint8Array | null) =>
  new TextDecoder().decode(bytes!);

// Writes to a peer that does not read until the transport's own buffer
// holds megabytes; returns the bytes written.
export async function fillUntilBuffered(
  transport: WriteTransport,
): Promise<number> {
  const chunk = new Uint8Array(1 << 20);
  let size = 0;
  while (transport.getWriteBufferSize() < (2 << 20)) {
    assert.ok(size < (256 << 20), "the peer's kernel never fills up");
    transport.write(chunk);
    size += chunk.length;
    await sleep(5);
  }
  return size;
}

export function serverAddress(server: Server): [string, number] {
  return server.sockets[0].getsockname() as [string, number];
}

// Throws unless `xml` is well-formed: tags balanced and properly nested,
// attributes quoted, `&` only in entities, `<` only in markup, one root.
// Returns the element names in document order. (DOMParser is in neither
// Deno nor Bun.)
export function parseXmlElements(xml: string): string[] {
  const token =
    /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+\s*=\s*"[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|([^<]+)|(<)/g;
  const badAmpersand = /&(?!#\d+;|#x[\da-fA-F]+;|amp;|lt;|gt;|quot;|apos;)/;
  const stack: string[] = [];
  const names: string[] = [];
  let roots = 0;
  for (const m of xml.matchAll(token)) {
    const [, slash, name, attributes, selfClosing, text, stray] = m;
    if (stray !== undefined) throw new Error(`stray "<" at ${m.index}`);
    if (text !== undefined) {
      if (badAmpersand.test(text)) throw new Error(`bare "&" at ${m.index}`);
      if (stack.length === 0 && text.trim() !== "") {
        throw new Error(`text outside the root at ${m.index}`);
      }
      continue;
    }
    if (name === undefined) continue; // a comment
    if (attributes !== undefined && badAmpersand.test(attributes)) {
      throw new Error(`bare "&" in the attributes of <${name}>`);
    }
    if (slash) {
      const open = stack.pop();
      if (open !== name) throw new Error(`</${name}> closes <${open}>`);
      continue;
    }
    if (stack.length === 0) roots++;
    names.push(name);
    if (!selfClosing) stack.push(name);
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack.join("> <")}>`);
  if (roots !== 1) throw new Error(`${roots} root elements`);
  return names;
}
