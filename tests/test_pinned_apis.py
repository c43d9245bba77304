"""The few library internals the sweep relies on, pinned: if an upgrade moves them, these fail
first, with the name of what moved, instead of a sweep misbehaving.

- Pre-validation (`sweep.hydra_callbacks.expand_jobs`) expands a multirun's jobs with Hydra's public
  override API exactly as Hydra's basic sweeper will (its private `BasicSweeper.split_arguments`,
  Hydra 1.3): the two are held equal here. It covers the basic sweeper under any launcher; other
  sweepers (Optuna, Ax, Nevergrad) choose their jobs as they go: their variants are validated by
  each job when it starts, one line each, and nothing is validated up front.
- Hydra's callback runner turns an Exception into a warning, so the sweep's callbacks exit with
  SystemExit instead (hydra/_internal/callbacks.py `_notify`).
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import open_dict

from sweep.cli import CONF_DIR
from sweep.hydra_callbacks import BASIC_SWEEPER, expand_jobs


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


@pytest.mark.parametrize(
    "task",
    [
        [],  # the default sweep: the sweeper's own params
        ["train.epochs=1,2", "freeze=0,10"],  # a task override replaces a param, in the param's place
        ["freeze=range(0,23,11)", "train.imgsz=64", "freeze_schedule={1: backbone, 3: none}"],
        ["experiment=glob(tin*)", "freeze=choice(none,backbone)"],
    ],
)
def test_pre_validation_expands_jobs_as_the_basic_sweeper_will(task: list[str]) -> None:
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        config = compose("config", return_hydra_config=True)
        with open_dict(config):
            config.hydra.overrides.task = task
        params = [f"{k}={v}" for k, v in config.hydra.sweeper.params.items()]
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + task)
        (hydras,) = BasicSweeper.split_arguments(parsed, None)
        assert expand_jobs(config) == hydras
        with open_dict(config):
            config.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
        assert expand_jobs(config) is None  # chooses its jobs as it goes: each job validates itself


def test_hydra_turns_callback_exceptions_into_warnings_but_lets_system_exit_through() -> None:
    from hydra._internal import callbacks

    source = inspect.getsource(callbacks.Callbacks._notify)
    assert "except Exception" in source and "warnings.warn" in source
