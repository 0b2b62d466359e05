#!/usr/bin/env bash
# Every benchmark, one after the other: `deno task bench`.
#   core (tasks, switches, timers), synchronization and queues, TCP echo.
# Each prints markdown tables: ours beside bare promises (or bare node:net),
# and beside CPython asyncio and uvloop where python3 has them.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
tools=.tools/node_modules/.bin
deno=$(command -v deno || echo "$tools/deno")
bun=$(command -v bun || echo "$tools/bun")

echo "## Core"
bash bench/run.sh "$@"
echo
echo "## Synchronization and queues"
bash bench/sync.sh "$@"
echo
echo "## TCP echo"
"$deno" run -A bench/net.ts
if [ -x "$bun" ] || command -v bun >/dev/null 2>&1; then
  "$bun" bench/net.ts
else
  echo "Bun not found: skipping the TCP echo benchmark on Bun."
fi
