"""One Hydra job = one variant: validate -> claim -> train -> track."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sweep.checkpoints import DEMO
from sweep.console import Progress, ultralytics_output_to
from sweep.errors import ConfigError, exit_with
from sweep.schedule import schedule_callbacks
from sweep.signals import install_signal_handlers
from sweep.tracking import lifecycle, names
from sweep.tracking.store import open_experiment
from sweep.tracking.variant_run import VariantRun, failure_message
from sweep.training import cpu_threads_callbacks, merged, train
from sweep.variant import VariantSpec, build_variant, describe

log = logging.getLogger("sweep")


ON_HELD = ("wait", "skip")
RESULT_METRICS = {"metrics/mAP50(B)": "mAP50", "metrics/mAP50-95(B)": "mAP50-95"}


def prepare(cfg: DictConfig) -> VariantSpec:
    """Validate the variant, then build the demo base it starts from if needed."""
    if cfg.sweep.on_held not in ON_HELD:
        raise ConfigError(f"sweep.on_held={cfg.sweep.on_held}: use {' or '.join(ON_HELD)}")
    spec = build_variant(cfg)
    if spec.weights == DEMO:
        from sweep.demo.base import ensure_base

        ensure_base(cfg.model, Path(cfg.paths.cache_dir), spec.train_args["device"], spec.cpu_threads)
    return spec


def run_variant(cfg: DictConfig) -> dict:
    """Train one variant into its MLflow run, unless it is already finished (reuse), held by a
    live run elsewhere (wait or skip), or part-done (resume from its last checkpoint)."""
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    status = {"name": f"job {hc.job.get('num', 0)}", "status": "RUNNING", "run_id": None}
    install_signal_handlers()
    try:  # every way out, validation errors included, leaves variant.json for the sweep's summary
        with own_gpu(cfg):
            return train_variant(cfg, job_dir, status)
    except BaseException as error:
        status.update(status="KILLED" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "FAILED")
        status["error"] = failure_message(error)
        raise
    finally:
        lifecycle.write_status(job_dir, status)


@contextmanager
def own_gpu(cfg: DictConfig):
    """With `train.device: null` on a GPU machine, the variant leases a GPU no other variant holds
    (parallel workers, a second sweep) for as long as it trains."""
    from sweep.gpu_lease import gpu_count, lease_gpu

    if cfg.train.device is not None or not gpu_count():
        yield
        return
    with lease_gpu(Path(cfg.paths.cache_dir) / "gpu-locks", per_gpu=cfg.sweep.variants_per_gpu) as gpu:
        cfg.train.device = str(gpu)
        yield


def train_variant(cfg: DictConfig, job_dir: Path, status: dict) -> dict:
    """validate -> claim -> train -> track."""
    spec = prepare(cfg)
    status["name"] = spec.run_name
    sweep = current_sweep(HydraConfig.get())
    progress = progress_for(spec, sweep)
    progress.header(describe(spec).split(": ", 1)[1])
    client, experiment_id = open_experiment(cfg.tracking.uri, cfg.tracking.experiment)
    claim = lifecycle.claim_variant(
        client,
        experiment_id,
        spec.config_hash(),
        spec.run_name,
        variant_tags(spec, job_dir, sweep),
        rerun=cfg.sweep.rerun,
        wait=cfg.sweep.on_held == "wait",
    )
    if claim.outcome != "train":
        lifecycle.mark_reused(client, claim.run, sweep)
        status.update(reuse_status(spec, claim), run_id=claim.run.info.run_id)
        progress.result(f"{status['status'].lower()}: {status['note']}")
        return status
    status["run_id"] = claim.run.info.run_id
    run, save_dir = open_variant_run(client, claim, spec, cfg)
    parent = sweep.parent_run_id if sweep else None
    schedule = schedule_callbacks(spec.schedule) if spec.switches else {}
    threads = cpu_threads_callbacks(spec.cpu_threads, spec.train_args["device"])
    callbacks = merged(run.callbacks(), schedule, progress.callbacks(), threads)
    quiet = ultralytics_output_to(job_dir / "train.log", verbose=cfg.sweep.verbose)
    with quiet, run, lifecycle.Heartbeat(client, [run.run_id, parent]):
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
        run.log_artifacts(result.save_dir, job_dir, cfg.tracking.log_weights, resolved_yaml(cfg, spec))
    status.update(status="FINISHED", metrics={k: float(v) for k, v in result.metrics.items()})
    progress.result(result_line(result.metrics, job_dir / "train.log"))
    return status


def progress_for(spec: VariantSpec, sweep: lifecycle.SweepInfo | None) -> Progress:
    hc = HydraConfig.get()
    k = int(hc.job.get("num") or 0) + 1 if sweep else 1
    n = sweep.n_variants if sweep and sweep.n_variants else "?" if sweep else 1
    after = max(0, n - k) if isinstance(n, int) else 0
    return Progress(f"[{k}/{n}] {spec.run_name}", spec.train_args["epochs"], after, sweep.parallel if sweep else 1)


def result_line(metrics: dict, log_file: Path) -> str:
    shown = [f"{name} {metrics[key]:.3f}" for key, name in RESULT_METRICS.items() if key in metrics]
    return f"done: {', '.join(shown) or 'no validation metrics'} (log: {log_file})"


def current_sweep(hc) -> lifecycle.SweepInfo | None:
    """The sweep this job belongs to; a multirun job without one is an error, not a stray run."""
    if hc.mode != RunMode.MULTIRUN:
        return None
    sweep = lifecycle.SweepInfo.read(Path(hc.sweep.dir))
    if sweep is None:
        raise RuntimeError(f"no {lifecycle.SWEEP_FILE} in {hc.sweep.dir}: the sweep has no parent run")
    return sweep


def variant_tags(spec: VariantSpec, job_dir: Path, sweep: lifecycle.SweepInfo | None) -> dict[str, str]:
    tags = {
        names.ROLE: names.ROLE_VARIANT,
        names.CONFIG_HASH: spec.config_hash(),
        names.DEVICE: spec.train_args["device"],
        names.OUTPUT_DIR: str(job_dir / "train"),
    }
    if sweep:
        tags.update({names.PARENT_RUN_ID: sweep.parent_run_id, names.SWEEP_ID: sweep.sweep_id})
    return tags


def reuse_status(spec: VariantSpec, claim: lifecycle.Claim) -> dict:
    run = claim.run
    if claim.outcome == "finished":
        note = f"run {run.info.run_id} already finished it (sweep.rerun=true retrains)"
        log.info("Skipping %s: %s", spec.run_name, note)
        return {"status": "FINISHED", "reused": True, "note": note}
    holder = f"sweep {run.data.tags.get(names.SWEEP_ID, '?')}, {run.data.tags.get(names.OWNER, '?')}"
    note = f"run {run.info.run_id} ({holder}) is training it (sweep.on_held=wait waits for it)"
    log.info("Skipping %s: %s", spec.run_name, note)
    return {"status": "HELD", "held_by": run.info.run_id, "note": note}


def resolved_yaml(cfg: DictConfig, spec: VariantSpec) -> str:
    """The job's config with every interpolation resolved, plus what the variant resolved to."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["resolved"] = {
        "freeze_layers": list(spec.freeze_layers),
        "checkpoint": str(spec.checkpoint or ""),
        "data_yaml": str(spec.data.yaml),
        "device": spec.train_args["device"],
        "config_hash": spec.config_hash(),
    }
    return OmegaConf.to_yaml(resolved)


