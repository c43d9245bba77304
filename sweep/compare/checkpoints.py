"""Load ultralytics checkpoints, name their layers and check that they can be compared.

A layer is one entry of `model.model` (the `model.<i>.` prefix that ultralytics' `freeze` uses),
so frozen indices, weight changes and activation hooks all speak about the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sweep.errors import ConfigError
from sweep.freeze import architecture_of
from sweep.tracking import names


class CompareError(ConfigError):
    """A problem the user can fix; the CLI prints it on one line and exits with code 2."""


@dataclass(frozen=True)
class Layer:
    """One entry of `model.model`, placed in the backbone, the neck or the head."""

    index: int
    kind: str  # module class, e.g. "Conv", "C2f", "Detect"
    section: str  # "backbone", "neck" or "head"

    @property
    def name(self) -> str:
        return f"model.{self.index} {self.kind}"


@dataclass(frozen=True)
class DeclaredFreeze:
    """Frozen layers as training recorded them or the user stated them, and where that came from.

    Recorded values are checked against the base, and layers found unchanged are added; an
    override (`--freeze`) is checked as given and nothing is added to it.
    """

    layers: frozenset[int]
    source: str  # e.g. "checkpoint train arg freeze=10", "MLflow param freeze_layers", "--freeze"
    override: bool = False


@dataclass
class Checkpoint:
    """A loaded checkpoint: FP32 model in eval mode plus what training recorded about it."""

    label: str
    path: Path
    model: nn.Module
    train_args: dict
    declared: DeclaredFreeze

    @property
    def layers(self) -> nn.Sequential:
        return self.model.model

    @property
    def architecture(self) -> str:
        """The model yaml the checkpoint was built from, e.g. 'yolov8s.yaml'."""
        yaml = getattr(self.model, "yaml", None) or {}
        return str(yaml.get("yaml_file") or type(self.model).__name__)


def train_arg_frozen(freeze: object) -> frozenset[int]:
    """Layer indices of ultralytics' `freeze` train argument, in ultralytics' meaning:
    an int N is layers 0..N-1, a list is exactly those layers, None (or 0) is none.

    This is not the sweep's `freeze_layers` format (always a JSON list of indices): a checkpoint's
    `freeze=5` means layers 0..4, a `freeze_layers` of `[5]` means layer 5.
    """
    if freeze is None or freeze is False:
        return frozenset()
    if isinstance(freeze, int) and not isinstance(freeze, bool):
        return frozenset(range(freeze))
    if isinstance(freeze, list | tuple) and all(isinstance(i, int) and not isinstance(i, bool) for i in freeze):
        return frozenset(freeze)
    raise CompareError(
        f"cannot read the checkpoint's train arg freeze={freeze!r}: ultralytics takes an int N (layers 0..N-1) "
        "or a list of layer indices; pass the frozen layers with --freeze"
    )


def parse_freeze_option(text: str) -> frozenset[int]:
    """A `--freeze` value, in the sweep's `freeze_layers` format: a JSON list of layer indices."""
    try:
        layers = names.parse_freeze_layers(text)
    except ValueError:
        layers = None
    if layers is None or any(i < 0 for i in layers):
        raise CompareError(
            f"--freeze {text!r}: give the frozen layers as a JSON list of layer indices, e.g. '[0, 1, 2]', "
            "'[5]' (layer 5 alone) or '[]' (none); not ultralytics' freeze=N"
        )
    return frozenset(layers)


def load_checkpoint(path: Path, label: str, declared: DeclaredFreeze | None = None) -> Checkpoint:
    """Load a .pt file; `declared` replaces the `freeze` train arg stored in the checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CompareError(f"checkpoint not found: {path}")
    if path.suffix != ".pt":
        raise CompareError(f"{path} is not a .pt file: give ultralytics PyTorch checkpoints")
    from ultralytics.nn.tasks import load_checkpoint as ultralytics_load

    try:
        model, ckpt = ultralytics_load(path)
    except Exception as e:  # a user's file: any failure to unpickle it is the same one-line error
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CompareError(f"{path} is not an ultralytics checkpoint: {first_line}") from e
    if not isinstance(getattr(model, "model", None), nn.Sequential):
        raise CompareError(f"{path} holds no ultralytics layer sequence (model.model); cannot compare it")
    train_args = dict(ckpt.get("train_args") or {})
    if declared is None:
        freeze = train_args.get("freeze")
        declared = DeclaredFreeze(train_arg_frozen(freeze), f"checkpoint train arg freeze={freeze!r}")
    return Checkpoint(label=label, path=path, model=model, train_args=train_args, declared=declared)


def layer_table(checkpoint: Checkpoint) -> list[Layer]:
    """Name every layer and place it as `freeze` presets do: the yaml's backbone, its head, the neck between."""
    arch = architecture_of(checkpoint.model.yaml, checkpoint.label)
    table = []
    for i, module in enumerate(checkpoint.layers):
        section = "head" if i >= arch.head_index else "backbone" if i < arch.backbone_len else "neck"
        table.append(Layer(index=i, kind=type(module).__name__, section=section))
    return table


def check_same_architecture(checkpoints: list[Checkpoint]) -> list[Layer]:
    """Return the shared layer table, or raise a one-line CompareError.

    Same architecture means the same layer classes in the same order and the same parameter
    shapes outside the head: the head may differ (class count changed, re-initialised convs).
    """
    reference = checkpoints[0]
    layers = layer_table(reference)
    for other in checkpoints[1:]:
        where = f"{reference.path} is {reference.architecture} and {other.path} is {other.architecture}"
        kinds = [layer.kind for layer in layer_table(other)]
        if kinds != [layer.kind for layer in layers]:
            raise CompareError(
                f"different architectures: {where} ({len(layers)} vs {len(kinds)} layers, "
                "layer types differ); compare checkpoints of one architecture"
            )
        for layer in layers[:-1]:
            shapes_ref = [p.shape for p in reference.layers[layer.index].parameters()]
            shapes_other = [p.shape for p in other.layers[layer.index].parameters()]
            if shapes_ref != shapes_other:
                raise CompareError(
                    f"different architectures: {where} (parameter shapes of {layer.name} differ, "
                    "e.g. another model scale); compare checkpoints of one architecture"
                )
    return layers


def label_for(path: Path) -> str:
    """A short label: the file stem, or the ultralytics run folder for best.pt / last.pt."""
    path = Path(path)
    if path.stem in ("best", "last") and path.parent.name == "weights":
        return path.parent.parent.name or path.stem
    return path.stem


def unique_labels(labels: list[str]) -> list[str]:
    """Make labels distinct by appending -2, -3, ... to repeats, keeping their order."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return out
