// The README's stdin recipe as a program (not a test file): reads stdin line
// by line through a StreamReader, and writes each line upper-cased to stdout
// through a StreamWriter on a write pipe.
import process from "node:process";
import {
  getRunningLoop,
  run,
  StreamReader,
  StreamReaderProtocol,
  StreamWriter,
} from "../mod.ts";

await run(async () => {
  const loop = getRunningLoop();
  const reader = new StreamReader();
  await loop.connectReadPipe(
    () => new StreamReaderProtocol(reader),
    process.stdin,
  );
  const [transport, protocol] = await loop.connectWritePipe(
    () => new StreamReaderProtocol(new StreamReader()),
    process.stdout,
  );
  const writer = new StreamWriter(transport, protocol, null, loop);
  for await (const line of reader) {
    writer.write(new TextDecoder().decode(line).toUpperCase());
    await writer.drain();
  }
});
