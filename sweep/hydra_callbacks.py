"""Sweep-level work that must happen once, in the launching process, around all the jobs.

Before: validate every variant (bad input stops the sweep before anything trains or is
recorded), build the shared demo base, create the MLflow store, experiment and parent run.
After: end the parent run, summarise, and exit non-zero if a variant failed.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.checkpoints import DEMO
from sweep.errors import ConfigError, exit_with
from sweep.tracking import lifecycle
from sweep.tracking.credentials import redact
from sweep.tracking.store import first_line, open_experiment, sweep_tags

log = logging.getLogger("sweep")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def expand_jobs(config: DictConfig) -> list[list[str]]:
    """The override lists of every job the basic sweeper will launch, in order."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    overrides = OverridesParser.create().parse_overrides(params + list(task))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def job_configs(config: DictConfig) -> list[DictConfig]:
    """Compose each job's config exactly as the launcher will."""
    loader = GlobalHydra.instance().config_loader()
    configs = []
    for overrides in expand_jobs(config):
        job_cfg = loader.load_sweep_config(config, overrides)
        HydraConfig.instance().set_config(job_cfg)  # lets ${hydra:...} resolve outside a job
        configs.append(job_cfg)
    return configs


class SweepCallback(Callback):
    """Hydra turns any Exception raised in a callback into a warning and goes on: every failure
    here is turned into one line and a non-zero exit instead."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        with exit_on_failure():
            self._start(config)

    def _start(self, config: DictConfig) -> None:
        from sweep.variant import build_variant

        HydraConfig.instance().set_config(config)  # lets ${hydra:...} resolve before any job
        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = job_configs(config) if config.hydra.sweeper._target_ == BASIC_SWEEPER else []
        specs = [build_variant(job) for job in jobs]
        if jobs:
            log.info("Validated %d variants: %s", len(specs), ", ".join(s.run_name for s in specs))
        first = jobs[0] if jobs else config
        client, experiment_id = open_experiment(first.tracking.uri, first.tracking.experiment)
        lifecycle.close_stale_runs(client, [experiment_id])
        for job, spec in zip(jobs, specs, strict=True):
            if spec.weights == DEMO:  # built once here, not raced for by parallel jobs
                from sweep.demo.base import ensure_base

                ensure_base(job.model, Path(job.paths.cache_dir), spec.train_args["device"], spec.cpu_threads)
        sweep_id = sweep_dir.name
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        parent = lifecycle.start_parent_run(client, experiment_id, sweep_id, sweep_tags(sweep_dir, overrides))
        parallel = int(config.hydra.launcher.get("n_jobs") or config.hydra.launcher.get("array_parallelism") or 1)
        info = lifecycle.SweepInfo(client.tracking_uri, experiment_id, sweep_id, parent, len(jobs), parallel)
        info.write(sweep_dir)
        lifecycle.start_active_sweep(client, info)
        log.info(
            "Sweep %s: MLflow parent run %s in experiment '%s' (%s)",
            sweep_id,
            parent,
            first.tracking.experiment,
            redact(client.tracking_uri),
        )

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        """Hydra has just saved the job's config: no credentials may stay in those files."""
        output_dir = Path(config.hydra.runtime.output_dir)
        for path in [*output_dir.glob(".hydra/*.yaml"), *output_dir.parent.glob("multirun.yaml")]:
            text = path.read_text()
            if redact(text) != text:
                path.write_text(redact(text))

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from mlflow.tracking import MlflowClient

        lifecycle.stop_active_sweep()
        HydraConfig.instance().set_config(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        info = lifecycle.SweepInfo.read(sweep_dir)
        if info is None:
            return
        statuses = lifecycle.read_statuses(sweep_dir)
        failed = [s for s in statuses if s.get("status") not in ("FINISHED", "HELD")]
        with exit_on_failure("the sweep's parent run could not be finished"):
            lifecycle.finish_parent_run(MlflowClient(info.tracking_uri), info, jobs_failed=bool(failed))
        write_sweep_report(info.tracking_uri, info.parent_run_id, sweep_dir / "report")
        print(
            f"\nfreeze-sweep: {len(statuses) - len(failed)}/{len(statuses)} variants finished (sweep {info.sweep_id}, {sweep_dir})"
        )
        for status in statuses:
            if status.get("status") == "HELD":
                print(f"  HELD {status.get('name', '?')}: run {status.get('held_by')} of another sweep is training it")
        for status in failed:
            print(f"  FAILED {status.get('name', '?')}: {status.get('error', 'unknown error')}")
        if failed:
            sys.exit(1)


@contextmanager
def exit_on_failure(what: str = ""):
    """One line and a non-zero exit for any failure (SystemExit passes Hydra's callback runner)."""
    try:
        yield
    except ConfigError as error:
        exit_with(error)
    except Exception as error:
        prefix = f"{what}: " if what else ""
        print(f"freeze-sweep: error: {prefix}{type(error).__name__}: {first_line(error)}", file=sys.stderr)
        sys.exit(1)


def write_sweep_report(tracking_uri: str, parent_run_id: str, out_dir: Path) -> None:
    """The side-by-side report, printed and written; the sweep's result never depends on it."""
    from sweep.report import write_report

    try:
        report_dir = write_report(tracking_uri, parent_run_id, out_dir=out_dir)
    except Exception as error:
        log.warning("report not written: %s", first_line(error))
        return
    from sweep.ui import hint

    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir / 'report.html'} (also in the MLflow UI, parent run's artifacts)")
    print(hint(tracking_uri))
