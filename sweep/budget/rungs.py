"""A budgeted sweep's rungs, run by the freeze_sweep sweeper inside one multirun.

Rung k launches the surviving variants through the configured launcher (basic, local_parallel,
SLURM: whatever `hydra/launcher` is), each job in its variant's own folder and told its rung
(`sweep.rung=k`): it resumes its run from its own last.pt and trains until its training time
reaches budget·eta^(k-1) seconds, then pauses (run SCHEDULED, last.pt resumable;
sweep/budget/pause.py). The rule (sweep/budget/rule.py) then reads every variant's curve from
MLflow and decides who goes on; the others end FINISHED with the tags `sweep.stopped_at_rung` and
`sweep.stopped_reason`. When one candidate is left it trains to its last epoch (no `sweep.rung`).
`<sweep_dir>/budget.json` records every rung: who ran, the figures compared, who was kept and why,
and what the restarts cost (each job's `setup_s`, sweep/budget/setup_time.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf

from sweep.budget.checks import Budget
from sweep.budget.rule import Curve, Decision, allotment, decide, frozen_range, new_evidence, switches
from sweep.files import write_atomic
from sweep.tracking import names
from sweep.tracking.claims import training_time_s
from sweep.tracking.job_status import STATUS_FILE, JobStatus, Outcome, write_status
from sweep.tracking.parent_run import SweepInfo

log = logging.getLogger("sweep")
BUDGET_FILE = "budget.json"
SEED = "train.seed="
GONE = ("FAILED", "KILLED", "HELD")  # a job outcome that leaves the variant out of later rungs


@dataclass
class Variant:
    """One job of the sweep's grid, followed across rungs in its own folder `<sweep_dir>/<num>`."""

    num: int
    overrides: list[str]
    candidate: str  # what the rule ranks: the overrides that vary, train.seed left out (replicates share it)
    name: str = ""
    run_id: str | None = None
    status: str = "PENDING"  # the latest job's outcome: PAUSED, FINISHED, FAILED, KILLED, HELD
    stopped_at_rung: int | None = None
    setup_s: dict[int, float] = field(default_factory=dict)  # each job's start to its first epoch (step): `setup_s`

    def record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "overrides"}


