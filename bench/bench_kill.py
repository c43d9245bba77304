"""Randomised kill test: kill -9 a tiny sweep at random moments over several rounds, then let
it finish, and count what was lost or duplicated in MLflow.

    python bench/bench_kill.py --rounds 8 --seed 0

Prints: rounds, kills that landed mid-sweep, variants expected/finished, runs lost, duplicate
FINISHED runs per variant, histories with missing or repeated epochs.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sweep.tracking import names  # noqa: E402
from tests.conftest import TINY  # noqa: E402

EPOCHS = 3
FREEZES = "0,4,8,12"


EXPERIMENT = "kill-bench"


def run_round(root: Path, name: str, kill_after_s: float | None, experiment: str = EXPERIMENT) -> bool:
    """One sweep; killed with SIGKILL after `kill_after_s` (None: let it finish). True if killed."""
    command = [
        sys.executable,
        "-m",
        "sweep",
        "-m",
        *TINY,
        f"train.epochs={EPOCHS}",
        f"freeze={FREEZES}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={root}/outputs/multiruns/{name}",
    ]
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "YOLO_OFFLINE": "true"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        process.wait(timeout=kill_after_s)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def audit(uri: str) -> dict[str, int]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    finished = Counter(r.data.tags[names.CONFIG_HASH] for r in variants if r.info.status == "FINISHED")
    bad_histories = 0
    for run in variants:
        if run.info.status == "FINISHED":
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "mAP50")]
            bad_histories += steps != list(range(1, EPOCHS + 1))
    expected = len(FREEZES.split(","))
    return {
        "variants expected": expected,
        "variants finished": len(finished),
        "runs lost": expected - len(finished),
        "duplicate FINISHED runs": sum(n - 1 for n in finished.values()),
        "histories with missing/repeated epochs": bad_histories,
        "variant runs in store (incl. superseded)": len(variants),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-kill-s", type=float, default=40.0)
    parser.add_argument("--root", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        run_round(root, "warmup", None, experiment="warmup")  # builds the tiny demo base, outside the count
        uri = f"sqlite:///{root}/outputs/mlflow.db"
        kills = 0
        started = time.monotonic()
        for round_number in range(args.rounds):
            delay = rng.uniform(1.0, args.max_kill_s)
            killed = run_round(root, f"round{round_number}", delay)
            kills += killed
            print(f"round {round_number}: kill after {delay:5.1f} s -> {'killed' if killed else 'finished first'}")
        run_round(root, "final", None)
        print(f"\nrounds: {args.rounds}, kills that landed: {kills}, total {time.monotonic() - started:.0f} s")
        for key, value in audit(uri).items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
