// A task group: structured concurrency. The group ends when all its tasks
// have; if one fails, the others are cancelled and the errors come out
// together as an ExceptionGroup.
//
//   deno run examples/task_group.ts            # about a third of a second
//   deno run examples/task_group.ts --virtual  # exact times, instantly
import process from "node:process";
import {
  ExceptionGroup,
  getRunningLoop,
  run,
  sleep,
  taskGroup,
} from "../mod.ts";

const virtualTime = process.argv.includes("--virtual");

let start = 0;
const now = () =>
  `${Math.round((getRunningLoop().time() - start) / 10) * 10} ms`;

async function fetchUser(id: number, ms: number): Promise<string> {
  try {
    await sleep(ms);
    if (id < 0) throw new RangeError(`no user ${id}`);
    return `user${id}`;
  } finally {
    console.log(`  fetchUser(${id}) ended at ${now()}`);
  }
}

await run(async () => {
  start = getRunningLoop().time();

  console.log("three fetches in a group");
  const users = await taskGroup(async (tg) => {
    const tasks = [
      tg.createTask(() => fetchUser(1, 100)),
      tg.createTask(() => fetchUser(2, 200)),
      tg.createTask(() => fetchUser(3, 150)),
    ];
    return tasks; // the group waits for them all before returning
  });
  console.log(`  got ${users.map((t) => t.result()).join(", ")} at ${now()}`);

  console.log("one fetch fails: the others are cancelled");
  start = getRunningLoop().time();
  try {
    await taskGroup(async (tg) => {
      tg.createTask(() => fetchUser(4, 100));
      tg.createTask(() => fetchUser(-1, 50));
      tg.createTask(() => fetchUser(5, 1000));
    });
  } catch (error) {
    if (!(error instanceof ExceptionGroup)) throw error;
    const messages = error.exceptions.map((e) => String(e));
    console.log(`  ExceptionGroup at ${now()}: ${messages.join("; ")}`);
  }
}, { virtualTime });
