"""Find a sweep's checkpoints in MLflow, and log a comparison back to the sweep's parent run.

Sweeps and their variant runs are found by `sweep.tracking.sweeps`, as the report finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sweep.compare.checkpoints import CompareError
from sweep.tracking import names
from sweep.tracking.store import connect
from sweep.tracking.sweeps import find_sweeps, variant_runs

ARTIFACT_DIR = "compare"  # where the comparison goes in the parent run


@dataclass
class SweepVariant:
    label: str
    run_id: str
    checkpoint: Path
    freeze_layers: list[int] | None  # the resolved indices; None: not logged (use the checkpoint's train args)
    data: str  # dataset yaml path


@dataclass
class SweepCheckpoints:
    parent_run_id: str
    base: Path | None  # the checkpoint all variants started from; None when trained from scratch
    variants: list[SweepVariant]
    skipped: list[str] = field(default_factory=list)  # variant runs that did not finish


def find_sweep(sweep_id: str, tracking_uri: str, experiment: str, download_dir: Path) -> SweepCheckpoints:
    """The finished variants of a sweep, their best.pt (downloaded when not on disk) and the base."""
    client = connect(tracking_uri)
    sweep = find_sweeps(client, experiment, [sweep_id])[0]
    # The same runs the report shows: the sweep's own variants and the finished ones it reused.
    runs = sorted(variant_runs(client, sweep), key=lambda r: r.info.start_time)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    skipped = [f"{r.info.run_name or r.info.run_id} ({r.info.status})" for r in runs if r.info.status != "FINISHED"]
    if not finished:
        raise CompareError(f"sweep {sweep_id!r} has no finished variant runs (skipped: {', '.join(skipped) or 'none'})")
    variants = [
        SweepVariant(
            label=variant_label(r),
            run_id=r.info.run_id,
            checkpoint=_best_pt(client, r, download_dir),
            freeze_layers=_indices(r.data.params.get(names.P_FREEZE_LAYERS)),
            data=r.data.params.get(names.P_DATA, ""),
        )
        for r in finished
    ]
    return SweepCheckpoints(sweep.parent_run_id, _shared_base(finished), variants, skipped)


def variant_label(run) -> str:  # noqa: ANN001 (mlflow Run)
    """Its run name; a variant a budget stopped says so, since its network trained fewer epochs."""
    label = run.info.run_name or run.info.run_id[:8]
    rung = run.data.tags.get(names.STOPPED_AT_RUNG)
    return f"{label} (stopped at rung {rung})" if rung else label


def log_to_parent(tracking_uri: str, parent_run_id: str, out_dir: Path) -> None:
    """Log every file of the comparison under `compare/` of the sweep's parent run."""
    connect(tracking_uri).log_artifacts(parent_run_id, str(out_dir), artifact_path=ARTIFACT_DIR)


def _best_pt(client, run, download_dir: Path) -> Path:
    """`<output_dir>/weights/best.pt`, else the run's `weights/best.pt` artifact."""
    output_dir = run.data.tags.get(names.OUTPUT_DIR)
    if output_dir and (Path(output_dir) / names.ARTIFACT_WEIGHTS).is_file():
        return Path(output_dir) / names.ARTIFACT_WEIGHTS
    target = download_dir / run.info.run_id
    target.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client.download_artifacts(run.info.run_id, names.ARTIFACT_WEIGHTS, str(target)))
    except Exception as e:  # MLflow raises several types for a missing artifact
        raise CompareError(
            f"run {run.info.run_name or run.info.run_id}: no {names.ARTIFACT_WEIGHTS} under {output_dir!r} "
            f"nor as an artifact ({type(e).__name__})"
        ) from e


def _indices(param: str | None) -> list[int] | None:
    """The `freeze_layers` param as indices, in the one format the sweep writes (a JSON list)."""
    try:
        return names.parse_freeze_layers(param)
    except ValueError as e:
        raise CompareError(f"cannot read param '{names.P_FREEZE_LAYERS}' = {param!r}: expected a JSON list") from e


def _shared_base(runs) -> Path | None:
    bases = sorted({r.data.params.get(names.P_WEIGHTS, "") for r in runs} - {""})
    if len(bases) > 1:
        raise CompareError(f"variants started from different checkpoints ({', '.join(bases)}); compare them by path")
    if not bases:
        return None
    base = Path(bases[0])
    if not base.is_file():
        raise CompareError(f"base checkpoint {base} (param '{names.P_WEIGHTS}' of the variants) not found")
    return base
