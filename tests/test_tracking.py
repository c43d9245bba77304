"""Every variant is an MLflow child run of its sweep's parent run, read back from a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from sweep.tracking import names
from tests.conftest import ROOT, Sweep, run_sweep

pytestmark = pytest.mark.slow
EPOCHS = 2


def sweep_runs(sweep: Sweep) -> tuple[MlflowClient, list, list]:
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_PARENT]
    children = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    return client, parents, children


def test_one_parent_three_children_and_no_stray_experiment(tiny_sweep: Sweep) -> None:
    client, parents, children = sweep_runs(tiny_sweep)
    assert sorted(e.name for e in client.search_experiments()) == ["Default", "freeze-sweep"]
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[names.SWEEP_ID] == "tiny"
    assert "experiment=tiny" in parent.data.tags[names.OVERRIDES]
    assert parent.data.tags["versions.ultralytics"][0].isdigit()
    assert all(c.data.tags[names.PARENT_RUN_ID] == parent.info.run_id for c in children)
    assert [c.info.run_name for c in children] == [
        "none 0/23 · yolov8n-demo",
        "backbone 10/23 · yolov8n-demo",
        "all_but_head 22/23 · yolov8n-demo",
    ]
    assert not (ROOT / "mlruns").exists() and not (tiny_sweep.root / "mlruns").exists()


def test_params_describe_the_resolved_variant_not_ultralytics_args(tiny_sweep: Sweep) -> None:
    _, _, children = sweep_runs(tiny_sweep)
    backbone = children[1].data.params
    assert backbone[names.P_FREEZE] == "backbone"
    assert backbone[names.P_FREEZE_LAYERS] == "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    assert backbone[names.P_FROZEN_LAYERS] == "10"
    total, trainable, frozen = (
        int(backbone[k]) for k in (names.P_PARAMS_TOTAL, names.P_PARAMS_TRAINABLE, names.P_PARAMS_FROZEN)
    )
    assert total == trainable + frozen and frozen > 0
    assert float(backbone[names.P_TRAINABLE_PCT]) == pytest.approx(100 * trainable / total, abs=0.01)
    assert backbone["train.epochs"] == str(EPOCHS) and backbone[names.P_MODEL] == "yolov8n-demo"
    assert Path(backbone[names.P_WEIGHTS]).is_file()
    assert "mosaic" not in backbone and len(backbone) < 50  # not ultralytics' ~114 trainer args


def test_per_epoch_histories_final_metrics_and_resources(tiny_sweep: Sweep) -> None:
    client, _, children = sweep_runs(tiny_sweep)
    for child in children:
        run_id = child.info.run_id
        for key in (
            *names.EPOCH_METRICS,
            *names.TRAIN_LOSSES,
            *names.VAL_LOSSES,
            names.LR,
            names.EPOCH_TIME,
            names.IMAGES_PER_S,
        ):
            assert [m.step for m in client.get_metric_history(run_id, key)] == list(range(1, EPOCHS + 1)), key
        metrics = child.data.metrics
        assert all(k in metrics for k in (*names.BEST.values(), names.TRAIN_TIME))
        assert metrics[names.TRAIN_TIME] > 0 and metrics[names.IMAGES_PER_S] > 0
        assert metrics[names.CPU_PEAK_RSS] > 100  # MB: torch alone is bigger
        assert names.CPU_UTIL_MEAN in metrics
        assert child.data.tags[names.DEVICE] == "cpu"
        assert not any(k.startswith("gpu/") for k in metrics)  # absent, not zero, on CPU
        assert any(k.startswith("system/cpu_utilization") for k in metrics)  # MLflow's system metrics
        assert len(client.get_metric_history(run_id, names.CPU_RSS)) >= 1


def test_artifacts_of_each_variant(tiny_sweep: Sweep) -> None:
    client, _, children = sweep_runs(tiny_sweep)
    for child in children:
        top = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"results.csv", "train.log", "freeze-sweep.log", "config", "plots", "weights"} <= top
        config = {a.path for a in client.list_artifacts(child.info.run_id, "config")}
        assert "config/config.yaml" in config
        resolved = Path(client.download_artifacts(child.info.run_id, "config/resolved.yaml")).read_text()
        assert "${" not in resolved and f"uri: {tiny_sweep.tracking_uri}" in resolved
        assert f"config_hash: {child.data.tags[names.CONFIG_HASH]}" in resolved
        plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
        assert "plots/results.png" in plots
        assert [a.path for a in client.list_artifacts(child.info.run_id, "weights")] == [names.ARTIFACT_WEIGHTS]
        log = Path(client.download_artifacts(child.info.run_id, "train.log")).read_text()
        assert "Starting training for 2 epochs" in log


def test_a_crashing_variant_is_failed_with_its_partial_metrics(tmp_path: Path, cache_root: Path) -> None:
    env_fault = {"FREEZE_SWEEP_FAULT": "frozen=10,epoch=2,error=oom", "PYTHONPATH": str(ROOT / "tests" / "faults")}
    sweep = run_sweep(tmp_path, cache_root, [], env=env_fault)
    assert sweep.result.returncode != 0
    assert "2/3 variants finished" in sweep.result.stdout
    assert "FAILED backbone 10/23 · yolov8n-demo: OutOfMemoryError" in sweep.result.stdout
    assert "hint: out of memory: try a smaller train.batch" in sweep.result.stdout
    client, parents, children = sweep_runs(sweep)
    assert [c.info.status for c in children] == ["FINISHED", "FAILED", "FINISHED"]
    failed = children[1]
    assert "OutOfMemoryError" in failed.data.tags[names.ERROR]
    assert [m.step for m in client.get_metric_history(failed.info.run_id, "mAP50")] == [1]  # partial, kept
    assert parents[0].info.status == "FAILED"
