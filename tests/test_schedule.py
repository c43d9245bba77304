"""Freeze schedules: bad input refused in one line, and real tiny trainings checked layer by layer.

The per-epoch checkpoints (save_period=1) hold only the EMA, in FP16 ("model" is None), so that is
what is compared. It is exact for frozen layers: the EMA lerps toward the model and lerp(x, x, w) == x,
so a frozen layer's EMA is bit-for-bit the base, and FP16 -> FP32 -> FP16 round-trips exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from sweep.demo.data import DemoDataSpec, ensure_dataset
from sweep.errors import ConfigError
from sweep.freeze import Architecture, architecture_of, count_parameters
from sweep.schedule import (
    FreezeSchedule,
    check_single_device,
    resolve_schedule,
    schedule_callbacks,
    trainable_params,
)
from sweep.training import train
from sweep.variant import plain
from tests.conftest import compose_config

EPOCHS = 4
ARGS = dict(
    epochs=EPOCHS,
    imgsz=64,
    batch=8,
    nbs=8,  # one optimizer step per batch: two per epoch
    workers=0,
    device="cpu",
    seed=0,
    deterministic=True,
    optimizer="SGD",
    lr0=0.01,
    warmup_epochs=1.0,
    val=False,
    plots=False,
    save_period=1,
)


@dataclass(frozen=True)
class Network:
    arch: Architecture
    model: DetectionModel


@pytest.fixture(scope="module")
def yolov8n() -> Network:
    model_yaml = yaml_model_load("yolov8n.yaml")
    return Network(architecture_of(model_yaml, "yolov8n"), DetectionModel(model_yaml, nc=3, verbose=False))


def schedule_of(net: Network, freeze: object = "none", unfreeze_epoch=None, freeze_schedule=None, epochs=EPOCHS):
    return resolve_schedule(freeze, unfreeze_epoch, freeze_schedule, net.arch, epochs, net.model)


# ---- what a config resolves to ----


def test_no_schedule_keeps_plain_freezing(yolov8n: Network) -> None:
    assert schedule_of(yolov8n, "backbone") is None


def test_unfreeze_epoch_freezes_epochs_one_to_k(yolov8n: Network) -> None:
    schedule = schedule_of(yolov8n, "backbone", unfreeze_epoch=3, epochs=10)
    assert [schedule.layers_at(e) for e in (1, 3, 4, 10)] == [tuple(range(10)), tuple(range(10)), (), ()]
    assert schedule.first_layers == tuple(range(10))
    assert schedule.label == "backbone -> none @4"
    assert schedule.as_param() == "[[1,[0,1,2,3,4,5,6,7,8,9]],[4,[]]]"


def test_unfreeze_epoch_zero_is_plain_full_fine_tuning(yolov8n: Network) -> None:
    schedule = schedule_of(yolov8n, "backbone", unfreeze_epoch=0)
    assert (schedule.switches, schedule.first_layers, schedule.label) == (False, (), "none")


def test_gradual_schedule_from_hydra_overrides(tmp_path: Path, yolov8n: Network) -> None:
    """The issue's own syntax, through the real config; `++` works whether or not config.yaml has the key."""
    cfg = compose_config(tmp_path, ["train.epochs=8", "++freeze_schedule={1: all_but_head, 4: backbone, 7: [0,1,2]}"])
    schedule = schedule_of(yolov8n, cfg.freeze, freeze_schedule=plain(cfg.freeze_schedule), epochs=cfg.train.epochs)
    assert schedule.label == "all_but_head -> backbone @4 -> [0,1,2] @7"
    all_but_head, backbone, first_three = tuple(range(22)), tuple(range(10)), (0, 1, 2)
    expected = [all_but_head, backbone, backbone, first_three, first_three]
    assert [schedule.layers_at(e) for e in (3, 4, 6, 7, 8)] == expected


