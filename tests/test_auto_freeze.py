"""freeze=auto: the rule on its own, bad knobs refused in one line, and real tiny trainings checked layer by layer.

As in tests/test_schedule.py, the per-epoch checkpoints (save_period=1) hold the EMA in FP16, and that
is what is compared: a layer auto froze must be bit-identical (weights and BatchNorm statistics) in every
checkpoint from its freezing epoch on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

import sweep.auto_freeze
from sweep.auto_freeze import (
    STATE_FILE,
    AutoFreeze,
    AutoFreezer,
    chosen_schedule,
    frozen_prefix,
    layer_of,
    resolve_auto_freeze,
    settled,
)
from sweep.errors import ConfigError
from sweep.freeze import architecture_of
from sweep.tracking import names
from sweep.training import merged, train
from sweep.variant import resolve
from tests import test_schedule
from tests.conftest import compose_config, run_sweep
from tests.test_schedule import ARGS as SCHEDULE_ARGS

EPOCHS = 5
ARGS = {**SCHEDULE_ARGS, "epochs": EPOCHS}  # the schedule tests' tiny trainings, one epoch longer
# Decides as early as it can (after epoch 2, for epoch 3 on; tiny trainings settle by this much), up to the backbone.
POLICY = AutoFreeze("none", 0, 10, threshold=0.9, patience=1)
WEIGHTED = [i for i in range(23) if i not in (10, 11, 13, 14, 17, 20)]  # yolov8n: Upsample and Concat have none


def policy(**knobs) -> AutoFreeze:
    return AutoFreeze(**{**POLICY.__dict__, **knobs})


def record(epoch: int, frozen: int, plasticity: dict[int, float]) -> dict:
    return {"epoch": epoch, "frozen": frozen, "plasticity": {str(k): v for k, v in plasticity.items()}}


# ---- the rule ----


def test_a_layer_settles_after_patience_epochs_below_threshold_of_its_peak() -> None:
    rule = policy(threshold=0.5, patience=2)
    assert not settled([2.0, 0.9], rule)  # not enough epochs yet
    assert settled([1.0, 2.0, 0.9, 0.5], rule)  # peak 2.0 (after a warmup epoch): both below 1.0
    assert not settled([1.0, 2.0, 0.9, 1.1], rule)
    assert not settled([1.0, 2.0, 1.0, 0.5], rule)  # not strictly below
    assert not settled([0.1, 0.2, 0.3, 0.4], rule)  # still rising


def test_the_prefix_grows_over_settled_layers_and_stops_at_the_first_that_still_learns() -> None:
    rule = policy(threshold=0.5, max_layers=22)
    early = {i: 1.0 for i in WEIGHTED}
    late = {**{i: 0.1 for i in WEIGHTED}, 12: 0.8}  # all settled but layer 12
    records = [record(1, 0, early), record(2, 0, late)]
    assert frozen_prefix(records, rule, WEIGHTED) == 10  # layers 10, 11 have no weights: 0..9
    assert frozen_prefix(records[:1], rule, WEIGHTED) == 0
    assert frozen_prefix(records, policy(threshold=0.5, max_layers=6), WEIGHTED) == 6
    all_settled = [record(1, 0, early), record(2, 0, {i: 0.1 for i in WEIGHTED})]
    assert frozen_prefix(all_settled, rule, WEIGHTED) == 22  # never the head


def test_the_prefix_never_shrinks_and_starts_at_start() -> None:
    rule = policy(threshold=0.5, start_layers=4, start=4)
    assert frozen_prefix([], rule, WEIGHTED) == 4
    records = [record(1, 4, {i: 1.0 for i in WEIGHTED if i >= 4}), record(2, 7, {i: 1.0 for i in WEIGHTED if i >= 7})]
    assert frozen_prefix(records, rule, WEIGHTED) == 7  # nothing settled: keeps what it froze


def test_the_chosen_schedule_is_written_as_schedules_are() -> None:
    records = [record(1, 0, {}), record(2, 0, {}), record(3, 10, {}), record(4, 10, {}), record(5, 16, {})]
    schedule = chosen_schedule(records, POLICY)
    assert schedule.label == "none -> 10 @3 -> 16 @5"
    assert schedule.as_param() == "[[1,[]],[3,[0,1,2,3,4,5,6,7,8,9]],[5,[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]]]"


# ---- config ----

AUTO = ["freeze=auto", "train.epochs=4"]
BAD = [
    (["freeze=auto"], "freeze=auto needs train.epochs of 3 or more (got 2)"),
    (["freeze=auto", "train.epochs=3"], "freeze_auto.patience=2 is not valid: use 1..1 epochs (a peak, then patience"),
    ([*AUTO, "freeze_auto.threshold=-0.1"], "freeze_auto.threshold=-0.1 is not valid: use a fraction in (0, 1)"),
    ([*AUTO, "freeze_auto.threshold=1"], "freeze_auto.threshold=1 is not valid"),
    ([*AUTO, "freeze_auto.threshold=true"], "freeze_auto.threshold=True is not valid"),
    ([*AUTO, "freeze_auto.start=99"], "freeze_auto.start: freeze=99 is beyond yolov8n-demo's 23 layers"),
    ([*AUTO, "freeze_auto.start=head"], "freeze_auto.start: freeze='head' is not a known preset"),
    ([*AUTO, "freeze_auto.start=[0,3]"], "freeze_auto.start=[0,3] is not a prefix of the layers before the head"),
    ([*AUTO, "freeze_auto.max=23"], "freeze_auto.max: freeze=23 leaves no trainable parameter"),
    ([*AUTO, "freeze_auto.start=backbone", "freeze_auto.max=5"], "freeze_auto.max=5 (5 layers) is below"),
    ([*AUTO, "freeze_auto.patience=0"], "freeze_auto.patience=0 is not valid: use 1..2 epochs"),
    ([*AUTO, "freeze_auto.patience=1.5"], "freeze_auto.patience=1.5 is not valid"),
    ([*AUTO, "unfreeze_epoch=1"], "freeze=auto with unfreeze_epoch set"),
    ([*AUTO, "++freeze_schedule={3: none}"], "freeze=auto with freeze_schedule set"),
]


@pytest.mark.parametrize(("overrides", "expected"), BAD, ids=[expected for _, expected in BAD])
def test_bad_knobs_are_refused_in_one_line(cache_root: Path, overrides: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        resolve(compose_config(cache_root, overrides))
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_auto_needs_one_device() -> None:
    model_yaml = yaml_model_load("yolov8n.yaml")
    model = DetectionModel(model_yaml, nc=3, verbose=False)
    knobs = {"start": "none", "max": "all_but_head", "threshold": 0.5, "patience": 2}
    arch = architecture_of(model_yaml, "yolov8n")
    assert resolve_auto_freeze(knobs, arch, 4, model, "0").max_layers == 22
    with pytest.raises(ConfigError, match=r"^train.device=0,1 with freeze=auto: adaptive freezing needs one device"):
        resolve_auto_freeze(knobs, arch, 4, model, "0,1")


def test_the_config_hash_covers_the_knobs_and_leaves_fixed_levels_alone(cache_root: Path) -> None:
    def spec(*overrides: str):
        return resolve(compose_config(cache_root, ["train.epochs=4", *overrides]))

    auto = spec("freeze=auto")
    assert (auto.run_name, auto.freeze_layers) == ("auto 0/23 · yolov8n-demo", ())
    assert auto.config_hash() != spec("freeze=auto", "freeze_auto.threshold=0.7").config_hash()
    assert auto.config_hash() != spec("freeze=auto", "freeze_auto.max=backbone").config_hash()
    assert auto.config_hash() != spec("freeze=none").config_hash()
    assert spec("freeze=none").config_hash() == spec("freeze=none", "freeze_auto.threshold=0.5").config_hash()
    started = spec("freeze=auto", "freeze_auto.start=backbone")
    assert (started.run_name, len(started.freeze_layers)) == ("auto from backbone 10/23 · yolov8n-demo", 10)


# ---- real trainings ----

# The schedule tests' tiny data set and pretrained base (module-scoped: built again for this module).
data = test_schedule.data
base = test_schedule.base


@dataclass
class Recorder:
    """What the trainer does in each epoch (1-based), seen at its first optimizer step and its end."""

    trainable: dict[int, set[int]] = field(default_factory=dict)  # layers with a parameter that requires grad
    bn_training: dict[int, set[int]] = field(default_factory=dict)  # layers with a BatchNorm in train mode
    with_grad: dict[int, set[int]] = field(default_factory=dict)  # layers with a gradient at the first step
    graph: dict[int, set[int]] = field(default_factory=dict)  # layers whose output autograd tracked
    ema_is_model: dict[int, set[int]] = field(default_factory=dict)  # layers whose EMA equals the model, at epoch end

    def callbacks(self) -> dict[str, list[Callable]]:
        return {"on_train_start": [self.hook], "on_train_epoch_end": [self.compare_ema]}

    def hook(self, trainer) -> None:
        trainer.optimizer.register_step_pre_hook(lambda *_: self.first_step(trainer))
        for index, module in enumerate(trainer.model.model):
            module.register_forward_hook(lambda _m, _i, out, index=index: self.forward(trainer, index, out))

    def forward(self, trainer, index: int, output) -> None:
        epoch = trainer.epoch + 1
        if trainer.model.training and epoch not in self.with_grad:  # the epoch's first batch, before its step
            tensors = output if isinstance(output, (list, tuple)) else [output]
            if any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
                self.graph.setdefault(epoch, set()).add(index)

    def first_step(self, trainer) -> None:
        epoch = trainer.epoch + 1
        if epoch in self.with_grad:
            return
        params = list(trainer.model.named_parameters())
        self.trainable[epoch] = {layer_of(n) for n, p in params if p.requires_grad}
        self.with_grad[epoch] = {layer_of(n) for n, p in params if p.grad is not None}
        self.bn_training[epoch] = {
            layer_of(n) for n, m in trainer.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d) and m.training
        }

    def compare_ema(self, trainer) -> None:
        model, ema = trainer.model.state_dict(), trainer.ema.ema.state_dict()
        layers: dict[int, bool] = {}
        for name, tensor in ema.items():
            if tensor.dtype.is_floating_point and name.startswith("model."):
                same = torch.equal(tensor, model[name])
                layers[layer_of(name)] = layers.get(layer_of(name), True) and same
        self.ema_is_model[trainer.epoch + 1] = {layer for layer, same in layers.items() if same}


@dataclass(frozen=True)
class Trained:
    save_dir: Path
    recorder: Recorder

    @property
    def records(self) -> list[dict]:
        return json.loads((self.save_dir / STATE_FILE).read_text())["records"]

    def frozen(self, epoch: int) -> set[int]:
        return set(range(self.records[epoch - 1]["frozen"]))


def train_auto(base: Path, data: Path, save_dir: Path, extra=None, resume=False) -> Trained:
    recorder = Recorder()
    callbacks = merged(AutoFreezer(POLICY).callbacks(), recorder.callbacks(), extra or {})
    train(base, data, save_dir, [], ARGS, callbacks, resume=resume)
    return Trained(save_dir, recorder)


@pytest.fixture(scope="module")
def auto(base: Path, data: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return train_auto(base, data, tmp_path_factory.mktemp("auto") / "run")


def layer_tensors(checkpoint: Path, epoch: int) -> dict[int, dict[str, torch.Tensor]]:
    """Each layer's parameters and buffers as saved (EMA, FP16), checking the checkpoint is the epoch's."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == epoch - 1  # ultralytics numbers epochs from 0, in files too: epoch{e-1}.pt
    layers: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in ckpt["ema"].state_dict().items():
        layers.setdefault(layer_of(name), {})[name] = tensor
    return layers


