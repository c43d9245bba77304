"""A budgeted sweep in the report: its stopped variants marked, and what the budget saved.

A variant the budget stopped is FINISHED in MLflow (its record is complete up to its stop) but
did not train its epochs: the report calls it STOPPED, keeps it out of the verdict (which
compares finished trainings), and draws its curve up to the stop.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from mlflow.tracking import MlflowClient

from sweep.report.runs import STOPPED, History, load_histories, param, tag
from sweep.tracking import names
from sweep.tracking.sweeps import SweepRef


def budget_line(client: MlflowClient, sweeps: Sequence[SweepRef], frame: pd.DataFrame, histories: History) -> str:
    """How much of the full grid's training time the budget saved; "" for sweeps without one.

    Training time is the runs' `epoch_time_s` summed; a stopped variant's full training is
    estimated as its epochs so far at their mean time times its `train.epochs`. The budget's side
    also counts its restarts: each resumed job's set-up (`setup_s` above step 1), which the full
    grid, training each variant in one go, does not pay.
    """
    budgets = [client.get_run(s.parent_run_id).data.tags.get(names.BUDGET, "") for s in sweeps]
    if not any(budgets):
        return ""
    spent, full, stopped = 0.0, 0.0, 0
    for record in frame.to_dict("records"):
        times = histories.get(record["run_id"], {}).get(names.EPOCH_TIME)
        run_spent = float(times.sum()) if times is not None else 0.0
        spent += run_spent
        if record["status"] == STOPPED and times is not None and len(times):
            stopped += 1
            planned = pd.to_numeric(record.get(param(names.P_EPOCHS)), errors="coerce")
            full += run_spent / len(times) * max(float(planned), len(times)) if planned == planned else run_spent
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
        "its mean epoch time)."
    )
