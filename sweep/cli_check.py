"""Check config-group choices on the command line before Hydra composes anything.

Hydra's own message for an unknown option spans several lines; a user gets one line instead.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from sweep.errors import ConfigError
from sweep.train_defaults import train_defaults

CHECKED_GROUPS = ("model", "data", "train", "tracking", "paths", "experiment")


def group_options(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def check_train_key(key: str) -> None:
    """`train.mosiac=0` gets one line with the closest ultralytics argument, not Hydra's struct error."""
    known = train_defaults()
    if key in known:
        return
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"did you mean train.{close[0]}? " if close else ""
    raise ConfigError(f"train.{key} is not an ultralytics training argument: {hint}(see `yolo cfg`)")


def check_group_choices(argv: list[str], conf_dir: Path) -> None:
    """Raise ConfigError for `model=foo` (or `-m model=a,foo`) when conf/model/foo.yaml is missing."""
    if any(arg.startswith(("--config-dir", "-cd", "--config-path", "-cp")) for arg in argv):
        return  # options may live in the user's own config folder
    candidates = [arg for arg in argv if "=" in arg and not arg.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(candidates)
    except Exception:
        return  # Hydra reports syntax errors itself
    for override in overrides:
        group = override.key_or_group
        if group.startswith("train.") and not override.is_add() and not override.is_force_add():
            check_train_key(group.removeprefix("train."))
            continue
        if group not in CHECKED_GROUPS or override.is_delete() or override.value() is None:
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        options = group_options(conf_dir, group)
        for value in values:
            if isinstance(value, str) and value not in options and not value.startswith("glob("):
                raise ConfigError(f"{group}={value} is not a {group} option: use one of {', '.join(options)}")