def assert_follows_decisions(run: Trained) -> None:
    """From its freezing epoch on a layer is bit-identical in every checkpoint (weights and BN statistics);
    a trainable layer's weights and BN statistics moved in every epoch."""
    frozen_since: dict[int, dict[str, torch.Tensor]] = {}
    before = None
    for epoch in range(1, EPOCHS + 1):
        now = layer_tensors(run.save_dir / "weights" / f"epoch{epoch - 1}.pt", epoch)
        for layer, tensors in now.items():
            if layer in run.frozen(epoch):
                first = frozen_since.setdefault(layer, tensors)
                assert all(torch.equal(t, first[k]) for k, t in tensors.items()), (epoch, layer)
            elif before is not None:
                moved = {k for k, t in tensors.items() if not torch.equal(t, before[layer][k])}
                assert any(k.endswith(("weight", "bias")) for k in moved), (epoch, layer, "weights")
                assert any(k.endswith(("running_mean", "running_var")) for k in moved), (epoch, layer, "BN stats")
        before = now


def assert_no_backward_through_the_prefix(run: Trained, epochs: range) -> None:
    """requires_grad and BatchNorm modes as a fresh freeze of the prefix gives; no gradient and no autograd
    graph in it; its EMA is the model's weights exactly."""
    model = DetectionModel(yaml_model_load("yolov8n.yaml"), nc=3, verbose=False)
    with_params = {i for i, m in enumerate(model.model) if any(True for _ in m.parameters())}
    with_bn = {i for i, m in enumerate(model.model) if any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())}
    rec = run.recorder
    for epoch in epochs:
        frozen = run.frozen(epoch)
        assert rec.trainable[epoch] == with_params - frozen, epoch
        assert rec.bn_training[epoch] == with_bn - frozen, epoch
        assert rec.with_grad[epoch] == with_params - frozen, epoch
        assert not rec.graph.get(epoch, set()) & frozen, epoch
        assert frozen <= rec.ema_is_model[epoch], epoch


