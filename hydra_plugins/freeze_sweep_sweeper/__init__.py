"""freeze-sweep's Hydra sweeper: the basic sweeper, plus budgeted sweeps (`sweep.budget`)."""

from hydra_plugins.freeze_sweep_sweeper.freeze_sweep_sweeper import FreezeSweepSweeper

__all__ = ["FreezeSweepSweeper"]
