"""Freeze resolution from each bundled architecture's own yaml, and parameter counts."""

from __future__ import annotations

import pytest
from ultralytics.nn.tasks import DetectionModel, yaml_model_load

from sweep.errors import ConfigError
from sweep.freeze import architecture_of, check_trainable, count_parameters, resolve_freeze

# (yaml, backbone length, Detect index): the ultralytics model yamls, checked by hand.
ARCHITECTURES = [
    ("yolov5nu.yaml", 10, 24),
    ("yolov8n.yaml", 10, 22),
    ("yolo11n.yaml", 11, 23),
    ("yolo12n.yaml", 9, 21),
    ("yolo26n.yaml", 11, 23),
]


@pytest.mark.parametrize(("yaml", "backbone", "head"), ARCHITECTURES)
def test_presets_follow_each_architecture(yaml: str, backbone: int, head: int) -> None:
    arch = architecture_of(yaml_model_load(yaml), yaml)
    assert resolve_freeze("none", arch) == []
    assert resolve_freeze("backbone", arch) == list(range(backbone))
    assert resolve_freeze("all_but_head", arch) == list(range(head))
    assert arch.num_layers == head + 1


@pytest.mark.parametrize(("yaml", "backbone", "head"), ARCHITECTURES)
def test_parameter_counts_match_the_frozen_modules(yaml: str, backbone: int, head: int) -> None:
    model = DetectionModel(yaml_model_load(yaml), nc=20, verbose=False)
    layers = resolve_freeze("backbone", architecture_of(model.yaml, yaml))
    counts = count_parameters(model, layers)
    backbone_params = sum(p.numel() for i in layers for p in model.model[i].parameters())
    dfl_params = sum(p.numel() for p in model.model[head].dfl.parameters()) if hasattr(model.model[head], "dfl") else 0
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.frozen == backbone_params + dfl_params
    assert 0 < counts.trainable_pct < 100


def test_custom_yaml_resolves_from_its_own_structure() -> None:
    custom = yaml_model_load("yolov8n.yaml")
    custom["backbone"].insert(9, [-1, 1, "Conv", [1024, 3, 1]])  # one more backbone layer before SPPF
    shift = lambda f: [x + 1 if x >= 9 else x for x in f] if isinstance(f, list) else f  # noqa: E731
    custom["head"] = [[shift(layer[0]), *layer[1:]] for layer in custom["head"]]
    DetectionModel(custom, nc=3, verbose=False)  # the custom yaml is a valid network
    arch = architecture_of(custom, "custom")
    assert (arch.backbone_len, arch.head_index) == (11, 23)
    assert resolve_freeze("backbone", arch) == list(range(11))


def test_int_and_list_follow_ultralytics_meaning() -> None:
    arch = architecture_of(yaml_model_load("yolov8n.yaml"), "yolov8n")
    assert resolve_freeze(10, arch) == list(range(10))
    assert resolve_freeze("10", arch) == list(range(10))
    assert resolve_freeze([2, 0, 1, 2], arch) == [0, 1, 2]
    assert resolve_freeze(0, arch) == []


@pytest.mark.parametrize(
    ("freeze", "message"),
    [
        ("head_only", "'head_only' is not a known preset: use an int >= 0, a list of layer indices, or a preset"),
        (-1, "freeze=-1 is negative"),
        (30, "freeze=30 is beyond yolov8n's 23 layers: use 0..22"),
        ([0, 40], "freeze=[0, 40] has invalid layer indices [40]: yolov8n has layers 0..22"),
        (True, "freeze=True is not valid"),
    ],
)
def test_bad_freeze_values_say_what_is_accepted(freeze: object, message: str) -> None:
    arch = architecture_of(yaml_model_load("yolov8n.yaml"), "yolov8n")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        resolve_freeze(freeze, arch)


def test_freezing_every_layer_is_refused() -> None:
    model = DetectionModel(yaml_model_load("yolov8n.yaml"), nc=3, verbose=False)
    arch = architecture_of(model.yaml, "yolov8n")
    counts = count_parameters(model, resolve_freeze(23, arch))
    assert counts.trainable == 0
    with pytest.raises(ConfigError, match="freeze=23 leaves no trainable parameter in yolov8n"):
        check_trainable(counts, 23, arch)