def test_auto_freezes_a_growing_prefix_and_keeps_it_bit_identical(auto: Trained) -> None:
    frozen = [r["frozen"] for r in auto.records]
    assert frozen[:2] == [0, 0] and frozen[-1] > 0, frozen  # it decided, and no earlier than the rule allows
    assert frozen == sorted(frozen) and max(frozen) <= 22
    assert [r["epoch"] for r in auto.records] == list(range(1, EPOCHS + 1))
    assert all(str(layer) not in r["plasticity"] for r in auto.records for layer in range(r["frozen"]))
    assert_follows_decisions(auto)
    assert_no_backward_through_the_prefix(auto, range(1, EPOCHS + 1))


def test_the_same_seed_makes_the_same_decisions(auto: Trained, base: Path, data: Path, tmp_path: Path) -> None:
    again = train_auto(base, data, tmp_path / "run")
    assert again.records == auto.records


def test_the_check_fails_when_the_freezing_is_switched_off(
    base: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure injection: the policy decides as before but nothing freezes; the verification must notice."""
    monkeypatch.setattr(sweep.auto_freeze, "freeze_layers", lambda *_: None)
    unfrozen = train_auto(base, data, tmp_path / "run")
    assert unfrozen.records[-1]["frozen"] > 0
    with pytest.raises(AssertionError):
        assert_follows_decisions(unfrozen)


class Killed(Exception):
    """Stands in for a job killed after an epoch's checkpoint was written."""


def test_a_resume_across_a_decision_continues_from_the_decisions_so_far(
    auto: Trained, base: Path, data: Path, tmp_path: Path
) -> None:
    decided = next(r["epoch"] for r in auto.records if r["frozen"] > 0)  # the first epoch with a frozen prefix
    save_dir = tmp_path / "run"

    def kill_after(trainer) -> None:
        if trainer.epoch + 1 == decided:
            raise Killed

    with pytest.raises(Killed):
        train_auto(base, data, save_dir, extra={"on_fit_epoch_end": [kill_after]})
    before_kill = json.loads((save_dir / STATE_FILE).read_text())["records"]
    assert before_kill == auto.records[:decided]  # the same seed made the same decisions up to the kill
    resumed = train_auto(base, data, save_dir, resume=True)
    assert resumed.records[:decided] == before_kill  # restored, not re-decided
    assert sorted(resumed.recorder.trainable) == list(range(decided + 1, EPOCHS + 1))  # the resumed process
    for epoch in range(decided + 1, EPOCHS + 1):  # each later epoch froze what the rule says from the history so far
        assert resumed.records[epoch - 1]["frozen"] == frozen_prefix(resumed.records[: epoch - 1], POLICY, WEIGHTED)
    assert_follows_decisions(resumed)
    assert_no_backward_through_the_prefix(resumed, range(decided + 1, EPOCHS + 1))


# ---- through the CLI, beside fixed levels ----

TINY_AUTO = ["freeze_auto.threshold=0.9", "freeze_auto.patience=1", "freeze_auto.max=backbone", "train.epochs=4"]


@pytest.mark.slow
def test_auto_beside_fixed_levels_is_tracked_and_reported(tmp_path: Path, cache_root: Path) -> None:
    sweep = run_sweep(tmp_path, cache_root, ["freeze=none,auto", *TINY_AUTO])
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    client = MlflowClient(sweep.tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    runs = {
        r.data.params[names.P_FREEZE]: r
        for r in client.search_runs([experiment.experiment_id], f"tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'")
    }
    assert set(runs) == {"none", "auto"}
    auto, fixed = runs["auto"], runs["none"]
    assert auto.data.tags[names.CONFIG_HASH] != fixed.data.tags[names.CONFIG_HASH]
    params = auto.data.params
    assert json.loads(params[names.P_FREEZE_AUTO]) == {
        "start": 0, "max": 10, "threshold": 0.9, "patience": 1
    }  # fmt: skip
    frozen = {m.step: int(m.value) for m in client.get_metric_history(auto.info.run_id, names.M_FROZEN_LAYERS)}
    assert sorted(frozen) == [0, 1, 2, 3, 4] and frozen[0] == frozen[1] == frozen[2] == 0 < frozen[4] <= 10, frozen
    steps = [(epoch, frozen[epoch]) for epoch in (3, 4) if frozen[epoch] != frozen[epoch - 1]]
    label = "none" + "".join(f" -> {layers} @{epoch}" for epoch, layers in steps)
    assert params[names.P_FREEZE_AUTO_CHOSEN] == label
    assert json.loads(params[names.P_FREEZE_SCHEDULE]) == [[1, []], *([e, list(range(n))] for e, n in steps)]
    assert len(client.get_metric_history(auto.info.run_id, names.M_AUTO_RATIO)) >= 2
    artifact = client.download_artifacts(
        auto.info.run_id, f"{names.ARTIFACT_AUTO_FREEZE}/auto_freeze.json", str(tmp_path)
    )
    assert [r["frozen"] for r in json.loads(Path(artifact).read_text())["records"]] == [frozen[e] for e in range(1, 5)]
    trainable = [m.value for m in client.get_metric_history(auto.info.run_id, names.TRAINABLE_PARAMS)]
    assert trainable[steps[0][0] - 2] > trainable[steps[0][0] - 1]  # freezing took effect at the decision
    assert len(client.get_metric_history(fixed.info.run_id, names.M_FROZEN_LAYERS)) == 1  # fixed: step 0 only

    table = pd.read_csv(sweep.sweep_dir / "report" / "report.csv")
    rows = {row["freeze"]: row for row in table.to_dict("records")}
    assert set(rows) == {"none", f"auto: {label}"}
    assert rows["none"]["speedup"] == 1.0  # none is the baseline, not auto (which starts with 0 frozen layers)
    assert rows[f"auto: {label}"]["epoch_time_frozen_s"] > 0  # time per epoch before its first step and after its last
    assert rows[f"auto: {label}"]["epoch_time_unfrozen_s"] > 0