def test_schedule_epoch_one_defaults_to_freeze_and_keys_may_be_strings(yolov8n: Network) -> None:
    from_yaml = plain(OmegaConf.create({"3": "backbone", "4": 0}))  # as the door hands it on
    schedule = schedule_of(yolov8n, "all_but_head", freeze_schedule=from_yaml)
    assert schedule.label == "all_but_head -> backbone @3 -> 0 @4"


def test_a_hydra_list_freeze_is_unfrozen_as_a_list(yolov8n: Network) -> None:
    schedule = schedule_of(yolov8n, plain(OmegaConf.create([0, 1, 2])), unfreeze_epoch=1)
    assert (schedule.label, schedule.first_layers) == ("[0,1,2] -> none @2", (0, 1, 2))


def test_an_unchanged_stage_is_no_switch(yolov8n: Network) -> None:
    schedule = schedule_of(yolov8n, freeze_schedule={1: "backbone", 2: 10, 3: "none"})
    assert schedule.label == "backbone -> none @3"
    assert schedule_of(yolov8n, "none", unfreeze_epoch=2).switches is False


BAD = [
    ({"unfreeze_epoch": 4}, "unfreeze_epoch=4 is not valid: use 0..3"),
    ({"unfreeze_epoch": -1}, "unfreeze_epoch=-1 is not valid: use 0..3"),
    ({"unfreeze_epoch": "2"}, "unfreeze_epoch='2' is not valid"),
    ({"unfreeze_epoch": True}, "unfreeze_epoch=True is not valid"),
    ({"unfreeze_epoch": 2, "freeze_schedule": {3: "none"}}, "are both set: use one"),
    ({"freeze_schedule": {5: "none"}}, "freeze_schedule: 5 is not an epoch of this training: use 1..4"),
    ({"freeze_schedule": {0: "none"}}, "freeze_schedule: 0 is not an epoch of this training"),
    ({"freeze_schedule": {"two": "none"}}, "freeze_schedule: 'two' is not an epoch"),
    ({"freeze_schedule": ["backbone", "none"]}, "is not valid: use a mapping from epoch to freeze"),
    ({"freeze_schedule": {}}, "freeze_schedule={} is not valid"),
    ({"freeze_schedule": {3: "head"}}, "freeze_schedule[3]: freeze='head' is not a known preset"),
    ({"freeze_schedule": {3: [0, 99]}}, "freeze_schedule[3]: freeze=[0, 99] has invalid layer indices [99]"),
    ({"freeze_schedule": {1: 23}}, "freeze_schedule[1]: freeze=23 leaves no trainable parameter"),
    ({"freeze_schedule": {1: "backbone", 3: "all_but_head"}}, "freezes layers 10..21, which the stage before"),
    ({"freeze_schedule": {1: [0, 1], 3: [0, 2]}}, "freeze_schedule[3]: [0,2] freezes layers 2, which"),
    ({"freeze": "backbone", "freeze_schedule": {1: "all_but_head"}}, "freeze=backbone conflicts with"),
]


