// readuntil() with several separators (asyncio 3.13). The expected values
// are what CPython 3.14's asyncio returns for the same input (checked
// through pyodide).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  IncompleteReadError,
  LimitOverrunError,
  run,
  sleep,
  StreamReader,
} from "../mod.ts";
import { bytesOf, textOf } from "./helpers.ts";

function readerWith(text: string, limit?: number): StreamReader {
  const reader = new StreamReader(limit);
  reader.feedData(bytesOf(text));
  return reader;
}

test("readuntil([...]): two separators ending at the same place return that chunk", async () => {
  await run(async () => {
    const reader = readerWith("a\r\nb\n");
    assert.equal(textOf(await reader.readuntil(["\n", "\r\n"])), "a\r\n");
    assert.equal(textOf(await reader.readuntil(["\n", "\r\n"])), "b\n");
    assert.equal(textOf(await readerWith("xAB").readuntil(["AB", "B"])), "xAB");
  });
});

test("readuntil([...]): the shortest chunk wins, whatever the order given", async () => {
  await run(async () => {
    const text = "abcx--long-sep";
    assert.equal(
      textOf(await readerWith(text).readuntil(["long-sep", "x"])),
      "abcx",
    );
    assert.equal(
      textOf(await readerWith(text).readuntil([bytesOf("x"), "long-sep"])),
      "abcx",
    );
  });
});

test("readuntil([...]): a separator split across chunks is found", async () => {
  await run(async () => {
    const reader = readerWith("ab|");
    const reading = reader.readuntil(["||", "c"]);
    await sleep(0);
    reader.feedData(bytesOf("|c"));
    assert.equal(textOf(await reading), "ab||");
    assert.equal(textOf(await reader.readuntil(["||", "c"])), "c");
  });
});

test("readuntil([...]): the end without any separator is IncompleteReadError", async () => {
  await run(async () => {
    const reader = readerWith("abc");
    reader.feedEof();
    await assert.rejects(
      reader.readuntil([";", "::"]),
      (e) => e instanceof IncompleteReadError && textOf(e.partial) === "abc",
    );
  });
});

test("readuntil([...]): the limit counts from the longest separator, and from the match", async () => {
  await run(async () => {
    await assert.rejects(
      readerWith("0123456789", 5).readuntil([";", "::"]),
      (e) => e instanceof LimitOverrunError && e.consumed === 9,
    );
    await assert.rejects(
      readerWith("0123456;89", 5).readuntil([";", "::"]),
      (e) => e instanceof LimitOverrunError && e.consumed === 7,
    );
  });
});

test("readuntil([...]): an empty array or an empty separator throws RangeError at the call", () => {
  const reader = readerWith("x");
  assert.throws(() => reader.readuntil([]), RangeError);
  assert.throws(() => reader.readuntil(["", "x"]), RangeError);
});
