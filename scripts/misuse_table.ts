// Prints README's "Bad input and misuse" table from tests/input_cases.ts,
// with the message each call really gets: `deno run -A scripts/misuse_table.ts`.
import { MISUSE } from "../tests/input_cases.ts";
import { run } from "../mod.ts";

const rows: string[] = [];
await run(async () => {
  for (const misuse of MISUSE) {
    let message = "(no error)";
    const prepared = await misuse.prepare?.();
    try {
      misuse.attempt(prepared);
    } catch (error) {
      message = `${(error as Error).name}: ${(error as Error).message}`;
    }
    const cell = (text: string) => text.replaceAll("|", "\\|");
    rows.push(
      `| \`${cell(misuse.call)}\` | ${cell(message)} | ${
        cell(misuse.asyncio)
      } |`,
    );
  }
}, { virtualTime: true });
console.log("| call | error here, at the call | asyncio |");
console.log("| --- | --- | --- |");
console.log(rows.join("\n"));
