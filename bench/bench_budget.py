"""Budgeted sweeps (issue 25): the full grid's verdict on a fraction of its training time?

    python bench/bench_budget.py [--root DIR] [--eta 3] [--quick] [--overrides train.imgsz=64 ...]

On the offline demo, one sweep of 8 variants (fixed levels backbone and all_but_head, each also
as a schedule frozen for epoch 1 only; seeds 0 and 1) runs once as a full grid and once with
`sweep.budget` (rung 1: 1.5 of the full grid's mean epoch times, eta 3), each into its own store. Recorded in bench/results/budget-*.json:
- the recommended variant of each (the report's verdict) and whether they agree;
- the budgeted sweep's training time (summed `epoch_time_s`) over the full grid's: goal <= 40%;
  also with its epochs costed at the full grid's epoch times (the machine's speed drifts between
  runs); wall times too (the budget's rungs restart trainings, which training time leaves out);
- how the full grid rated the budget's pick (a resumed training is not bit-identical: ties differ);
- a replay on the full grid's histories of equal-epoch successive halving and of the budget's rule,
  for eta 2, 3, 4 and a first rung of 1, 2 or 3 epochs: how often each picks another variant than
  the full grid, and what each would have cost.
`--quick` (CI): the tiny config, a level and a schedule of 2 epochs: checks the script, not the figures.
"""

from __future__ import annotations

import argparse
import json
import math
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
from sweep.budget.rule import Curve, allotment, decide, frozen_range, new_evidence, switches  # noqa: E402
from sweep.tracking import names  # noqa: E402
from tests.conftest import TINY  # noqa: E402

# Two fixed levels, each also as a schedule that trains everything from epoch 2 (the head warms up
# on a frozen network first), seeds 0 and 1: 8 variants. Fixed `none` is left out: with
# unfreeze_epoch in the grid it would be a schedule with no switch, the same variant twice.
GRID = ["freeze=backbone,all_but_head", "unfreeze_epoch=null,1", "train.seed=0,1"]
FIRST_RUNG_EPOCHS = 1.5  # rung 1 = this many mean epochs of the full grid: every variant gets >= 2 points for its slope
QUICK_GRID = [*TINY, "freeze=all_but_head", "unfreeze_epoch=null,1"]  # 2 variants of 2 epochs
GOAL_RATIO = 0.40
REPLAY_ETAS = (2, 3, 4)
REPLAY_FIRST_EPOCHS = (1, 2, 3)


def sweep(root: Path, name: str, overrides: list[str]) -> float:
    """One multirun into its own store (<root>/<name>.db); returns its wall seconds. A root where
    it already ran (<root>/<name>.wall) keeps it: the figures are read again, nothing retrains."""
    done = root / f"{name}.wall"
    if done.is_file():
        return float(done.read_text())
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "YOLO_OFFLINE": "true"}
    args = [*overrides, f"tracking.uri=sqlite:///{root}/{name}.db", f"hydra.sweep.dir={root}/multiruns/{name}"]
    load = os.getloadavg()[0]
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "sweep", "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    (root / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"freeze-sweep -m {' '.join(args)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    done.write_text(f"{time.monotonic() - started:.1f}")
    (root / f"{name}.load").write_text(f"{load:.2f} {os.getloadavg()[0]:.2f}")  # other work changes times
    return float(done.read_text())


def outcome(root: Path, name: str, tolerance: float | None = None) -> dict:
    """The sweep's verdict (as its report says, or at `tolerance`) and every variant's curve, from its store."""
    from sweep.report.write import make_report
    from sweep.tracking.sweeps import find_sweeps

    client = MlflowClient(f"sqlite:///{root}/{name}.db")
    sweeps = find_sweeps(client, "freeze-sweep")
    report = make_report(client, sweeps, root / f"report-{name}", log_artifacts=False, tolerance=tolerance)
    table, verdict = report.table, report.verdict
    variants = []
    for run in client.search_runs([sweeps[0].experiment_id], f"tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'"):
        times = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, names.EPOCH_TIME))
        scores = dict((m.step, m.value) for m in client.get_metric_history(run.info.run_id, names.EPOCH_METRICS[1]))
        variants.append(
            {
                "candidate": candidate_of(run),
                "seed": run.data.params.get(names.P_SEED),
                "status": "STOPPED" if names.STOPPED_AT_RUNG in run.data.tags else run.info.status,
                "epoch_times": [t for _, t in times],
                "scores": [scores.get(step, math.nan) for step, _ in times],
                "frozen_range": frozen_range(run.data.params, run.data.metrics),
                "switches": switches(run.data.params),
            }
        )
    score = names.EPOCH_METRICS[1]
    finished = table[table["status"] == "FINISHED"]
    rows = {row["label"]: (row[score], row["train_time_s"]) for _, row in finished.iterrows()}
    return {
        "recommended": None if verdict.recommended is None else table.at[verdict.recommended, "label"],
        "rows": rows,
        "tolerance": verdict.tolerance,
        "training_s": sum(sum(v["epoch_times"]) for v in variants),
        "variants": variants,
        "stopped": sum(v["status"] == "STOPPED" for v in variants),
        "verdict": verdict.sentence,
    }


