#!/usr/bin/env bash
# CPU profiles of ours on one workload, with the top frames as markdown.
#
#   bash bench/profile.sh deno event     # deno run --cpu-prof
#   bash bench/profile.sh bun lock       # bun --cpu-prof
#
# Runs bench/suite.ts --impl ours --only WORKLOAD --no-gc (a warm-up and a few
# runs, so the profile is mostly steady state; no forced collections between
# runs, so the GC share is the workload's own) and prints bench/profile_top.ts of
# the profile. The .cpuprofile file stays in a temporary directory (named on
# stderr), for Chrome DevTools or VS Code. The runtimes are scripts/tools.sh's.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/tools.sh
rt=${1:?usage: bash bench/profile.sh deno|bun|node WORKLOAD}
workload=${2:?usage: bash bench/profile.sh deno|bun|node WORKLOAD}
shift 2
case "$rt" in
  deno | bun | node) tools_use deno "$rt" ;;
  *) echo "runtime: deno, bun or node" >&2; exit 2 ;;
esac
dir=$(mktemp -d "${TMPDIR:-/tmp}/aio-profile.XXXXXX")
args=(bench/suite.ts --impl ours --only "$workload" --no-gc "$@")
case "$rt" in
  deno) "$AIO_DENO" run -A --v8-flags=--expose-gc --cpu-prof --cpu-prof-dir="$dir" "${args[@]}" >/dev/null ;;
  bun) "$AIO_BUN" --cpu-prof --cpu-prof-dir="$dir" "${args[@]}" >/dev/null ;;
  node) "$AIO_NODE" --expose-gc --cpu-prof --cpu-prof-dir="$dir" "${args[@]}" >/dev/null ;;
esac
echo "# profile in $dir" >&2
"$AIO_DENO" run -A bench/profile_top.ts "$dir"/*.cpuprofile
