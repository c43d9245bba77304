"""Budgeted sweeps through the CLI (sweep/budget/rungs.py, pause.py, checks.py): bad input refused
in one line before anything is recorded; kill -9 and SIGTERM between rungs and mid-rung, then a
re-run: every variant FINISHED once, none RUNNING, every history exactly 1..N."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.report.runs import run_status
from sweep.report.timing import MIN_OVERLAP
from sweep.tracking import names
from tests.conftest import ROOT, TINY, Sweep, run_cli, run_sweep
from tests.services import SlurmCluster
from tests.test_engines import slurm_launcher

EPOCHS = 4
# Rung 1 trains every variant one epoch (its first epoch already passes 0.01 s); later rungs train
# one more each time the allotment passes what a variant trained; the tiny demo's mAP is 0 for all,
# so all are tied and kept until they finish.
BUDGETED = ["freeze=0,22", f"train.epochs={EPOCHS}", "sweep.budget=0.01", "sweep.eta=2"]


@pytest.mark.slow  # about 10 s a command
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sweep.budget=0"], "sweep.budget=0: use null (train every variant in full) or the seconds"),
        (["sweep.budget=60", "sweep.eta=1.5"], "sweep.eta=1.5: use a number >= 2"),
        (["sweep.budget=60,120"], "sweep.budget=60,120: the budget's settings are one per sweep"),
    ],
)
def test_a_bad_budget_is_one_line_before_anything_is_recorded(
    overrides: list[str], message: str, tmp_path: Path
) -> None:
    result = run_cli(["-m", *TINY, *overrides], tmp_path, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("freeze-sweep: error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()  # no store, no sweep folder, no demo base


def start(root: Path, cache_root: Path, name: str, overrides: list[str] = BUDGETED) -> subprocess.Popen:
    sweep_dir = root / "outputs" / "multiruns" / name
    command = [sys.executable, "-m", "sweep", "-m", *TINY, f"paths.cache_dir={cache_root}/outputs/cache"]
    command += [*overrides, f"hydra.sweep.dir={sweep_dir}"]
    env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root)}
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def between_rungs(sweep_dir: Path) -> bool:
    """Rung 1 decided (budget.json written), rung 2 not training yet."""
    return (sweep_dir / "budget.json").is_file()


def mid_rung(sweep_dir: Path) -> bool:
    """Rung 2 under way: the first variant has trained its second epoch."""
    results = sweep_dir / "0" / "train" / "results.csv"
    return results.is_file() and len(results.read_text().splitlines()) >= 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "when"),
    [(signal.SIGKILL, between_rungs), (signal.SIGTERM, mid_rung)],
    ids=["kill-9-between-rungs", "sigterm-mid-rung"],
)
def test_a_budgeted_sweep_hit_then_re_run_keeps_the_trustworthy_record(
    fault: signal.Signals, when, tmp_path: Path, cache_root: Path
) -> None:
    first = start(tmp_path, cache_root, "first")
    sweep_dir = tmp_path / "outputs" / "multiruns" / "first"
    deadline = time.monotonic() + 900
    while not when(sweep_dir):
        assert first.poll() is None, f"the sweep ended before the fault (exit {first.returncode})"
        assert time.monotonic() < deadline, "timed out waiting for the moment of the fault"
        time.sleep(0.05)
    if fault == signal.SIGKILL:
        os.killpg(first.pid, signal.SIGKILL)
    else:
        first.send_signal(fault)
    assert first.wait(timeout=120) != 0

    again = run_sweep(tmp_path, cache_root, BUDGETED, name="again")
    assert again.result.returncode == 0, again.result.stdout[-3000:] + again.result.stderr[-3000:]
    client = MlflowClient(again.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    finished = Counter(r.data.tags[names.CONFIG_HASH] for r in variants if r.info.status == "FINISHED")
    assert len(finished) == 2 and set(finished.values()) == {1}  # 0 lost, 0 duplicates
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    for run in variants:
        if run.info.status == "FINISHED":
            for key in ("mAP50", names.EPOCH_TIME):
                steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
                assert steps == list(range(1, EPOCHS + 1)), (run.info.run_name, key, steps)
    record = json.loads((again.sweep_dir / "budget.json").read_text())
    assert [v["status"] for v in record["variants"]] == ["FINISHED", "FINISHED"]
    assert len(record["rungs"]) >= 1
    # one after the other, rung after rung: each run spans the others' rungs, its epochs do not
    assert "trained at the same time" not in (again.sweep_dir / "report" / "report.md").read_text()


def test_a_variant_stopped_by_an_earlier_sweep_gets_a_job_only_where_a_rung_allots_it_more(tmp_path: Path) -> None:
    """A re-run with the same budget reuses the stop (no job); a larger allotment trains it on."""
    from mlflow.entities import Metric

    from sweep.budget.rungs import Variant, needs_job
    from sweep.tracking.store import open_experiment

    client, experiment_id = open_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "freeze-sweep")
    run_id = client.create_run(experiment_id, run_name="v").info.run_id
    history = [
        Metric(key, value, 0, epoch) for epoch in (1, 2) for key, value in ((names.EPOCH_TIME, 1.5), ("mAP50-95", 0.1))
    ]
    client.log_batch(run_id, metrics=history)  # 3 s trained: stopped at rung 2 of budget 1 s, eta 3
    client.set_terminated(run_id, "FINISHED")
    stopped = Variant(0, ["freeze=0"], "freeze=0", "v", run_id, "FINISHED", stopped_at_rung=2)
    assert not needs_job(client, stopped, 3.0) and needs_job(client, stopped, 6.0) and needs_job(client, stopped, None)
    trained_out = Variant(1, ["freeze=1"], "freeze=1", "v", run_id, "FINISHED")
    assert not needs_job(client, trained_out, 6.0)


def test_the_rule_stops_a_paused_variant_finished_tagged_and_recorded(tmp_path: Path) -> None:
    """Between rungs, from what the store holds: a paused run the rule drops ends FINISHED with its
    rung and reason; its job's variant.json says FINISHED; a stop already recorded stands."""
    from mlflow.entities import Metric

    from sweep.budget.checks import Budget
    from sweep.budget.rungs import Rungs, Variant
    from sweep.tracking.store import open_experiment

    client, experiment_id = open_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "freeze-sweep")
    variants = []
    for num, (epoch_s, scores) in enumerate([(1.0, [0.4, 0.5]), (1.0, [0.1, 0.1]), (2.0, [0.3])]):
        run_id = client.create_run(experiment_id, run_name=f"v{num}").info.run_id
        history = [Metric(names.EPOCH_TIME, epoch_s, 0, e) for e in range(1, len(scores) + 1)]
        history += [Metric("mAP50-95", s, 0, e) for e, s in enumerate(scores, 1)]
        client.log_batch(run_id, metrics=history)
        client.set_terminated(run_id, "SCHEDULED")
        variants.append(Variant(num, [f"freeze={num}"], f"freeze={num}", f"v{num}", run_id, "PAUSED"))
    client.set_tag(variants[2].run_id, names.STOPPED_AT_RUNG, "1")  # a previous run of the sweep stopped it here
    rungs = Rungs(sweeper=None, budget=Budget(2.0, 3.0, 0.0))
    for variant in variants:  # the job folders the first rung made
        (tmp_path / str(variant.num)).mkdir()
    decision = rungs.judge(client, variants, rung=1)
    assert decision.kept[0] == "freeze=0" and "freeze=1" in decision.stopped
    for variant in variants:
        if variant.candidate in decision.stopped or variant.stopped_at_rung == 1:
            rungs.stop(client, tmp_path, variant, 1, decision.stopped.get(variant.candidate, ""))
    stopped = client.get_run(variants[1].run_id)
    assert stopped.info.status == "FINISHED" and stopped.data.tags[names.STOPPED_AT_RUNG] == "1"
    assert stopped.data.tags[names.STOPPED_REASON].startswith("rung 1: mAP50-95 0.100 after 2.0 s of training")
    assert client.get_run(variants[2].run_id).info.status == "FINISHED"  # the recorded stop stands
    assert client.get_run(variants[0].run_id).info.status == "SCHEDULED"  # kept: paused for rung 2
    status = json.loads((tmp_path / "1" / "variant.json").read_text())
    assert status["status"] == "FINISHED" and status["note"].startswith("stopped by the budget, rung 1: mAP50-95 0.100")


