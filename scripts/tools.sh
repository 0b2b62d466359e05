# shellcheck shell=bash
# The project's tools in one place: the runtimes' version pins, and how every
# script (.ci/run, scripts/*.sh, bench/*.sh) finds deno, bun, node, Node 22,
# python3 with uvloop, and Jupyter. Sourced, never run:
#
#   source "$(dirname "$0")/../scripts/tools.sh"
#   tools_use deno bun node || exit 1   # exports AIO_DENO, AIO_BUN, AIO_NODE
#   tools_python                        # exports AIO_PYTHON, AIO_UVLOOP
#
# A runtime is the machine's own when it is new enough (any Deno will do),
# else the one npm installed into .tools/, installed there (one time, saying
# so) when it is missing: Deno is the exception, as it runs `deno task`
# itself; without it the callers say how to get it. What is optional
# (python3, uvloop, Jupyter) is skipped when missing, saying so plainly; the
# callers make that a failure under CI=true.
#
# TypeScript scripts do not search for tools: they read these variables
# (bench/net.ts reads AIO_PYTHON and AIO_UVLOOP).

# ---------------------------------------------------------------- pins

# What CI installs into .tools/, and the least a machine's own may be.
DENO_VERSION=2.9.6
BUN_VERSION=1.4.5
# Node: the suite runs on the newest 24 (npm's node@24), and under CI=true
# also on 22, from 22.18: the first 22 that strips TypeScript's types.
NODE_VERSION=24
NODE22_VERSION=22.18
# Jupyter for the notebooks, from Debian's packages.
JUPYTER_PACKAGES="jupyter-nbconvert python3-nbclient jupyter-client python3-ipykernel"

AIO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# npm's prefix for the runtimes; the binaries are in $AIO_TOOLS/node_modules.
AIO_TOOLS=$AIO_ROOT/.tools

# ---------------------------------------------------------------- runtimes

version_at_least() { # have want: whether version `have` >= `want`
  [ -n "$1" ] && [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]
}

# The version a binary reports (`deno 2.9.6 (…)`, `1.4.5`, `v24.1.0`): 2.9.6.
tool_version() { # binary
  "$1" --version 2>/dev/null | head -1 | grep -Eo '[0-9]+(\.[0-9]+)+' | head -1
}

# Where `name` lives in .tools/, the least version wanted of the machine's
# own, and what npm installs: name path want npm-spec.
tool_spec() { # name
  local modules=$AIO_TOOLS/node_modules
  case "$1" in
    deno) echo "deno $modules/.bin/deno 0 deno@$DENO_VERSION" ;;
    bun) echo "bun $modules/.bin/bun $BUN_VERSION bun@$BUN_VERSION" ;;
    node) echo "node $modules/node/bin/node $NODE_VERSION node@$NODE_VERSION" ;;
    # Only ever npm's, beside Node 24 under another name.
    node22) echo "- $modules/node22/bin/node $NODE22_VERSION node22@npm:node@22" ;;
    *) echo "tools.sh: no tool named $1" >&2; return 1 ;;
  esac
}

# Prints the path of runtime `name` (deno, bun, node, node22) by the rule
# above, installing it into .tools/ when missing; fails when it cannot.
tool_path() { # name
  local command local_path want spec machine
  read -r command local_path want spec < <(tool_spec "$1") || return 1
  if [ "$command" != "-" ]; then
    machine=$(command -v "$command" || true)
    if [ -n "$machine" ] && version_at_least "$(tool_version "$machine")" "$want"; then
      echo "$machine"
      return 0
    fi
  fi
  if [ -x "$local_path" ] && { [ "$1" != node22 ] ||
    version_at_least "$(tool_version "$local_path")" "$want"; }; then
    echo "$local_path"
    return 0
  fi
  case "$1" in
    deno)
      echo "Deno not found: install it (npm i -g deno) and run again." >&2
      return 1 ;;
    node22) echo "Node $want or newer 22 not found: installing node@22 from npm into .tools/node_modules/node22." >&2 ;;
    bun) echo "Bun $want or newer not found: installing $spec from npm into .tools/ (one time)." >&2 ;;
    node) echo "Node $want or newer not found: installing $spec from npm into .tools/ (one time)." >&2 ;;
  esac
  npm install --silent --no-fund --no-audit --prefix "$AIO_TOOLS" "$spec" >&2 &&
    [ -x "$local_path" ] || return 1
  echo "$local_path"
}

