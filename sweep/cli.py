"""The `freeze-sweep` command: Hydra's CLI around `sweep.app.run_job`.

Only light modules are imported here, so `--help` and shell completion answer at once; torch,
ultralytics and MLflow load when a job starts.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from sweep.cli_check import check_group_choices
from sweep.console import thread_errors_in_one_line
from sweep.errors import ConfigError, exit_with
from sweep.signals import exit_code, install_signal_handlers
from sweep.tracking.credentials import install_log_redaction, scrub_argv, scrub_environment
from sweep.train_defaults import register as register_train_defaults

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_train_defaults()


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig):  # noqa: ANN201 (the job's JobStatus, for Hydra's JobReturn)
    from sweep.app import run_job  # torch, ultralytics, mlflow: here, so --help and completion answer at once

    return run_job(cfg)


def cli() -> None:
    """Credentials out of the command line, one-line errors for unknown config options, then
    Hydra; SIGTERM and SIGINT end the sweep's runs KILLED and exit 128 + the signal."""
    sys.argv[1:] = scrub_argv(sys.argv[1:])
    scrub_environment()
    install_log_redaction()
    logging.raiseExceptions = False  # a full disk must not turn every log line into a traceback
    thread_errors_in_one_line()
    try:
        check_group_choices(sys.argv[1:], Path(CONF_DIR))
    except ConfigError as error:
        exit_with(error)
    install_signal_handlers()
    try:
        main()
    except Exception as error:  # raised by Hydra only while a sweep runs: see `end_broken_sweep`
        from sweep.hydra_callbacks import end_broken_sweep  # mlflow: only once a sweep broke

        end_broken_sweep(error)
        raise
    except KeyboardInterrupt as error:
        from sweep.tracking.parent_run import end_active_sweep  # mlflow: only once a sweep is interrupted

        name = str(error) or "SIGINT"
        end_active_sweep(f"interrupted by {name}")
        print(f"freeze-sweep: interrupted by {name}; runs ended KILLED, a re-run resumes them", file=sys.stderr)
        sys.exit(exit_code(error))
