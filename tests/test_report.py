"""The sweep report: MLflow runs -> table, plots, HTML, CSV, and artifacts of the parent run.

Two kinds of store:
- the real one the `tiny_sweep` fixture fills through the CLI (slow): what the report shows is
  what MLflow holds;
- small stores written here with MlflowClient (fast, a unit-level complement): failed, running
  and replicate runs, GPU figures, pooled sweeps, and the errors a user can run into.
"""

from __future__ import annotations

import base64
import json
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from PIL import Image

from sweep.report import runs, write_report
from sweep.report.cli import main
from sweep.report.plots import accuracy_vs_time, against_freeze, epoch_curves, resource_curves
from sweep.report.runs import (
    EPOCH_SERIES,
    GPU_SERIES,
    MAP50,
    MAP50_95,
    RESOURCE_SERIES,
    load_histories,
    load_runs,
)
from sweep.report.table import summarize
from sweep.report.write import make_report
from sweep.tracking import names
from sweep.tracking.parent_run import SweepInfo
from sweep.tracking.store import connect, open_experiment
from sweep.tracking.sweeps import find_sweeps
from tests.background_sweep import BackgroundSweep
from tests.conftest import Sweep, run_cli

PNGS = ("against_freeze.png", "accuracy_vs_time.png", "map_curves.png", "resources.png")
REPORT_FILES = {"report.md", "report.csv", "report.html", *PNGS}


