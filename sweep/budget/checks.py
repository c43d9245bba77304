"""`sweep.budget` and its settings, checked before anything is recorded.

`BudgetCheck` is a Hydra callback listed before the sweep's own (conf/hydra/default.yaml), so a
bad value stops the sweep in one line before the parent run, the store or the demo base exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.errors import ConfigError, exit_with

SWEEPER = "hydra_plugins.freeze_sweep_sweeper.freeze_sweep_sweeper.FreezeSweepSweeper"
KEYS = ("budget", "eta", "budget_tolerance", "rung")


@dataclass(frozen=True)
class Budget:
    """A budgeted sweep's settings: rung 1 gives each variant `seconds` of training, rung k
    seconds·eta^(k-1); `tolerance` (mAP50-95) keeps near-ties."""

    seconds: float
    eta: float
    tolerance: float

    def describe(self) -> str:
        return f"sweep.budget={self.seconds:g} s, eta={self.eta:g}, tolerance={self.tolerance:g}"


def read_budget(cfg: DictConfig) -> Budget | None:
    """The budget of a composed config, None when `sweep.budget` is null. Raises ConfigError."""
    sweep = OmegaConf.select(cfg, "sweep")
    return budget_of(OmegaConf.to_container(sweep, resolve=True) if sweep is not None else {})


def budget_of(sweep: Mapping) -> Budget | None:
    """The budget of a job's `sweep` settings as plain values, None without one. Raises ConfigError."""
    budget, eta = sweep.get("budget"), sweep.get("eta", 3)
    tolerance, rung = sweep.get("budget_tolerance"), sweep.get("rung")
    if not _number(eta) or eta < 2:
        raise ConfigError(f"sweep.eta={eta!r}: use a number >= 2 (each rung keeps 1/eta of the variants)")
    if tolerance is not None and not (_number(tolerance) and 0 <= tolerance < 1):
        raise ConfigError(
            f"sweep.budget_tolerance={tolerance!r}: use null (one point, 0.01) or a difference of mAP50-95 in [0, 1)"
        )
    if rung is not None and (isinstance(rung, bool) or not isinstance(rung, int) or rung < 1):
        raise ConfigError(f"sweep.rung={rung!r}: set by the budget's sweeper (an int >= 1); leave it null")
    if budget is None:
        return None
    if not _number(budget) or budget <= 0:
        raise ConfigError(
            f"sweep.budget={budget!r}: use null (train every variant in full) or the seconds of training each "
            "variant gets in the first rung, a number > 0"
        )
    from sweep.report.verdict import DEFAULT_TOLERANCE  # the verdict's one point: ties it would not act on

    return Budget(float(budget), float(eta), DEFAULT_TOLERANCE if tolerance is None else float(tolerance))


def check_sweep(config: DictConfig) -> Budget | None:
    """What a budgeted multirun needs beyond valid numbers: the freeze_sweep sweeper, a fixed
    budget (not swept), and variants whose training our callbacks can pause (not DDP)."""
    budget = read_budget(config)
    keys = {f"sweep.{key}" for key in KEYS}
    swept = [o for o in _task_overrides(config) if o.key_or_group in keys and o.is_sweep_override()]
    if swept:
        raise ConfigError(f"{swept[0].input_line}: the budget's settings are one per sweep, not swept values")
    if budget is None:
        return None
    sweeper = OmegaConf.select(config, "hydra.sweeper._target_")
    if sweeper != SWEEPER:
        raise ConfigError(f"sweep.budget needs hydra/sweeper=freeze_sweep (the default), not {sweeper}")
    device = str(OmegaConf.select(config, "train.device"))
    if "," in device:
        raise ConfigError(
            f"sweep.budget with train.device={device}: several GPUs per variant train in ultralytics' DDP "
            "subprocess, where a rung cannot pause them; use one device per variant"
        )
    return budget


class BudgetCheck(Callback):
    """Refuse a bad budget in one line before the sweep's own callback records anything."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            check_sweep(config)
        except ConfigError as error:
            exit_with(error)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        try:
            if read_budget(config) is not None:
                raise ConfigError("sweep.budget: a budget shares training time among a sweep's variants; use -m")
        except ConfigError as error:
            exit_with(error)


def _task_overrides(config: DictConfig) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False) or []
    return OverridesParser.create().parse_overrides([str(o) for o in task])


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
