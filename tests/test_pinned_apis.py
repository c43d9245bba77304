"""The few library internals the sweep relies on, pinned: if an upgrade moves them, these fail
first, with the name of what moved, instead of a sweep misbehaving.

- Pre-validation expands a multirun's jobs exactly as Hydra's basic sweeper will, through
  `hydra._internal.core_plugins.basic_sweeper.BasicSweeper.split_arguments` (Hydra 1.3). Other
  sweepers (Optuna, Ax, Nevergrad) choose their jobs as they go: their variants are validated by
  each job when it starts, one line each, and nothing is validated up front.
- Hydra's callback runner turns an Exception into a warning, so the sweep's callbacks exit with
  SystemExit instead (hydra/_internal/callbacks.py `_notify`).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

from hydra.core.override_parser.overrides_parser import OverridesParser

from sweep.hydra_callbacks import BASIC_SWEEPER


def test_hydra_is_the_1_3_line_the_callbacks_are_written_for() -> None:
    assert version("hydra-core").startswith("1.3.")


def test_the_basic_sweeper_expands_jobs_as_pre_validation_expects() -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    assert f"{BasicSweeper.__module__}.{BasicSweeper.__qualname__}" == BASIC_SWEEPER
    overrides = OverridesParser.create().parse_overrides(["freeze=none,backbone", "train.epochs=1,2"])
    (batch,) = BasicSweeper.split_arguments(overrides, None)
    assert batch == [
        ["freeze=none", "train.epochs=1"],
        ["freeze=none", "train.epochs=2"],
        ["freeze=backbone", "train.epochs=1"],
        ["freeze=backbone", "train.epochs=2"],
    ]


def test_hydra_turns_callback_exceptions_into_warnings_but_lets_system_exit_through() -> None:
    from hydra._internal import callbacks

    source = inspect.getsource(callbacks.Callbacks._notify)
    assert "except Exception" in source and "warnings.warn" in source
