"""The sweeper of every `freeze-sweep -m` (conf/hydra/sweeper/freeze_sweep.yaml).

Without `sweep.budget` it is Hydra's basic sweeper, unchanged: the same jobs, batches and
numbering. With it, the grid's variants run as rungs of successive halving by training time
inside this one multirun (sweep/budget/rungs.py). Hydra imports every module under
`hydra_plugins` at start-up, so this one imports nothing heavy until a budgeted sweep runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class FreezeSweepSweeper(BasicSweeper):
    def sweep(self, arguments: Sequence[str]) -> Any:
        from sweep.budget.checks import read_budget

        budget = read_budget(self.config)
        if budget is None:
            return super().sweep(list(arguments))
        from sweep.budget.rungs import Rungs

        return Rungs(self, budget).run(arguments)
