"""An nbconvert preprocessor that runs a notebook like `--execute`, and also
keeps the output the kernel sends after it reported the cell done.

Deno's Jupyter kernel forwards console output from another thread, so the
last lines a cell prints can reach Jupyter after the cell's "idle" status.
nbclient stops listening at "idle" and drops them, or they land in the next
cell. (Interactive frontends keep listening, so only headless runs suffer.)
This preprocessor waits until the kernel has been quiet for a moment after
each cell and adds what arrived to that cell, before the next cell starts.

Used by scripts/test_notebooks.sh:
  PYTHONPATH=scripts jupyter nbconvert --to notebook \
    --Exporter.preprocessors=keep_late_output.ExecuteKeepingLateOutput \
    --ExecuteKeepingLateOutput.kernel_name=deno --inplace NOTEBOOK
"""

from queue import Empty

from nbclient.util import ensure_async, run_sync
from nbconvert.preprocessors import ExecutePreprocessor
from traitlets import Bool, Float

OUTPUT_TYPES = ("stream", "display_data", "update_display_data", "execute_result", "error")


class ExecuteKeepingLateOutput(ExecutePreprocessor):
    enabled = Bool(True).tag(config=True)
    quiet_seconds = Float(
        0.25, help="How long the kernel must send nothing before a cell counts as done."
    ).tag(config=True)

    def __init__(self, **kw):
        super().__init__(**kw)
        self._last_request_id = None
        self.on_cell_executed = self._remember_request

    def _remember_request(self, cell, cell_index, execute_reply):
        self._last_request_id = execute_reply.get("parent_header", {}).get("msg_id")

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._last_request_id = None
        cell = await super().async_execute_cell(
            cell, cell_index, execution_count=execution_count, store_history=store_history
        )
        if self._last_request_id is not None:
            await self._collect_late_output(self._last_request_id, cell, cell_index)
        return cell

    # The base class binds its own coroutine here: bind ours.
    execute_cell = run_sync(async_execute_cell)

    async def _collect_late_output(self, request_id, cell, cell_index):
        while True:
            try:
                msg = await ensure_async(
                    self.kc.iopub_channel.get_msg(timeout=self.quiet_seconds)
                )
            except Empty:
                return
            if (
                msg["parent_header"].get("msg_id") == request_id
                and msg["msg_type"] in OUTPUT_TYPES
            ):
                self.process_message(msg, cell, cell_index)
