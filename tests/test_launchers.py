"""Other Hydra launchers: jobs in other processes still find their sweep's parent run."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import run_sweep

pytestmark = pytest.mark.slow


def test_submitit_jobs_log_under_the_sweeps_parent_run(tmp_path: Path, cache_root: Path) -> None:
    """submitit_local runs each job as its own submitit process, exactly as on SLURM minus the queue."""
    sweep = run_sweep(tmp_path, cache_root, ["hydra/launcher=submitit_local", "freeze=0,10"])
    assert sweep.result.returncode == 0, sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_PARENT]
    children = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    assert sorted(r.info.run_name for r in children) == ["0/23 · yolov8n-demo", "10/23 · yolov8n-demo"]
    assert all(r.data.tags[names.PARENT_RUN_ID] == parent.info.run_id for r in children)
    assert all(r.info.status == "FINISHED" for r in [parent, *children])