@pytest.mark.slow
def test_a_later_plain_sweep_trains_a_stopped_variant_to_the_end_in_its_own_run(
    tmp_path: Path, cache_root: Path
) -> None:
    """A stopped variant has epochs to go: a plain sweep of the same variants continues it from its
    last.pt in the same run, and the report no longer calls it STOPPED. (The tiny demo's variants
    tie, so the rule stops none: the stop is made between rungs by the sweeper's own `stop`.)"""
    from sweep.budget.rungs import Rungs, Variant

    grid = ["freeze=0,22", "train.epochs=2"]
    first = start(tmp_path, cache_root, "first", [*grid, "sweep.budget=0.01", "sweep.eta=2"])
    sweep_dir = tmp_path / "outputs" / "multiruns" / "first"
    deadline = time.monotonic() + 900
    while not between_rungs(sweep_dir):  # both paused after 1 of their 2 epochs
        assert first.poll() is None and time.monotonic() < deadline, f"no rung 1 (exit {first.returncode})"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=120)
    client = MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db")
    recorded = json.loads((sweep_dir / "budget.json").read_text())["variants"][1]
    stopped = Variant(recorded["num"], [], recorded["candidate"], recorded["name"], recorded["run_id"], "PAUSED")
    Rungs(sweeper=None, budget=None).stop(client, sweep_dir, stopped, 1, "rung 1: below the 1 kept")
    assert run_status(client.get_run(stopped.run_id)) == "STOPPED"

    plain = run_sweep(tmp_path, cache_root, grid, name="plain")
    assert plain.result.returncode == 0, plain.result.stdout[-3000:] + plain.result.stderr[-3000:]
    run = client.get_run(stopped.run_id)  # the same run, trained on
    assert run.info.status == "FINISHED" and run_status(run) == "FINISHED"
    assert names.STOPPED_AT_RUNG not in run.data.tags and names.STOPPED_REASON not in run.data.tags
    assert run.data.tags[names.RESUMED_AFTER] == "stopped by the budget at rung 1: rung 1: below the 1 kept"
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    assert sorted(r.info.status for r in variants) == ["FINISHED", "FINISHED"]  # 0 lost, 0 duplicates
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    for variant in variants:
        for key in ("mAP50", names.EPOCH_TIME):
            assert [m.step for m in client.get_metric_history(variant.info.run_id, key)] == [1, 2]