def at_full_grid_speed(full: dict, budgeted: dict) -> float:
    """The budgeted sweep's epochs, each costed at what the same epoch of the same variant took in
    the full grid: the saving free of the machine's speed, which drifts between two sweeps run
    minutes or a day apart (the same epochs took 1.48x longer in one such pair)."""
    times = {(v["candidate"], v["seed"]): v["epoch_times"] for v in full["variants"]}
    epochs = sum(sum(times[v["candidate"], v["seed"]][: len(v["epoch_times"])]) for v in budgeted["variants"])
    return round(epochs / full["training_s"], 3)


def in_full_grid(full: dict, label: str | None) -> dict:
    """How the full grid rated the budget's pick: a resumed training is not bit-identical to an
    uninterrupted one (ultralytics seeds its loader and augmentations at each start), so between
    variants the full grid itself calls a tie, the two verdicts can differ by that noise alone."""
    best = max(score for score, _ in full["rows"].values())
    score, train_s = full["rows"].get(label, (math.nan, math.nan))
    chosen_score, chosen_s = full["rows"][full["recommended"]]
    return {
        "variant": label,
        "mAP50-95": round(score, 4),
        "train_s": round(train_s, 1),
        "within the full grid's tolerance of its best": bool(score >= best - full["tolerance"]),
        "full grid's pick": {"mAP50-95": round(chosen_score, 4), "train_s": round(chosen_s, 1)},
    }


def candidate_of(run) -> str:  # noqa: ANN001 (mlflow Run)
    """A configuration, seeds pooled, as the report's rows and the budget's rule group variants
    (the freeze as given: a schedule's reads `all_but_head -> none @5`)."""
    return run.data.params[names.P_FREEZE]


# --- replay on the full grid's histories -------------------------------------------------------


def pick(finals: dict[str, list[dict]], tolerance: float) -> str:
    """The verdict's rule over the candidates trained to the end: the cheapest whose mean best
    mAP50-95 is within `tolerance` of the best one's."""
    best = {c: mean([max(v["scores"]) for v in vs]) for c, vs in finals.items()}
    cost = {c: mean([sum(v["epoch_times"]) for v in vs]) for c, vs in finals.items()}
    top = max(best.values())
    return min((c for c in best if best[c] >= top - tolerance - 1e-12), key=lambda c: (cost[c], -best[c]))


def equal_epoch_halving(grid: dict[str, list[dict]], eta: int, first: int) -> tuple[set[str], float]:
    """Successive halving by epochs: rung k trains every survivor to epoch first·eta^(k-1) and keeps
    the best ceil(n/eta) by mean mAP50-95 there; returns the candidates trained to the end and the cost."""
    epochs = min(len(v["scores"]) for vs in grid.values() for v in vs)
    alive, reached, k = set(grid), {c: 0 for c in grid}, 1
    while len(alive) > 1:
        epoch = min(epochs, first * eta ** (k - 1))
        for c in alive:
            reached[c] = epoch
        if epoch >= epochs:
            break
        value = {c: mean([max(v["scores"][:epoch]) for v in grid[c]]) for c in alive}
        # ties (variants whose first epochs are the same training) broken by name, not by set order
        ranked = sorted(sorted(alive), key=lambda c: -value[c])
        alive = set(ranked[: math.ceil(len(alive) / eta)])
        k += 1
    for c in alive:
        reached[c] = epochs
    cost = sum(sum(v["epoch_times"][: reached[c]]) for c, vs in grid.items() for v in vs)
    return alive, cost


def budget_rule(grid: dict[str, list[dict]], eta: int, budget_s: float, tolerance: float) -> tuple[set[str], float]:
    """The budget's rungs (sweep/budget/rungs.py) replayed: each rung trains a survivor until its
    training time first reaches the allotment, the rule decides; the last one left trains to the end."""
    curves = {
        c: [
            Curve.from_epochs(
                v["epoch_times"],
                v["scores"],
                True,
                tuple(v.get("frozen_range") or (None, None)),
                v.get("switches", False),
            )
            for v in vs
        ]
        for c, vs in grid.items()
    }
    alive, spent, rung, finals = set(grid), {c: 0.0 for c in grid}, 1, set()
    while alive:
        if len(alive) == 1:
            finals |= alive
            spent.update({c: sum(x.spent_s for x in curves[c]) for c in alive})
            break
        cut = {c: [x.cut(allotment(budget_s, eta, rung)) for x in curves[c]] for c in sorted(alive)}  # ties: by name
        spent.update({c: sum(x.spent_s for x in cut[c]) for c in alive})
        done = {c for c in alive if all(x.complete for x in cut[c])}
        previous_s = allotment(budget_s, eta, rung - 1)
        if rung > 1 and not new_evidence({c: curves[c] for c in alive}, previous_s, allotment(budget_s, eta, rung)):
            rung += 1  # nothing trained since the rung before: the sweeper keeps all and decides nothing
            continue
        decision = decide(cut, rung, allotment(budget_s, eta, rung), eta, tolerance)
        finals |= done  # trained to the end: the report's verdict weighs it, kept or not
        alive = set(decision.kept) - done
        rung += 1
    return finals, sum(spent.values())


