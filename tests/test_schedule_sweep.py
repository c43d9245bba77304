"""A freeze schedule swept through the CLI like any freeze level: named, hashed, tracked."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import run_sweep

pytestmark = pytest.mark.slow


def test_unfreeze_epochs_sweep_as_variants_of_their_own(tmp_path: Path, cache_root: Path) -> None:
    sweep = run_sweep(tmp_path, cache_root, ["freeze=backbone", "unfreeze_epoch=1,null"])
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = {
        r.info.run_name: r
        for r in client.search_runs([experiment.experiment_id], f"tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'")
    }
    assert set(runs) == {"backbone -> none @2 10/23 · yolov8n-demo", "backbone 10/23 · yolov8n-demo"}
    scheduled = runs["backbone -> none @2 10/23 · yolov8n-demo"]
    fixed = runs["backbone 10/23 · yolov8n-demo"]
    assert scheduled.data.tags[names.CONFIG_HASH] != fixed.data.tags[names.CONFIG_HASH]
    assert scheduled.data.params[names.P_FREEZE_SCHEDULE] == "[[1,[0,1,2,3,4,5,6,7,8,9]],[2,[]]]"
    assert names.P_FREEZE_SCHEDULE not in fixed.data.params

    def trainable(run) -> list[float]:
        return [m.value for m in client.get_metric_history(run.info.run_id, names.TRAINABLE_PARAMS)]

    before, after = trainable(scheduled)
    assert before == int(scheduled.data.params[names.P_PARAMS_TRAINABLE]) and after > before
    assert trainable(fixed) == [before, before]
