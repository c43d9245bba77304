"""Where a variant's starting weights and its data come from, behind one interface each.

A weights source says where its checkpoint is (or will be), which architecture it holds, what
identifies it in the config hash, and makes it ready before training (`ensure`: the demo base is
built then). A data source turns the `data` settings into a checked data yaml. A configured value
that names a source takes it (`model.weights: demo`, `data.yaml: demo`); any other value is a
file, an official name, or (weights) nothing. A new source is one class or function here (or in
its own module) plus one yaml in conf/model/ or conf/data/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sweep.checkpoints import checkpoint_identity, load_arch_yaml, model_yaml_of, resolve_checkpoint
from sweep.datasets import DataInfo, load_data_yaml
from sweep.demo.source import DemoBase, DemoData


class WeightsSource(Protocol):
    given: str  # model.weights as configured

    def checkpoint(self) -> Path | None: ...
    def model_yaml(self) -> dict: ...
    def identity(self) -> str: ...
    def ensure(self, device: str, cpu_threads: int | None = None) -> Path | None: ...


@dataclass(frozen=True)
class CheckpointFile:
    """A local or official checkpoint (downloaded when online), or none: from scratch."""

    given: str
    arch: str
    path: Path | None

    def checkpoint(self) -> Path | None:
        return self.path

    def model_yaml(self) -> dict:
        return model_yaml_of(self.path) if self.path else load_arch_yaml(self.arch)

    def identity(self) -> str:
        """The file's content: a checkpoint replaced under the same name is another experiment."""
        return checkpoint_identity(self.path) if self.path else ""

    def ensure(self, device: str, cpu_threads: int | None = None) -> Path | None:
        return self.path


NAMED_WEIGHTS: dict[str, Callable[[Mapping, Path], WeightsSource]] = {DemoBase.name: DemoBase.from_config}
NAMED_DATA: dict[str, Callable[[Mapping, Path], DataInfo]] = {DemoData.name: DemoData.info}


def weights_source(model: Mapping, cache_dir: Path) -> WeightsSource:
    """`model` (plain values): the source its `weights` names, else a checkpoint file or scratch."""
    given = "" if model["weights"] is None else str(model["weights"])
    if given in NAMED_WEIGHTS:
        return NAMED_WEIGHTS[given](model, cache_dir)
    return CheckpointFile(given, str(model["arch"]), resolve_checkpoint(given, named=tuple(NAMED_WEIGHTS)))


def data_source(data: Mapping, cache_dir: Path) -> DataInfo:
    """`data` (plain values) as a checked data yaml: the source its `yaml` names, else that yaml."""
    if str(data["yaml"]) in NAMED_DATA:
        return NAMED_DATA[str(data["yaml"])](data, cache_dir)
    return load_data_yaml(data["name"], data["yaml"])
