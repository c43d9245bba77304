"""The `freeze-sweep` Hydra app: one job = one variant (validate -> train -> track)."""

from __future__ import annotations

import json
import logging
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
from sweep.tracking import names
from sweep.tracking.previous_runs import PreviousRuns, find_previous, mark_reused, supersede
from sweep.tracking.store import open_experiment, read_sweep_file
from sweep.tracking.variant_run import VariantRun, failure_message
from sweep.train_defaults import register as register_train_defaults
from sweep.training import train
from sweep.variant import VariantSpec, build_variant, describe

register_train_defaults()
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
STATUS_FILE = "variant.json"  # in each job folder: read by the sweep's end-of-run summary
log = logging.getLogger("sweep")


def prepare(cfg: DictConfig) -> VariantSpec:
    """Validate the variant, then build the demo base it starts from if needed."""
    spec = build_variant(cfg)
    if spec.weights == DEMO:
        from sweep.demo.base import ensure_base

        ensure_base(cfg.model, Path(cfg.paths.cache_dir), spec.train_args["device"])
    return spec


def run_variant(cfg: DictConfig) -> dict:
    """Train one variant into its MLflow run, unless an earlier sweep already did (skip) or
    got part of the way (resume from its last checkpoint)."""
    hc = HydraConfig.get()
    job_dir = Path(hc.runtime.output_dir)
    status = {"name": f"job {hc.job.get('num', 0)}", "status": "RUNNING", "run_id": None}
    try:  # every way out, validation errors included, leaves variant.json for the sweep's summary
        spec = prepare(cfg)
        status["name"] = spec.run_name
        log.info(describe(spec))
        sweep_info = read_sweep_file(Path(hc.sweep.dir)) if hc.mode == RunMode.MULTIRUN else None
        client, experiment_id = open_experiment(cfg.tracking.uri, cfg.tracking.experiment)
        tags = {names.OUTPUT_DIR: str(job_dir / "train"), "mlflow.note.content": f"Hydra job folder: {job_dir}"}
        if sweep_info:
            tags.update({names.PARENT_RUN_ID: sweep_info["parent_run_id"], names.SWEEP_ID: sweep_info["sweep_id"]})
        previous = find_previous(client, experiment_id, spec.config_hash())
        if previous.finished and not cfg.sweep.rerun:
            log.info(
                "Skipping %s: run %s already finished it (sweep.rerun=true retrains)",
                spec.run_name,
                previous.finished.info.run_id,
            )
            if sweep_info:
                mark_reused(client, previous.finished, sweep_info["parent_run_id"], sweep_info["sweep_id"])
            status.update(status="FINISHED", run_id=previous.finished.info.run_id, reused=True)
            return status
        run, save_dir, resuming = open_variant_run(client, experiment_id, spec, previous, tags, cfg)
        status["run_id"] = run.run_id
        with run, ultralytics_log_to(job_dir / "train.log"):
            start = spec.checkpoint or spec.arch
            result = train(
                start,
                spec.data.yaml,
                save_dir,
                spec.freeze_layers,
                spec.train_args,
                run.callbacks(),
                resume=resuming,
            )
            run.log_artifacts(result.save_dir, job_dir, cfg.tracking.log_weights, resolved_yaml(cfg, spec))
        status.update(status="FINISHED", metrics={k: float(v) for k, v in result.metrics.items()})
        return status
    except BaseException as error:
        status.update(status="FAILED", error=failure_message(error))
        raise
    finally:
        (job_dir / STATUS_FILE).write_text(json.dumps(status, indent=2))


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


def open_variant_run(
    client, experiment_id: str, spec: VariantSpec, previous: PreviousRuns, tags: dict, cfg: DictConfig
) -> tuple[VariantRun, Path, bool]:
    """Continue an interrupted run from its last checkpoint, or start a new one; either way,
    close the leftovers it replaces. Returns the run, the ultralytics save_dir, and resuming."""
    resume_from = None if cfg.sweep.rerun else previous.resumable
    if resume_from:
        save_dir = Path(resume_from.data.tags[names.OUTPUT_DIR])
        last = save_dir / "weights" / "last.pt"
        log.info("Resuming %s from %s (run %s)", spec.run_name, last, resume_from.info.run_id)
        tags = {**tags, names.OUTPUT_DIR: str(save_dir)}
        run = VariantRun.resume(client, resume_from.info.run_id, spec, tags, cfg.tracking)
        run.backfill(save_dir / "results.csv", previous.resume_epoch)
    else:
        save_dir = Path(tags[names.OUTPUT_DIR])
        run = VariantRun.create(client, experiment_id, spec, tags, cfg.tracking)
    replaced = previous.leftovers + ([previous.resumable] if previous.resumable and not resume_from else [])
    supersede(client, replaced, run.run_id)
    return run, save_dir, resume_from is not None


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
    """The `freeze-sweep` console script: one-line errors for unknown config options, then Hydra."""
    try:
        check_group_choices(sys.argv[1:], Path(CONF_DIR))
    except ConfigError as error:
        exit_with(error)
    main()