@pytest.mark.parametrize(("given", "expected"), BAD, ids=[expected for _, expected in BAD])
def test_bad_schedules_are_refused_in_one_line(yolov8n: Network, given: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        schedule_of(yolov8n, **given)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_a_switching_schedule_needs_one_device(yolov8n: Network) -> None:
    schedule = schedule_of(yolov8n, "backbone", unfreeze_epoch=2)
    check_single_device(schedule, "0")
    check_single_device(schedule_of(yolov8n, "backbone", unfreeze_epoch=0), "0,1")
    with pytest.raises(ConfigError, match=r"train.device=0,1 with freeze schedule backbone -> none @3"):
        check_single_device(schedule, "0,1")


# ---- real trainings ----


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_dataset(DemoDataSpec("target", 16, 8, 64, 0), tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def base(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretrained start: one epoch from scratch, so frozen layers hold trained weights and BN statistics."""
    return train("yolov8n.yaml", data, tmp_path_factory.mktemp("base") / "run", [], {**ARGS, "epochs": 1}).last


@dataclass
class Recorder:
    """What the trainer does in each epoch (1-based), seen from its own callbacks after the epoch's first step."""

    trainable: dict[int, set[int]] = field(default_factory=dict)  # layers with a parameter that requires grad
    bn_training: dict[int, set[int]] = field(default_factory=dict)  # layers with a BatchNorm in train mode
    stepped: dict[int, set[int]] = field(default_factory=dict)  # layers with optimizer state (momentum buffers)
    trainable_params: dict[int, int] = field(default_factory=dict)

    def callbacks(self) -> dict[str, list[Callable]]:
        return {"on_train_batch_end": [self.first_step], "on_fit_epoch_end": [self.count]}

    def first_step(self, trainer) -> None:
        epoch = trainer.epoch + 1
        if epoch in self.trainable:
            return
        params = list(trainer.model.named_parameters())
        self.trainable[epoch] = {layer_of(n) for n, p in params if p.requires_grad}
        self.stepped[epoch] = {layer_of(n) for n, p in params if p in trainer.optimizer.state}
        self.bn_training[epoch] = {
            layer_of(n) for n, m in trainer.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training
        }

    def count(self, trainer) -> None:
        self.trainable_params[trainer.epoch + 1] = trainable_params(trainer)


def layer_of(name: str) -> int:
    return int(name.split(".")[1])  # "model.12.cv1.conv.weight" -> 12


def merged(*callbacks: Mapping[str, list[Callable]]) -> dict[str, list[Callable]]:
    out: dict[str, list[Callable]] = {}
    for group in callbacks:
        for event, functions in group.items():
            out.setdefault(event, []).extend(functions)
    return out


@dataclass(frozen=True)
class Trained:
    schedule: FreezeSchedule
    save_dir: Path
    recorder: Recorder


def train_with(schedule: FreezeSchedule, base: Path, data: Path, save_dir: Path, extra=None, resume=False) -> Trained:
    recorder = Recorder()
    callbacks = merged(schedule_callbacks(schedule), recorder.callbacks(), extra or {})
    train(base, data, save_dir, list(schedule.first_layers), ARGS, callbacks, resume=resume)
    return Trained(schedule, save_dir, recorder)


@pytest.fixture(scope="module")
def unfrozen_at_3(yolov8n: Network, base: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    schedule = schedule_of(yolov8n, "backbone", unfreeze_epoch=2)
    return train_with(schedule, base, data, tmp_path_factory.mktemp("unfreeze") / "run")


@pytest.fixture(scope="module")
def gradual(yolov8n: Network, base: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    schedule = schedule_of(yolov8n, freeze_schedule={1: "all_but_head", 2: "backbone", 4: "none"})
    return train_with(schedule, base, data, tmp_path_factory.mktemp("gradual") / "run")


class Killed(Exception):
    """Stands in for a job killed after an epoch's checkpoint was written."""


@pytest.fixture(scope="module")
def resumed(yolov8n: Network, base: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """unfreeze_epoch=2, killed after epoch 3 (past the switch), resumed by ultralytics from last.pt."""
    schedule = schedule_of(yolov8n, "backbone", unfreeze_epoch=2)
    save_dir = tmp_path_factory.mktemp("resume") / "run"

    def kill_after_epoch_3(trainer) -> None:
        if trainer.epoch + 1 == 3:
            raise Killed

    with pytest.raises(Killed):
        train_with(schedule, base, data, save_dir, extra={"on_fit_epoch_end": [kill_after_epoch_3]})
    assert epochs_in_history(save_dir) == [1, 2, 3]
    return train_with(schedule, base, data, save_dir, resume=True)


def layer_tensors(checkpoint: Path, epoch: int | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """Each layer's parameters and buffers as saved (EMA, FP16), checking the checkpoint is the epoch's."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if epoch is not None:
        assert ckpt["epoch"] == epoch - 1  # ultralytics numbers epochs from 0, in files too: epoch{e-1}.pt
    layers: dict[int, dict[str, torch.Tensor]] = {}
    saved = ckpt.get("ema") or ckpt["model"]  # a finished run's last.pt keeps only "model" (the EMA, stripped)
    for name, tensor in saved.state_dict().items():
        layers.setdefault(layer_of(name), {})[name] = tensor
    return layers


def after_epoch(run: Trained, epoch: int) -> Path:
    return run.save_dir / "weights" / f"epoch{epoch - 1}.pt"


def assert_follows_schedule(run: Trained, base: Path) -> None:
    """Frozen layers are the base bit for bit (weights and BN statistics); trainable ones moved that epoch."""
    before = layer_tensors(base)
    for epoch in range(1, EPOCHS + 1):
        now = layer_tensors(after_epoch(run, epoch), epoch)
        frozen = set(run.schedule.layers_at(epoch))
        for layer, tensors in now.items():
            if layer in frozen:
                assert all(torch.equal(t, before[layer][k]) for k, t in tensors.items()), (epoch, layer)
            else:
                moved = {k for k, t in tensors.items() if not torch.equal(t, before[layer][k])}
                assert any(k.endswith(("weight", "bias")) for k in moved), (epoch, layer, "weights")
                assert any(k.endswith(("running_mean", "running_var")) for k in moved), (epoch, layer, "BN stats")
        before = now


def assert_trainer_state(run: Trained, model: DetectionModel, epochs: range) -> None:
    """requires_grad, BatchNorm modes and optimizer state are what a fresh freeze of each stage would give."""
    with_params = {i for i, m in enumerate(model.model) if any(True for _ in m.parameters())}
    with_bn = {i for i, m in enumerate(model.model) if any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())}
    rec = run.recorder
    assert sorted(rec.trainable) == list(epochs)
    for epoch in epochs:
        frozen = set(run.schedule.layers_at(epoch))
        assert rec.trainable[epoch] == with_params - frozen, epoch
        assert rec.bn_training[epoch] == with_bn - frozen, epoch
        assert rec.stepped[epoch] == with_params - frozen, epoch  # updated from the switch's first step
        assert rec.trainable_params[epoch] == count_parameters(model, sorted(frozen)).trainable, epoch


def epochs_in_history(save_dir: Path) -> list[int]:
    with (save_dir / "results.csv").open() as f:
        return [int(row["epoch"]) for row in csv.DictReader(f, skipinitialspace=True)]


def test_unfreeze_epoch_keeps_layers_at_the_base_until_the_switch(
    unfrozen_at_3: Trained, base: Path, yolov8n: Network
) -> None:
    assert_follows_schedule(unfrozen_at_3, base)
    assert_trainer_state(unfrozen_at_3, yolov8n.model, range(1, EPOCHS + 1))
    assert epochs_in_history(unfrozen_at_3.save_dir) == [1, 2, 3, 4]


def test_gradual_unfreezing_stage_by_stage(gradual: Trained, base: Path, yolov8n: Network) -> None:
    assert [len(gradual.schedule.layers_at(e)) for e in range(1, EPOCHS + 1)] == [22, 10, 10, 0]
    assert_follows_schedule(gradual, base)
    assert_trainer_state(gradual, yolov8n.model, range(1, EPOCHS + 1))


def test_resume_after_the_switch_keeps_the_unfrozen_layers_trainable(
    resumed: Trained, base: Path, yolov8n: Network
) -> None:
    assert_trainer_state(resumed, yolov8n.model, range(4, EPOCHS + 1))  # the resumed process ran epoch 4
    assert_follows_schedule(resumed, base)
    assert epochs_in_history(resumed.save_dir) == [1, 2, 3, 4]
