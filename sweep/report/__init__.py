"""The sweep report: one row per variant (accuracy, time, GPU memory, deltas vs unfrozen) and plots.

Read from MLflow, written as Markdown, CSV, a self-contained HTML page and PNGs, and logged under
`report/` of the sweep's parent run. `write_report(uri, parent_run_id)` is what a multirun calls
when it ends; `freeze-sweep-report` (`python -m sweep.report`) regenerates it at any time.
"""

from sweep.report.write import write_report

__all__ = ["write_report"]