def table_rows(markdown: str) -> list[dict[str, str]]:
    """The rows of the Markdown table in printed report text, by column name."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|:---") or line.startswith("|---"))
    header = [c.strip() for c in lines[start - 1].strip("|").split("|")]
    rows = []
    for line in lines[start + 1 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip().strip("|").split(" | ")), strict=True)))
    return rows


# --- the real store of the tiny sweep -------------------------------------------------------------


@pytest.mark.slow
def test_the_report_of_the_tiny_sweep_shows_what_mlflow_holds(tiny_sweep: Sweep) -> None:
    result = run_cli(["--sweep", "tiny", "--tracking-uri", tiny_sweep.tracking_uri], tiny_sweep.root, "sweep.report")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tiny_sweep.sweep_dir / "report"  # the default: the parent's sweep.dir + /report
    assert REPORT_FILES <= {p.name for p in out.iterdir()}

    rows = table_rows(result.stdout)
    assert [row["freeze"] for row in rows] == ["none", "backbone", "all_but_head"]
    assert [row["frozen layers"] for row in rows] == ["0", "10", "22"]
    assert not {"model", "status", "n", "GPU mem (MB)", "GPU util %", "Δ GPU mem"} & set(rows[0])  # said once above
    assert "held fixed:** model yolov8n-demo" in result.stdout.lower()

    client = MlflowClient(tiny_sweep.tracking_uri)
    parent = SweepInfo.read(tiny_sweep.sweep_dir).parent_run_id
    table = pd.read_csv(out / "report.csv")
    assert len(table) == 3
    for row in table.to_dict("records"):
        run = client.get_run(row["run_ids"])
        assert run.data.tags[names.PARENT_RUN_ID] == parent
        metrics, params = run.data.metrics, run.data.params
        assert row["frozen_layers"] == int(params[names.P_FROZEN_LAYERS])
        assert row["trainable_pct"] == float(params[names.P_TRAINABLE_PCT])
        assert row["freeze"] == params[names.P_FREEZE]
        assert row["status"] == run.info.status == "FINISHED"
        for name in names.EPOCH_METRICS:
            assert row[name] == metrics[names.BEST[name]]
        assert row["train_time_s"] == pytest.approx(metrics[names.TRAIN_TIME])
        assert row["cpu_rss_mb"] == pytest.approx(metrics[names.CPU_PEAK_RSS])
        assert len(client.get_metric_history(row["run_ids"], MAP50)) == int(params[names.P_EPOCHS])
        epoch_times = [m.value for m in client.get_metric_history(row["run_ids"], names.EPOCH_TIME)]
        assert row["epoch_time_s"] == pytest.approx(statistics.mean(epoch_times))
        assert pd.isna(row["gpu_mem_mb"]) and pd.isna(row["gpu_util_pct"])  # a CPU sweep
    assert table["speedup"].iloc[0] == 1.0
    assert table["speedup"].iloc[2] == pytest.approx(table["train_time_s"].iloc[0] / table["train_time_s"].iloc[2])
    assert table["gpu_mem_mb"].isna().all()  # in the CSV, although no table shows the column

    for name in PNGS:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 300
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(PNGS)
    assert "http" not in re.sub(r"data:image/png;base64,[^']+", "", page)  # self-contained
    assert {a.path for a in client.list_artifacts(parent, "report")} == {f"report/{f}" for f in REPORT_FILES}


@pytest.mark.slow
def test_the_plots_of_the_tiny_sweep_draw_its_histories(tiny_sweep: Sweep) -> None:
    client = connect(tiny_sweep.tracking_uri)
    frame = load_runs(client, find_sweeps(client, "freeze-sweep", ["tiny"]))
    histories = load_histories(client, frame, [*EPOCH_SERIES, *RESOURCE_SERIES])
    table = summarize(frame, histories)

    fig = epoch_curves(table, histories)
    for ax, key in zip(fig.axes, (MAP50, MAP50_95), strict=True):
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == list(table["label"])
        for line, run_id in zip(lines, table["run_ids"], strict=True):
            history = client.get_metric_history(run_id, key)
            assert list(line.get_xdata()) == [m.step for m in history] == [1, 2]
            assert list(line.get_ydata()) == [m.value for m in history]
    resources = resource_curves(table, histories)
    assert [ax.get_title() for ax in resources.axes[:2]] == [
        "CPU RSS (MB), CPU runs",
        "CPU utilisation (% of one core), CPU runs",
    ]
    assert len(resources.axes[0].get_lines()) == 3
    ax = accuracy_vs_time(table).axes[0]
    assert [line.get_label() for line in ax.get_lines()] == list(table["label"])
    assert [list(line.get_xdata()) for line in ax.get_lines()] == [[t] for t in table["train_time_s"]]  # in s
    assert [t.get_text() for t in ax.texts] == ["none", "backbone", "all_but_head"]


# --- small stores written here --------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('report-store') / 'mlflow.db'}"
    open_experiment(uri, "freeze-sweep")  # the store created once, as a sweep does
    return uri


def new_sweep(uri: str, experiment: str, sweep_id: str) -> tuple[MlflowClient, str, str]:
    """A parent run as `start_parent_run` makes it; returns the client, experiment id and parent id."""
    client, experiment_id = open_experiment(uri, experiment)
    tags = {names.SWEEP_ID: sweep_id, names.ROLE: names.ROLE_PARENT}
    return client, experiment_id, client.create_run(experiment_id, tags=tags).info.run_id


def add_variant(
    client: MlflowClient,
    experiment_id: str,
    parent: str,
    frozen: int,
    *,
    seed: int = 0,
    status: str = "FINISHED",
    best: float = 0.5,
    train_time: float = 100.0,
    gpu: bool = False,
    error: str | None = None,
    epochs: int = 3,
    model: str = "yolov8n",
    lr0: str = "0.01",
    span: tuple[int, int] | None = None,
    epoch_ends: list[int] | None = None,
    epoch_times: list[float] | None = None,
    extra_params: dict[str, str] | None = None,
) -> str:
    """One variant run with the tags, params and metrics a real one has (fewer train args).

    `span`: start and end time (ms) to give it, e.g. to make two runs overlap; `epoch_ends`: when
    (ms) each epoch's figures were logged (else at 0); `epoch_times`: each epoch's `epoch_time_s`
    (else train_time / epochs); `extra_params`: more params, or others in place of the defaults."""
    device = "0" if gpu else "cpu"
    tags = {names.PARENT_RUN_ID: parent, names.ROLE: names.ROLE_VARIANT, names.DEVICE: device}
    start = span[0] if span else None
    run_id = client.create_run(
        experiment_id, run_name=f"v-freeze-{frozen}-seed-{seed}", tags=tags, start_time=start
    ).info.run_id
    params = {
        names.P_MODEL: model,
        names.P_ARCH: f"{model}.yaml",
        names.P_FREEZE: str(frozen),
        names.P_FREEZE_LAYERS: names.freeze_layers_param(range(frozen)),
        names.P_FROZEN_LAYERS: str(frozen),
        names.P_TRAINABLE_PCT: f"{100 - 4 * frozen:.2f}",
        names.P_SEED: str(seed),
        names.P_EPOCHS: str(epochs),
        "train.device": device,
        "train.imgsz": "64",
        "train.lr0": lr0,
        **(extra_params or {}),
    }
    done = epochs if status == "FINISHED" else epochs - 1
    metrics = []
    for epoch in range(1, done + 1):
        values = {MAP50: best * epoch / epochs + 0.2, MAP50_95: best * epoch / epochs}
        values[names.EPOCH_TIME] = epoch_times[epoch - 1] if epoch_times else train_time / epochs
        values.update({names.CPU_SHARE: 95.0, names.LOAD_PER_CORE: 1.0})  # an idle machine's (machine_load)
        metrics += [Metric(k, v, epoch_ends[epoch - 1] if epoch_ends else 0, epoch) for k, v in values.items()]
    series = (names.GPU_MEMORY, names.GPU_UTIL) if gpu else (names.CPU_RSS, names.CPU_UTIL)
    metrics += [Metric(k, 100.0 + second, 0, second) for second in range(5) for k in series]
    if status == "FINISHED":
        final = {names.BEST[MAP50]: best + 0.2, names.BEST[MAP50_95]: best, names.TRAIN_TIME: train_time}
        final.update({names.BEST["precision"]: 0.7, names.BEST["recall"]: 0.6, names.CPU_PEAK_RSS: 900.0})
        if gpu:
            final.update({names.GPU_PEAK_RESERVED: 4000.0 - 100 * frozen, names.GPU_UTIL_MEAN: 80.0})
        metrics += [Metric(k, v, 0, epochs) for k, v in final.items()]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    if error:
        client.set_tag(run_id, names.ERROR, error)
    if status != "RUNNING":
        client.set_terminated(run_id, status, end_time=span[1] if span else None)
    return run_id


def test_replicates_are_pooled_unfinished_runs_marked_and_rows_sorted_by_layers(store: str, tmp_path: Path) -> None:
    client, exp, parent = new_sweep(store, "replicates", "s1")
    add_variant(client, exp, parent, 22, status="FAILED", error="RuntimeError: boom\ntraceback line")
    for seed, (best, seconds) in enumerate([(0.50, 100.0), (0.52, 110.0)]):
        add_variant(client, exp, parent, 0, seed=seed, best=best, train_time=seconds)
    for seed, (best, seconds) in enumerate([(0.45, 60.0), (0.47, 70.0)]):
        add_variant(client, exp, parent, 10, seed=seed, best=best, train_time=seconds)
    add_variant(client, exp, parent, 5, status="RUNNING")

    report = make_report(client, find_sweeps(client, "replicates"), tmp_path, log_artifacts=False)
    table = report.table.set_index("frozen_layers")
    assert list(table.index) == [0, 5, 10, 22]  # numeric, although params are strings ("10" < "5")
    assert list(table["status"]) == ["FINISHED", "RUNNING", "FINISHED", "FAILED"]
    assert list(table["n"]) == [2, 1, 2, 1]
    assert table.at[0, MAP50_95] == pytest.approx(0.51)
    assert table.at[0, f"{MAP50_95}_std"] == pytest.approx(statistics.stdev([0.50, 0.52]))
    assert table.at[10, "train_time_s"] == pytest.approx(65.0)
    assert table.at[10, "speedup"] == pytest.approx(105.0 / 65.0)
    assert table.at[10, f"delta_{MAP50_95}"] == pytest.approx(0.46 - 0.51)
    assert table.at[22, "note"] == "RuntimeError: boom"
    assert table.at[5, "note"] == "epoch 2/3"
    assert pd.isna(table.at[22, MAP50_95]) and pd.isna(table.at[22, "speedup"])

    rows = {row["frozen layers"]: row for row in table_rows(report.markdown)}
    assert rows["0"][MAP50_95] == "0.510 ± 0.014" and rows["0"]["n"] == "2"
    assert rows["22"]["status"] == "FAILED" and rows["22"]["note"] == "RuntimeError: boom"
    assert rows["22"][MAP50_95] == "n/a"
    assert rows["5"]["status"] == "RUNNING"
    assert rows["10"]["speedup"] == "1.62x"

    histories = load_histories(client, load_runs(client, find_sweeps(client, "replicates")), EPOCH_SERIES)
    fig = epoch_curves(report.table, histories)
    first = fig.axes[1].get_lines()[0]
    assert first.get_label() == "yolov8n freeze=0 (n=2)"
    assert list(first.get_ydata()) == pytest.approx([0.51 / 3, 0.51 * 2 / 3, 0.51])  # mean of the replicates
    assert fig.axes[1].collections  # the ±1 std band
    assert fig.axes[1].get_lines()[-1].get_linestyle() == "--"  # the failed run, dashed


def test_without_an_unfrozen_variant_speedup_and_deltas_are_na(store: str, tmp_path: Path) -> None:
    client, exp, parent = new_sweep(store, "no-baseline", "s1")
    add_variant(client, exp, parent, 10)
    add_variant(client, exp, parent, 22)
    report = make_report(client, find_sweeps(client, "no-baseline"), tmp_path, log_artifacts=False)
    assert report.table["speedup"].isna().all()
    assert "speedup" not in table_rows(report.markdown)[0]  # n/a in every row: left out
    assert "n/a for rows without one" in report.markdown


def test_each_stage_of_a_schedule_shows_its_time_per_epoch_and_auto_rules_are_told_apart(
    store: str, tmp_path: Path
) -> None:
    """freeze=auto's replicates choose their own schedules: the row shows each one's stages, in the
    order its label lists them; two auto rules differ by the knob named in `config`."""
    client, exp, parent = new_sweep(store, "stages", "s1")
    add_variant(client, exp, parent, 0, epochs=6, epoch_times=[2.0] * 6)

    def auto(seed: int, threshold: float, chosen: str, schedule: list, times: list[float]) -> None:
        rule = {"start": 0, "max": 10, "threshold": threshold, "patience": 2}
        params = {names.P_FREEZE: "auto", names.P_FREEZE_AUTO: json.dumps(rule)}
        params |= {names.P_FREEZE_AUTO_CHOSEN: chosen, names.P_FREEZE_SCHEDULE: json.dumps(schedule)}
        add_variant(client, exp, parent, 0, seed=seed, epochs=6, epoch_times=times, extra_params=params)

    three = [[1, []], [3, [0]], [5, [0, 1, 2]]]
    auto(0, 0.5, "none -> 1 @3 -> 3 @5", three, [2.0, 2.4, 1.8, 1.6, 1.0, 1.2])
    auto(1, 0.5, "none", [[1, []]], [2.0, 2.0, 2.0, 2.0, 2.0, 2.1])
    auto(2, 0.5, "none -> 1 @3 -> 3 @5", three, [2.0, 2.0, 1.7, 1.7, 1.3, 1.3])
    auto(0, 0.7, "none -> 3 @4", [[1, []], [4, [0, 1, 2]]], [2.0, 2.0, 2.0, 0.9, 0.9, 0.9])

    report = make_report(client, find_sweeps(client, "stages"), tmp_path, log_artifacts=False)
    rows = {row["freeze"]: row for row in table_rows(report.markdown)}
    mixed = rows["auto: none -> 1 @3 -> 3 @5, auto: none"]
    assert mixed["time/epoch per stage"] == "2.1 s → 1.7 s → 1.2 s; 2.0 s"  # seeds 0 and 2 averaged per stage
    assert mixed["config"] == "freeze_auto.threshold=0.5"
    other = rows["auto: none -> 3 @4"]
    assert other["time/epoch per stage"] == "2.0 s → 0.9 s" and other["config"] == "freeze_auto.threshold=0.7"
    assert rows["0"]["time/epoch per stage"] == "n/a" and rows["0"]["config"] == ""  # fixed: one stage, no rule
    assert "<td>2.1 s → 1.7 s → 1.2 s<br>2.0 s</td>" in (tmp_path / "report.html").read_text()  # a line each
    table = report.table.set_index("freeze")
    assert table.at["auto: none -> 3 @4", "epoch_time_frozen_s"] == pytest.approx(2.0)  # first stage, in the CSV
    assert table.at["auto: none -> 3 @4", "epoch_time_unfrozen_s"] == pytest.approx(0.9)  # last stage


def test_each_model_and_setting_has_its_own_block_and_baseline(store: str, tmp_path: Path) -> None:
    client, exp, parent = new_sweep(store, "models", "s1")
    for model, seconds in (("yolov8s", 200.0), ("yolov8n", 100.0)):
        for frozen in (10, 0):
            add_variant(client, exp, parent, frozen, model=model, train_time=seconds / (1 + frozen / 10))
    add_variant(client, exp, parent, 0, lr0="0.001", train_time=400.0)
    table = make_report(client, find_sweeps(client, "models"), tmp_path, log_artifacts=False).table
    assert list(zip(table["model"], table["frozen_layers"], table["config"], strict=True)) == [
        ("yolov8n", 0, "train.lr0=0.001"),  # arch varies with the model only: not a setting of its own
        ("yolov8n", 0, "train.lr0=0.01"),
        ("yolov8n", 10, "train.lr0=0.01"),
        ("yolov8s", 0, "train.lr0=0.01"),
        ("yolov8s", 10, "train.lr0=0.01"),
    ]
    assert list(table["speedup"]) == pytest.approx([1.0, 1.0, 2.0, 1.0, 2.0])


def test_gpu_figures_when_logged_na_when_not(store: str, tmp_path: Path) -> None:
    client, exp, parent = new_sweep(store, "gpu", "s1")
    add_variant(client, exp, parent, 0, gpu=True)
    add_variant(client, exp, parent, 10, gpu=True)
    add_variant(client, exp, parent, 22)  # on the CPU: no GPU figures
    frame = load_runs(client, find_sweeps(client, "gpu"))
    histories = load_histories(client, frame, [*EPOCH_SERIES, *RESOURCE_SERIES])
    table = summarize(frame, histories)
    assert list(table["gpu_mem_mb"].iloc[:2]) == [4000.0, 3000.0]
    assert table.at[1, "delta_gpu_mem_pct"] == pytest.approx(-25.0)
    report = make_report(client, find_sweeps(client, "gpu"), tmp_path, log_artifacts=False)
    rows = table_rows(report.markdown)
    assert [row["GPU mem (MB)"] for row in rows] == ["4,000", "3,000", "n/a"]

    fig = resource_curves(table, histories)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "GPU memory used (MB, whole device)",
        "GPU utilisation (%)",
        "CPU RSS (MB), CPU runs",
        "CPU utilisation (% of one core), CPU runs",
    ]
    assert [line.get_label() for line in fig.axes[0].get_lines()] == list(table["label"].iloc[:2])
    assert [line.get_label() for line in fig.axes[2].get_lines()] == [table["label"].iloc[2]]
    assert [text.get_text() for text in fig.legends[0].get_texts()] == list(table["label"])  # GPU and CPU rows


def test_the_bulk_history_read_equals_the_per_run_calls(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQL stores answer one query per metric; any other store, one call per run (the public API)."""
    client, exp, parent = new_sweep(store, "bulk", "s1")
    for frozen in (0, 10):
        add_variant(client, exp, parent, frozen, gpu=frozen == 0)
    frame = load_runs(client, find_sweeps(client, "bulk"))
    keys = [*EPOCH_SERIES, *RESOURCE_SERIES]
    bulk = load_histories(client, frame, keys)
    monkeypatch.setattr(runs, "_bulk_history", lambda client: None)
    per_run = load_histories(client, frame, keys)
    assert bulk.keys() == per_run.keys() and len(bulk) == 2
    for run_id, series in bulk.items():
        assert series.keys() == per_run[run_id].keys()
        for key in series:
            pd.testing.assert_series_equal(series[key], per_run[run_id][key])
    gpu_run = frame.loc[frame[runs.param(names.P_FROZEN_LAYERS)] == "0", "run_id"].item()
    assert set(bulk[gpu_run]) == {*EPOCH_SERIES, *GPU_SERIES}  # no CPU series fetched for a GPU run