TWO_RUNGS = ["freeze=0,22", "train.epochs=2", "sweep.budget=0.01", "sweep.eta=2"]  # rung 1: epoch 1; then epoch 2


def two_rungs_recorded(sweep: Sweep) -> MlflowClient:
    """Each variant paused after rung 1 and resumed in place to its last epoch, the restart recorded."""
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("freeze-sweep").experiment_id], max_results=1000)
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    assert sorted(r.info.status for r in variants) == ["FINISHED", "FINISHED"]  # 0 lost, 0 duplicates
    for run in variants:
        assert run.data.tags[names.RESUMED_AFTER] == "ended SCHEDULED"  # paused after rung 1, resumed in place
        for key in ("mAP50", names.EPOCH_TIME, names.SETUP_TIME):  # setup_s: the first start, then the restart
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2], (key, run.info.run_name)
    record = json.loads((sweep.sweep_dir / "budget.json").read_text())
    assert [v["status"] for v in record["variants"]] == ["FINISHED", "FINISHED"]
    assert record["restarts"]["count"] == 2 and record["restarts"]["setup_s"] > 0
    # rung 1, then the rung(s) whose allotment passed a first epoch (~1 s; one rung, or two when the
    # variants' epochs straddle an allotment): the ~6 rungs between trained nothing and decided nothing
    assert 2 <= len(record["rungs"]) <= 3, [r["rung"] for r in record["rungs"]]
    assert "incl. 2 restarts" in (sweep.sweep_dir / "report" / "report.md").read_text()
    return client


@pytest.mark.slow
def test_a_budgeted_sweep_runs_its_rungs_through_the_parallel_launcher(tmp_path: Path, cache_root: Path) -> None:
    """Rung 1 trains both variants an epoch side by side in loky workers and pauses them; rung 2
    resumes each in its own run to its last epoch."""
    sweep = run_sweep(tmp_path, cache_root, ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2", *TWO_RUNGS])
    client = two_rungs_recorded(sweep)
    # The report warns exactly when the two runs' epochs overlapped (the workers' set-up times vary,
    # so whether they did is read from the record: each epoch ends when its epoch_time_s is logged).
    epochs = [
        [
            (m.timestamp / 1000 - m.value, m.timestamp / 1000)
            for m in client.get_metric_history(run_id, names.EPOCH_TIME)
        ]
        for run_id in (
            r.info.run_id
            for r in client.search_runs([client.get_experiment_by_name("freeze-sweep").experiment_id])
            if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT
        )
    ]
    together = sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in epochs[0] for s2, e2 in epochs[1])
    shorter = min(sum(end - start for start, end in spans) for spans in epochs)
    warned = "trained at the same time on one device" in (sweep.sweep_dir / "report" / "report.md").read_text()
    assert warned == (together > MIN_OVERLAP * shorter), (together, shorter)


@pytest.mark.slow
@pytest.mark.slurm
def test_a_budgeted_sweep_runs_its_rungs_as_slurm_jobs(
    slurm_cluster: SlurmCluster, tmp_path: Path, cache_root: Path
) -> None:
    """Each rung is a job array (a later rung may resume the variants one at a time: each when its
    allotment passes what it trained); a resumed variant's restart counts its job's process start."""
    launcher = [*slurm_launcher(slurm_cluster), "hydra.launcher.array_parallelism=2"]
    sweep = run_sweep(tmp_path, cache_root, [*launcher, *TWO_RUNGS])
    client = two_rungs_recorded(sweep)
    submitted = [path.read_text() for path in sweep.sweep_dir.glob(".submitit/*/*_submission.sh")]
    assert any("#SBATCH --array=0-1%2" in script for script in submitted)  # rung 1: both variants, one array
    assert len(list(sweep.sweep_dir.glob(".submitit/*/*_result.pkl"))) == 4  # each variant's two rungs: a job each
    for run in client.search_runs([client.get_experiment_by_name("freeze-sweep").experiment_id]):
        if run.data.tags.get(names.ROLE) == names.ROLE_VARIANT:
            setups = {m.step: m.value for m in client.get_metric_history(run.info.run_id, names.SETUP_TIME)}
            assert setups[2] > 1.0, setups  # a new process: the interpreter and torch imported again
