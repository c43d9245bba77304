"""One Hydra job = one variant: resolve -> claim -> train -> track.

`run_variant` is the job's door: it turns the job's config into a `VariantSpec` and `JobSettings`
(`sweep.variant`); everything after it works on those plain values.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from sweep.auto_freeze import AutoFreezer
from sweep.budget.checks import budget_of
from sweep.budget.pause import RungPause, rung_allotment
from sweep.budget.setup_time import SetupTime, job_started
from sweep.checkpoints import output_dir_for, record_config_hash
from sweep.console import Progress, ultralytics_output_to
from sweep.errors import ConfigError, exit_with
from sweep.gpu_lease import gpu_count, lease_gpu
from sweep.schedule import schedule_callbacks
from sweep.signals import signals_interrupt
from sweep.tracking import names
from sweep.tracking.auto_freeze import AutoFreezeTracking
from sweep.tracking.claims import Claim, claim_variant, mark_reused, supersede
from sweep.tracking.credentials import redact
from sweep.tracking.data_wait import DataWait
from sweep.tracking.job_status import STATUS_FILE, Job, JobStatus, failure_message, outcome_of, write_status
from sweep.tracking.machine_load import machine_load_callbacks
from sweep.tracking.owners import Heartbeat
from sweep.tracking.parent_run import SWEEP_FILE, SweepInfo
from sweep.tracking.stale_runs import end_runs_killed
from sweep.tracking.store import open_experiment
from sweep.tracking.variant_run import VariantRun
from sweep.training import TrainResult, cpu_threads_callbacks, cpu_workers_callbacks, merged, train
from sweep.variant import JobSettings, VariantSpec, describe, resolve, resolve_job, saved_variant
from sweep.worker import variant_process

log = logging.getLogger("sweep")


def run_variant(cfg: DictConfig, job: Job) -> JobStatus:
    """Train one variant into its MLflow run, unless it is already finished (reuse), held by a
    live run elsewhere (wait or skip), or part-done (resume from its last checkpoint)."""
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    owner = sweep_owner(hc)
    job.started = job_started(owner)
    with variant_process(owner), signals_interrupt():
        try:  # every way out, validation errors included, leaves variant.json for the sweep's summary
            settings = resolve_job(cfg)
            spec = job_variant(hc) or resolve(cfg)
            with own_gpu(spec, settings) as spec:
                spec.weights_source.ensure(spec.device, spec.cpu_threads)  # the demo base: built once, here if not yet
                return train_variant(spec, settings, job_dir, job)
        except BaseException as error:
            job.end(error)
            raise
        finally:
            try:
                write_status(job_dir, job.status)
            except OSError as error:  # the sweep's summary counts a job without variant.json as failed
                log.error("%s: outcome not recorded in %s (%s)", job.name, job_dir / STATUS_FILE, error)


def sweep_owner(hc) -> str:
    """The process that launched this job's sweep; "" outside a sweep (or one `current_sweep` refuses)."""
    if hc.mode != RunMode.MULTIRUN:
        return ""
    try:
        sweep = SweepInfo.read(Path(hc.sweep.dir))
    except (OSError, ValueError, TypeError):
        return ""
    return sweep.owner if sweep else ""


def job_variant(hc) -> VariantSpec | None:
    """The variant the launching process resolved for this job, on this host: resolved once."""
    if hc.mode != RunMode.MULTIRUN:
        return None
    task = [o for o in hc.overrides.task if not o.startswith("sweep.rung=")]  # a budget's rung: not the variant
    return saved_variant(Path(hc.sweep.dir), task)


@contextmanager
def own_gpu(spec: VariantSpec, settings: JobSettings) -> Iterator[VariantSpec]:
    """With `train.device: null` on a GPU machine, the variant leases a GPU no other variant holds
    (parallel workers, a second sweep) for as long as it trains, and trains there."""
    if not settings.lease_gpu or not gpu_count():
        yield spec
        return
    with lease_gpu(settings.cache_dir / "gpu-locks", per_gpu=settings.variants_per_gpu) as gpu:
        yield spec.on_device(str(gpu))


