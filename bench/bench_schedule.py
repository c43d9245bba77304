"""Freeze schedules on the offline demo: does freezing the backbone for the first epochs, then
training everything, beat both fixed levels on accuracy for its cost?

    python bench/bench_schedule.py [--root DIR] [--quick]

Sweeps `freeze=backbone unfreeze_epoch=null,2,4` and `freeze=none` on the demo (a root where the
demo already ran reuses its base and its finished fixed variants), then prints accuracy, training
time and time per epoch before/after the switch per variant, and records them in
bench/results/schedule-*.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.record import write_result  # noqa: E402
from sweep.tracking import names  # noqa: E402
from tests.conftest import TINY  # noqa: E402

SWEEPS = (["freeze=backbone", "unfreeze_epoch=null,2,4"], ["freeze=none"])


def sweep(root: Path, overrides: list[str]) -> None:
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "sweep", "-m", *overrides], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(f"freeze-sweep -m {' '.join(overrides)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def rows(root: Path) -> list[dict]:
    client = MlflowClient(f"sqlite:///{root}/outputs/mlflow.db")
    experiment = client.get_experiment_by_name("freeze-sweep")
    found = []
    for run in client.search_runs(
        [experiment.experiment_id], f"tags.`{names.ROLE}` = 'variant' and attributes.status = 'FINISHED'"
    ):
        p, m = run.data.params, run.data.metrics
        if (
            not p.get(names.P_WEIGHTS)
            or p[names.P_FREEZE] not in ("none", "backbone")
            and "->" not in p[names.P_FREEZE]
        ):
            continue
        times = [x.value for x in client.get_metric_history(run.info.run_id, names.EPOCH_TIME)]
        trainable = [x.value for x in client.get_metric_history(run.info.run_id, names.TRAINABLE_PARAMS)]
        switch = next((i for i in range(1, len(trainable)) if trainable[i] != trainable[i - 1]), len(times))
        found.append(
            {
                "variant": p[names.P_FREEZE],
                "mAP50": m[names.BEST["mAP50"]],
                "mAP50-95": m[names.BEST["mAP50-95"]],
                "train_time_s": m[names.TRAIN_TIME],
                "epoch_s_frozen": sum(times[:switch]) / switch if switch else None,
                "epoch_s_unfrozen": sum(times[switch:]) / (len(times) - switch) if len(times) > switch else None,
            }
        )
    return sorted(found, key=lambda r: r["train_time_s"])


def markdown(found: list[dict]) -> str:
    lines = [
        "| variant | best mAP50 | best mAP50-95 | train time | s/epoch frozen → unfrozen |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in found:
        split = " → ".join(f"{v:.1f}" if v else "–" for v in (r["epoch_s_frozen"], r["epoch_s_unfrozen"]))
        lines.append(
            f"| `{r['variant']}` | {r['mAP50']:.3f} | {r['mAP50-95']:.3f} | {r['train_time_s']:.0f} s | {split} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="project folder (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the figures")
    args = parser.parse_args()
    shrink = [*TINY, "train.epochs=3"] if args.quick else []
    sweeps = [
        [s.replace("unfreeze_epoch=null,2,4", "unfreeze_epoch=null,1") if args.quick else s for s in o] for o in SWEEPS
    ]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        for overrides in sweeps:
            sweep(root, [*shrink, *overrides])
        found = rows(root)
    table = markdown(found)
    print(table)
    path = write_result("schedule", {"variants": found, "markdown": table}, {"quick": args.quick})
    print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
