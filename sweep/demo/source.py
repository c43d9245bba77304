"""The one module that knows the demo by name: `model.weights: demo` is the demo's base model,
`data.yaml: demo` its generated target task. Both are sources like any other (`sweep.sources`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from sweep.checkpoints import load_arch_yaml
from sweep.datasets import DataInfo, load_data_yaml
from sweep.demo.base import base_checkpoint, ensure_base
from sweep.demo.data import TASKS, DemoDataSpec, ensure_dataset
from sweep.errors import ConfigError

DEMO = "demo"


@dataclass(frozen=True)
class DemoBase:
    """The demo's base model: `model.arch` pretrained on the generated source task with
    `model.pretrain`, built on first use (`ensure`) and cached by its recipe."""

    name: ClassVar[str] = DEMO
    given: str
    arch: str
    pretrain: Mapping
    cache_dir: Path

    @classmethod
    def from_config(cls, model: Mapping, cache_dir: Path) -> DemoBase:
        return cls(DEMO, str(model["arch"]), model["pretrain"], Path(cache_dir))

    def checkpoint(self) -> Path:
        """Where the base is, or will be once built: known before it exists."""
        return base_checkpoint(self.arch, self.pretrain, self.cache_dir)

    def model_yaml(self) -> dict:
        return load_arch_yaml(self.arch)

    def identity(self) -> str:
        """The base's cache key (its recipe), the same before and after it is built."""
        return self.checkpoint().parent.parent.name

    def ensure(self, device: str, cpu_threads: int | None = None) -> Path:
        return ensure_base(self.arch, self.pretrain, self.cache_dir, device, cpu_threads)


class DemoData:
    """A generated task (`data.task`: target, near or source; `n_train`, `n_val`, `imgsz`, `seed`), named by its option."""

    name: ClassVar[str] = DEMO

    @staticmethod
    def info(data: Mapping, cache_dir: Path) -> DataInfo:
        task = data.get("task", "target")
        if task not in TASKS:
            raise ConfigError(f"data.task={task!r} is not a demo task; use one of: {', '.join(TASKS)}")
        spec = DemoDataSpec(task, data["n_train"], data["n_val"], data["imgsz"], data["seed"])
        return load_data_yaml(data["name"], ensure_dataset(spec, Path(cache_dir)), label=f"data={data['name']}")
