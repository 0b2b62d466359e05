#!/usr/bin/env bash
# Core benchmark: @aio/asyncio under Deno and Bun, against bare promises in
# the same process, and against CPython asyncio and uvloop.
#
#   bash bench/run.sh           # full run (about a minute on 2 cores)
#   bash bench/run.sh --quick   # sizes / 10, a smoke test
#
# Prints one markdown table per JS runtime on stdout (progress goes to
# stderr). Columns: workload, ours, bare promises, ours/bare, CPython asyncio,
# uvloop, ours/uvloop; all numbers are ops/s except the ratios (ours divided
# by the other, so below 1 means we are slower). See bench/core.ts for what
# each workload and floor does.
#
# deno and bun are taken from PATH, else .tools/node_modules/.bin or
# node_modules/.bin. The Python columns use the first interpreter among
# /usr/bin/python3, python3, python that can `import uvloop` (so asyncio and
# uvloop are measured on the same CPython), else python3 for asyncio alone;
# anything missing is skipped with a message and shown as n/a.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root" || exit 1

extra=()
for a in "$@"; do
  case "$a" in
    --quick) extra+=(--quick) ;;
    *) echo "usage: bash bench/run.sh [--quick]" >&2; exit 2 ;;
  esac
done

find_tool() {
  local name=$1 d
  if command -v "$name" >/dev/null 2>&1; then
    command -v "$name"
    return 0
  fi
  for d in "$root/.tools/node_modules/.bin" "$root/node_modules/.bin"; do
    if [ -x "$d/$name" ]; then
      echo "$d/$name"
      return 0
    fi
  done
  return 1
}

echo "# core benchmark, $(nproc 2>/dev/null || echo '?') cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)" >&2

# ------------------------------------------------------------------ Python
uvpy=""
for p in /usr/bin/python3 python3 python; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import uvloop' >/dev/null 2>&1; then
    uvpy=$(command -v "$p")
    break
  fi
done
if [ -n "$uvpy" ]; then
  py=$uvpy
else
  py=$(command -v python3 || true)
fi

asyncio_json=""
uvloop_json=""
if [ -z "$py" ]; then
  echo "python3 not found: skipping the CPython asyncio and uvloop columns" >&2
else
  echo "# CPython: $py ($("$py" -c 'import sys; print(sys.version.split()[0])'))" >&2
  if ! asyncio_json=$("$py" bench/core_asyncio.py "${extra[@]}"); then
    echo "CPython asyncio benchmark failed: skipping its column" >&2
    asyncio_json=""
  fi
  if [ -z "$uvpy" ]; then
    echo "uvloop is not importable by any python3 found: skipping the uvloop column" >&2
  elif ! uvloop_json=$("$py" bench/core_asyncio.py --uvloop "${extra[@]}"); then
    echo "uvloop benchmark failed: skipping its column" >&2
    uvloop_json=""
  fi
fi

pyargs=()
[ -n "$asyncio_json" ] && pyargs+=(--asyncio "$asyncio_json")
[ -n "$uvloop_json" ] && pyargs+=(--uvloop "$uvloop_json")
# Always ask for the combined table, with n/a where Python is missing.
[ ${#pyargs[@]} -eq 0 ] && pyargs+=(--asyncio "{}" --uvloop "{}")

# ------------------------------------------------------------------ JS
status=0
ran=0
if deno=$(find_tool deno); then
  ran=1
  echo >&2
  "$deno" run -A --v8-flags=--expose-gc bench/core.ts "${extra[@]}" "${pyargs[@]}" || status=1
  echo
else
  echo "deno not found: skipping Deno" >&2
fi
if bun=$(find_tool bun); then
  ran=1
  echo >&2
  "$bun" bench/core.ts "${extra[@]}" "${pyargs[@]}" || status=1
  echo
else
  echo "bun not found: skipping Bun" >&2
fi
if [ "$ran" -eq 0 ]; then
  echo "neither deno nor bun found" >&2
  exit 1
fi
exit "$status"
