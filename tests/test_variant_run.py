"""A variant's run keeps training when the store refuses a write: the refused figures are sent
later, and what never got there is said in the run. With a real SQLite store that refuses every
write to the run while it is deleted, as a store that is away would."""

from __future__ import annotations

import logging

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names, variant_run
from sweep.tracking.store import open_experiment
from sweep.tracking.variant_run import VariantRun
from sweep.variant import resolve, resolve_job
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("variant_run")
    cfg = compose_config(root, [])
    return resolve(cfg), resolve_job(cfg).tracking, root


def new_run(started, name: str) -> tuple[MlflowClient, VariantRun]:
    spec, tracking, root = started
    client, experiment_id = open_experiment(f"sqlite:///{root}/mlflow.db", "freeze-sweep")
    run_id = client.create_run(experiment_id, run_name=name).info.run_id
    return client, VariantRun.start(client, run_id, spec, tracking)


def steps(client: MlflowClient, run_id: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, "mAP50")]


def test_refused_metrics_neither_fail_the_training_nor_get_lost(started, caplog: pytest.LogCaptureFixture) -> None:
    client, run = new_run(started, "refused")
    client.delete_run(run.run_id)  # the store refuses every write to the run from now on
    with caplog.at_level(logging.WARNING):
        run.log_metrics({"mAP50": 0.1}, step=1)
        run.log_metrics({"mAP50": 0.2}, step=2)
    warnings = [r.getMessage() for r in caplog.records if "not recorded in MLflow" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once, not every epoch
    client.restore_run(run.run_id)
    run.log_metrics({"mAP50": 0.3}, step=3)
    assert steps(client, run.run_id) == [1, 2, 3]
    run.close_record()
    assert names.FIGURES_MISSING not in client.get_run(run.run_id).data.tags


def test_what_never_reached_the_store_is_said_in_the_run(started, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(variant_run, "PENDING_MAX", 2)
    client, run = new_run(started, "lost")
    client.delete_run(run.run_id)
    for epoch in (1, 2, 3):
        run.log_metrics({"mAP50": epoch / 10}, step=epoch)
    with run.contained("param freeze_auto"):
        client.log_param(run.run_id, "freeze_auto", "{}")
    client.restore_run(run.run_id)
    run.close_record()
    assert steps(client, run.run_id) == [2, 3]  # the oldest point went when the buffer was full
    missing = client.get_run(run.run_id).data.tags[names.FIGURES_MISSING]
    assert missing.startswith("1 metric points (MlflowException: ")
    assert "; param freeze_auto (MlflowException: " in missing
