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
# stderr), for Chrome DevTools or VS Code.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
rt=${1:?usage: bash bench/profile.sh deno|bun|node WORKLOAD}
workload=${2:?usage: bash bench/profile.sh deno|bun|node WORKLOAD}
shift 2
PATH=$PATH:.tools/node_modules/.bin
dir=$(mktemp -d "${TMPDIR:-/tmp}/aio-profile.XXXXXX")
args=(bench/suite.ts --impl ours --only "$workload" --no-gc "$@")
case "$rt" in
  deno) deno run -A --v8-flags=--expose-gc --cpu-prof --cpu-prof-dir="$dir" "${args[@]}" >/dev/null ;;
  bun) bun --cpu-prof --cpu-prof-dir="$dir" "${args[@]}" >/dev/null ;;
  node) node --expose-gc --cpu-prof --cpu-prof-dir="$dir" "${args[@]}" >/dev/null ;;
  *) echo "runtime: deno, bun or node" >&2; exit 2 ;;
esac
echo "# profile in $dir" >&2
deno run -A bench/profile_top.ts "$dir"/*.cpuprofile
