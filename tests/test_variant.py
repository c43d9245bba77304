"""Bad input is refused with one line naming the value and what is accepted, before training."""

from __future__ import annotations

from pathlib import Path

import pytest

from sweep.errors import ConfigError
from sweep.variant import describe, resolve
from tests.conftest import TINY, compose_config, run_cli


def test_a_valid_variant_resolves_its_freeze_and_counts(cache_root: Path) -> None:
    spec = resolve(compose_config(cache_root, ["freeze=[0,1,2]"]))
    assert spec.freeze_layers == (0, 1, 2)
    assert isinstance(spec.freeze, list)  # a plain list, never a ListConfig
    assert spec.params.frozen > 0 and spec.params.trainable > 0
    assert spec.data.nc == 3
    assert spec.train_args["device"] == "cpu"
    assert "layers 0..2 (3/23 frozen)" in describe(spec)
    assert spec.run_name == "[0,1,2] 3/23 · yolov8n-demo"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["freeze=head_only"], "freeze='head_only' is not a known preset"),
        (["freeze=-3"], "freeze=-3 is negative"),
        (["freeze=99"], "freeze=99 is beyond yolov8n-demo's 23 layers"),
        (["freeze=23"], "freeze=23 leaves no trainable parameter in yolov8n-demo"),
        (["train.epochs=0"], "train.epochs=0 is not valid: use a positive integer"),
        (["train.imgsz=-32"], "train.imgsz=-32 is not valid: use a positive integer"),
        (["train.batch=0"], "train.batch=0 is not valid: use a positive integer, -1 (AutoBatch)"),
        (["train.batch=1.5"], "train.batch=1.5 is not valid"),
        (
            ["train.optimizer=Adamm"],
            "train.optimizer=Adamm: Optimizer 'Adamm' not found in list of available optimizers",
        ),
        (["train.device=cuda:7"], "train.device=cuda:7: Invalid CUDA 'device=7' requested"),
        (["train.device=3"], "(available here: cpu"),
        (["train.lr0=fast"], "train: "),
        (["model.weights=/nowhere/best.pt"], "model.weights=/nowhere/best.pt: no such file"),
        (["model.weights=yolov8s.pt"], "checkpoint yolov8s.pt is not on disk and there is no internet"),
        (["data.yaml=/nowhere/data.yaml"], "data.yaml=/nowhere/data.yaml (/nowhere/data.yaml)"),
        (["data.task=far"], "data.task='far' is not a demo task; use one of: source, target, near"),
        # values ultralytics would change without a word: refused, naming what it would use
        (["train.imgsz=7"], "train.imgsz=7: ultralytics would train at 32 (a multiple of the model's stride 32)"),
        (["train.imgsz=100"], "train.imgsz=100: ultralytics would train at 128"),
        (
            ["train.batch=-1"],
            "train.batch=-1: AutoBatch needs a CUDA GPU; on train.device=cpu ultralytics would train with batch 16",
        ),
        (["train.batch=0.5"], "train.batch=0.5: AutoBatch needs a CUDA GPU"),
    ],
)
def test_bad_input_is_one_clear_line(cache_root: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(compose_config(cache_root, overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_what_the_trainer_changes_silently_is_recorded_as_it_trains(cache_root: Path) -> None:
    """On CPU ultralytics' trainer sets workers=0 (engine/trainer.py): the record says 0, not the 2 asked."""
    from ultralytics.utils.checks import check_imgsz

    spec = resolve(compose_config(cache_root, ["train.workers=2", "train.imgsz=96"]))
    assert spec.train_args["workers"] == 0
    assert spec.train_args["imgsz"] == check_imgsz(96, stride=32, floor=32, max_dim=1) == 96  # kept: the trainer's own


def test_a_text_file_as_weights_is_refused_in_exactly_one_line(tmp_path: Path) -> None:
    weights = tmp_path / "best.pt"
    weights.write_text("not a checkpoint\n")
    result = run_cli([f"model.weights={weights}", *TINY], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(
        f"freeze-sweep: error: model.weights={weights}: not a readable ultralytics checkpoint"
    )
    assert not (tmp_path / "outputs" / "mlflow.db").exists()


def test_a_dataset_that_is_not_on_disk_offline_is_one_clear_line(cache_root: Path) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(compose_config(cache_root, ["data=voc", "train.device=cpu"], shrink=False))
    assert str(error.value).startswith("data.yaml=VOC.yaml (VOC.yaml): Dataset 'VOC.yaml' images not found")
    assert "offline" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "freeze=none,head_only"], "freeze='head_only' is not a known preset"),
        (["freeze=-1"], "freeze=-1 is negative"),
        (["-m", "model=nonexistent"], "model=nonexistent is not a model option: use one of demo,"),
        (["data=nowhere"], "data=nowhere is not a data option: use one of coco128, demo, voc"),
        (["train.mosiac=0"], "train.mosiac is not an ultralytics training argument: did you mean train.mosaic?"),
    ],
)
def test_cli_refuses_bad_input_before_anything_trains(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli([*args, *TINY], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()  # nothing recorded
    assert not list(tmp_path.glob("outputs/cache/demo-base-*"))  # nothing trained


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(cuda_available(), reason="asserts the CPU is chosen on a machine without a GPU")
def test_device_is_the_cpu_without_a_gpu() -> None:
    from sweep import variant

    assert variant.resolve_device(None) == "cpu"


def test_device_an_explicit_value_wins_and_a_gpu_box_validates_on_gpu_0(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sweep import variant

    assert variant.resolve_device("0,1") == "0,1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # faked: no GPU here
    assert variant.resolve_device(None) == "0"  # each job then leases its own GPU
