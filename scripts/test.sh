#!/usr/bin/env bash
# Every test of the project: type checks, then the suite (tests/*_test.ts,
# doc examples included) under Deno, Bun and Node 24 (and Node 22 under
# CI=true), then the notebooks through real Jupyter. Run it as
# `deno task test`.
#
# What a newcomer may lack is fetched or skipped, and said so plainly:
# - Bun, and Node 24 when the machine's node is older: installed from npm
#   into .tools/ on first use (needs npm). Under CI=true, Node 22 as well.
# - Jupyter (for the notebooks) and python3 (a real peer in some tests):
#   skipped with a message when missing. Under CI=true nothing is skipped.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# The runtimes' versions and where they are found: scripts/tools.sh.
source scripts/tools.sh

passed=0
failed=0
skipped=0
status=0

# Adds the counts a runner printed to the totals; a runner that failed
# without counting a failure (it did not compile, say) counts as one.
count() { # runner log exit-code
  local p f
  case "$1" in
    deno) p=$(grep -Eo '[0-9]+ passed' "$2" | tail -1 | grep -Eo '[0-9]+')
      f=$(grep -Eo '[0-9]+ failed' "$2" | tail -1 | grep -Eo '[0-9]+') ;;
    bun) p=$(grep -Eo '^ *[0-9]+ pass$' "$2" | tail -1 | grep -Eo '[0-9]+')
      f=$(grep -Eo '^ *[0-9]+ fail$' "$2" | tail -1 | grep -Eo '[0-9]+') ;;
    node) # node --test's spec reporter; a cancelled test counts as failed
      p=$(grep -Eo '^ℹ pass [0-9]+$' "$2" | tail -1 | grep -Eo '[0-9]+')
      f=$(grep -Eo '^ℹ fail [0-9]+$' "$2" | tail -1 | grep -Eo '[0-9]+')
      local c
      c=$(grep -Eo '^ℹ cancelled [0-9]+$' "$2" | tail -1 | grep -Eo '[0-9]+')
      f=$((${f:-0} + ${c:-0})) ;;
    check) if [ "$3" -eq 0 ]; then p=1; else f=1; fi ;;
  esac
  if [ "$3" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; fi
  [ "$3" -eq 0 ] || status=1
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
}

# How long each part took, for the summary.
timings=()
started_at=0
start_part() { started_at=$(date +%s); }
end_part() { # name
  timings+=("$1 $(($(date +%s) - started_at)) s")
}

# Deno, Bun and Node 24; under CI=true, Node 22 as well.
runtimes=(deno bun node)
[ "${CI:-}" = "true" ] && runtimes+=(node22)
tools_use "${runtimes[@]}" || exit 1
deno=$AIO_DENO
bun=$AIO_BUN
node=$AIO_NODE
node22=""
[ "${CI:-}" = "true" ] && node22=$AIO_NODE22

# Test-only npm packages (fast-check, pyodide), from package.json into
# node_modules/, where Deno, Bun and Node all find them.
"$deno" install >/dev/null || exit 1

log=$(mktemp)
checks=$(mktemp -d)
trap 'rm -f "$log" ./*.no-using.ts tests/*.no-using.ts; rm -rf "$checks"' EXIT

# The suite: every tests/*_test.ts, the same files on every runtime.
# The property test (tests/property_test.ts) runs a fixed set of random
# programs, the same on every machine and runtime (about 30 s each): seed 2,
# 8,000 programs. PROPERTY_SEED / PROPERTY_RUNS / PROPERTY_SECONDS change it.
export PROPERTY_SEED="${PROPERTY_SEED:-2}"
export PROPERTY_RUNS="${PROPERTY_RUNS:-8000}"
export PROPERTY_SECONDS="${PROPERTY_SECONDS:-300}"

test_files=()
for file in tests/*_test.ts; do
  [ -e "$file" ] && test_files+=("$file")
done

# Type checks: mod.ts as the package's consumers compile it, strict or not
# (a consumer's tsconfig.json may turn strict off), and README's examples.
start_part
echo '{ "compilerOptions": { "strict": false } }' >"$checks/strict-off.json"
echo '{ "compilerOptions": { "strictNullChecks": false } }' >"$checks/no-null-checks.json"
echo "== Type checks: mod.ts (strict, strict off, strictNullChecks off), README.md's examples"
"$deno" check --quiet mod.ts
count check /dev/null "$?"
for config in strict-off no-null-checks; do
  "$deno" check --quiet --config "$checks/$config.json" mod.ts
  rc=$?
  [ "$rc" -eq 0 ] || echo "mod.ts fails to type-check with $config.json"
  count check /dev/null "$rc"
done
"$deno" check --quiet --doc-only README.md
count check /dev/null "$?"
end_part "type checks"

start_part
echo "== Deno: ${test_files[*]}"
"$deno" test --allow-all --v8-flags=--expose-gc --sanitize-ops --sanitize-resources \
  "${test_files[@]}" 2>&1 | tee "$log"
count deno "$log" "${PIPESTATUS[0]}"
end_part "Deno"

start_part
echo "== Bun: ${test_files[*]}"
"$bun" test "${test_files[@]/#/./}" 2>&1 | tee "$log"
count bun "$log" "${PIPESTATUS[0]}"
end_part "Bun"

start_part
echo "== Node $("$node" --version): ${test_files[*]}"
# Under node --test, Node 24's test processes write a diagnostic report into
# the current directory on SIGUSR2, which a signal test sends itself: move
# the report to a signal nothing sends.
"$node" --expose-gc --report-signal=SIGSYS --test --test-reporter=spec \
  "${test_files[@]}" 2>&1 | tee "$log"
count node "$log" "${PIPESTATUS[0]}"
end_part "Node $("$node" --version)"

if [ -n "$node22" ]; then
  # Node 22 cannot parse `using` declarations (the library itself never needs
  # them): it runs copies of the test files without the tests written with
  # them, made beside the originals and removed afterwards.
  start_part
  if "$deno" run --quiet --allow-read --allow-write scripts/without_using.ts \
    "${test_files[@]}" >"$checks/node22-files"; then
    mapfile -t node22_files <"$checks/node22-files"
    echo "== Node $("$node22" --version): ${node22_files[*]}"
    "$node22" --expose-gc --test --test-reporter=spec "${node22_files[@]}" \
      2>&1 | tee "$log"
    count node "$log" "${PIPESTATUS[0]}"
  else
    echo "== Node $("$node22" --version): scripts/without_using.ts failed"
    count check /dev/null 1
  fi
  rm -f ./*.no-using.ts tests/*.no-using.ts
  end_part "Node $("$node22" --version)"
fi

if [ -f scripts/test_notebooks.sh ]; then
  start_part
  echo "== Notebooks"
  bash scripts/test_notebooks.sh "$deno" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + $(grep -c '^ok ' "$log")))
  elif [ "$rc" -eq 3 ]; then
    skipped=$((skipped + 1))
  else
    status=1
    failed=$((failed + 1))
  fi
  end_part "notebooks"
fi

echo
echo "time: $(printf '%s, ' "${timings[@]}" | sed 's/, $//')"
if [ "$skipped" -gt 0 ]; then
  echo "tests: $passed passed, $failed failed, $skipped skipped"
else
  echo "tests: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] || status=1
exit "$status"
