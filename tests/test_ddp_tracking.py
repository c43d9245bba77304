"""Multi-GPU variants: ultralytics trains in a DDP subprocess where no callback of ours runs, so
per-epoch metrics come from following its results.csv. Checked on CPU with a real training whose
callbacks are left out, exactly what the launching process sees under DDP."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from sweep.tracking.store import open_experiment
from sweep.tracking.variant_run import VariantRun
from sweep.training import train
from sweep.variant import resolve, resolve_job
from tests.conftest import compose_config


@pytest.mark.slow  # over 10 s: `make test-quick` stays under 3 minutes
def test_a_ddp_variant_gets_every_epoch_and_its_final_figures_from_results_csv(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["train.epochs=3", "freeze=backbone"])
    spec = resolve(cfg)
    spec.weights_source.ensure("cpu")
    client, experiment_id = open_experiment(f"sqlite:///{tmp_path}/mlflow.db", "freeze-sweep")
    run_id = client.create_run(experiment_id).info.run_id
    ddp = replace(spec, train_args={**spec.train_args, "device": "0,1"})  # what the run is told
    run = VariantRun.start(client, run_id, ddp, resolve_job(cfg).tracking)
    save_dir = tmp_path / "train"
    with run, run.follow_results(save_dir, after_epoch=0):
        train(spec.checkpoint, spec.data.yaml, save_dir, spec.freeze_layers, spec.train_args, callbacks={})

    results = pd.read_csv(save_dir / "results.csv")
    results.columns = [c.strip() for c in results.columns]
    history = MlflowClient(client.tracking_uri).get_metric_history(run_id, "mAP50")
    assert [m.step for m in history] == [1, 2, 3]
    assert [m.value for m in history] == list(results["metrics/mAP50(B)"])
    epoch_times = [m.value for m in client.get_metric_history(run_id, names.EPOCH_TIME)]
    assert sum(epoch_times) == results["time"].iloc[-1]  # cumulative `time` column turned per epoch
    final = client.get_run(run_id).data.metrics
    assert final[names.BEST["mAP50"]] == results["metrics/mAP50(B)"].iloc[-1]
    assert final[names.TRAIN_TIME] >= results["time"].iloc[-1]
    assert client.get_run(run_id).info.status == "FINISHED"
