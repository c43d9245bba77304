"""A budgeted sweep in the report: its stopped variants marked, and what the budget saved.

A variant the budget stopped is FINISHED in MLflow (its record is complete up to its stop) but
did not train its epochs: the report calls it STOPPED, keeps it out of the verdict (which
compares finished trainings), and draws its curve up to the stop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pandas as pd
from mlflow.tracking import MlflowClient

from sweep.report.runs import STOPPED, History, load_histories, param, tag
from sweep.tracking import names
from sweep.tracking.sweeps import SweepRef


def budget_line(client: MlflowClient, sweeps: Sequence[SweepRef], frame: pd.DataFrame, histories: History) -> str:
    """How much of the full grid's training time the budget saved; "" for sweeps without one.

    Training time is the runs' `epoch_time_s` summed; a stopped variant's full training is its
    epochs so far plus its remaining ones at the time per epoch of its current freezing stage
    (`remaining_epoch_s`). The budget's side also counts its restarts: each resumed job's set-up
    (`setup_s` above step 1), which the full grid, training each variant in one go, does not pay.
    """
    budgets = [client.get_run(s.parent_run_id).data.tags.get(names.BUDGET, "") for s in sweeps]
    if not any(budgets):
        return ""
    spent, full, stopped = 0.0, 0.0, 0
    frozen = load_histories(client, frame[frame["status"] == STOPPED], [names.M_FROZEN_LAYERS])
    for record in frame.to_dict("records"):
        times = histories.get(record["run_id"], {}).get(names.EPOCH_TIME)
        run_spent = float(times.sum()) if times is not None else 0.0
        spent += run_spent
        if record["status"] == STOPPED and times is not None and len(times):
            stopped += 1
            planned = pd.to_numeric(record.get(param(names.P_EPOCHS)), errors="coerce")
            to_go = max(float(planned) - len(times), 0.0) if planned == planned else 0.0
            frozen_by_epoch = frozen.get(record["run_id"], {}).get(names.M_FROZEN_LAYERS)
            full += run_spent + to_go * remaining_epoch_s(
                times, record.get(param(names.P_FREEZE_SCHEDULE)), frozen_by_epoch
            )
        else:
            full += run_spent
    setups = load_histories(client, frame, [names.SETUP_TIME])
    restarts = [s for h in setups.values() for step, s in h[names.SETUP_TIME].items() if step > 1]
    restart_s = sum(restarts)
    saved = 100 * (1 - (spent + restart_s) / full) if full > 0 else 0.0
    n = len(restarts)
    incl = f" incl. {n} restart{'s' * (n > 1)} ({restart_s:,.0f} s of set-up before their first epoch)" * bool(n)
    verdict = (
        f"{saved:.0f}% of the full grid's training time saved"
        if saved >= 0
        else f"nothing saved, {-saved:.0f}% more than the full grid's training time"  # restarts can outweigh stops
    )
    rung = pd.to_numeric(frame.get(tag(names.STOPPED_AT_RUNG), pd.Series(dtype=float)), errors="coerce")
    rungs = [str(int(r)) for r in sorted(rung.dropna().unique())]
    where = f" (after rung{'s' * (len(rungs) > 1)} {', '.join(rungs)})" if rungs else ""
    return (
        f"**Budget** ({'; '.join(b for b in dict.fromkeys(budgets) if b)}): {stopped} of {len(frame)} variants "
        f"stopped early{where}: STOPPED rows, left out of the recommendation, their curves ending at the stop. "
        f"{verdict}: {spent + restart_s:,.0f} s of training{incl} against about "
        f"{full:,.0f} s for every variant's full training (a stopped variant's remaining epochs estimated at "
        "the time per epoch of its current freezing stage)."
    )


def remaining_epoch_s(times: pd.Series, schedule: object, frozen_by_epoch: pd.Series | None) -> float:
    """A stopped variant's time per epoch from its stop on: the median epoch of its current freezing
    stage, not of all its epochs. A schedule's frozen first epochs cost less than the full training
    that follows them (on the demo 1.1-1.5 s against 1.6-1.8 s), so its mean so far priced its
    remaining epochs too low. The stage starts at a schedule's last switch reached (`freeze_schedule`), or where
    freeze=auto's `frozen_layers` last changed; a fixed level has one stage. A stage not reached yet
    is unknown: the current one stands for it."""
    done = int(times.index.max())
    start = 1
    if isinstance(schedule, str) and schedule:
        try:
            start = max([int(epoch) for epoch, _ in json.loads(schedule) if int(epoch) <= done] or [1])
        except (ValueError, TypeError):
            start = 1
    elif frozen_by_epoch is not None:
        by_epoch = frozen_by_epoch[frozen_by_epoch.index > 0].sort_index()
        if len(by_epoch):
            changed = by_epoch.ne(by_epoch.shift())
            start = int(by_epoch.index[changed][-1])
    stage = times[times.index >= start]
    return float((stage if len(stage) else times).median())
