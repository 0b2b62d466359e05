#!/usr/bin/env bash
# Every benchmark from one run: `deno task bench`.
#
#   bash bench/all.sh            # full run (see below for how long)
#   bash bench/all.sh --quick    # sizes / 10, short runs, no TCP echo
#   BENCH_IMPLS="floor ours" BENCH_RUNTIMES="bun" bash bench/all.sh --quick
#                                # some implementations or runtimes only
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
# deno, bun and node are taken from PATH, else .tools/node_modules/.bin.
# Python is Debian's /usr/bin/python3 when it can import uvloop
# (apt-get install python3-uvloop), else python3 for asyncio alone.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

quick=()
for a in "$@"; do
  case "$a" in
    --quick) quick=(--quick --runs 3 --budget-ms 500) ;;
    *) echo "usage: bash bench/all.sh [--quick]" >&2; exit 2 ;;
  esac
done

tool() {
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"
  elif [ -x ".tools/node_modules/.bin/$1" ]; then echo ".tools/node_modules/.bin/$1"
  fi
}
deno=$(tool deno)
bun=$(tool bun)
node=$(tool node)
if [ -z "$deno" ]; then echo "deno not found" >&2; exit 1; fi

out=$(mktemp -d "${TMPDIR:-/tmp}/aio-bench.XXXXXX")
echo "# $(nproc 2>/dev/null || echo '?') cores, $(date -u +%Y-%m-%dT%H:%M:%SZ), JSON in $out" >&2

# The command that runs a script on a runtime, with a GC the harness can force.
on() {
  case "$1" in
    deno) echo "$deno run -A --v8-flags=--expose-gc" ;;
    bun) echo "$bun" ;;
    node) echo "$node --expose-gc --disable-warning=MODULE_TYPELESS_PACKAGE_JSON" ;;
  esac
}

for rt in ${BENCH_RUNTIMES:-deno bun node}; do
  if [ -z "$(eval echo \$$rt)" ]; then
    echo "$rt not found: skipping it" >&2
    continue
  fi
  run=$(on "$rt")
  for impl in ${BENCH_IMPLS:-floor ours effect effection async-mutex p-limit}; do
    $run bench/suite.ts --impl "$impl" "${quick[@]}" >"$out/$rt-$impl.json" ||
      echo "$rt $impl failed" >&2
  done
  $run bench/memory.ts "${quick[@]:0:1}" >"$out/$rt-memory.json" ||
    echo "$rt memory failed" >&2
done

py=/usr/bin/python3
"$py" -c 'import uvloop' 2>/dev/null || py=$(command -v python3 || true)
if [ -z "$py" ]; then
  echo "python3 not found: skipping CPython" >&2
else
  both=--both
  "$py" -c 'import uvloop' 2>/dev/null || both=
  echo "# CPython: $py $("$py" -c 'import sys; print(sys.version.split()[0])')" >&2
  "$py" bench/core_asyncio.py $both "${quick[@]:0:1}" >"$out/py-core.json" || true
  "$py" bench/sync_asyncio.py $both "${quick[@]:0:1}" >"$out/py-sync.json" || true
  if [ -z "$both" ]; then
    # Without uvloop the scripts print {workload: ops} for asyncio alone.
    for f in core sync; do
      echo "{\"asyncio\": $(cat "$out/py-$f.json")}" >"$out/py-$f.json.tmp" &&
        mv "$out/py-$f.json.tmp" "$out/py-$f.json"
    done
  fi
  "$py" bench/memory_asyncio.py "${quick[@]:0:1}" >"$out/py-memory-asyncio.json" || true
  if [ -n "$both" ]; then
    "$py" bench/memory_asyncio.py --uvloop "${quick[@]:0:1}" >"$out/py-memory-uvloop.json" || true
  fi
fi

"$deno" run -A bench/report.ts "$out" --clock cpu
echo
"$deno" run -A bench/report.ts "$out" --clock wall --summary

if [ ${#quick[@]} -eq 0 ]; then
  echo
  echo "## TCP echo"
  "$deno" run -A bench/net.ts
  if [ -n "$bun" ]; then "$bun" bench/net.ts; fi
fi
echo "# raw JSON: $out" >&2
