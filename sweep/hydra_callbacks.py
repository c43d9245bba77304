"""Sweep-level work that must happen once, in the launching process, around all the jobs.

Before: validate every variant (bad input stops the sweep before anything trains or is
recorded), build the shared demo base, create the MLflow store, experiment and parent run.
After: end the parent run, summarise, and exit non-zero if a variant failed.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from sweep.budget.checks import SWEEPER
from sweep.errors import ConfigError, exit_with
from sweep.files import MIB, check_output_dir, write_atomic
from sweep.tracking import parent_run
from sweep.tracking.credentials import redact
from sweep.tracking.job_status import Outcome, read_statuses
from sweep.tracking.stale_runs import close_stale_runs, end_runs_killed
from sweep.tracking.store import connect, first_line, open_experiment, sweep_tags

log = logging.getLogger("sweep")
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"  # Hydra's default, by its _target_
BASIC_SWEEPERS = (BASIC_SWEEPER, SWEEPER)  # ours (the default here) expands jobs as the basic one does


def expand_jobs(config: DictConfig) -> list[list[str]] | None:
    """The override lists of every job the sweep will launch, in order, where they are known before
    any job runs: with Hydra's basic sweeper (its default, under any launcher: basic, joblib,
    submitit). None with any other sweeper (Optuna, Ax, Nevergrad choose each job from the results
    so far): each of its jobs validates its own variant when it starts.

    Expanded with Hydra's public override API as the basic sweeper expands them (its private
    `split_arguments`; tests/test_pinned_apis.py holds the two equal): one value per key, the
    cross product of the swept keys in the order given, the first key slowest.
    """
    if config.hydra.sweeper._target_ not in BASIC_SWEEPERS:
        return None
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    choices: dict[str, list[str]] = {}
    for override in parser.parse_overrides(params + list(task)):
        key = override.get_key_element()
        if not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            raise ConfigError(
                f"{override.input_line}: the basic sweeper sweeps a list of values, not a range or interval"
            )
    return [list(job) for job in itertools.product(*choices.values())]


def resolve_jobs(config: DictConfig) -> list[tuple[DictConfig, object]]:
    """Each job's config, composed exactly as the launcher will, and its resolved variant; [] where
    the jobs are not known in advance (`expand_jobs`). `${hydra:...}` resolves against each job's
    own Hydra config, then against the sweep's again."""
    from sweep.variant import resolve  # torch and ultralytics: seconds, paid only by a sweep that starts

    loader = GlobalHydra.instance().config_loader()
    resolved = []
    try:
        for overrides in expand_jobs(config) or []:
            job = loader.load_sweep_config(config, overrides)
            HydraConfig.instance().set_config(job)
            resolved.append((job, resolve(job)))
    finally:
        HydraConfig.instance().set_config(config)
    return resolved


def record_parent_params(client, parent_run_id: str, specs: list) -> None:  # noqa: ANN001 (MlflowClient)
    """The parent's params (what is swept, what is held fixed), from the variants the sweep expanded:
    written once, here, since MLflow params are write-once and a report during the sweep sees only part of it."""
    from mlflow.entities import Param

    # pandas, torch, ultralytics: seconds, paid only by a sweep that starts, not by every single run
    from sweep.report.context import parent_params, variants_frame
    from sweep.tracking.variant_run import variant_params

    params = parent_params(variants_frame([variant_params(spec) for spec in specs]))
    client.log_batch(parent_run_id, params=[Param(k, v) for k, v in params.items()])


