"""How long `freeze-sweep-report` takes on a store holding many runs.

Fills a SQLite store (in a temporary folder, or --store to keep and reuse one) the way sweeps do,
through `MlflowClient.log_batch`: N sweeps of M variants of a yolov5mu (freeze 0..24, so 50
variants are 25 freeze levels x 2 seeds; the last variant of each sweep failed), each with
per-epoch metrics, final metrics and 1 Hz GPU/CPU series. Then times the whole report (read,
table, plots, files, artifacts) of the latest sweep and of three sweeps pooled, in process, and
the CLI end to end (a fresh Python process: imports included).

    .venv/bin/python bench/bench_report.py                              # 20 sweeps x 50 = 1,000 runs
    .venv/bin/python bench/bench_report.py --sweeps 1 --variants 1000   # one sweep of 1,000 variants
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from bench.record import spread, write_result  # noqa: E402
from sweep.report.write import make_report  # noqa: E402
from sweep.tracking import names  # noqa: E402
from sweep.tracking.store import open_experiment  # noqa: E402
from sweep.tracking.sweeps import find_sweeps  # noqa: E402

EXPERIMENT = "freeze-sweep"
BATCH = 1000  # MLflow's limit of metrics per log_batch
LOSSES = (*names.TRAIN_LOSSES, *names.VAL_LOSSES)


def fill(client: MlflowClient, experiment_id: str, sweeps: int, variants: int, epochs: int, samples: int) -> int:
    """Log `sweeps` x `variants` runs; returns how many metric values were logged."""
    rng = random.Random(0)
    logged = 0
    levels = max(1, variants // 2)
    for s in range(sweeps):
        sweep_id = f"2025-01-{1 + s // 24:02d}_{s % 24:02d}-00-00-000000"
        parent = client.create_run(
            experiment_id,
            run_name=f"sweep-{sweep_id}",
            tags={names.SWEEP_ID: sweep_id, names.ROLE: names.ROLE_PARENT, names.SWEEP_DIR: f"/nowhere/{sweep_id}"},
        ).info.run_id
        for v in range(variants):
            frozen, seed = round(24 * (v % levels) / max(1, levels - 1)), v // levels
            failed = v == variants - 1 and variants > 2
            logged += variant(client, experiment_id, parent, sweep_id, frozen, seed, epochs, samples, failed, rng)
        client.set_terminated(parent, "FAILED")
    return logged


def variant(client, experiment_id, parent, sweep_id, frozen, seed, epochs, samples, failed, rng) -> int:
    tags = {names.PARENT_RUN_ID: parent, names.SWEEP_ID: sweep_id, names.ROLE: names.ROLE_VARIANT, names.DEVICE: "0"}
    run_id = client.create_run(experiment_id, run_name=f"yolov5mu-freeze-{frozen}", tags=tags).info.run_id
    trainable = 100 * (1 - 0.83 * frozen / 24)
    params = {
        names.P_MODEL: "yolov5mu",
        names.P_ARCH: "yolov5mu.yaml",
        names.P_WEIGHTS: "/weights/yolov5mu.pt",
        names.P_DATA: "VOC.yaml",
        names.P_FREEZE: str(frozen),
        names.P_FREEZE_LAYERS: names.freeze_layers_param(range(frozen)),
        names.P_FROZEN_LAYERS: str(frozen),
        names.P_NUM_LAYERS: "25",
        names.P_TRAINABLE_PCT: f"{trainable:.2f}",
        names.P_SEED: str(seed),
        names.P_EPOCHS: str(epochs),
        **{f"train.{k}": v for k, v in {"imgsz": 512, "batch": 48, "lr0": 0.0032, "device": 0, "workers": 8}.items()},
    }
    now = int(time.time() * 1000)
    done = epochs // 3 if failed else epochs
    epoch_time = 60 * (1 - 0.5 * frozen / 24) * (1 + 0.02 * rng.random())
    metrics, last = [], {}
    for epoch in range(1, done + 1):
        progress = 1 - 0.7**epoch
        values = {
            "mAP50": 0.9 * progress - 0.002 * frozen,
            "mAP50-95": 0.65 * progress - 0.003 * frozen,
            "precision": 0.8 * progress,
            "recall": 0.85 * progress,
            names.LR: 0.0032 * (1 - epoch / epochs),
            names.EPOCH_TIME: epoch_time,
            names.IMAGES_PER_S: 16551 / epoch_time,
            **{loss: 1 / epoch for loss in LOSSES},
        }
        last = {k: v + 0.005 * rng.random() for k, v in values.items()}
        metrics += [Metric(k, v, now, epoch) for k, v in last.items()]
    for second in range(0, samples):
        values = {
            names.GPU_UTIL: 90 - 30 * frozen / 24 + 5 * rng.random(),
            names.GPU_MEMORY: 9000 - 150 * frozen + 50 * rng.random(),
            names.CPU_UTIL: 300 + 50 * rng.random(),
            names.CPU_RSS: 6000 + rng.random(),
        }
        metrics += [Metric(k, v, now, second) for k, v in values.items()]
    if not failed:
        final = {
            **{names.BEST[k]: last[k] for k in names.EPOCH_METRICS},
            names.TRAIN_TIME: epoch_time * epochs,
            names.GPU_PEAK_ALLOCATED: 7000 - 150 * frozen,
            names.GPU_PEAK_RESERVED: 8000 - 150 * frozen,
            names.GPU_UTIL_MEAN: 85 - 30 * frozen / 24,
            names.GPU_UTIL_MAX: 100.0,
            names.CPU_PEAK_RSS: 6001.0,
            names.CPU_UTIL_MEAN: 320.0,
        }
        metrics += [Metric(k, v, now, done) for k, v in final.items()]
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    for i in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[i : i + BATCH])
    if failed:
        client.set_tag(run_id, names.ERROR, "OutOfMemoryError: CUDA out of memory")
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")
    return len(metrics)


def timed(label: str, action, repeat: int = 3) -> list[float]:
    """`repeat` wall times; the best is the figure least disturbed by other load on the machine."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    print(f"{label:<58} {min(times):6.2f} s (best of {repeat}; worst {max(times):.2f} s)")
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweeps", type=int, default=20)
    p.add_argument("--variants", type=int, default=50, help="variant runs per sweep")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--samples", type=int, default=300, help="seconds of 1 Hz GPU/CPU samples per run")
    p.add_argument("--store", type=Path, help="SQLite file to fill, or reuse when it exists (default: a temp dir)")
    p.add_argument("--quick", action="store_true", help="2 sweeps x 5 variants (CI's smoke run)")
    args = p.parse_args()
    if args.quick:
        args.sweeps, args.variants, args.epochs, args.samples = 2, 5, 5, 10

    tmp = tempfile.TemporaryDirectory(prefix="bench-report-")
    database = args.store or Path(tmp.name) / "mlflow.db"
    uri = f"sqlite:///{database.resolve()}"
    fresh = not database.exists()
    client, experiment_id = open_experiment(uri, EXPERIMENT)
    if fresh:
        start = time.perf_counter()
        values = fill(client, experiment_id, args.sweeps, args.variants, args.epochs, args.samples)
        elapsed = time.perf_counter() - start
        runs = args.sweeps * args.variants
        print(
            f"filled {args.sweeps} sweeps x {args.variants} = {runs} runs, {values:,} metric values in {elapsed:.0f} s"
        )
    runs = len(client.search_runs([experiment_id], max_results=50000))
    print(f"store: {database} ({database.stat().st_size / 2**20:.0f} MiB, {runs} runs)")

    out = Path(tmp.name) / "out"
    latest = find_sweeps(client, EXPERIMENT)
    parents = f"tags.`{names.ROLE}` = '{names.ROLE_PARENT}'"
    last_three = client.search_runs([experiment_id], parents, max_results=3, order_by=["start_time DESC"])
    pooled = find_sweeps(client, EXPERIMENT, [r.data.tags[names.SWEEP_ID] for r in last_three])
    in_process = timed(
        f"report, latest sweep ({args.variants} variants), in process",
        lambda: make_report(client, latest, out, processes=2),
    )
    pooled_times = timed(
        f"report, {len(pooled)} sweeps pooled, in process", lambda: make_report(client, pooled, out, processes=2)
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    cli = [sys.executable, "-m", "sweep.report", "--out", str(out), "--no-log"]

    def run_cli() -> None:
        subprocess.run(cli, cwd=ROOT, env=env, check=True, capture_output=True)

    cli_times = timed("CLI end to end (new process: imports + report)", run_cli)
    figures = {
        "runs_in_store": runs,
        "report_in_process_s": spread(in_process),
        "report_pooled_in_process_s": spread(pooled_times),
        "report_cli_end_to_end_s": spread(cli_times),
        "goal": "report CLI over 1,000 runs under 3 s end to end",
        "met": min(cli_times) < 3.0 if runs >= 1000 else None,
    }
    print(f"recorded: {write_result('report', figures, vars(args) | {'store': str(args.store)})}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
