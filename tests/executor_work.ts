// Functions the executor tests run on worker threads (not a test file).
import { threadId } from "node:worker_threads";

export function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

export async function double(n: number): Promise<number> {
  await Promise.resolve();
  return 2 * n;
}

export function boom(message: string): never {
  throw new TypeError(message);
}

export function workerId(): number {
  return threadId;
}

// Blocks the worker until the main thread stores non-zero in cell 0.
export function hold(cells: Int32Array): string {
  Atomics.wait(cells, 0, 0);
  return "released";
}

// Counts its calls in cell 1, so a test can see whether a job ran.
export function bump(cells: Int32Array): number {
  return Atomics.add(cells, 1, 1) + 1;
}

export function unsendable(): () => void {
  return () => {};
}

export const notAFunction = 42;
