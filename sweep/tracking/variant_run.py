"""One variant as one MLflow child run, fed by ultralytics callbacks.

Uses `MlflowClient` with explicit run ids rather than MLflow's global active run, so nothing
leaks from one variant to the next in a reused process.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from sweep.schedule import trainable_params
from sweep.tracking import names
from sweep.tracking.credentials import redact
from sweep.tracking.job_status import Outcome, failure_message, outcome_of
from sweep.tracking.resources import ResourceMonitor, gpu_indices
from sweep.tracking.results_follower import ResultsFollower, parse_rows
from sweep.train_defaults import train_defaults
from sweep.variant import TrackingSettings, VariantSpec, describe_layers

log = logging.getLogger(__name__)

LR_KEY = "lr/pg0"
ALWAYS_LOGGED = ("epochs", "imgsz", "batch", "device", "seed", "optimizer")  # train.* params every run has
BATCH_MAX = 1000  # MLflow's most metrics in one log_batch
PENDING_MAX = 20_000  # metric points kept for a store that is away; older ones beyond are lost (and said so)


def epoch_metrics(row: dict[str, float]) -> dict[str, float]:
    """Our metric names from an ultralytics epoch record (trainer values or a results.csv row)."""
    metrics = {names.ULTRALYTICS_METRICS[k]: v for k, v in row.items() if k in names.ULTRALYTICS_METRICS}
    metrics.update({k: v for k, v in row.items() if k in names.TRAIN_LOSSES})
    if LR_KEY in row:
        metrics[names.LR] = row[LR_KEY]
    return metrics


def run_description(spec: VariantSpec) -> str:
    """The run's description in the MLflow UI (markdown): what is frozen, what is trained."""
    p = spec.params
    frozen = f"layers {describe_layers(spec.freeze_layers)}" if spec.freeze_layers else "nothing"
    return (
        f"**freeze={spec.freeze_label}**: {frozen} frozen ({len(spec.freeze_layers)} of "
        f"{spec.architecture.num_layers} layers); {p.trainable:,} of {p.total:,} parameters trainable "
        f"({p.trainable_pct:.1f}%). Starts from `{spec.checkpoint or spec.arch}`, trains on `{spec.data.yaml}`."
    )


def variant_params(spec: VariantSpec) -> dict[str, str]:
    """The resolved config, flattened: what the variant is, and the training arguments that differ
    from ultralytics' defaults (all of them are in the config/resolved.yaml artifact)."""
    p = spec.params
    params = {
        names.P_MODEL: spec.model_name,
        names.P_ARCH: spec.arch,
        names.P_WEIGHTS: str(spec.checkpoint or ""),
        "weights_given": spec.weights,
        names.P_DATA: str(spec.data.yaml),
        "data_name": spec.data.name,
        "nc": spec.data.nc,
        names.P_FREEZE: spec.freeze_label,
        names.P_FREEZE_LAYERS: names.freeze_layers_param(spec.freeze_layers),
        names.P_FROZEN_LAYERS: len(spec.freeze_layers),
        names.P_NUM_LAYERS: spec.architecture.num_layers,
        names.P_PARAMS_TOTAL: p.total,
        names.P_PARAMS_TRAINABLE: p.trainable,
        names.P_PARAMS_FROZEN: p.frozen,
        names.P_TRAINABLE_PCT: f"{p.trainable_pct:.2f}",
    }
    if spec.switches:
        params[names.P_FREEZE_SCHEDULE] = spec.schedule.as_param()
    defaults = train_defaults()
    shown = {k: v for k, v in spec.train_args.items() if k in ALWAYS_LOGGED or v != defaults.get(k)}
    params.update({f"train.{k}": v for k, v in shown.items()})
    return {k: str(v)[:6000] for k, v in params.items()}


