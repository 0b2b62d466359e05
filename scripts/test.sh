#!/usr/bin/env bash
# Every test of the project: mod_test.ts under Deno and under Bun, then the
# notebooks through real Jupyter. Run it as `deno task test`.
#
# What a newcomer may lack is fetched or skipped, and said so plainly:
# - Bun: installed from npm into .tools/ on first use (needs npm).
# - Jupyter (for the notebooks) and python3 (a real peer in some tests):
#   skipped with a message when missing. Under CI=true nothing is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tools="$root/.tools/node_modules/.bin"
BUN_VERSION=1.4.5

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
  esac
  if [ "$3" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; fi
  [ "$3" -eq 0 ] || status=1
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
}

version_at_least() { # have want
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]
}

deno=$(command -v deno || true)
[ -n "$deno" ] || deno="$tools/deno"
if [ ! -x "$deno" ]; then
  echo "Deno not found: install it (npm i -g deno) and run again." >&2
  exit 1
fi

bun=$(command -v bun || true)
if [ -n "$bun" ] && ! version_at_least "$("$bun" --version)" "$BUN_VERSION"; then
  bun=""
fi
[ -n "$bun" ] || bun="$tools/bun"
if [ ! -x "$bun" ]; then
  echo "Bun $BUN_VERSION or newer not found: installing bun@$BUN_VERSION from npm into .tools/ (one time)."
  npm install --silent --prefix "$root/.tools" "bun@$BUN_VERSION" || exit 1
fi

# Test-only npm packages (fast-check, pyodide), from package.json into
# node_modules/, where Deno, Bun and Node all find them.
"$deno" install >/dev/null || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# The suite: mod_test.ts and every tests/*_test.ts, the same files on every
# runtime.
test_files=(mod_test.ts)
for file in tests/*_test.ts; do
  [ -e "$file" ] && test_files+=("$file")
done

echo "== Deno: ${test_files[*]}"
"$deno" test --allow-all --v8-flags=--expose-gc --sanitize-ops --sanitize-resources \
  "${test_files[@]}" 2>&1 | tee "$log"
count deno "$log" "${PIPESTATUS[0]}"

echo "== Bun: ${test_files[*]}"
"$bun" test "${test_files[@]/#/./}" 2>&1 | tee "$log"
count bun "$log" "${PIPESTATUS[0]}"

if [ -f scripts/test_notebooks.sh ]; then
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
fi

echo
if [ "$skipped" -gt 0 ]; then
  echo "tests: $passed passed, $failed failed, $skipped skipped"
else
  echo "tests: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] || status=1
exit "$status"
