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
    """Seconds of wall time and of this thread's CPU time for one run."""
    gc.collect()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        start = time.perf_counter()
        cpu_start = time.thread_time()
        got = runner.run(fn())
        cpu = time.thread_time() - cpu_start
        elapsed = time.perf_counter() - start
    if got != expected:
        raise RuntimeError(f"{what}: wrong result {got}, expected {expected}")
    return elapsed, cpu


def measure(loop_name, loop_factory, workloads, runs, cpu_out=None):
    """ops/s of each workload: the median of up to `runs` runs after a
    warm-up, fewer when they take more than BUDGET_S in all. If `cpu_out`
    is a dict, it gets ops per second of this thread's CPU time too."""
    out = {}
    for name, (fn, ops) in workloads.items():
        what = f"{loop_name}/{name}"
        start = time.perf_counter()
        once(loop_factory, fn, ops, what)  # warm-up
        times = []
        cpu_times = []
        while len(times) < runs:
            elapsed, cpu = once(loop_factory, fn, ops, what)
            times.append(elapsed)
            cpu_times.append(cpu)
            spent = time.perf_counter() - start
            if spent > 3 * BUDGET_S:
                break
            if spent > BUDGET_S and len(times) >= min(3, runs):
                break
        median = statistics.median(times)
        out[name] = ops / median
        if cpu_out is not None:
            cpu_out[name] = ops / statistics.median(cpu_times)
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
        # Also per second of CPU time, for bench/report.ts on a busy machine.
        result = {"asyncio_cpu": {}, "uvloop_cpu": {}}
        result["asyncio"] = measure(
            "asyncio", asyncio.new_event_loop, workloads, runs, result["asyncio_cpu"]
        )
        result["uvloop"] = measure(
            "uvloop", uvloop_factory(), workloads, runs, result["uvloop_cpu"]
        )
    elif "--uvloop" in ARGS:
        result = measure("uvloop", uvloop_factory(), workloads, runs)
    else:
        result = measure("asyncio", asyncio.new_event_loop, workloads, runs)
    print(json.dumps(result))
