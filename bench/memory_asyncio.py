#!/usr/bin/env python3
"""Bytes per pending task in CPython's asyncio: bench/memory.ts's program.

    python3 bench/memory_asyncio.py [--uvloop] [--quick]

For each kind of wait, 100,000 tasks wait on `queue.get()` of an empty
queue, on `lock.acquire()` of a held lock (`async with`), or in
`asyncio.sleep(3600)`. The figure is the growth of memory traced by
tracemalloc (every allocation Python's allocators make, the loop's C parts
included) between before making the tasks and once all are waiting, divided
by the number of tasks, after gc.collect() on both sides. Then all are
cancelled. Prints JSON {kind: bytes} on stdout.
"""

import asyncio
import gc
import json
import sys
import tracemalloc

N = 100_000 // (10 if "--quick" in sys.argv else 1)


async def measure(kind):
    queue = asyncio.Queue()
    lock = asyncio.Lock()
    await lock.acquire()

    async def on_queue():
        await queue.get()

    async def on_lock():
        async with lock:
            pass

    async def on_sleep():
        await asyncio.sleep(3600)

    waiter = {"queue": on_queue, "lock": on_lock, "sleep": on_sleep}[kind]
    tasks = [None] * N
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(N):
        tasks[i] = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (after - before) / N


def main():
    factory = asyncio.new_event_loop
    if "--uvloop" in sys.argv:
        import uvloop

        factory = uvloop.new_event_loop
    tracemalloc.start()
    out = {}
    for kind in ("queue", "lock", "sleep"):
        with asyncio.Runner(loop_factory=factory) as runner:
            out[kind] = runner.run(measure(kind))
        print(f"# memory {kind}: {out[kind]:.0f} bytes per task", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
