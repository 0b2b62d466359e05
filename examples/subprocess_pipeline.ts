/**
 * A pipeline of child processes, like `seq 1 100000 | awk '{ s += $1 } END
 * { print s }'`, with the bytes passing through us: we read the producer's
 * output line by line and write it to the consumer, and `drain()` keeps the
 * pace of the slower one. Then a child that would run too long is stopped
 * by a timeout, and a missing program gives a clear error.
 *
 *     deno run -A examples/subprocess_pipeline.ts
 *
 * @module
 */
import {
  createSubprocessExec,
  PIPE,
  run,
  timeout,
  TimeoutError,
} from "../mod.ts";

await run(async () => {
  const producer = await createSubprocessExec("seq", ["1", "100000"], {
    stdout: PIPE,
  });
  const consumer = await createSubprocessExec(
    "awk",
    ['{ s += $1; n++ } END { printf "%d %.0f\\n", n, s }'],
    { stdin: PIPE, stdout: PIPE },
  );
  for await (const line of producer.stdout!) {
    consumer.stdin!.write(line);
    await consumer.stdin!.drain();
  }
  const [out] = await consumer.communicate(); // closes its stdin, reads all
  const [count, sum] = new TextDecoder().decode(out!).trim().split(" ");
  console.log(`awk counted ${count} lines adding up to ${sum}`);
  console.log("exit codes:", await producer.wait(), consumer.returncode);

  const sleeper = await createSubprocessExec("sleep", ["60"]);
  try {
    await timeout(200, () => sleeper.wait());
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    sleeper.terminate();
    console.log("sleep 60 took too long; terminated:", await sleeper.wait());
  }

  try {
    await createSubprocessExec("no-such-program");
  } catch (error) {
    console.log("as expected:", (error as Error).message);
  }
});