class VariantRun:
    """Child run lifecycle plus the ultralytics callbacks that log into it."""

    def __init__(self, client: MlflowClient, run_id: str, spec: VariantSpec, tracking: TrackingSettings) -> None:
        self.client = client
        self.run_id = run_id
        self.spec = spec
        self.monitor = ResourceMonitor(spec.device, tracking.gpu_sample_interval_s, sink=self.log_metrics)
        self.system_interval_s = tracking.system_metrics_interval_s
        self._epoch_done = -1
        self._train_started = 0.0
        self._epoch_train_start = 0.0
        self._images_per_s = 0.0
        self._logged_epochs: set[int] = set()
        self._time_before_resume = 0.0
        self._previous_row_time = 0.0
        self._last_row: dict[str, float] | None = None
        self._pending: list[Metric] = []  # points the store refused so far: sent with the next ones
        self._lost: list[str] = []  # what could not be recorded, for the run's `sweep.figures_missing`
        self._said = ""  # the last store error warned about: said once, not every epoch
        self._lock = threading.Lock()  # the epoch callbacks and the background samplers log alike
        self.end_status = "FINISHED"  # how a training that returns ends the run; a budget's pause: SCHEDULED

    @classmethod
    def start(cls, client: MlflowClient, run_id: str, spec: VariantSpec, tracking: TrackingSettings) -> VariantRun:
        """A new run (the claim already made it): what the variant is, in params, numbers and words."""
        client.log_batch(
            run_id,
            metrics=[
                Metric(names.M_FROZEN_LAYERS, len(spec.freeze_layers), int(time.time() * 1000), 0),
                Metric(names.M_TRAINABLE_PCT, spec.params.trainable_pct, int(time.time() * 1000), 0),
            ],
            params=[Param(k, v) for k, v in variant_params(spec).items()],
        )
        client.set_tag(run_id, "mlflow.note.content", run_description(spec))
        return cls(client, run_id, spec, tracking)

    @classmethod
    def resume(cls, client: MlflowClient, run_id: str, spec: VariantSpec, tracking: TrackingSettings) -> VariantRun:
        """Continue an interrupted run: same run id, epochs already logged are never logged again."""
        run = cls(client, run_id, spec, tracking)
        run._logged_epochs = {m.step for m in client.get_metric_history(run_id, "mAP50")}
        run._time_before_resume = sum(m.value for m in client.get_metric_history(run_id, names.EPOCH_TIME))
        resource_steps = [m.step for m in client.get_metric_history(run_id, names.CPU_RSS)]
        run.monitor.step_offset = max(resource_steps, default=-1) + 1
        return run

    def backfill(self, results_csv: Path, up_to_epoch: int) -> None:
        """Log epochs that finished (in results.csv and the checkpoint) but never reached MLflow:
        a kill between ultralytics saving last.pt and our epoch callback loses exactly those."""
        if not results_csv.is_file():
            return
        for row in parse_rows(results_csv.read_text().splitlines(keepends=True)):
            if row["epoch"] <= up_to_epoch:
                self.log_results_row(row)
            self._previous_row_time = row["time"]

    def log_results_row(self, row: dict[str, float]) -> None:
        """One epoch as ultralytics wrote it to results.csv (its `time` column is cumulative)."""
        metrics = epoch_metrics(row)
        metrics[names.EPOCH_TIME] = row["time"] - self._previous_row_time
        self._previous_row_time = row["time"]
        self._last_row = row
        self._log_epoch(metrics, int(row["epoch"]))

    @contextmanager
    def follow_results(self, save_dir: Path, after_epoch: int):
        """With several GPUs ultralytics trains in a DDP subprocess where our callbacks never run:
        the epochs then reach MLflow from its results.csv, and the final figures from its last row."""
        if len(gpu_indices(self.spec.device)) < 2:
            yield
            return
        results = save_dir / "results.csv"
        if after_epoch == 0:
            results.unlink(missing_ok=True)  # a fresh training's file, not a leftover's rows
        started = time.monotonic()
        with ResultsFollower(results, self.log_results_row, after_epoch=after_epoch):
            yield
        final = {
            names.BEST[names.ULTRALYTICS_METRICS[k]]: v
            for k, v in (self._last_row or {}).items()
            if names.ULTRALYTICS_METRICS.get(k) in names.BEST
        }
        final[names.TRAIN_TIME] = self._time_before_resume + time.monotonic() - started
        self.log_metrics(final, step=int((self._last_row or {}).get("epoch", 0)))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Never raises: tracking must not crash training (ultralytics' own MLflow callback holds
        the same rule). Points the store refuses are kept and sent with the next ones; what is
        still unsent when the run ends is named in its `sweep.figures_missing` tag."""
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        with self._lock:
            self._pending += batch
            self._send_pending()

    def _send_pending(self) -> None:
        while self._pending:
            chunk = self._pending[:BATCH_MAX]
            try:
                self.client.log_batch(self.run_id, metrics=chunk)
            except Exception as error:
                self._store_failed("metrics", error)
                if len(self._pending) > PENDING_MAX:
                    self._lost.append(f"{len(self._pending) - PENDING_MAX} metric points ({self._said})")
                    del self._pending[:-PENDING_MAX]
                return
            del self._pending[: len(chunk)]

    @contextmanager
    def contained(self, what: str) -> Iterator[None]:
        """A store write from a training callback (an artifact, a param) that must not fail the
        training: an error is warned about once, and named in the run's record when it ends."""
        try:
            yield
        except Exception as error:
            self._store_failed(what, error)
            self._lost.append(f"{what} ({self._said})")

    def _store_failed(self, what: str, error: Exception) -> None:
        text = str(error).strip()
        reason = redact(f"{type(error).__name__}: {text.splitlines()[0] if text else ''}")[:400]
        if reason != self._said:
            log.warning("%s: %s not recorded in MLflow, training goes on: %s", self.spec.run_name, what, reason)
        self._said = reason

    def close_record(self) -> None:
        """Send what the store refused during training; say in the run what never got there."""
        with self._lock:
            self._send_pending()
            if self._pending:
                self._lost.append(f"{len(self._pending)} metric points ({self._said})")
                self._pending.clear()
        if not self._lost:
            return
        try:
            self.client.set_tag(self.run_id, names.FIGURES_MISSING, "; ".join(self._lost)[:5000])
        except Exception as error:
            log.warning(
                "%s: figures missing, and not said in its run: %s", self.spec.run_name, redact(str(error))[:200]
            )

    def callbacks(self) -> dict[str, list]:
        return {
            "on_train_start": [self._on_train_start],
            "on_train_epoch_start": [self._on_train_epoch_start],
            "on_train_epoch_end": [self._on_train_epoch_end],
            "on_fit_epoch_end": [self._on_fit_epoch_end],
            "on_train_end": [self._on_train_end],
        }

    def _on_train_start(self, trainer) -> None:
        self._train_started = time.monotonic()

    def _on_train_epoch_start(self, trainer) -> None:
        self._epoch_train_start = time.monotonic()

    def _on_train_epoch_end(self, trainer) -> None:
        self._epoch_done = trainer.epoch
        seconds = time.monotonic() - self._epoch_train_start
        self._images_per_s = len(trainer.train_loader.dataset) / seconds if seconds > 0 else 0.0

    def _on_fit_epoch_end(self, trainer) -> None:
        if trainer.epoch != self._epoch_done:  # ultralytics' final re-validation of best.pt
            return
        row = {**trainer.label_loss_items(trainer.tloss, prefix="train"), **(trainer.metrics or {}), **trainer.lr}
        metrics = epoch_metrics(row)
        # From this epoch's start, not ultralytics' `epoch_time`: for the first epoch of a process
        # that one also counts the set-up (a resumed run's restart: 18 s against 1.5 s).
        metrics[names.EPOCH_TIME] = time.monotonic() - self._epoch_train_start
        metrics[names.IMAGES_PER_S] = self._images_per_s
        metrics[names.TRAINABLE_PARAMS] = trainable_params(trainer)
        self._log_epoch(metrics, trainer.epoch + 1)

    def _log_epoch(self, metrics: dict[str, float], epoch: int) -> None:
        if epoch in self._logged_epochs:  # never twice: a resumed run may redo an epoch
            return
        self.log_metrics(metrics, step=epoch)
        self._logged_epochs.add(epoch)

    def _on_train_end(self, trainer) -> None:
        best = {
            names.BEST[names.ULTRALYTICS_METRICS[k]]: v
            for k, v in (trainer.metrics or {}).items()
            if names.ULTRALYTICS_METRICS.get(k) in names.BEST
        }
        best[names.TRAIN_TIME] = self._time_before_resume + time.monotonic() - self._train_started
        self.log_metrics(best, step=trainer.epoch + 1)

    def __enter__(self) -> VariantRun:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self.monitor.__enter__()
        # MLflow's own system metrics, so the UI's "System metrics" tab charts the whole machine.
        self._system = SystemMetricsMonitor(
            self.run_id, sampling_interval=self.system_interval_s, tracking_uri=self.client.tracking_uri
        )
        self._system.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.monitor.__exit__(exc_type, exc, tb)
        self._system.finish()
        if self.monitor.gpu_source:
            self.client.set_tag(self.run_id, names.GPU_SOURCE, self.monitor.gpu_source)
        self.log_metrics(self.monitor.summary(), step=0)
        self.close_record()
        if exc is None:
            self.client.set_terminated(self.run_id, self.end_status)
            return False
        message = failure_message(exc)
        self.client.set_tag(self.run_id, names.ERROR, message[:5000])
        self.client.set_tag(
            self.run_id, names.ERROR_TRACEBACK, redact("".join(traceback.format_exception(exc_type, exc, tb)))[-5000:]
        )
        outcome = outcome_of(exc)
        if outcome is Outcome.KILLED:
            self.client.set_tag(
                self.run_id, names.CLOSED_REASON, f"interrupted ({exc or 'SIGINT'}); resumes from last.pt"
            )
        self.client.set_terminated(self.run_id, outcome.value)
        return False

    def log_artifacts(self, save_dir: Path, job_dir: Path, log_weights: bool, resolved_config: str) -> None:
        """Config (Hydra's as composed, and resolved), results.csv, ultralytics plots, the
        variant's log, and best.pt."""
        self.client.log_text(self.run_id, resolved_config, "config/resolved.yaml")
        files = [
            save_dir / "args.yaml",
            save_dir / "results.csv",
            *job_dir.glob(".hydra/*.yaml"),
            *job_dir.glob("*.log"),
        ]
        for path in files:
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path), "config" if path.suffix == ".yaml" else None)
        for path in sorted([*save_dir.glob("*.png"), *save_dir.glob("*.jpg")]):
            self.client.log_artifact(self.run_id, str(path), "plots")
        best = save_dir / "weights" / "best.pt"
        if log_weights and best.is_file():
            self.client.log_artifact(self.run_id, str(best), "weights")
