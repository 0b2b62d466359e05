// Every ```ts example in mod.ts's doc comments and in README.md runs as a
// program of its own under the runtime running this file, so that
// `deno task test` runs each of them on Deno, Bun and Node. Each runs in an
// empty directory, which must still be empty afterwards: examples write
// nothing where they are run. A block whose first line is a file name as a
// comment (`// work.ts`) is a module the examples beside it import: it is
// saved next to each of them under that name, not run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const library = pathToFileURL(path.join(root, "mod.ts")).href;

interface Example {
  where: string; // file:line of the opening fence
  code: string;
}

// The ```ts blocks of a doc comment (` * ` prefixed lines) or of Markdown.
function examplesIn(file: string): Example[] {
  const lines = fs.readFileSync(path.join(root, file), "utf8").split("\n");
  const inComment = file.endsWith(".ts");
  const prefix = inComment ? /^\s*\* ?/ : /^/;
  const examples: Example[] = [];
  let start = -1;
  let body: string[] = [];
  lines.forEach((line, index) => {
    if (inComment && !/^\s*\*/.test(line)) return;
    const text = line.replace(prefix, "");
    if (start < 0) {
      if (/^```ts\s*$/.test(text)) {
        start = index;
        body = [];
      }
    } else if (/^```\s*$/.test(text)) {
      examples.push({ where: `${file}:${start + 1}`, code: body.join("\n") });
      start = -1;
    } else {
      body.push(text);
    }
  });
  return examples;
}

// Whether this runtime parses `using` declarations (Node 22 does not).
const parsesUsing = (() => {
  try {
    new Function("{ using resource = null; }");
    return true;
  } catch {
    return false;
  }
})();
const usesUsing = /^\s*(await\s+)?using\s/m;

interface Outcome {
  code: number | null;
  output: string;
}

// Runs `file` with this runtime, in `cwd`. (Not with NODE_COMPILE_CACHE,
// which would save Node a second per example: on Node 22 and 24, code loaded
// from that cache has misbehaved, and crashed, on some versions of mod.ts.)
function runProgram(file: string, cwd: string): Promise<Outcome> {
  const argv = "Deno" in globalThis ? ["run", "-A", file] : [file];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      cwd,
      env: { ...process.env, NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 60_000,
    });
    let output = "";
    child.stdout.on("data", (chunk) => output += chunk);
    child.stderr.on("data", (chunk) => output += chunk);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
  });
}

// Runs the examples, two at a time (they are mostly process start-up).
async function runAll(
  examples: Example[],
  each: (example: Example) => Promise<void>,
): Promise<void> {
  const queue = [...examples];
  const worker = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await each(next);
  };
  await Promise.all([worker(), worker()]);
}

for (const file of ["mod.ts", "README.md"]) {
  // Each example is a program started afresh: allow minutes, not the
  // runners' default seconds (Bun's is 5).
  const options = { timeout: 10 * 60_000 };
  test(
    `docs: every example of ${file} runs and writes nothing`,
    options,
    async () => {
      const blocks = examplesIn(file);
      assert.ok(blocks.length > 0, `no examples found in ${file}`);
      const moduleName = /^\/\/ ([\w.-]+\.ts)\n/;
      const modules = blocks.filter(({ code }) => moduleName.test(code));
      const examples = blocks.filter((block) => !modules.includes(block));
      const failures: string[] = [];
      const base = fs.mkdtempSync(path.join(os.tmpdir(), "aio-docs-"));
      try {
        await runAll(examples, async ({ where, code }) => {
          if (usesUsing.test(code) && !parsesUsing) return;
          const dir = fs.mkdtempSync(path.join(base, "example-"));
          const cwd = path.join(dir, "cwd");
          fs.mkdirSync(cwd);
          for (const module of modules) {
            const name = module.code.match(moduleName)![1];
            fs.writeFileSync(path.join(dir, name), module.code);
          }
          const program = path.join(dir, "example.mts");
          fs.writeFileSync(
            program,
            code.replaceAll(`"@aio/asyncio"`, JSON.stringify(library)),
          );
          const began = performance.now();
          const { code: status, output } = await runProgram(program, cwd);
          if (process.env.DOCS_TIMES) {
            console.log(where, Math.round(performance.now() - began), "ms");
          }
          const left = fs.readdirSync(cwd);
          if (status !== 0) {
            failures.push(`${where} exited with ${status}:\n${output}`);
          } else if (left.length > 0) {
            failures.push(`${where} wrote into its directory: ${left}`);
          }
        });
      } finally {
        fs.rmSync(base, { recursive: true, force: true });
      }
      assert.deepEqual(failures, []);
    },
  );
}

test("docs: README's relative links and picture point at published files", () => {
  const config = JSON.parse(
    fs.readFileSync(path.join(root, "deno.json"), "utf8"),
  );
  const published = (config.publish.include as string[]).map((glob) =>
    new RegExp(
      `^${glob.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}$`,
    )
  );
  const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
  const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)]
    .map((match) => match[1])
    .filter((target) => !/^[a-z]+:/.test(target) && !target.startsWith("#"));
  assert.ok(targets.includes("docs/tutorial_timeline.svg"));
  for (const target of targets) {
    assert.ok(fs.existsSync(path.join(root, target)), `${target} is missing`);
    assert.ok(
      published.some((glob) => glob.test(target)),
      `${target} is not in deno.json's publish.include`,
    );
  }
});