class SweepCallback(Callback):
    """Hydra turns any Exception raised in a callback into a warning and goes on: every failure
    here is turned into one line and a non-zero exit instead."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        with exit_on_failure():
            self._start(config)

    def _start(self, config: DictConfig) -> None:
        from sweep.variant import VARIANTS_FILE, save_variants  # torch, ultralytics: seconds to import

        HydraConfig.instance().set_config(config)  # lets ${hydra:...} resolve before any job
        sweep_dir = Path(config.hydra.sweep.dir)
        resolved = resolve_jobs(config)
        jobs, specs = [job for job, _ in resolved], [spec for _, spec in resolved]
        if jobs:
            log.info("Validated %d variants: %s", len(specs), ", ".join(s.run_name for s in specs))
        else:
            log.info("Sweeper %s: each variant is validated when its job starts", config.hydra.sweeper._target_)
        parallel = int(config.hydra.launcher.get("n_jobs") or config.hydra.launcher.get("array_parallelism") or 1)
        check_output_dir(
            sweep_dir, f"hydra.sweep.dir={sweep_dir}", space_needed([s.params.total for s in specs], parallel)
        )
        first = jobs[0] if jobs else config
        client, experiment_id = open_experiment(first.tracking.uri, first.tracking.experiment)
        close_stale_runs(client, [experiment_id])
        for spec in specs:  # a source built by training (the demo base): built once here, not raced for by the jobs
            spec.weights_source.ensure(spec.device, spec.cpu_threads)
        if specs:  # resolved once: the jobs on this host take theirs from here
            save_variants(sweep_dir, [(list(job.hydra.overrides.task), spec) for job, spec in resolved])
        else:  # a sweeper whose jobs are not known in advance: each job resolves its own
            (sweep_dir / VARIANTS_FILE).unlink(missing_ok=True)
        sweep_id = sweep_dir.name
        overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
        parent = parent_run.start_parent_run(client, experiment_id, sweep_id, sweep_tags(sweep_dir, overrides))
        if specs:
            record_parent_params(client, parent, specs)
        info = parent_run.SweepInfo(client.tracking_uri, experiment_id, sweep_id, parent, len(jobs), parallel)
        try:
            info.write(sweep_dir)
        except OSError:  # checked a moment ago, yet full or read-only now: the parent must not stay RUNNING
            end_runs_killed(client, [parent], f"{parent_run.SWEEP_FILE} could not be written", "FAILED")
            raise
        _launched[:] = [sweep_dir, client.tracking_uri]  # in memory only: sweep.json has no credentials
        # From here on an error inside Hydra reaches `sweep.cli` (`end_broken_sweep`) instead of
        # being printed by Hydra with a traceback while the parent run stays RUNNING.
        os.environ["HYDRA_FULL_ERROR"] = "1"
        parent_run.start_active_sweep(client, info)
        log.info(
            "Sweep %s: MLflow parent run %s in experiment '%s' (%s)",
            sweep_id,
            parent,
            first.tracking.experiment,
            redact(client.tracking_uri),
        )

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        """Hydra has just saved the job's config: no credentials may stay in those files (a
        `${oc.env:...}` or a config file's URI; the command line's are gone already)."""
        output_dir = Path(config.hydra.runtime.output_dir)
        for path in [*output_dir.glob(".hydra/*.yaml"), *output_dir.parent.glob("multirun.yaml")]:
            try:
                text = path.read_text()
                if redact(text) != text:
                    write_atomic(path, redact(text))
            except OSError as error:  # a full disk: the job itself will fail and say so
                log.error("%s not checked for credentials: %s", path, error)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        HydraConfig.instance().set_config(config)
        if _launched:
            finish_sweep(*_launched)


_launched: list = []  # (sweep dir, store URI) of the sweep this process started, until it ends


def finish_sweep(sweep_dir: Path, uri: str, problems: tuple[str, ...] = ()) -> None:
    """End the parent run, summarise, exit non-zero if a variant or the sweep's own bookkeeping
    (`problems`) failed. Whatever fails here is one line, and the summary still prints."""
    parent_run.stop_active_sweep()
    _launched.clear()
    with exit_on_failure(f"{sweep_dir / parent_run.SWEEP_FILE} unreadable"):
        info = parent_run.SweepInfo.read(sweep_dir)
    if info is None:
        return
    statuses = read_statuses(sweep_dir, info.n_variants)
    failed = [s for s in statuses if not s.outcome.ok]
    problems = list(problems)
    try:
        parent_run.finish_parent_run(connect(uri), info, jobs_failed=bool(failed or problems))
    except Exception as error:
        problems.append(f"the sweep's parent run could not be finished: {type(error).__name__}: {first_line(error)}")
    write_sweep_report(uri, info.parent_run_id, sweep_dir / "report")
    print(
        f"\nfreeze-sweep: {len(statuses) - len(failed)}/{len(statuses)} variants finished (sweep {info.sweep_id}, {sweep_dir})"
    )
    for status in statuses:
        if status.outcome is Outcome.HELD:
            print(f"  HELD {status.name}: run {status.run_id} of another sweep is training it")
    for status in failed:
        print(f"  FAILED {status.name}: {redact(status.error or 'unknown error')}")
    for problem in problems:
        print(f"freeze-sweep: error: {problem}", file=sys.stderr)
    if failed or problems:
        sys.exit(1)


def end_broken_sweep(error: BaseException) -> None:
    """Hydra itself failed while the sweep ran (its own files on a full disk, a launcher error):
    one line instead of its traceback, the parent run FAILED, the summary, exit 1."""
    if _launched:
        finish_sweep(*_launched, problems=(f"the sweep stopped: {type(error).__name__}: {first_line(error)}",))
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


def space_needed(params_per_variant: list[int], parallel: int) -> int:
    """Bytes the sweep will write at least: its records, and per variant ultralytics' plots and
    logs (about 2 MiB), its last.pt and best.pt (FP16 weights, 2 bytes a parameter, once training
    ends), plus the optimizer state both carry while a variant trains (about 8 bytes a parameter
    more) for the variants training at once."""
    largest = max(params_per_variant, default=0)
    return MIB + sum(2 * MIB + 4 * n for n in params_per_variant) + max(1, parallel) * 16 * largest


def write_sweep_report(tracking_uri: str, parent_run_id: str, out_dir: Path) -> None:
    """The side-by-side report, printed and written; the sweep's result never depends on it."""
    from sweep.report import write_report  # matplotlib, pandas: only when a sweep ends

    try:
        report_dir = write_report(tracking_uri, parent_run_id, out_dir=out_dir)
    except Exception as error:
        log.warning("report not written: %s", first_line(error))
        return
    from sweep.ui import hint  # only once a report is written

    print((report_dir / "report.md").read_text())
    print(f"report: {report_dir / 'report.html'} (also in the MLflow UI, parent run's artifacts)")
    print(hint(tracking_uri))
