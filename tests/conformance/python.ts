// CPython 3.14 (pyodide) as the judge: one interpreter per process, many
// programs per interpreter, each in a fresh namespace on a fresh loop.

import { PY_PRELUDE } from "./emit.ts";

export interface PythonRunner {
  version: string;
  run(programSource: string): string[];
}

let loading: Promise<PythonRunner> | undefined;

/** Loads pyodide once (about 2.5 s) and returns a runner. */
export function loadPython(): Promise<PythonRunner> {
  loading ??= (async () => {
    const { loadPyodide } = await import("pyodide");
    const py = await loadPyodide({ stdout: () => {}, stderr: () => {} });
    py.runPython(`
import sys
__prelude_code = compile(${JSON.stringify(PY_PRELUDE)}, "<prelude>", "exec")
def __run_conformance(src):
    ns = {"__name__": "conformance"}
    exec(__prelude_code, ns)
    exec(compile(src, "<program>", "exec"), ns)
    return ns["run_program"]()
`);
    const version = py.runPython("sys.version.split()[0]") as string;
    const runFn = py.globals.get("__run_conformance");
    return {
      version,
      run(src: string): string[] {
        let out: string;
        try {
          out = runFn(src) as string;
        } catch (e) {
          return ["PYERR " + String(e).split("\n").slice(-3).join(" | ")];
        }
        return out === "" ? [] : out.split("\n");
      },
    };
  })();
  return loading;
}
