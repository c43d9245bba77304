"""Randomised fault benchmark: tiny sweeps on one store, hit by kill -9, SIGTERM and SIGINT at
random moments, and pairs of identical sweeps started together; then a plain re-run, and an
audit of the store.

    python bench/bench_faults.py --rounds 20 --seed 0      # full (about 20-30 min on 2 cores)
    python bench/bench_faults.py --quick                    # 4 rounds, CI's smoke run

Prints, and records in bench/results/faults-*.json: rounds of each kind, variants lost,
duplicate FINISHED runs per config hash, runs left RUNNING, histories that are not exactly 1..N.
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
from bench.record import write_result  # noqa: E402
from sweep.tracking import names  # noqa: E402
from tests.conftest import TINY  # noqa: E402

EPOCHS = 3
FREEZES = "0,4,8,12"
EXPERIMENT = "fault-bench"
FAULTS = ("kill -9", "SIGTERM", "SIGINT", "two sweeps at once")
SIGNALS = {"kill -9": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}


def start(root: Path, name: str, experiment: str = EXPERIMENT) -> subprocess.Popen:
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
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def hit(process: subprocess.Popen, fault: str, after_s: float) -> str:
    """Send the fault's signal after `after_s` (to the sweep's process; kill -9 to its group)."""
    try:
        process.wait(timeout=after_s)
        return "finished first"
    except subprocess.TimeoutExpired:
        if fault == "kill -9":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(SIGNALS[fault])
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:  # it must end by itself within seconds; count it if not
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return f"{fault}: did not exit within 120 s"
        return f"{fault} landed, exit {process.returncode}"


def run_round(root: Path, number: int, fault: str, delay: float) -> str:
    if fault == "two sweeps at once":
        pair = [start(root, f"round{number}{side}") for side in "ab"]
        codes = [p.wait() for p in pair]
        return f"two sweeps, exits {codes}"
    return hit(start(root, f"round{number}"), fault, delay)


def audit(uri: str) -> dict[str, int]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    finished = Counter(r.data.tags[names.CONFIG_HASH] for r in variants if r.info.status == "FINISHED")
    bad_histories = 0
    for run in variants:
        if run.info.status == "FINISHED":
            for key in ("mAP50", names.EPOCH_TIME):
                steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
                bad_histories += steps != list(range(1, EPOCHS + 1))
    expected = len(FREEZES.split(","))
    return {
        "variants expected": expected,
        "variants finished": len(finished),
        "variants lost": expected - len(finished),
        "duplicate FINISHED runs per config hash": sum(n - 1 for n in finished.values()),
        "runs left RUNNING": sum(r.info.status == "RUNNING" for r in runs),
        "histories not exactly 1..N": bad_histories,
        "runs in store (parents, variants, superseded)": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay-s", type=float, default=45.0)
    parser.add_argument("--quick", action="store_true", help="4 rounds, one of each fault (CI's smoke run)")
    parser.add_argument("--root", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rounds = len(FAULTS) if args.quick else args.rounds
    faults = list(FAULTS) if args.quick else [rng.choice(FAULTS) for _ in range(rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        start(root, "warmup", experiment="warmup").wait()  # builds the tiny demo base, outside the count
        uri = f"sqlite:///{root}/outputs/mlflow.db"
        started = time.monotonic()
        outcomes = []
        for number, fault in enumerate(faults):
            delay = rng.uniform(1.0, args.max_delay_s)
            outcome = run_round(root, number, fault, delay)
            outcomes.append({"fault": fault, "delay_s": round(delay, 1), "outcome": outcome})
            print(f"round {number:2d}: {fault:18s} after {delay:5.1f} s -> {outcome}", flush=True)
        final = start(root, "final")
        final_exit = final.wait()
        figures = {**audit(uri), "final re-run exit code": final_exit}
        figures["rounds"] = dict(Counter(faults))
        figures["total_s"] = round(time.monotonic() - started)
        for key, value in figures.items():
            print(f"{key}: {value}")
        path = write_result(
            "faults", {**figures, "round_log": outcomes}, {"rounds": rounds, "seed": args.seed, "quick": args.quick}
        )
        print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
