#!/usr/bin/env python3
"""The three core workloads of bench/impl/ (tasks, switches, timers), in CPython's asyncio.

    python3 bench/core_asyncio.py            # stdlib asyncio event loop
    python3 bench/core_asyncio.py --uvloop   # uvloop's event loop
    python3 bench/core_asyncio.py --both     # {"asyncio": {...}, "uvloop": {...}}
    python3 bench/core_asyncio.py --quick    # sizes / 10, for a smoke test

Prints JSON {workload: ops_per_s} on stdout (with --both, one such object per
loop), and a line per measurement on stderr. The workloads, sizes, delays and
method match bench/impl/ and bench/harness.ts:

- tasks: 100,000 coroutines gathered (gather wraps each in a Task), each doing
  one `await asyncio.sleep(0)` and returning 1. ops = tasks.
- switches: 10 tasks each doing 10,000 `await asyncio.sleep(0)`. ops = switches.
- timers: 100,000 concurrent tasks each doing `await asyncio.sleep(d / 1000)`,
  d in 1..10 ms from the same 32-bit LCG as harness.ts. ops = timers per second
  of wall time.

One warm-up run, then up to --runs (5) runs, fewer once a measurement has used
its time budget (4 s, or 12 s if that leaves fewer than 3 runs); the median is
reported. Each run is a whole `Runner.run`
call on a fresh event loop (like `run(...)` in impl/ours.ts), after gc.collect().
"""

import asyncio

from asyncio_harness import SCALE, main, max_runs


N_TASKS = 100_000 // SCALE
SWITCH_TASKS = 10
SWITCHES_PER_TASK = 10_000 // SCALE
N_TIMERS = 100_000 // SCALE


def timer_delays(n):
    """Same as harness.ts: 32-bit LCG, d = 1 + (x >> 16) % 10 (in ms)."""
    out = []
    x = 12345
    for _ in range(n):
        x = (x * 1664525 + 1013904223) & 0xFFFFFFFF
        out.append(1 + (x >> 16) % 10)
    return out


DELAYS_S = [d / 1000 for d in timer_delays(N_TIMERS)]


async def w_tasks():
    async def one():
        await asyncio.sleep(0)
        return 1

    return sum(await asyncio.gather(*(one() for _ in range(N_TASKS))))


async def w_switches():
    async def worker():
        for _ in range(SWITCHES_PER_TASK):
            await asyncio.sleep(0)
        return SWITCHES_PER_TASK

    tasks = [asyncio.create_task(worker()) for _ in range(SWITCH_TASKS)]
    total = 0
    for t in tasks:
        total += await t
    return total


async def w_timers():
    async def one(d):
        await asyncio.sleep(d)
        return 1

    return sum(await asyncio.gather(*(one(d) for d in DELAYS_S)))


WORKLOADS = {
    "tasks": (w_tasks, N_TASKS),
    "switches": (w_switches, SWITCH_TASKS * SWITCHES_PER_TASK),
    "timers": (w_timers, N_TIMERS),
}


if __name__ == "__main__":
    main(WORKLOADS, max_runs(5))