def test_several_sweeps_are_pooled_and_logged_to_each_parent(store: str, capsys: pytest.CaptureFixture) -> None:
    client, exp, first = new_sweep(store, "pooled", "a")
    add_variant(client, exp, first, 0, best=0.4)
    add_variant(client, exp, first, 10)
    client, exp, second = new_sweep(store, "pooled", "b")
    add_variant(client, exp, second, 0, best=0.6)
    add_variant(client, exp, second, 10)

    assert main(["--tracking-uri", store, "--experiment", "pooled", "--sweep", "a", "--sweep", "b"]) == 0
    out = Path(store.removeprefix("sqlite:///")).parent / "reports" / "a+b"
    table = pd.read_csv(out / "report.csv")
    assert list(table["n"]) == [2, 2] and table.at[0, MAP50_95] == pytest.approx(0.5)
    assert list(table["sweeps"]) == ["a,b", "a,b"]
    for parent in (first, second):
        assert {a.path for a in client.list_artifacts(parent, "report/a+b")} == {
            f"report/a+b/{f}" for f in REPORT_FILES
        }
    assert str(out / "report.html") in capsys.readouterr().out


def test_the_latest_sweep_by_default_and_write_report_for_the_callback(store: str, tmp_path: Path) -> None:
    client, exp, old = new_sweep(store, "latest", "old")
    add_variant(client, exp, old, 0)
    client, exp, new = new_sweep(store, "latest", "new")
    sweep_dir = tmp_path / "multiruns" / "new"
    sweep_dir.mkdir(parents=True)
    client.set_tag(new, names.SWEEP_DIR, str(sweep_dir))
    add_variant(client, exp, new, 0)
    assert [s.parent_run_id for s in find_sweeps(client, "latest")] == [new]

    assert write_report(store, new) == sweep_dir / "report"
    assert REPORT_FILES <= {p.name for p in (sweep_dir / "report").iterdir()}
    assert {a.path for a in client.list_artifacts(new, "report")} == {f"report/{f}" for f in REPORT_FILES}
    page = (sweep_dir / "report" / "report.html").read_text()
    png = page.split("src='data:image/png;base64,")[1].split("'")[0]
    assert base64.b64decode(png).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sweep", "nope"], "--sweep nope: unknown sweep in experiment 'errors'; recent sweeps: empty"),
        (["--sweep", "empty"], "sweep empty: no variant runs"),
        (["--experiment", "missing"], "--experiment missing: no such experiment"),
    ],
)
def test_unknown_or_empty_sweeps_exit_2_with_one_line(
    store: str, args: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    new_sweep(store, "errors", "empty")
    assert main(["--tracking-uri", store, "--experiment", "errors", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("freeze-sweep-report: error: ") and message in err
    assert err.count("\n") == 1


def test_a_missing_store_is_reported_not_created(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    database = tmp_path / "outputs" / "mlflow.db"
    assert main(["--tracking-uri", f"sqlite:///{database}"]) == 2
    assert f"no MLflow database at {database}" in capsys.readouterr().err
    assert not database.exists()


# --- the verdict and the parent run as the sweep's summary ----------------------------------------


def test_the_cheapest_variant_within_a_point_of_the_best_is_recommended_and_summarised_in_mlflow(
    store: str, tmp_path: Path
) -> None:
    client, exp, parent = new_sweep(store, "verdict", "s1")
    for frozen, best, seconds in ((0, 0.500, 100.0), (10, 0.495, 60.0), (22, 0.400, 40.0)):
        add_variant(client, exp, parent, frozen, best=best, train_time=seconds)
    sweeps = find_sweeps(client, "verdict")
    report = make_report(client, sweeps, tmp_path)
    table, verdict = report.table, report.verdict
    assert table.loc[verdict.recommended, "frozen_layers"] == 10 and table.loc[verdict.best, "frozen_layers"] == 0
    assert (verdict.tolerance, verdict.tolerance_reason) == (0.01, "one point")
    assert list(table.loc[verdict.pareto, "frozen_layers"]) == [22, 10, 0]  # cheapest first
    assert report.markdown.startswith("**Recommendation:** yolov8n freeze=10 (10 layers frozen, 60.0% of")
    assert "1.7x faster" in report.markdown and "**Swept:** freeze: 0, 10, 22." in report.markdown
    page = (tmp_path / "report.html").read_text()
    assert "<tr class='recommended'>" in page and page.count("<tr class='pareto'>") == 2
    accuracy = against_freeze(table, verdict.recommended).axes[0]
    assert [t.get_text() for t in accuracy.get_xticklabels()] == ["0\n100%", "10\n60%", "22\n12%"]
    ring = [line for line in accuracy.get_lines() if line.get_label() == "recommended"][0]
    assert (list(ring.get_xdata()), list(ring.get_ydata())) == ([10], [0.495])

    def frozen_of(tolerance: float) -> int:
        return make_report(client, sweeps, tmp_path, log_artifacts=False, tolerance=tolerance).verdict.recommended

    assert table.loc[frozen_of(0.2), "frozen_layers"] == 22
    assert table.loc[frozen_of(0.001), "frozen_layers"] == 0

    run = client.get_run(parent)
    assert run.data.tags["sweep.recommended"] == "yolov8n freeze=10"
    note = run.data.tags["mlflow.note.content"]
    assert note.count("**Recommendation:**") == 1  # the whole report, after what MLflow shows above "Show more":
    assert note.startswith(
        "**★ recommended: yolov8n freeze=10** (10 layers frozen): mAP50-95 0.495 (-0.005 against no freezing), "
        "trains 1.67x as fast, 60.0 s of training."
    )
    assert "| ★ 10 | 10 | 0.495 | -0.005 | 1.67x | 60.0 s |" in note  # the short table, then the charts' x-axis
    assert 'against the number of frozen layers, which MLflow labels "Step" (0 = 0, 10 = 10, 22 = 22)' in note
    assert run.data.params == {}  # the sweep writes its params once, at its start; a report writes none
    assert run.data.metrics["sweep/best_mAP50-95"] == 0.5  # the verdict's best, not the last level's
    assert run.data.metrics["sweep/recommended_mAP50-95"] == 0.495
    assert run.data.metrics["sweep/recommended_speedup"] == 1.667  # 4 significant digits, read in the Metrics box
    history = client.get_metric_history(parent, "by_frozen_layers/mAP50-95")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (10, 0.495), (22, 0.4)]
    children = [client.get_run(run_id) for run_id in table["run_ids"]]
    assert len({c.data.tags["mlflow.runColor"] for c in children}) == 3
    assert [c.data.metrics[names.P_FROZEN_LAYERS] for c in children] == [0, 10, 22]  # sortable in the UI
    assert [c.data.tags[names.VIEW_VERDICT] for c in children] == ["pareto front", "★ recommended", "pareto front"]
    assert [c.data.tags[names.VIEW_DELTA] for c in children] == ["+0.000", "-0.005", "-0.100"]
    assert [c.data.tags[names.VIEW_SPEEDUP] for c in children] == ["1.00x", "1.67x", "2.50x"]
    assert children[1].data.metrics[names.DELTA_VS_UNFROZEN] == pytest.approx(-0.005)  # exact beside the text

    add_variant(client, exp, parent, 5, best=0.6, train_time=50.0)  # a later refresh: the verdict moves
    make_report(client, sweeps, tmp_path)
    run = client.get_run(parent)
    assert run.data.tags["sweep.recommended"] == "yolov8n freeze=5"
    assert run.data.metrics["sweep/best_mAP50-95"] == 0.6 and run.data.metrics["sweep/recommended_mAP50-95"] == 0.6
    assert len(client.get_metric_history(parent, "by_frozen_layers/mAP50-95")) == 4  # same points re-logged once
    assert client.get_run(children[1].info.run_id).data.tags[names.VIEW_VERDICT] == ""  # no longer recommended


def test_replicates_set_the_tolerance_and_parallel_or_starved_timings_are_flagged(store: str, tmp_path: Path) -> None:
    client, exp, parent = new_sweep(store, "spread", "s1")
    for seed, best in enumerate((0.50, 0.56)):
        add_variant(client, exp, parent, 0, seed=seed, best=best, span=(1000, 9000))
    slow = add_variant(client, exp, parent, 10, best=0.50, train_time=50.0, span=(5000, 12000))  # overlaps both
    client.log_metric(slow, names.CPU_UTIL_MEAN, 30.0)
    report = make_report(client, find_sweeps(client, "spread"), tmp_path, log_artifacts=False)
    assert report.verdict.tolerance_reason == "replicate spread"
    assert report.verdict.tolerance == pytest.approx(statistics.stdev([0.50, 0.56]))
    assert report.table.loc[report.verdict.recommended, "frozen_layers"] == 10  # 0.50 is within 0.042 of 0.53
    warnings = [line for line in report.markdown.splitlines() if line.startswith("> warning:")]
    assert "trained at the same time on one device" in warnings[0] and "freeze=10" in warnings[0]
    assert "CPU time far below wall time" in warnings[1] and "yolov8n freeze=10 30%" in warnings[1]


def test_a_bad_tolerance_is_one_line_naming_what_is_accepted(store: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["--tracking-uri", store, "--tolerance", "5"]) == 2
    assert capsys.readouterr().err == (
        "freeze-sweep-report: error: --tolerance 5.0: give a difference of mAP50-95 in [0, 1), e.g. 0.01 for one point\n"
    )


def test_the_plots_are_the_same_drawn_on_two_processes_or_one(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's PNGs come from the forked helper and this process (the CLI's choice), or from this
    process alone (one core, other threads, no fork, a sweep's own process): byte-identical either
    way, in the order the page shows."""
    client, exp, parent = new_sweep(store, "drawn", "d1")
    for layers in (0, 10, 22):
        add_variant(client, exp, parent, layers, gpu=layers != 22)
    sweeps = find_sweeps(client, "drawn")
    pngs = {}
    for mode in ("forked", "serial"):
        monkeypatch.setattr("sweep.forked_jobs._can_fork", lambda mode=mode: mode == "forked")
        report = make_report(client, sweeps, tmp_path / mode, log_artifacts=False, processes=2)
        pngs[mode] = [p for p in report.files if p.suffix == ".png"]
        assert [p.name for p in pngs[mode]] == list(PNGS)
    # A sweep's own process (write_report, make_report's default) never forks: it holds the trainings.
    monkeypatch.setattr("sweep.forked_jobs._can_fork", lambda: True)
    monkeypatch.setattr("sweep.forked_jobs.multiprocessing.get_context", lambda *a: pytest.fail("forked"))
    report = make_report(client, sweeps, tmp_path / "sweep", log_artifacts=False)
    pngs["sweep"] = [p for p in report.files if p.suffix == ".png"]
    for forked, serial, sweep in zip(pngs["forked"], pngs["serial"], pngs["sweep"], strict=True):
        assert forked.read_bytes() == serial.read_bytes() == sweep.read_bytes(), forked.name


@pytest.mark.parametrize("labels", [3, 30])
def test_a_legend_right_of_the_axes_fits_in_the_png_without_moving_the_axes(labels: int, tmp_path: Path) -> None:
    """`save` widens the figure for a figure legend outside the axes (one draw, no bbox_inches="tight"):
    the legend ends inside the image, and the axes keep their size and place in inches."""
    from matplotlib.figure import Figure

    from sweep.report.plots import _legend, save

    fig = Figure(figsize=(12, 4.8))
    axes = fig.subplots(1, 2)
    for i in range(labels):
        axes[0].plot([0, 1], [i, i + 1], label=f"yolov8s freeze={i} with a long label (n=2)")
    _legend(fig, axes[0])

    def inches(ax) -> tuple[float, ...]:  # noqa: ANN001
        box, (w, h) = ax.get_position(), fig.get_size_inches()
        return (box.x0 * w, box.y0 * h, box.width * w, box.height * h)

    before = [inches(ax) for ax in axes]
    width_before = fig.get_figwidth()
    path = save(fig, tmp_path / "legend.png")

    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    with Image.open(path) as image:
        assert image.size == pytest.approx((fig.bbox.width, fig.bbox.height), abs=1)  # the figure, not trimmed
        assert legend.x0 > max(ax.get_window_extent(renderer).x1 for ax in axes)  # right of the axes
        assert legend.x1 <= image.width - 0.05 * fig.dpi  # inside, with a margin
        assert legend.y0 >= 0 and legend.y1 <= image.height
    assert fig.get_figwidth() > width_before
    for ax, old in zip(axes, before, strict=True):
        assert inches(ax) == pytest.approx(old, abs=1e-6)


@pytest.mark.slow
def test_a_report_during_the_sweep_leaves_the_parent_params_to_the_sweep(cache_root: Path, tmp_path: Path) -> None:
    """MLflow params are write-once: a report while variants still train must not fix them at its partial view."""
    sweep = BackgroundSweep(tmp_path, cache_root, ["freeze=none,backbone,all_but_head"], name="during")
    sweep.wait_for(lambda: sweep.job_done(0))
    during = run_cli(["--tracking-uri", sweep.tracking_uri], tmp_path, module="sweep.report")
    assert during.returncode == 0, during.stderr
    assert "**Swept:** freeze: none" in during.stdout and not sweep.job_done(2)  # it saw part of the sweep
    sweep.finish()
    parent = MlflowClient(sweep.tracking_uri).get_run(SweepInfo.read(sweep.sweep_dir).parent_run_id)
    assert parent.data.params["sweep.swept"] == "freeze: none, backbone, all_but_head"
    assert parent.data.params["model"] == "yolov8n-demo" and parent.data.params["train.epochs"] == "2"
    assert parent.data.tags["sweep.recommended"] in parent.data.tags["mlflow.note.content"]
