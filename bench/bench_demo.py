"""The offline demo as a newcomer runs it: timings, accuracies, and the tutorial's pattern.

    python bench/bench_demo.py            # full: the default demo, as `make demo` runs it
    python bench/bench_demo.py --quick    # tiny sizes (CI's smoke run): checks the script, not the figures

Runs, in a fresh project folder: (1) `freeze-sweep -m` cold (generates the data, pretrains the
base, trains none/backbone/all_but_head), (2) the same with `sweep.rerun=true` (cached data and
base, retrains all three), (3) the same plain (every variant skipped: already finished), and
(4) `freeze=none model.weights=null` (the same fine-tuning from scratch). Prints the Markdown
table the README shows, checks the pattern the demo must show, and records it all in
bench/results/demo-*.json.
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
sys.path.insert(0, str(ROOT))
from bench.record import write_result  # noqa: E402
from sweep.tracking import names  # noqa: E402
from tests.conftest import TINY  # noqa: E402

LIMITS_S = {"cold": 300, "warm": 120}


def timed(args: list[str], root: Path) -> float:
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "sweep", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"freeze-sweep {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return time.monotonic() - started


def variants(root: Path) -> list[dict]:
    client = MlflowClient(f"sqlite:///{root}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("freeze-sweep")
    rows = {}
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'"):
        m, p = run.data.metrics, run.data.params
        if names.ROLE not in run.data.tags or run.data.tags[names.ROLE] != names.ROLE_VARIANT:
            continue
        scratch = not p.get(names.P_WEIGHTS)
        key = "scratch" if scratch else p[names.P_FREEZE]
        rows[key] = {
            "variant": key,
            "frozen_layers": int(p[names.P_FROZEN_LAYERS]),
            "trainable_pct": float(p[names.P_TRAINABLE_PCT]),
            "mAP50": m[names.BEST["mAP50"]],
            "mAP50-95": m[names.BEST["mAP50-95"]],
            "train_time_s": m[names.TRAIN_TIME],
        }
    return [rows[k] for k in ("none", "backbone", "all_but_head", "scratch") if k in rows]


def pattern(rows: dict[str, dict], times: dict[str, float]) -> dict[str, bool]:
    """The tutorial's finding, as issue 9 states it for the demo."""
    none, backbone, head = rows["none"], rows["backbone"], rows["all_but_head"]
    return {
        "none mAP50 >= 0.85": none["mAP50"] >= 0.85,
        "backbone within 0.05 mAP50 of none": none["mAP50"] - backbone["mAP50"] <= 0.05,
        "all_but_head below backbone": head["mAP50"] < backbone["mAP50"],
        "all_but_head within 0.20 of none": none["mAP50"] - head["mAP50"] <= 0.20,
        "training time falls as more is frozen": none["train_time_s"] > backbone["train_time_s"] > head["train_time_s"],
        "the base beats the same epochs from scratch": none["mAP50"] > rows["scratch"]["mAP50"] + 0.1,
        f"cold sweep under {LIMITS_S['cold']} s": times["cold"] < LIMITS_S["cold"],
        f"warm sweep under {LIMITS_S['warm']} s": times["warm"] < LIMITS_S["warm"],
    }


def markdown(rows: list[dict], times: dict[str, float]) -> str:
    lines = [
        "| run | wall time |",
        "|---|---|",
        f"| first `freeze-sweep -m` (data, base pretraining, 3 variants) | {times['cold']:.0f} s |",
        f"| again with `sweep.rerun=true` (cached data and base, retrains all 3) | {times['warm']:.0f} s |",
        f"| again as is (every variant already finished: skipped) | {times['skip']:.0f} s |",
        "",
        "| variant | frozen layers | trainable | best mAP50 | best mAP50-95 | train time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        name = "the same epochs from scratch, `freeze=none`" if row["variant"] == "scratch" else f"`{row['variant']}`"
        lines.append(
            f"| {name} | {row['frozen_layers']} | {row['trainable_pct']:.0f}% | {row['mAP50']:.3f} "
            f"| {row['mAP50-95']:.3f} | {row['train_time_s']:.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="project folder to use (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the figures")
    args = parser.parse_args()
    shrink = list(TINY) if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        times = {
            "cold": timed(["-m", *shrink], root),
            "warm": timed(["-m", *shrink, "sweep.rerun=true"], root),
            "skip": timed(["-m", *shrink], root),
            "scratch": timed([*shrink, "freeze=none", "model.weights=null"], root),
        }
        rows = variants(root)
    table = markdown(rows, times)
    print(table)
    checks = {} if args.quick else pattern({r["variant"]: r for r in rows}, times)
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    path = write_result(
        "demo", {"wall_s": times, "variants": rows, "pattern": checks, "markdown": table}, {"quick": args.quick}
    )
    print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
