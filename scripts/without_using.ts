// Writes, beside each test file given, a copy without the tests whose code
// has `using` declarations, which Node 22 cannot parse, and prints the
// copies' paths (or the file itself when it has none). scripts/test.sh runs
// the copies on Node 22 and removes them.
//
// A test is a top-level `test(` call that starts at the beginning of a line
// and ends at the next line that is `});`, as `deno fmt` lays them out.
import * as fs from "node:fs";
import process from "node:process";

const usingDeclaration = /^\s*(await\s+)?using\s+[A-Za-z_$]/m;

for (const file of process.argv.slice(2)) {
  const lines = fs.readFileSync(file, "utf8").split("\n");
  const kept: string[] = [];
  let dropped = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].startsWith("test(")) {
      kept.push(lines[i]);
      continue;
    }
    let end = i;
    while (end < lines.length - 1 && lines[end] !== "});") end++;
    const block = lines.slice(i, end + 1);
    if (usingDeclaration.test(block.join("\n"))) dropped++;
    else kept.push(...block);
    i = end;
  }
  if (usingDeclaration.test(kept.join("\n"))) {
    throw new Error(`${file}: a using declaration outside any test`);
  }
  if (dropped === 0) {
    console.log(file);
    continue;
  }
  const copy = file.replace(/\.ts$/, ".no-using.ts");
  fs.writeFileSync(copy, kept.join("\n"));
  console.log(copy);
  console.error(`${file}: ${dropped} tests written with using left out`);
}