# Finds (or installs) each runtime named and exports its path as AIO_DENO,
# AIO_BUN, AIO_NODE, AIO_NODE22; fails if any is missing.
tools_use() { # name...
  local name path status=0
  for name in "$@"; do
    if path=$(tool_path "$name"); then
      export "AIO_${name^^}=$path"
    else
      status=1
    fi
  done
  return "$status"
}

# CI's fresh machine: every runtime at its pinned version, in .tools/ (one npm
# call when any is missing), first on PATH.
tools_install_pinned() {
  local modules=$AIO_TOOLS/node_modules
  if [ ! -x "$modules/.bin/deno" ] || [ ! -x "$modules/.bin/bun" ] ||
    [ ! -x "$modules/node/bin/node" ] || [ ! -x "$modules/node22/bin/node" ]; then
    echo "== installing deno@$DENO_VERSION, bun@$BUN_VERSION, node@$NODE_VERSION and node@22 (as node22) from npm into .tools/"
    npm install --silent --no-fund --no-audit --prefix "$AIO_TOOLS" \
      "deno@$DENO_VERSION" "bun@$BUN_VERSION" "node@$NODE_VERSION" \
      "node22@npm:node@22" || return 1
  fi
  export PATH="$modules/.bin:$PATH"
}

# ---------------------------------------------------------------- python

# The CPython of the asyncio and uvloop baselines: the first of
# /usr/bin/python3 (Debian's, where `apt-get install python3-uvloop` puts
# uvloop), python3 and python that can import uvloop, so both loops run on
# the same CPython; else python3 for asyncio alone. Exports AIO_PYTHON (empty
# when there is none) and AIO_UVLOOP (1 when it imports uvloop, else empty),
# saying plainly what is skipped; fails when there is no python3.
tools_python() {
  local candidate found
  AIO_PYTHON=""
  AIO_UVLOOP=""
  for candidate in /usr/bin/python3 python3 python; do
    found=$(command -v "$candidate" || true)
    if [ -n "$found" ] && "$found" -c 'import uvloop' >/dev/null 2>&1; then
      AIO_PYTHON=$found
      AIO_UVLOOP=1
      break
    fi
  done
  [ -n "$AIO_PYTHON" ] || AIO_PYTHON=$(command -v python3 || true)
  export AIO_PYTHON AIO_UVLOOP
  if [ -z "$AIO_PYTHON" ]; then
    echo "python3 not found: skipping CPython asyncio and uvloop" >&2
    return 1
  fi
  echo "# CPython: $AIO_PYTHON $("$AIO_PYTHON" -c 'import sys; print(sys.version.split()[0])')" >&2
  if [ -z "$AIO_UVLOOP" ]; then
    echo "uvloop is not importable by any python3 found (apt-get install python3-uvloop): skipping uvloop" >&2
  fi
}

# ---------------------------------------------------------------- Jupyter

# Whether Jupyter can run notebooks here (`jupyter nbconvert`).
tools_have_jupyter() {
  command -v jupyter >/dev/null 2>&1 && jupyter nbconvert --version >/dev/null 2>&1
}

# CI's fresh machine: Jupyter from Debian's packages, when missing.
tools_install_jupyter() {
  tools_have_jupyter && return 0
  echo "== installing Jupyter from Debian packages"
  local sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  # shellcheck disable=SC2086 # the package list is words
  $sudo_cmd apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq \
      $JUPYTER_PACKAGES >/dev/null
}
