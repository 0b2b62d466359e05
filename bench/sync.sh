#!/usr/bin/env bash
# Sync-primitives benchmark: bench/sync.ts under Deno and Bun, with the
# CPython asyncio and uvloop columns from bench/sync_asyncio.py.
#
#   bash bench/sync.sh           # full run (a few minutes on 2 cores)
#   bash bench/sync.sh --quick   # sizes / 10, a smoke test
#
# The Python columns use /usr/bin/python3 when it can import uvloop (so both
# loops run on the same CPython), else python3 for asyncio alone.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tools=.tools/node_modules/.bin
deno=$(command -v deno || echo "$tools/deno")
bun=$(command -v bun || echo "$tools/bun")
py=/usr/bin/python3
"$py" -c 'import uvloop' 2>/dev/null || py=$(command -v python3 || true)

asyncio_json="{}"
uvloop_json="{}"
if [ -n "$py" ]; then
  asyncio_json=$("$py" bench/sync_asyncio.py "$@") || asyncio_json="{}"
  if "$py" -c 'import uvloop' 2>/dev/null; then
    uvloop_json=$("$py" bench/sync_asyncio.py --uvloop "$@") || uvloop_json="{}"
  fi
fi
"$deno" run -A --v8-flags=--expose-gc bench/sync.ts "$@" \
  --asyncio "$asyncio_json" --uvloop "$uvloop_json"
echo
"$bun" bench/sync.ts "$@" --asyncio "$asyncio_json" --uvloop "$uvloop_json"
