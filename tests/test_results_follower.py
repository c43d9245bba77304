"""Following results.csv: against a real tiny ultralytics training, and against a file written by
hand where the timing of a half-written row must be exact."""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from sweep.demo.data import DemoDataSpec, ensure_dataset
from sweep.tracking.results_follower import ResultsFollower
from sweep.training import train

HEADER = "epoch,time,train/box_loss,metrics/mAP50(B)\n"


def test_every_epoch_of_a_real_training_reaches_the_sink_once_in_order(tmp_path: Path) -> None:
    data = ensure_dataset(DemoDataSpec("target", n_train=16, n_val=8, imgsz=64, seed=0), tmp_path / "cache")
    save_dir = tmp_path / "train"
    delivered: list[tuple[dict, float]] = []
    args = {"epochs": 3, "imgsz": 64, "batch": 8, "workers": 0, "device": "cpu", "plots": False, "seed": 0}
    with ResultsFollower(save_dir / "results.csv", lambda row: delivered.append((row, time.monotonic())), 0.05):
        train("yolov8n.yaml", data, save_dir, freeze=[], args=args)
        trained = time.monotonic()
    rows = [row for row, _ in delivered]
    assert rows == pl.read_csv(save_dir / "results.csv").to_dicts()  # every row, in order, values as written
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert delivered[0][1] < trained  # followed while training ran, not read once at the end
    assert {"metrics/mAP50(B)", "train/box_loss", "lr/pg0"} <= set(rows[0])


def test_a_half_written_row_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows: list[dict] = []
    follower = ResultsFollower(path, rows.append)
    follower.poll()
    assert rows == []  # no file yet
    path.write_text(HEADER + "1,2.5,1.25,0.1\n2,5.0,1.1")
    follower.poll()
    assert rows == [{"epoch": 1, "time": 2.5, "train/box_loss": 1.25, "metrics/mAP50(B)": 0.1}]
    with path.open("a") as f:
        f.write("5,0.2\n")
    follower.poll()
    follower.poll()
    assert rows[1:] == [{"epoch": 2, "time": 5.0, "train/box_loss": 1.15, "metrics/mAP50(B)": 0.2}]


def test_a_resumed_run_gets_only_its_new_epochs_and_a_replaced_file_no_repeats(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text(HEADER + "1,2,1,0.1\n2,4,1,0.2\n3,6,1,0.3\n")
    rows: list[dict] = []
    follower = ResultsFollower(path, rows.append, after_epoch=2)
    follower.poll()
    path.write_text(HEADER + "1,2,1,0.5\n")  # shorter: a new file, read from its start
    follower.poll()
    with path.open("a") as f:
        f.write("4,8,1,0.4\n")
    follower.poll()
    assert [(row["epoch"], row["metrics/mAP50(B)"]) for row in rows] == [(3, 0.3), (4, 0.4)]


def test_the_last_row_is_read_on_exit(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows: list[dict] = []
    with ResultsFollower(path, rows.append, interval_s=600):
        path.write_text(HEADER + "1,2,1,0.1\n")
    assert [row["epoch"] for row in rows] == [1]
