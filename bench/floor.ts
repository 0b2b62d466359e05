/**
 * The floor the benchmarks compare against: what a hand-written program
 * needs at the least to let concurrent async functions take turns.
 *
 * `bareScheduler()` returns a `yieldNow()` that parks the caller on a ready
 * list; the first park in a batch queues one microtask that resolves the
 * whole batch in FIFO order, and tasks parking while it runs go to the next
 * batch. No timers, no task objects, no cancellation: only the queue an
 * asyncio-style loop needs, so `sleep(0)` is measured against it.
 */
export function bareScheduler(): () => Promise<void> {
  let ready: Array<() => void> = [];
  let scheduled = false;
  const drain = () => {
    scheduled = false;
    const batch = ready;
    ready = [];
    for (let i = 0; i < batch.length; i++) batch[i]();
  };
  return () =>
    new Promise<void>((resolve) => {
      ready.push(resolve);
      if (!scheduled) {
        scheduled = true;
        queueMicrotask(drain);
      }
    });
}
