"""Time the offline demo as a newcomer runs it, and check the transfer-learning pattern.

    python bench/bench_demo.py [--root DIR]

Runs, in a fresh project folder: (1) `freeze-sweep -m` cold (generates the data, pretrains the
base, trains none/backbone/all_but_head), (2) the same with `sweep.rerun=true` (cached data and
base, retrains all three), (3) the same plain (every variant skipped: already finished), and
(4) `freeze=none model.weights=null` (the same fine-tuning from scratch). Prints wall times and
each variant's best mAP50 / mAP50-95 and training time from MLflow.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str], root: Path) -> float:
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sweep", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"freeze-sweep {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="project folder to use (default: a new temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        figures = {
            "cold sweep (data + base pretraining + 3 variants)": timed(["-m"], root),
            "warm sweep, sweep.rerun=true (cached data and base)": timed(["-m", "sweep.rerun=true"], root),
            "re-run, every variant skipped": timed(["-m"], root),
            "freeze=none from scratch (model.weights=null)": timed(["freeze=none", "model.weights=null"], root),
        }
        for name, seconds in figures.items():
            print(f"{name:55s} {seconds:7.1f} s")
        client = MlflowClient(f"sqlite:///{root}/outputs/mlflow.db")
        experiment = client.get_experiment_by_name("freeze-sweep")
        print(f"\n{'run':40s} {'weights':>8s} {'mAP50':>7s} {'mAP50-95':>9s} {'train s':>8s}")
        for run in client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"]):
            m, p = run.data.metrics, run.data.params
            if "best/mAP50" in m:
                weights = "scratch" if not p.get("weights") else "base"
                print(
                    f"{run.info.run_name:40s} {weights:>8s} {m['best/mAP50']:7.3f} {m['best/mAP50-95']:9.3f}"
                    f" {m['train_time_s']:8.1f}"
                )


if __name__ == "__main__":
    main()
