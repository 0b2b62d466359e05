#!/usr/bin/env bash
# Every benchmark from one run: `deno task bench`.
#
#   bash bench/all.sh            # full run (see below for how long)
#   bash bench/all.sh --quick    # sizes / 10, short runs, no TCP echo
#   bash bench/all.sh --net      # the TCP echo tables alone
#   BENCH_IMPLS="floor ours" BENCH_RUNTIMES="bun" bash bench/all.sh --quick
#                                # some implementations or runtimes only
#   BENCH_ONLY=lock,event BENCH_QUICK=1 bash bench/all.sh
#                                # some workloads only; BENCH_QUICK=1 is --quick
#
# A full run took 31 minutes with the machine's 2 cores at a load of 9 to 13;
# Effection's 100,000-task workloads take 20 to 100 s a run of that.
# Throughput: bench/suite.ts runs the floor (bare promises), ours and the JS
# peers (Effect, Effection, async-mutex, p-limit), each implementation in a
# process of its own, on Deno, Bun and Node; bench/core_asyncio.py and
# bench/sync_asyncio.py run the same workloads on CPython asyncio and
# uvloop. Memory: bench/memory.ts and bench/memory_asyncio.py. Then
# bench/report.ts prints the tables side by side, and bench/net.ts the TCP
# echo tables. Progress goes to stderr; the raw JSON stays in a temporary
# directory, named at the end.
#
# deno, bun, node and python3 (with uvloop) are found by scripts/tools.sh;
# a runtime or Python that is missing is skipped, saying so.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/tools.sh

quick=()
parts="throughput net"
[ "${BENCH_QUICK:-}" = 1 ] && set -- --quick "$@"
for a in "$@"; do
  case "$a" in
    --quick) quick=(--quick --runs 3 --budget-ms 500) parts=throughput ;;
    --net) parts=net ;;
    *) echo "usage: bash bench/all.sh [--quick | --net]" >&2; exit 2 ;;
  esac
done
only=()
[ -n "${BENCH_ONLY:-}" ] && only=(--only "$BENCH_ONLY")

tools_use deno || exit 1
runtimes=()
for rt in ${BENCH_RUNTIMES:-deno bun node}; do
  if tools_use "$rt"; then runtimes+=("$rt"); else echo "$rt not found: skipping it" >&2; fi
done
tools_python
deno=$AIO_DENO

# The command that runs a script on a runtime, with a GC the harness can force.
on() {
  case "$1" in
    deno) echo "$AIO_DENO run -A --v8-flags=--expose-gc" ;;
    bun) echo "$AIO_BUN" ;;
    node) echo "$AIO_NODE --expose-gc --disable-warning=MODULE_TYPELESS_PACKAGE_JSON" ;;
  esac
}

if [ "$parts" != net ]; then
  out=$(mktemp -d "${TMPDIR:-/tmp}/aio-bench.XXXXXX")
  echo "# $(nproc 2>/dev/null || echo '?') cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), JSON in $out" >&2

  for rt in "${runtimes[@]}"; do
    run=$(on "$rt")
    for impl in ${BENCH_IMPLS:-floor ours effect effection async-mutex p-limit}; do
      $run bench/suite.ts --impl "$impl" "${quick[@]}" "${only[@]}" >"$out/$rt-$impl.json" ||
        echo "$rt $impl failed" >&2
    done
    $run bench/memory.ts "${quick[@]:0:1}" >"$out/$rt-memory.json" ||
      echo "$rt memory failed" >&2
  done

  if [ -n "$AIO_PYTHON" ]; then
    py=$AIO_PYTHON
    both=()
    [ -n "$AIO_UVLOOP" ] && both=(--both)
    "$py" bench/core_asyncio.py "${both[@]}" "${quick[@]:0:1}" >"$out/py-core.json" || true
    "$py" bench/sync_asyncio.py "${both[@]}" "${quick[@]:0:1}" >"$out/py-sync.json" || true
    if [ -z "$AIO_UVLOOP" ]; then
      # Without uvloop the scripts print {workload: ops} for asyncio alone.
      for f in core sync; do
        echo "{\"asyncio\": $(cat "$out/py-$f.json")}" >"$out/py-$f.json.tmp" &&
          mv "$out/py-$f.json.tmp" "$out/py-$f.json"
      done
    fi
    "$py" bench/memory_asyncio.py "${quick[@]:0:1}" >"$out/py-memory-asyncio.json" || true
    if [ -n "$AIO_UVLOOP" ]; then
      "$py" bench/memory_asyncio.py --uvloop "${quick[@]:0:1}" >"$out/py-memory-uvloop.json" || true
    fi
  fi

  "$deno" run -A bench/report.ts "$out" --clock cpu
  echo
  "$deno" run -A bench/report.ts "$out" --clock wall --summary
fi

if [[ " $parts " == *" net "* ]]; then
  [ "$parts" = net ] || echo
  echo "## TCP echo"
  "$deno" run -A bench/net.ts
  if tools_use bun; then "$AIO_BUN" bench/net.ts; fi
fi
[ "$parts" = net ] || echo "# raw JSON: $out" >&2