def train_variant(spec: VariantSpec, settings: JobSettings, job_dir: Path, job: Job) -> JobStatus:
    """claim -> train -> track."""
    job.name = spec.run_name
    sweep = current_sweep(HydraConfig.get())
    progress = progress_for(spec, sweep)
    progress.header(describe(spec).split(": ", 1)[1])
    client, experiment_id = open_experiment(settings.tracking.uri, settings.tracking.experiment)
    claim = claim_variant(
        client,
        experiment_id,
        spec.config_hash(),
        spec.run_name,
        variant_tags(spec, output_dir_for(job_dir, spec.config_hash()), sweep),
        rerun=settings.rerun,
        wait=settings.on_held == "wait",
        until_s=rung_allotment(settings.config["sweep"]),  # a budget's rung: a stopped variant may have it all
    )
    job.run_id = claim.run.info.run_id
    if claim.outcome != "train":
        mark_reused(client, claim.run, sweep)
        status = reuse_status(job, claim)
        progress.result(f"{status.outcome.value.lower()}: {status.note}")
        return status
    with ended_if_left_running(client, claim.run.info.run_id):
        result, pause = train_claimed(settings, client, claim, spec, sweep, progress, job_dir, job.started)
    if pause and pause.paused:  # a budgeted rung's share is trained: the sweeper decides what follows
        progress.result(pause.note())
        return job.end(paused=True, note=pause.note())
    progress.result(result_line(result.metrics, job_dir / "train.log"))
    return job.end(metrics=result.metrics)


@contextmanager
def ended_if_left_running(client: MlflowClient, run_id: str) -> Iterator[None]:
    """Whatever fails between the claim and the end of training (a full disk while the config hash
    is written, the store while params are logged) leaves the claimed run FAILED (KILLED on a
    signal), saying why, not RUNNING until the next sweep finds its owner gone."""
    try:
        yield
    except BaseException as error:
        end_runs_killed(client, [run_id], failure_message(error)[:5000], outcome_of(error).value)
        raise


def train_claimed(
    settings: JobSettings,
    client: MlflowClient,
    claim: Claim,
    spec: VariantSpec,
    sweep: SweepInfo | None,
    progress: Progress,
    job_dir: Path,
    started: float,
) -> tuple[TrainResult | None, RungPause | None]:
    """Train the claimed variant into its run: its callbacks, its heartbeat, its artifacts; in a
    budgeted rung only up to the rung's allotment (none when it was trained already). Under a
    budget, what the job cost before its first epoch (`started`: when it began) is logged too."""
    run, save_dir = open_variant_run(client, claim, spec, settings)
    pause = RungPause.of(settings.config["sweep"], run)
    if pause and pause.reached:
        pause.skip()
        return None, pause
    schedule = schedule_callbacks(spec.schedule) if spec.switches else {}
    threads = cpu_threads_callbacks(spec.cpu_threads, spec.device)
    workers = cpu_workers_callbacks(spec.cpu_workers, spec.train_args["workers"], spec.device)
    load = machine_load_callbacks(run.log_metrics)
    auto = auto_freeze_callbacks(spec, run)
    data_wait = DataWait(run.log_metrics).callbacks()  # after the schedule's epoch start: its work is no wait
    budget = pause.callbacks() if pause else {}  # after run's: the pause follows the epoch's logging
    setup = SetupTime(run, started).callbacks() if budget_of(settings.config["sweep"]) and started else {}
    callbacks = merged(
        setup, run.callbacks(), schedule, auto, data_wait, progress.callbacks(), threads, workers, load, budget
    )
    quiet = ultralytics_output_to(job_dir / "train.log", verbose=settings.verbose)
    with quiet, run, Heartbeat(client, [run.run_id]):  # the parent: its launching process beats it
        with run.follow_results(save_dir, claim.resume_epoch):  # per-epoch tracking when training runs in DDP
            result = train(
                spec.checkpoint or spec.arch,
                spec.data.yaml,
                save_dir,
                spec.freeze_layers,
                spec.train_args,
                callbacks,
                resume=claim.resuming,
            )
        run.log_artifacts(result.save_dir, job_dir, settings.tracking.log_weights, resolved_yaml(settings, spec))
    return result, pause


def auto_freeze_callbacks(spec: VariantSpec, run: VariantRun) -> dict[str, list]:
    """freeze=auto's policy in the training loop, then its tracking (which reads the policy's records)."""
    if spec.auto_freeze is None:
        return {}
    freezer = AutoFreezer(spec.auto_freeze)
    return merged(freezer.callbacks(), AutoFreezeTracking(freezer, run).callbacks())


