#!/usr/bin/env python3
"""The sync workloads of bench/impl/ (pingpong, mpmc, lock, event), in CPython's asyncio.

    python3 bench/sync_asyncio.py            # stdlib asyncio event loop
    python3 bench/sync_asyncio.py --uvloop   # uvloop's event loop
    python3 bench/sync_asyncio.py --quick    # sizes / 10, for a smoke test

Prints JSON {workload: ops_per_s} on stdout and one line per workload on
stderr. Same workloads and sizes as bench/impl/: pingpong (Queue(1), 200,000
items), mpmc (4 producers, 4 consumers, unbounded Queue, 1,000,000 items),
lock (100 tasks x 2,000 acquisitions, asyncio.sleep(0) inside the lock),
event (100,000 tasks woken by one Event, making the tasks included).
One warm-up run, then up to --runs (3) runs, stopping early after 4 s; the
median is reported. Each run is a whole asyncio.Runner.run on a fresh loop.
"""

import asyncio

from asyncio_harness import SCALE, main, max_runs


PINGPONG_ITEMS = 200_000 // SCALE
MPMC_ITEMS = 1_000_000 // SCALE
MPMC_SIDES = 4
LOCK_TASKS = 100
LOCK_ROUNDS = 2000 // SCALE
EVENT_TASKS = 100_000 // SCALE


async def pingpong():
    queue = asyncio.Queue(1)

    async def producer():
        for i in range(PINGPONG_ITEMS):
            await queue.put(i)

    task = asyncio.create_task(producer())
    received = 0
    for _ in range(PINGPONG_ITEMS):
        await queue.get()
        received += 1
    await task
    return received


async def mpmc():
    queue = asyncio.Queue()
    each = MPMC_ITEMS // MPMC_SIDES

    async def producer():
        for i in range(each):
            await queue.put(i)

    async def consumer():
        received = 0
        while (await queue.get()) >= 0:
            received += 1
        return received

    producers = [asyncio.create_task(producer()) for _ in range(MPMC_SIDES)]
    consumers = [asyncio.create_task(consumer()) for _ in range(MPMC_SIDES)]
    await asyncio.gather(*producers)
    for _ in range(MPMC_SIDES):
        await queue.put(-1)
    return sum(await asyncio.gather(*consumers))


async def lock():
    the_lock = asyncio.Lock()
    acquisitions = 0

    async def worker():
        nonlocal acquisitions
        for _ in range(LOCK_ROUNDS):
            async with the_lock:
                acquisitions += 1
                await asyncio.sleep(0)

    await asyncio.gather(*(worker() for _ in range(LOCK_TASKS)))
    return acquisitions


async def event():
    the_event = asyncio.Event()

    async def waiter():
        await the_event.wait()
        return 1

    tasks = [asyncio.create_task(waiter()) for _ in range(EVENT_TASKS)]
    await asyncio.sleep(0)
    the_event.set()
    return len(await asyncio.gather(*tasks))


WORKLOADS = {
    "pingpong": (pingpong, PINGPONG_ITEMS),
    "mpmc": (mpmc, MPMC_ITEMS),
    "lock": (lock, LOCK_TASKS * LOCK_ROUNDS),
    "event": (event, EVENT_TASKS),
}


if __name__ == "__main__":
    main(WORKLOADS, max_runs(3))
