#!/usr/bin/env bash
# Runs every notebook in notebooks/ headless, through real Jupyter with the
# Deno kernel, in a temporary copy, and fails on any cell error. Then checks
# that notebook 01 shows the tutorial's times: about 3 s and 2 s of real
# time, exactly 3000 and 2000 ms of virtual time.
#
#   bash scripts/test_notebooks.sh DENO            # test
#   bash scripts/test_notebooks.sh DENO --update   # also rewrite the outputs
#                                                  # committed in notebooks/
#
# Exit status: 0 passed; 3 Jupyter is missing (a skip, except under CI=true,
# where it is a failure: 1); anything else failed. The Deno kernel is DENO's,
# whatever kernel `deno jupyter --install` registered on the machine.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
# JUPYTER_PACKAGES, tools_have_jupyter
source scripts/tools.sh

deno=${1:?usage: test_notebooks.sh DENO [--update]}
update=${2:-}
if [ ! -x "$deno" ]; then
  echo "test_notebooks: no Deno at $deno" >&2
  exit 1
fi
# The kernel, and `deno` in the checks below, run the same Deno.
deno=$(cd "$(dirname "$deno")" && pwd)/$(basename "$deno")
PATH="$(dirname "$deno"):$PATH"
export PATH

missing() { # what, how to get it
  echo "test_notebooks: $1 is missing, so the notebooks cannot run." >&2
  echo "  Install it with: $2" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  echo "  (Notebooks skipped.)" >&2
  exit 3
}
if ! tools_have_jupyter; then
  missing "Jupyter (jupyter nbconvert)" "apt-get install $JUPYTER_PACKAGES"
fi

work=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
# The Deno kernel, as `deno jupyter --install` writes it but for this Deno,
# first on Jupyter's path: a kernelspec installed for another Deno (or
# none) does not change what is tested.
mkdir -p "$work/jupyter/kernels/deno"
cat >"$work/jupyter/kernels/deno/kernel.json" <<JSON
{
  "argv": ["$deno", "jupyter", "--kernel", "--conn", "{connection_file}"],
  "display_name": "Deno",
  "language": "typescript"
}
JSON
export JUPYTER_PATH="$work/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
mkdir "$work/notebooks"
cp notebooks/*.ipynb "$work/notebooks/"
cp mod.ts "$work/mod.ts"

status=0
export NO_COLOR=1 PYTHONPATH="$root/scripts${PYTHONPATH:+:$PYTHONPATH}"
for notebook in "$work"/notebooks/*.ipynb; do
  name=$(basename "$notebook")
  start=$SECONDS
  # keep_late_output.py: --execute, plus the output Deno's kernel sends late.
  if (cd "$work/notebooks" && jupyter nbconvert --to notebook --inplace \
    --Exporter.preprocessors=keep_late_output.ExecuteKeepingLateOutput \
    --ExecuteKeepingLateOutput.kernel_name=deno \
    --ExecuteKeepingLateOutput.timeout=120 \
    "$name" >"$work/$name.log" 2>&1); then
    echo "ok   $name ($((SECONDS - start)) s)"
  else
    echo "FAIL $name: a cell failed" >&2
    grep -v '^\[NbConvertApp\]' "$work/$name.log" | tail -25 >&2
    status=1
  fi
done

# What the notebooks show: no error outputs anywhere, and notebook 01's
# times. Checked by Deno, which is at hand (Python's json would do too).
cat >"$work/check.ts" <<'TS'
const [dir] = Deno.args;
let failures = 0;
const fail = (message: string) => {
  console.error(`FAIL ${message}`);
  failures++;
};
type Output = { output_type: string; text?: string | string[]; ename?: string; evalue?: string };
type Cell = { cell_type: string; outputs?: Output[] };
const join = (text: string | string[] = "") => Array.isArray(text) ? text.join("") : text;
const texts: Record<string, string> = {};
for await (const entry of Deno.readDir(dir)) {
  if (!entry.name.endsWith(".ipynb")) continue;
  const notebook = JSON.parse(await Deno.readTextFile(`${dir}/${entry.name}`));
  let text = "";
  for (const cell of notebook.cells as Cell[]) {
    for (const output of cell.outputs ?? []) {
      if (output.output_type === "error") {
        fail(`${entry.name}: ${output.ename}: ${output.evalue}`);
      }
      if (output.output_type === "stream") text += join(output.text);
    }
  }
  texts[entry.name] = text;
}
const first = texts["01_coroutines_and_tasks.ipynb"];
if (first === undefined) fail("notebook 01 is missing");
else {
  for (const [label, seconds] of [["sequential", 3], ["concurrent", 2]] as const) {
    const real = first.match(new RegExp(`${label}, real time: ([\\d.]+) s`));
    if (!real) fail(`notebook 01 does not print "${label}, real time: … s"`);
    else if (Math.abs(Number(real[1]) - seconds) > 0.5) {
      fail(`notebook 01: ${label} took ${real[1]} s of real time, not about ${seconds}`);
    } else console.log(`ok   notebook 01: ${label}, real time ${real[1]} s`);
    const virtual = `${label}, virtual time: ${seconds * 1000} ms`;
    if (!first.includes(virtual)) fail(`notebook 01 does not print "${virtual}"`);
    else console.log(`ok   notebook 01: ${virtual}`);
  }
}
Deno.exit(failures > 0 ? 1 : 0);
TS
"$deno" run --allow-read "$work/check.ts" "$work/notebooks" || status=1

if [ "$update" = "--update" ]; then
  if [ "$status" -eq 0 ]; then
    cp "$work"/notebooks/*.ipynb notebooks/
    # Jupyter writes its own JSON layout; keep the project's.
    "$deno" fmt --quiet notebooks/
    echo "updated the outputs in notebooks/"
  else
    echo "not updating notebooks/: the run failed" >&2
  fi
fi
exit "$status"