def progress_for(spec: VariantSpec, sweep: SweepInfo | None) -> Progress:
    hc = HydraConfig.get()
    k = int(hc.job.get("num") or 0) + 1 if sweep else 1
    n = sweep.n_variants if sweep and sweep.n_variants else "?" if sweep else 1
    after = max(0, n - k) if isinstance(n, int) else 0
    return Progress(f"[{k}/{n}] {spec.run_name}", spec.train_args["epochs"], after, sweep.parallel if sweep else 1)


def result_line(metrics: dict, log_file: Path) -> str:
    shown = [
        f"{names.ULTRALYTICS_METRICS[key]} {metrics[key]:.3f}"
        for key in (names.UL_MAP50, names.UL_MAP50_95)
        if key in metrics
    ]
    return f"done: {', '.join(shown) or 'no validation metrics'} (log: {log_file})"


def current_sweep(hc) -> SweepInfo | None:
    """The sweep this job belongs to; a multirun job without one is an error, not a stray run."""
    if hc.mode != RunMode.MULTIRUN:
        return None
    sweep = SweepInfo.read(Path(hc.sweep.dir))
    if sweep is None:
        raise RuntimeError(f"no {SWEEP_FILE} in {hc.sweep.dir}: the sweep has no parent run")
    return sweep


def variant_tags(spec: VariantSpec, save_dir: Path, sweep: SweepInfo | None) -> dict[str, str]:
    tags = {
        names.ROLE: names.ROLE_VARIANT,
        names.CONFIG_HASH: spec.config_hash(),
        names.DEVICE: spec.device,
        names.OUTPUT_DIR: str(save_dir),
    }
    if sweep:
        tags.update({names.PARENT_RUN_ID: sweep.parent_run_id, names.SWEEP_ID: sweep.sweep_id})
    return tags


def reuse_status(job: Job, claim: Claim) -> JobStatus:
    """A variant not trained here: finished by an earlier run (reused), or held by a live one."""
    run = claim.run
    if claim.outcome == "finished":
        note = f"run {run.info.run_id} already finished it (sweep.rerun=true retrains)"
        log.info("Skipping %s: %s", job.name, note)
        return job.end(reused=True, note=note)
    holder = f"sweep {run.data.tags.get(names.SWEEP_ID, '?')}, {run.data.tags.get(names.OWNER, '?')}"
    note = f"run {run.info.run_id} ({holder}) is training it (sweep.on_held=wait waits for it)"
    log.info("Skipping %s: %s", job.name, note)
    return job.end(held=True, note=note)


def resolved_yaml(settings: JobSettings, spec: VariantSpec) -> str:
    """The job's config with every interpolation resolved, plus what the variant resolved to;
    credentials (a URI read from the environment, a config file's `user:pw@`) redacted."""
    resolved = dict(settings.config)
    resolved["resolved"] = {
        "freeze_layers": list(spec.freeze_layers),
        "checkpoint": str(spec.checkpoint or ""),
        "data_yaml": str(spec.data.yaml),
        "device": spec.device,
        "config_hash": spec.config_hash(),
    }
    return redact(OmegaConf.to_yaml(resolved))


def open_variant_run(
    client: MlflowClient, claim: Claim, spec: VariantSpec, settings: JobSettings
) -> tuple[VariantRun, Path]:
    """The claimed run, new or continued from its last checkpoint; the leftovers it replaces are
    closed. Returns the run and the ultralytics save_dir."""
    run_id = claim.run.info.run_id
    save_dir = Path(claim.run.data.tags[names.OUTPUT_DIR])
    if claim.resuming:
        log.info("Resuming %s from %s (run %s)", spec.run_name, save_dir / "weights" / "last.pt", run_id)
        run = VariantRun.resume(client, run_id, spec, settings.tracking)
        run.backfill(save_dir / "results.csv", claim.resume_epoch)
    else:
        record_config_hash(save_dir, spec.config_hash())
        run = VariantRun.start(client, run_id, spec, settings.tracking)
    supersede(client, claim.leftovers, run_id)
    return run, save_dir


def run_job(cfg: DictConfig) -> JobStatus:
    """One Hydra job. In a sweep one failing variant must not stop the others: it is recorded
    (MLflow run FAILED, variant.json) and the sweep's end-of-run summary exits non-zero."""
    job = Job(f"job {HydraConfig.get().job.get('num', 0)}")
    try:
        return run_variant(cfg, job)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.RUN:
            exit_with(error)
        log.error("%s", error)
    except Exception as error:
        if HydraConfig.get().mode == RunMode.RUN:
            raise
        log.error("variant failed: %s", failure_message(error))  # its traceback: the run's error.traceback tag
    return job.status
