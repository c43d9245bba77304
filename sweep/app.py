"""The `freeze-sweep` Hydra app: one job = one variant (validate -> train -> track)."""

from __future__ import annotations

import logging
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from sweep.checkpoints import DEMO
from sweep.cli_check import check_group_choices
from sweep.errors import ConfigError, exit_with
from sweep.tracking import lifecycle, names
from sweep.tracking.credentials import scrub_argv
from sweep.tracking.store import open_experiment
from sweep.tracking.variant_run import VariantRun, failure_message
from sweep.train_defaults import register as register_train_defaults
from sweep.training import train
from sweep.variant import VariantSpec, build_variant, describe

register_train_defaults()
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("sweep")


ON_HELD = ("wait", "skip")


def prepare(cfg: DictConfig) -> VariantSpec:
    """Validate the variant, then build the demo base it starts from if needed."""
    if cfg.sweep.on_held not in ON_HELD:
        raise ConfigError(f"sweep.on_held={cfg.sweep.on_held}: use {' or '.join(ON_HELD)}")
    spec = build_variant(cfg)
    if spec.weights == DEMO:
        from sweep.demo.base import ensure_base

        ensure_base(cfg.model, Path(cfg.paths.cache_dir), spec.train_args["device"])
    return spec


def run_variant(cfg: DictConfig) -> dict:
    """Train one variant into its MLflow run, unless it is already finished (reuse), held by a
    live run elsewhere (wait or skip), or part-done (resume from its last checkpoint)."""
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    status = {"name": f"job {hc.job.get('num', 0)}", "status": "RUNNING", "run_id": None}
    lifecycle.install_signal_handlers()
    try:  # every way out, validation errors included, leaves variant.json for the sweep's summary
        spec = prepare(cfg)
        status["name"] = spec.run_name
        log.info(describe(spec))
        sweep = current_sweep(hc)
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
            return status
        status["run_id"] = claim.run.info.run_id
        run, save_dir = open_variant_run(client, claim, spec, cfg)
        parent = sweep.parent_run_id if sweep else None
        with run, lifecycle.Heartbeat(client, [run.run_id, parent]), ultralytics_log_to(job_dir / "train.log"):
            start = spec.checkpoint or spec.arch
            result = train(
                start,
                spec.data.yaml,
                save_dir,
                spec.freeze_layers,
                spec.train_args,
                run.callbacks(),
                resume=claim.resuming,
            )
            run.log_artifacts(result.save_dir, job_dir, cfg.tracking.log_weights, resolved_yaml(cfg, spec))
        status.update(status="FINISHED", metrics={k: float(v) for k, v in result.metrics.items()})
        return status
    except BaseException as error:
        status.update(status="KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED")
        status["error"] = failure_message(error)
        raise
    finally:
        lifecycle.write_status(job_dir, status)


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
    holder = run.data.tags.get(names.SWEEP_ID, "?")
    if claim.outcome == "finished":
        log.info("Skipping %s: run %s already finished it (sweep.rerun=true retrains)", spec.run_name, run.info.run_id)
        return {"status": "FINISHED", "reused": True}
    log.info(
        "Skipping %s: run %s of sweep %s (%s) is training it (sweep.on_held=wait waits for it)",
        spec.run_name,
        run.info.run_id,
        holder,
        run.data.tags.get(names.OWNER, "?"),
    )
    return {"status": "HELD", "held_by": run.info.run_id}


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


@contextmanager
def ultralytics_log_to(path: Path):
    """Copy ultralytics' own log (it does not propagate to Hydra's handlers) into the job folder."""
    from ultralytics.utils import LOGGER

    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOGGER.addHandler(handler)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        handler.close()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> dict | None:
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
        # In a sweep one failing variant must not stop the others: it is recorded (MLflow run
        # FAILED, variant.json) and the sweep's end-of-run summary exits non-zero.
        log.exception("variant failed: %s", failure_message(error))
        return {"status": "FAILED", "error": failure_message(error)}


def cli() -> None:
    """The `freeze-sweep` console script: credentials out of the command line, one-line errors for
    unknown config options, then Hydra; SIGTERM and SIGINT end the sweep's runs KILLED."""
    sys.argv[1:] = scrub_argv(sys.argv[1:])
    try:
        check_group_choices(sys.argv[1:], Path(CONF_DIR))
    except ConfigError as error:
        exit_with(error)
    lifecycle.install_signal_handlers()
    try:
        main()
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        lifecycle.end_active_sweep(f"interrupted by {signal.Signals(signum).name}")
        print(
            f"freeze-sweep: interrupted by {signal.Signals(signum).name}; runs ended KILLED, a re-run resumes them",
            file=sys.stderr,
        )
        sys.exit(128 + signum)