@dataclass
class Rungs:
    """Runs the rungs for `sweeper` (a FreezeSweepSweeper set up by Hydra) and records them."""

    sweeper: object
    budget: Budget
    variants: list[Variant] = field(default_factory=list)
    decisions: list[dict] = field(default_factory=list)

    def run(self, arguments: Sequence[str]) -> list[Sequence[JobReturn]]:
        sweeper = self.sweeper
        sweep_dir = Path(sweeper.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(sweeper.config, sweep_dir / "multirun.yaml")
        jobs = self.expand(arguments)
        self.variants = [
            Variant(num, job, label) for num, (job, label) in enumerate(zip(jobs, labels(jobs), strict=True))
        ]
        client = self.client(jobs[0])
        info = SweepInfo.read(sweep_dir)
        if info:
            client.set_tag(info.parent_run_id, names.BUDGET, self.budget.describe())
        returns, alive, rung = [], list(self.variants), 1
        while alive:
            final = len({v.candidate for v in alive}) == 1
            limit_s = None if final else allotment(self.budget.seconds, self.budget.eta, rung)
            todo = [v for v in alive if needs_job(client, v, limit_s)]
            batch = [[*v.overrides, f"hydra.sweep.subdir={v.num}", *[f"sweep.rung={rung}"] * (not final)] for v in todo]
            if rung == 1:
                sweeper.validate_batch_is_legal(batch)
            limit = "to the end" if final else f"up to {limit_s:.1f} s each"
            log.info("Budget rung %d: %d of %d variants, training %s", rung, len(batch), len(alive), limit)
            if batch:
                results = sweeper.launcher.launch(batch, initial_job_idx=0)  # folders: hydra.sweep.subdir
                for result in results:
                    _ = result.return_value  # a job that raised stops the sweep, as with the basic sweeper
                returns.append(results)
            for variant in todo:
                self.read_outcome(sweep_dir, variant)
                variant.setup_s = setup_times(client, variant.run_id)
            alive = [v for v in alive if v.status not in GONE]
            if final or not alive:
                self.write(sweep_dir)
                break
            decision = self.judge(client, alive, rung)
            stopped = decision.stopped if decision else {}
            if decision:
                self.decisions.append(decision.as_record())
            for variant in alive:
                if variant.candidate in stopped or variant.stopped_at_rung == rung:
                    self.stop(client, sweep_dir, variant, rung, stopped.get(variant.candidate, ""))
            alive = [v for v in alive if goes_on(v, rung)]
            self.write(sweep_dir)
            rung += 1
        if info:
            self.log_record(client, info.parent_run_id, sweep_dir)
        return returns

    def expand(self, arguments: Sequence[str]) -> list[list[str]]:
        """Every job's overrides, as the basic sweeper expands them (one batch: rungs are the batches)."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        sweeper = self.sweeper
        parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
        overrides = parser.parse_overrides([*sweeper._parse_config(), *arguments])
        return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]

    def client(self, first_job: list[str]):
        """The store the jobs write to, as the first job's config names it."""
        from hydra.core.hydra_config import HydraConfig

        from sweep.tracking.store import open_experiment

        config = self.sweeper.hydra_context.config_loader.load_sweep_config(self.sweeper.config, first_job)
        HydraConfig.instance().set_config(config)  # lets ${hydra:...} resolve outside a job
        client, _ = open_experiment(config.tracking.uri, config.tracking.experiment)
        HydraConfig.instance().set_config(self.sweeper.config)
        return client

    def read_outcome(self, sweep_dir: Path, variant: Variant) -> None:
        """What the variant's job of this rung did (its variant.json): any launcher, any host."""
        try:
            status = JobStatus.from_json(json.loads((sweep_dir / str(variant.num) / STATUS_FILE).read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            variant.status = "FAILED"
            return
        variant.status, variant.name = status.outcome.value, status.name
        variant.run_id = status.run_id or variant.run_id

    def judge(self, client, alive: list[Variant], rung: int) -> Decision | None:  # noqa: ANN001 (MlflowClient)
        """The rule over the candidates' curves; a stop already recorded on a run (a re-run of a
        sweep, whose job reused it: sweep/tracking/claims.py `is_done`) stands, so a re-run never
        trains a stopped variant again. A job that continued it (a larger budget) cleared it.
        None: nothing trained since the rung before (`new_evidence`), so nothing to decide."""
        candidates: dict[str, list[Curve]] = {}
        for variant in alive:
            run = client.get_run(variant.run_id)
            recorded = run.data.tags.get(names.STOPPED_AT_RUNG)
            variant.stopped_at_rung = int(recorded) if recorded and recorded.isdigit() else None
            complete = run.info.status == "FINISHED" and variant.stopped_at_rung is None
            frozen = frozen_range(run.data.params, run.data.metrics)
            curve = curve_of(client, variant.run_id, complete, frozen, switches(run.data.params))
            candidates.setdefault(variant.candidate, []).append(curve)
        budget = self.budget
        now_s = allotment(budget.seconds, budget.eta, rung)
        if rung > 1 and not new_evidence(candidates, allotment(budget.seconds, budget.eta, rung - 1), now_s):
            log.info(
                "Budget rung %d: no variant trained on since rung %d (an epoch outlasts %.2f s): all kept",
                rung,
                rung - 1,
                now_s,
            )
            return None
        decision = decide(candidates, rung, now_s, budget.eta, budget.tolerance)
        for name in decision.kept:
            log.info("Budget rung %d: kept %s (mAP50-95 %.3f)", rung, name, decision.values[name])
        return decision

    def stop(self, client, sweep_dir: Path, variant: Variant, rung: int, reason: str) -> None:  # noqa: ANN001
        """The variant ends here: FINISHED, its record complete up to this rung, saying why."""
        run = client.get_run(variant.run_id)
        reason = reason or run.data.tags.get(names.STOPPED_REASON, f"stopped at rung {rung}")
        if run.info.status != "FINISHED":
            client.set_tag(variant.run_id, names.STOPPED_AT_RUNG, str(rung))
            client.set_tag(variant.run_id, names.STOPPED_REASON, reason[:5000])
            client.set_terminated(variant.run_id, "FINISHED")
        variant.stopped_at_rung, variant.status = rung, "FINISHED"
        log.info("Budget rung %d: stopped %s: %s", rung, variant.name, reason)
        note = f"stopped by the budget, {reason}"
        write_status(sweep_dir / str(variant.num), JobStatus(variant.name, Outcome.FINISHED, variant.run_id, note))

    def write(self, sweep_dir: Path) -> None:
        restarts = [seconds for v in self.variants for step, seconds in v.setup_s.items() if step > 1]
        record = {
            "budget": self.budget.__dict__,
            # a resumed job's process, model, data loaders and last.pt: not in the allotments (training seconds)
            "restarts": {"count": len(restarts), "setup_s": round(sum(restarts), 3)},
            "rungs": self.decisions,
            "variants": [v.record() for v in self.variants],
        }
        write_atomic(sweep_dir / BUDGET_FILE, json.dumps(record, indent=2))

    def log_record(self, client, parent_run_id: str, sweep_dir: Path) -> None:  # noqa: ANN001
        try:
            client.log_artifact(parent_run_id, str(sweep_dir / BUDGET_FILE))
        except Exception as error:  # the file in the sweep folder stands
            log.warning("%s not logged to the parent run: %s", BUDGET_FILE, type(error).__name__)


def needs_job(client, variant: Variant, limit_s: float | None) -> bool:  # noqa: ANN001 (MlflowClient)
    """Whether the variant has anything to train in this rung. Not when its run is FINISHED (trained
    out), nor when it has trained the rung's allotment already (a re-run after a kill, or a variant
    an earlier run of the sweep stopped at a later rung): a job would only start and pause again,
    or reuse it. A variant an earlier sweep stopped with less than this rung's allotment (a larger
    budget) trains on: its job's claim continues its run."""
    if variant.run_id is None or variant.status == "PENDING":
        return True
    if variant.status == "FINISHED" and variant.stopped_at_rung is None:
        return False
    return limit_s is None or training_time_s(client, variant.run_id) < limit_s


def goes_on(variant: Variant, rung: int) -> bool:
    """Paused and kept; or stopped by a previous run of this sweep at a later rung (reused until then,
    so the candidates each rung compares are those the first run compared)."""
    if variant.stopped_at_rung is not None:
        return variant.stopped_at_rung > rung
    return variant.status == "PAUSED"


def curve_of(  # noqa: ANN001 (MlflowClient)
    client,
    run_id: str,
    complete: bool,
    frozen: tuple[int | None, int | None] = (None, None),
    switching: bool = False,
) -> Curve:
    """A run's learning curve: mAP50-95 against cumulative epoch_time_s, one point per epoch."""
    scores = {m.step: m.value for m in client.get_metric_history(run_id, names.EPOCH_METRICS[1])}
    times = {m.step: m.value for m in client.get_metric_history(run_id, names.EPOCH_TIME)}
    epochs = sorted(set(scores) & set(times))
    return Curve.from_epochs([times[e] for e in epochs], [scores[e] for e in epochs], complete, frozen, switching)


def setup_times(client, run_id: str | None) -> dict[int, float]:  # noqa: ANN001 (MlflowClient)
    """Each job's set-up seconds (sweep/budget/setup_time.py) by the epoch it started at: above 1, a restart."""
    if run_id is None:
        return {}
    return {m.step: round(m.value, 3) for m in client.get_metric_history(run_id, names.SETUP_TIME)}


def labels(jobs: list[list[str]]) -> list[str]:
    """Each job's candidate: the overrides that differ between jobs, train.seed left out."""
    varying = {o for job in jobs for o in job if any(o not in other for other in jobs)}
    return [" ".join(o for o in job if o in varying and not o.startswith(SEED)) or "all" for job in jobs]
