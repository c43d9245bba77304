"""freeze=auto on the offline demo, over seeds: does it keep full fine-tuning's accuracy at a
fraction of its training time?

    python bench/bench_auto.py [--root DIR] [--quick] [--epochs N] [--seeds 0,1,2] [--set KEY=VALUE ...]

Sweeps `freeze=none,backbone,auto` and the schedule `freeze=backbone unfreeze_epoch=4`
(`backbone -> none @5`: bench_schedule.py found it keeps most of none's accuracy for less time),
each with `train.seed=0,1,2`, on the demo (a root where they already ran reuses its base and its
finished variants). Records, per variant, the mean, std, median and range over seeds of best
mAP50-95 and train time, every seed's figures and auto's chosen schedule, and whether issue 24's
goal was met (auto's mean best mAP50-95 at most GOAL_MAP_DROP below none's, at GOAL_TIME_RATIO of
none's mean train time or less) in bench/results/auto-*.json. `--quick` runs one seed of the
tests' tiny config (4 epochs, `freeze_auto.patience=1`): it checks the script, not the figures.
`--epochs N` trains longer than the demo's 8 (the schedule then unfreezes at half of them), the
setting where auto has epochs left to profit from what it froze. Each variant also records the mean
CPU share its process got (`machine/cpu_share_pct`): train times compare only when those are alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_schedule import sweep  # noqa: E402
from bench.record import spread, write_result  # noqa: E402
from sweep.tracking import names  # noqa: E402
from sweep.tracking.store import connect  # noqa: E402
from sweep.tracking.sweeps import DEFAULT_EXPERIMENT, find_sweeps, variant_runs  # noqa: E402
from tests.conftest import TINY  # noqa: E402

FULL = {"overrides": [], "seeds": "train.seed=0,1,2", "unfreeze_epoch": 4}  # the demo's 8 epochs
# freeze=auto needs 3 epochs or more; the schedule unfreezes at the same share of them.
QUICK = {"overrides": [*TINY, "train.epochs=4", "freeze_auto.patience=1"], "seeds": "train.seed=0", "unfreeze_epoch": 2}
GOAL_MAP_DROP = 0.01
GOAL_TIME_RATIO = 0.75


def seed_rows(root: Path) -> list[dict]:
    """One row per finished variant run of the latest sweep in the root's store."""
    client = connect(f"sqlite:///{root}/outputs/mlflow.db")
    latest = find_sweeps(client, DEFAULT_EXPERIMENT)[0]
    found = []
    for run in variant_runs(client, latest):
        p, m = run.data.params, run.data.metrics
        if run.info.status != "FINISHED":
            continue
        found.append(
            {
                "variant": p[names.P_FREEZE],
                "seed": int(p[names.P_SEED]),
                "mAP50-95": m[names.BEST["mAP50-95"]],
                "train_time_s": m[names.TRAIN_TIME],
                "chosen": p.get(names.P_FREEZE_AUTO_CHOSEN),
                "cpu_share_pct": mean_cpu_share(client, run.info.run_id),
            }
        )
    return found


def mean_cpu_share(client, run_id: str) -> float | None:  # noqa: ANN001 (MlflowClient)
    shares = [m.value for m in client.get_metric_history(run_id, names.CPU_SHARE)]
    return statistics.fmean(shares) if shares else None


def cpu_shares(rows: list[dict]) -> dict | None:
    shares = [r["cpu_share_pct"] for r in rows if r.get("cpu_share_pct") is not None]
    return over_seeds(shares) if shares else None


def over_seeds(values: list[float]) -> dict:
    """Mean and sample std (None for one seed) beside the record's usual min / median / max."""
    return {
        **spread(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def summarize(found: list[dict]) -> dict[str, dict]:
    variants = {}
    for row in sorted(found, key=lambda r: (r["variant"], r["seed"])):
        variants.setdefault(row["variant"], []).append(row)
    return {
        variant: {
            "mAP50-95": over_seeds([r["mAP50-95"] for r in rows]),
            "train_time_s": over_seeds([r["train_time_s"] for r in rows]),
            "cpu_share_pct": cpu_shares(rows),
            "seeds": rows,
        }
        for variant, rows in variants.items()
    }


def goal(summary: dict[str, dict]) -> dict:
    """Issue 24's goal for auto against none, from the means over seeds."""
    auto, none = summary["auto"], summary["none"]
    drop = auto["mAP50-95"]["mean"] - none["mAP50-95"]["mean"]
    ratio = auto["train_time_s"]["mean"] / none["train_time_s"]["mean"]
    return {
        "mAP50-95 auto - none": {"value": drop, "goal": f">= -{GOAL_MAP_DROP}", "met": drop >= -GOAL_MAP_DROP},
        "train time auto / none": {"value": ratio, "goal": f"<= {GOAL_TIME_RATIO}", "met": ratio <= GOAL_TIME_RATIO},
        "met": drop >= -GOAL_MAP_DROP and ratio <= GOAL_TIME_RATIO,
    }


def markdown(summary: dict[str, dict]) -> str:
    lines = [
        "| variant | seeds | best mAP50-95 (mean ± std) | train time (mean ± std) | CPU share | auto chose |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for variant, s in sorted(summary.items(), key=lambda item: item[1]["train_time_s"]["mean"]):
        chosen = "; ".join(f"seed {r['seed']}: {r['chosen']}" for r in s["seeds"] if r["chosen"])
        lines.append(
            f"| `{variant}` | {s['mAP50-95']['runs']} | {mean_std(s['mAP50-95'], '.3f')} "
            f"| {mean_std(s['train_time_s'], '.0f')} s | {share(s['cpu_share_pct'])} | {chosen} |"
        )
    return "\n".join(lines)


def share(figure: dict | None) -> str:
    return "n/a" if figure is None else f"{figure['mean']:.0f}%"


def mean_std(figure: dict, form: str) -> str:
    std = "" if figure["std"] is None else f" ± {figure['std']:{form}}"
    return f"{figure['mean']:{form}}{std}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="project folder (default: a new temporary one)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one seed: checks the script, not the figures")
    parser.add_argument(
        "--epochs", type=int, help="train.epochs (default: the demo's 8); the schedule unfreezes at half"
    )
    parser.add_argument("--seeds", help="comma-separated train.seed values (default: 0,1,2)")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="more Hydra overrides for every variant"
    )
    args = parser.parse_args()
    size = dict(QUICK if args.quick else FULL)
    if args.epochs:
        size.update(overrides=[*size["overrides"], f"train.epochs={args.epochs}"], unfreeze_epoch=args.epochs // 2)
    if args.seeds:
        size["seeds"] = f"train.seed={args.seeds}"
    size["overrides"] = [*size["overrides"], *args.set]
    found = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        for variants in (
            ["freeze=none,backbone,auto"],
            ["freeze=backbone", f"unfreeze_epoch={size['unfreeze_epoch']}"],
        ):
            sweep(root, [*size["overrides"], size["seeds"], *variants])
            found += seed_rows(root)
    summary = summarize(found)
    checked = goal(summary)
    table = markdown(summary)
    print(table)
    for figure, value in checked.items():
        if isinstance(value, dict):
            print(f"{'met' if value['met'] else 'NOT met'}: {figure} = {value['value']:.3f} (goal {value['goal']})")
    path = write_result(
        "auto", {"variants": summary, "goal": checked, "markdown": table}, {"quick": args.quick, **size}
    )
    print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