def replay(full: dict, epoch_s: float) -> dict:
    grid: dict[str, list[dict]] = {}
    for variant in full["variants"]:
        grid.setdefault(variant["candidate"], []).append(variant)
    truth = pick(grid, full["tolerance"])
    runs, wrong = [], {"equal-epoch halving": 0, "budget rule": 0}
    for eta in REPLAY_ETAS:
        for first in REPLAY_FIRST_EPOCHS:
            row = {"eta": eta, "first rung epochs": first}
            for rule, (finals, cost) in {
                "equal-epoch halving": equal_epoch_halving(grid, eta, first),
                "budget rule": budget_rule(grid, eta, first * epoch_s, full["tolerance"]),
            }.items():
                chosen = pick({c: grid[c] for c in finals}, full["tolerance"])
                wrong[rule] += chosen != truth
                row[rule] = {"picks": chosen, "cost ratio": round(cost / full["training_s"], 3)}
            runs.append(row)
    return {
        "full grid picks": truth,
        "replays": len(runs),
        **{f"{rule} picks another variant": f"{n} of {len(runs)}" for rule, n in wrong.items()},
        "runs": runs,
    }


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="project folder (default: a new temporary one)")
    parser.add_argument("--eta", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script, not the figures")
    parser.add_argument("--overrides", nargs="*", default=[], help="more overrides for both sweeps (a smaller size)")
    args = parser.parse_args()
    grid = [*(QUICK_GRID if args.quick else GRID), *args.overrides]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        full_wall = sweep(root, "full", grid)
        full = outcome(root, "full")
        n_epochs = [len(v["epoch_times"]) for v in full["variants"]]
        epoch_s = full["training_s"] / sum(n_epochs)
        budget_s = round(FIRST_RUNG_EPOCHS * epoch_s, 2)
        budget_wall = sweep(root, "budgeted", [*grid, f"sweep.budget={budget_s}", f"sweep.eta={args.eta:g}"])
        budgeted = outcome(root, "budgeted")
        # The verdict's tolerance is the replicates' spread over finished rows: the budgeted sweep
        # finishes fewer rows, so its tolerance can differ. Its answer at the full grid's tolerance too:
        at_full_tolerance = outcome(root, "budgeted", full["tolerance"])["recommended"]
        record = json.loads((root / "multiruns" / "budgeted" / "budget.json").read_text())
        rungs, settings = record["rungs"], record["budget"]  # what it ran with (a kept sweep: not budget_s)
        loads = {name: (root / f"{name}.load").read_text() for name in ("full", "budgeted")}
    ratio = budgeted["training_s"] / full["training_s"]
    same = budgeted["recommended"] == full["recommended"]
    figures = {
        "variants": len(full["variants"]),
        "full grid": {k: full[k] for k in ("recommended", "training_s", "verdict", "tolerance")}
        | {"wall_s": round(full_wall)},
        "budgeted": {k: budgeted[k] for k in ("recommended", "training_s", "stopped", "verdict", "tolerance")}
        | {
            "wall_s": round(budget_wall),
            "budget_s": settings["seconds"],
            "eta": settings["eta"],
            "rungs": len(rungs) + 1,
        },
        "same recommended variant": same,
        "budgeted recommends at the full grid's tolerance": at_full_tolerance,
        "the budget's pick in the full grid": in_full_grid(full, budgeted["recommended"]),
        "training time budgeted / full grid": {
            "value": round(ratio, 3),
            "goal": f"<= {GOAL_RATIO} with the same recommended variant",
            "met": bool(same and ratio <= GOAL_RATIO),
        },
        "training time budgeted / full grid, at the full grid's epoch times": at_full_grid_speed(full, budgeted),
        "wall time budgeted / full grid": round(budget_wall / full_wall, 3),
        "machine load (1-minute average at start and end, 2 cores)": loads,
        "replay on the full grid's histories": replay(full, epoch_s),
        "budget rungs": rungs,
        "histories": {"full grid": full["variants"], "budgeted": budgeted["variants"]},
    }
    print(json.dumps({k: v for k, v in figures.items() if k not in ("histories", "budget rungs")}, indent=2))
    path = write_result("budget", figures, {"quick": args.quick, "grid": grid, "eta": args.eta})
    print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
