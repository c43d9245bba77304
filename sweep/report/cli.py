"""`freeze-sweep-report` / `python -m sweep.report`: the comparison table of a sweep, from MLflow.

    freeze-sweep-report                          # the latest sweep
    freeze-sweep-report --sweep 2025-01-31_12-00-00-000000 --sweep 2025-02-01_09-30-00-000000
    freeze-sweep-report --tolerance 0.02         # recommend within 2 points of the best mAP50-95

Exit codes: 0 written (failed variants are shown, not fatal), 2 bad input (no store, unknown or
empty sweep).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sweep.errors import USAGE_ERROR, ConfigError

PROG = "freeze-sweep-report"


def build_parser() -> argparse.ArgumentParser:
    from sweep.tracking.sweeps import DEFAULT_EXPERIMENT

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Compare the variants of a freeze sweep: accuracy, training time, speedup and GPU memory "
        "against the unfrozen variant. Reads MLflow; writes Markdown, CSV, HTML and plots, and logs them to "
        "the sweep's parent run.",
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="ID",
        help="sweep id (its folder name under outputs/multiruns); repeat to pool several sweeps (default: the latest)",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/outputs/mlflow.db)",
    )
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment of the sweeps")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: <sweep dir>/report, else <outputs>/reports/<sweep ids>)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="MAP",
        help="recommend the cheapest variant whose mAP50-95 is at most this much below the best "
        "(default: the replicates' spread, else 0.01 = one point)",
    )
    p.add_argument(
        "--no-log", action="store_true", help="do not log the report to the sweep's parent run nor update its summary"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sweep.report.verdict import check_tolerance
    from sweep.report.write import make_report
    from sweep.tracking.stale_runs import close_stale_runs
    from sweep.tracking.store import connect, default_tracking_uri, first_line
    from sweep.tracking.sweeps import find_sweeps

    try:
        tolerance = check_tolerance(args.tolerance)
        client = connect(args.tracking_uri or default_tracking_uri())
        sweeps = find_sweeps(client, args.experiment, args.sweep)
        close_stale_runs(client, sorted({s.experiment_id for s in sweeps}))  # the report shows no ghost RUNNING run
        report = make_report(client, sweeps, args.out, log_artifacts=not args.no_log, tolerance=tolerance, processes=2)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except Exception as error:  # the store failed mid-way: one line, not a traceback
        print(f"{PROG}: error: {type(error).__name__}: {first_line(error)}", file=sys.stderr)
        return 1
    print(f"{report.title}\n\n{report.markdown}")
    print(f"\nreport: {report.out_dir / 'report.html'} (+ report.csv, report.md, plots)")
    if report.logged_to:
        print(f"logged to MLflow parent run(s) {', '.join(report.logged_to)}")
    for warning in report.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    return 0
