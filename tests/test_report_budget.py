"""A budgeted sweep in the report: STOPPED rows, their curves, the training time saved (sweep/report/budget.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric

from sweep.report.budget import remaining_epoch_s
from sweep.report.plots import epoch_curves
from sweep.report.runs import EPOCH_SERIES, MAP50_95, load_histories, load_runs
from sweep.report.write import make_report
from sweep.tracking import names
from sweep.tracking.sweeps import find_sweeps
from tests.test_report import add_variant, new_sweep, store, table_rows  # noqa: F401 (store: a fixture)


def test_stopped_variants_are_marked_drawn_to_their_stop_and_the_saving_is_said(store: str, tmp_path: Path) -> None:  # noqa: F811
    client, exp, parent = new_sweep(store, "budgeted", "b1")
    client.set_tag(parent, names.BUDGET, "sweep.budget=20 s, eta=3, tolerance=0.01")
    add_variant(client, exp, parent, 0, best=0.50, train_time=90.0, epochs=3)  # 30 s an epoch, all 3 trained
    stopped = add_variant(client, exp, parent, 10, best=0.70, train_time=60.0, epochs=3, status="KILLED")
    client.update_run(stopped, "RUNNING")
    client.set_tag(stopped, names.STOPPED_AT_RUNG, "1")
    client.set_tag(stopped, names.STOPPED_REASON, "rung 1: below the 1 kept")
    client.set_terminated(stopped, "FINISHED")  # 2 of its 3 epochs, 20 s each, as a stop leaves it

    report = make_report(client, find_sweeps(client, "budgeted"), tmp_path, log_artifacts=False)
    table = report.table.set_index("frozen_layers")
    assert table.at[10, "status"] == "STOPPED"
    assert report.table.at[report.verdict.recommended, "frozen_layers"] == 0  # 10 was better, but not trained out
    assert {row["frozen layers"]: row["status"] for row in table_rows(report.markdown)} == {
        "0": "FINISHED",
        "10": "STOPPED",
    }
    # spent 90 + 40 s; the full grid: 90 + 3 x 20 s
    assert "1 of 2 variants stopped early (after rung 1)" in report.markdown
    assert "13% of the full grid's training time saved: 130 s of training against about 150 s" in report.markdown
    # restarts: each resumed job's set-up (setup_s above step 1) counts against the saving, a first start does not
    for run_id, points in (
        (stopped, {1: 2.0, 2: 4.0}),
        (report.table.at[report.verdict.recommended, "run_ids"], {1: 2.0, 2: 3.0, 3: 3.0}),
    ):
        client.log_batch(run_id, metrics=[Metric(names.SETUP_TIME, s, 0, step) for step, s in points.items()])
    report = make_report(client, find_sweeps(client, "budgeted"), tmp_path, log_artifacts=False)
    assert (
        "7% of the full grid's training time saved: 140 s of training incl. 3 restarts (10 s of set-up before their "
        "first epoch) against about 150 s"
    ) in report.markdown

    histories = load_histories(client, load_runs(client, find_sweeps(client, "budgeted")), EPOCH_SERIES)
    lines = {line.get_label(): line for line in epoch_curves(report.table, histories).axes[1].get_lines()}
    curve = lines["yolov8n freeze=10 STOPPED"]
    assert list(curve.get_xdata()) == [1, 2] and curve.get_linestyle() == "--"  # up to its stop
    assert list(curve.get_ydata()) == pytest.approx([0.7 / 3, 0.7 * 2 / 3])
    assert MAP50_95 in report.table


def test_a_sweep_without_a_budget_says_nothing_of_one(store: str, tmp_path: Path) -> None:  # noqa: F811
    client, exp, parent = new_sweep(store, "unbudgeted", "u1")
    add_variant(client, exp, parent, 0)
    report = make_report(client, find_sweeps(client, "unbudgeted"), tmp_path, log_artifacts=False)
    assert "Budget" not in report.markdown and "STOPPED" not in report.markdown


def test_runs_resumed_rung_after_rung_are_parallel_only_where_their_epochs_overlap(store: str, tmp_path: Path) -> None:  # noqa: F811
    """A budget's rungs resume each variant in turn on one device: from first start to last end the
    runs overlap, their epochs do not; epochs that do overlap (parallel jobs) are still warned of."""
    for name, late in (("in-turn", 0), ("side-by-side", 2500)):
        client, exp, parent = new_sweep(store, name, name)
        client.set_tag(parent, names.BUDGET, "sweep.budget=1 s, eta=2, tolerance=0.01")
        # rung 1: freeze=0's epoch 1, then freeze=10's; rung 2: freeze=0's epochs 2-3, then freeze=10's
        for frozen, ends in ((0, [2000, 7000, 8000]), (10, [4000 - late, 10000 - late, 11000 - late])):
            run = add_variant(client, exp, parent, frozen, train_time=3.0, epochs=3, span=(0, 12000), epoch_ends=ends)
            client.set_tag(run, names.RESUMED_AFTER, "ended SCHEDULED")
        report = make_report(client, find_sweeps(client, name), tmp_path / name, log_artifacts=False)
        parallel = "trained at the same time on one device" in report.markdown
        assert parallel == bool(late), (name, report.markdown)


def test_a_stopped_variants_remaining_epochs_cost_what_its_current_freezing_stage_costs() -> None:
    """The full grid's cost counts a stopped variant's remaining epochs at its current stage's epoch
    time: a schedule's cheap frozen epochs, or freeze=auto's dearer ones before it froze, and a slow
    first epoch do not stand for what follows."""
    times = pd.Series({1: 1.0, 2: 1.0, 3: 2.0, 4: 2.2, 5: 2.4})
    switched_at_3 = json.dumps([[1, list(range(22))], [3, []]])
    assert remaining_epoch_s(times, switched_at_3, None) == pytest.approx(2.2)  # epochs 3-5, not 1.72 (all)
    not_yet = json.dumps([[1, list(range(22))], [9, []]])
    assert remaining_epoch_s(times, not_yet, None) == pytest.approx(2.0)  # the stage it is in: all 5 epochs
    auto_times = pd.Series({1: 3.0, 2: 3.1, 3: 2.0, 4: 2.1})
    frozen = pd.Series({0: 0, 1: 0, 2: 0, 3: 5, 4: 5})  # step 0: the start; froze 5 layers from epoch 3
    assert remaining_epoch_s(auto_times, float("nan"), frozen) == pytest.approx(2.05)
    assert remaining_epoch_s(pd.Series({1: 5.0, 2: 1.0, 3: 1.2}), None, None) == pytest.approx(1.2)  # the median