def open_variant_run(client, claim: lifecycle.Claim, spec: VariantSpec, cfg: DictConfig) -> tuple[VariantRun, Path]:
    """The claimed run, new or continued from its last checkpoint; the leftovers it replaces are
    closed. Returns the run and the ultralytics save_dir."""
    run_id = claim.run.info.run_id
    save_dir = Path(claim.run.data.tags[names.OUTPUT_DIR])
    if claim.resuming:
        log.info("Resuming %s from %s (run %s)", spec.run_name, save_dir / "weights" / "last.pt", run_id)
        run = VariantRun.resume(client, run_id, spec, cfg.tracking)
        run.backfill(save_dir / "results.csv", claim.resume_epoch)
    else:
        run = VariantRun.start(client, run_id, spec, cfg.tracking)
    lifecycle.supersede(client, claim.leftovers, run_id)
    return run, save_dir


def run_job(cfg: DictConfig) -> dict | None:
    """One Hydra job. In a sweep one failing variant must not stop the others: it is recorded
    (MLflow run FAILED, variant.json) and the sweep's end-of-run summary exits non-zero."""
    try:
        return run_variant(cfg)
    except ConfigError as error:
        if HydraConfig.get().mode == RunMode.RUN:
            exit_with(error)
        log.error("%s", error)
        return {"status": "FAILED", "error": str(error)}
    except Exception as error:
        if HydraConfig.get().mode == RunMode.RUN:
            raise
        log.exception("variant failed: %s", failure_message(error))
        return {"status": "FAILED", "error": failure_message(error)}
