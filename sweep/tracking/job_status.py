"""A job's outcome, as a small typed value: decided in one place (`Job.end`), written once to the
job's variant.json, and read back by the sweep's end-of-run summary.

A job is FINISHED (trained, or reused a finished run), HELD (a live run elsewhere trains it and
`sweep.on_held=skip`), FAILED (an error) or KILLED (a signal: SIGTERM, SIGINT, a requeue); in a
budgeted sweep, PAUSED (it trained its rung's share; the budget's sweeper decides what follows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from sweep.files import write_atomic
from sweep.tracking.credentials import redact

STATUS_FILE = "variant.json"  # in each job folder: read by the sweep's end-of-run summary
OOM_HINT = "out of memory: try a smaller train.batch or train.imgsz, or freeze more layers"


class Outcome(str, Enum):
    FINISHED = "FINISHED"
    HELD = "HELD"
    FAILED = "FAILED"
    KILLED = "KILLED"
    PAUSED = "PAUSED"  # a budgeted rung's share trained (sweep/budget/): not done until a later rung or a stop

    @property
    def ok(self) -> bool:
        """Whether the sweep counts the job as done (a held variant is its holder's to finish)."""
        return self in (Outcome.FINISHED, Outcome.HELD)


def outcome_of(error: BaseException | None) -> Outcome:
    """The one rule for how a job, or its run, ended: a signal (KeyboardInterrupt, or SystemExit:
    submitit requeueing the job) is KILLED, any other error FAILED."""
    if error is None:
        return Outcome.FINISHED
    return Outcome.KILLED if isinstance(error, (KeyboardInterrupt, SystemExit)) else Outcome.FAILED


def failure_message(error: BaseException) -> str:
    """The error in one line, credentials redacted, with a hint where one helps."""
    message = redact(f"{type(error).__name__}: {error}")
    if "out of memory" in str(error).lower():
        message = f"{message} -- hint: {OOM_HINT}"
    return message


@dataclass(frozen=True)
class JobStatus:
    name: str  # the variant's run name, or `job N` before it was resolved
    outcome: Outcome
    run_id: str | None = None  # the run that trained it, was reused, or holds it
    note: str = ""  # why it was not trained here (reused, held)
    error: str = ""
    reused: bool = False
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "status": self.outcome.value,
            "run_id": self.run_id,
            "note": self.note,
            "error": self.error,
            "reused": self.reused,
            "metrics": self.metrics,
        }

    @classmethod
    def from_json(cls, data: dict) -> JobStatus:
        """Raises ValueError (KeyError, TypeError) on anything but what `to_json` wrote."""
        return cls(
            name=str(data["name"]),
            outcome=Outcome(data["status"]),
            run_id=data.get("run_id"),
            note=str(data.get("note") or ""),
            error=str(data.get("error") or ""),
            reused=bool(data.get("reused")),
            metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
        )


@dataclass
class Job:
    """A job on its way: named once its variant is resolved, with a run once it claimed one.
    However it ends, `end` turns what it knows into its status, once."""

    name: str
    run_id: str | None = None
    status: JobStatus | None = None
    started: float = 0.0  # when it began (epoch seconds; sweep/budget/setup_time.py), 0 when not known

    def end(
        self,
        error: BaseException | None = None,
        *,
        held: bool = False,
        paused: bool = False,
        reused: bool = False,
        note: str = "",
        metrics: dict[str, float] | None = None,
    ) -> JobStatus:
        outcome = outcome_of(error)
        if error is None and (held or paused):
            outcome = Outcome.HELD if held else Outcome.PAUSED
        self.status = JobStatus(
            self.name,
            outcome,
            self.run_id,
            note=note,
            error=failure_message(error) if error is not None else "",
            reused=reused,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
        )
        return self.status


def write_status(job_dir: Path, status: JobStatus) -> None:
    """Whole or not at all (a full disk leaves no half-written file); raises OSError."""
    write_atomic(Path(job_dir) / STATUS_FILE, json.dumps(status.to_json(), indent=2))


def read_statuses(sweep_dir: Path, n_jobs: int = 0) -> list[JobStatus]:
    """Every job's status, in job order. A job whose variant.json is missing or unreadable (a full
    disk, a job killed before it wrote one) is FAILED, saying so; so is each job of the `n_jobs`
    the sweep launched (when known) that left no folder at all."""
    sweep_dir = Path(sweep_dir)
    job_dirs = {p.parent for p in [*sweep_dir.glob("*/.hydra"), *sweep_dir.glob(f"*/{STATUS_FILE}")]}
    ordered = sorted(job_dirs, key=lambda d: (not d.name.isdigit(), int(d.name) if d.name.isdigit() else 0, d.name))
    statuses = [_read_status(job_dir) for job_dir in ordered]
    missing = max(0, n_jobs - len(statuses))
    return statuses + [JobStatus("?", Outcome.FAILED, error="the job left no folder in the sweep")] * missing


def _read_status(job_dir: Path) -> JobStatus:
    path = job_dir / STATUS_FILE
    try:
        return JobStatus.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        error = f"no {path}: the job ended before recording its outcome (full disk? killed?)"
    except (OSError, ValueError) as failure:
        error = f"{path} unreadable ({type(failure).__name__})"
    except (KeyError, TypeError, AttributeError):
        error = f"{path} is not a status"
    return JobStatus(f"job {job_dir.name}", Outcome.FAILED, error=error)
