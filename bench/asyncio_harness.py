"""What the CPython benchmarks share: timing a workload on a fresh loop,
taking the median of a few runs, and the command line.

    python3 bench/core_asyncio.py [--uvloop | --both] [--quick] [--runs N]
    python3 bench/sync_asyncio.py [--uvloop | --both] [--quick] [--runs N]

Each prints JSON, {workload: ops_per_second} (or {"asyncio": ..., "uvloop":
...} with --both), for the TypeScript benchmarks to put beside their own.
"""

import asyncio
import gc
import json
import statistics
import sys
import time

ARGS = sys.argv[1:]
SCALE = 10 if "--quick" in ARGS else 1
BUDGET_S = 4.0


def max_runs(default):
    return int(ARGS[ARGS.index("--runs") + 1]) if "--runs" in ARGS else default


def once(loop_factory, fn, expected, what):
    gc.collect()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        start = time.perf_counter()
        got = runner.run(fn())
        elapsed = time.perf_counter() - start
    if got != expected:
        raise RuntimeError(f"{what}: wrong result {got}, expected {expected}")
    return elapsed


def measure(loop_name, loop_factory, workloads, runs):
    """ops/s of each workload: the median of up to `runs` runs after a
    warm-up, fewer when they take more than BUDGET_S in all."""
    out = {}
    for name, (fn, ops) in workloads.items():
        what = f"{loop_name}/{name}"
        start = time.perf_counter()
        once(loop_factory, fn, ops, what)  # warm-up
        times = []
        while len(times) < runs:
            times.append(once(loop_factory, fn, ops, what))
            spent = time.perf_counter() - start
            if spent > 3 * BUDGET_S:
                break
            if spent > BUDGET_S and len(times) >= min(3, runs):
                break
        median = statistics.median(times)
        out[name] = ops / median
        print(
            f"# {what}: {ops / median:,.0f} ops/s "
            f"(median {median * 1000:.1f} ms of {len(times)} runs)",
            file=sys.stderr,
        )
    return out


def uvloop_factory():
    try:
        import uvloop
    except ImportError:
        print(f"uvloop is not importable from {sys.executable}", file=sys.stderr)
        sys.exit(2)
    return uvloop.new_event_loop


def main(workloads, runs):
    print(f"# {sys.executable} {sys.version.split()[0]}", file=sys.stderr)
    if "--both" in ARGS:
        result = {
            "asyncio": measure("asyncio", asyncio.new_event_loop, workloads, runs),
            "uvloop": measure("uvloop", uvloop_factory(), workloads, runs),
        }
    elif "--uvloop" in ARGS:
        result = measure("uvloop", uvloop_factory(), workloads, runs)
    else:
        result = measure("asyncio", asyncio.new_event_loop, workloads, runs)
    print(json.dumps(result))
