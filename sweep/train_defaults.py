"""Ultralytics' own training defaults, as the Hydra config `train/ultralytics`.

Read from the installed ultralytics' `cfg/default.yaml` (the file `yolo train` starts from), so a
sweep of a real model trains exactly as `yolo train` does with the same arguments, whatever
ultralytics version is installed. Read as plain YAML: importing ultralytics costs seconds that
`freeze-sweep --help` should not pay.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import yaml

# Sections of ultralytics' default.yaml that apply to training (its predict, export and tracker
# settings do not).
TRAIN_SECTIONS = ("Train settings", "Val/Test settings", "Hyperparameters")
# Set by freeze-sweep for every variant; a user sets them through model=, data=, freeze=.
OWN_KEYS = frozenset({"task", "mode", "model", "data", "project", "name", "exist_ok", "resume", "freeze", "save"})
SECTION = re.compile(r"^# (.+?) -{3,}")


def default_cfg_path() -> Path:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("ultralytics is not installed")
    return Path(spec.submodule_search_locations[0]) / "cfg" / "default.yaml"


@functools.cache
def train_defaults() -> dict:
    """Every training argument of ultralytics' default.yaml, minus the ones freeze-sweep sets."""
    text = default_cfg_path().read_text()
    values = yaml.safe_load(text)
    keys, section = [], None
    for line in text.splitlines():
        if match := SECTION.match(line):
            section = match.group(1).strip()
        elif section in TRAIN_SECTIONS and re.match(r"^\w+:", line):
            keys.append(line.split(":", 1)[0])
    if not keys:  # the file's layout changed: take every key rather than none
        keys = list(values)
    return {key: values[key] for key in keys if key not in OWN_KEYS}


def register() -> None:
    """Make `train/ultralytics` available to the defaults list of conf/train/default.yaml."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(group="train", name="ultralytics", node=train_defaults())
