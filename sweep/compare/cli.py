"""`freeze-sweep-compare` / `python -m sweep.compare`: compare trained variants with their base.

    freeze-sweep-compare --base base.pt runs/f10/weights/best.pt runs/f22/weights/best.pt --images data/val
    freeze-sweep-compare --sweep 2024-05-01_12-00-00

Exit codes: 0 done (frozen layers that moved are flagged, not fatal), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sweep.compare.analysis import Options, run_comparison
from sweep.compare.checkpoints import (
    Checkpoint,
    CompareError,
    DeclaredFreeze,
    label_for,
    load_checkpoint,
    parse_freeze_option,
    unique_labels,
)
from sweep.compare.images import find_images, pick, val_images
from sweep.compare.report import write_report
from sweep.compare.summary import summary_text
from sweep.compare.sweep_runs import ARTIFACT_DIR, find_sweep, log_to_parent
from sweep.errors import ConfigError
from sweep.tracking.store import default_tracking_uri


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="freeze-sweep-compare",
        description="Compare trained YOLO variants with the base they started from: weight change, BN drift, "
        "weight distributions, dead channels, activation CKA and feature maps.",
    )
    p.add_argument("checkpoints", nargs="*", type=Path, help="ultralytics .pt checkpoints (variants)")
    p.add_argument("--base", type=Path, help="the checkpoint the variants started from (default: the first one)")
    p.add_argument("--sweep", help="compare the finished variants of this sweep id, read from MLflow")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///<cwd>/outputs/mlflow.db)",
    )
    p.add_argument("--experiment", default="freeze-sweep", help="MLflow experiment of the sweep")
    p.add_argument(
        "--freeze",
        action="append",
        metavar="SPEC",
        help="frozen layers of each checkpoint, in order, as a JSON list of layer indices (the sweep's "
        "freeze_layers format): '[0,1,2]', '[5]' (layer 5 alone), '[]' (none); not ultralytics' freeze=N. "
        "Overrides what the checkpoint or the sweep recorded, and turns off finding frozen layers; "
        "repeat once per checkpoint",
    )
    p.add_argument("--images", help="calibration images: folder, glob or .txt list (default: the dataset's val images)")
    p.add_argument("--n-images", type=int, default=64, help="calibration images to use; 0 skips activations")
    p.add_argument("--imgsz", type=int, default=None, help="image size (default: the checkpoint's train imgsz)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: outputs/compare/<name>)")
    p.add_argument("--name", default=None, help="name of the output folder (default: the sweep id or a timestamp)")
    p.add_argument("--feature-layers", default=None, help="layer indices for feature maps, e.g. '4,9,21'")
    p.add_argument("--feature-image", type=Path, default=None, help="image for feature maps (default: first image)")
    p.add_argument(
        "--dead-weight",
        type=float,
        default=1e-2,
        help="dead if the channel's BN-folded weight norm is below this x the median of its conv's channels",
    )
    p.add_argument("--dead-act", type=float, default=1e-2, help="dead if channel std < this x the layer's mean std")
    p.add_argument("--cka-grid", type=int, default=4, help="pool each map to GRID x GRID before CKA (1 = global)")
    p.add_argument("--top", type=int, default=5, help="most changed layers to list per variant")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="freeze-sweep-compare-") as downloads:
            return _run(args, Path(downloads))
    except ConfigError as e:  # CompareError, and the shared store and sweep lookups
        print(f"freeze-sweep-compare: error: {e}", file=sys.stderr)
        return 2


@dataclass
class _Inputs:
    """What to compare, from checkpoint paths or from a sweep in MLflow."""

    base: Path | None
    paths: list[Path]
    labels: list[str]
    freezes: list[DeclaredFreeze | None]  # per checkpoint; None: the checkpoint's `freeze` train arg
    data: str | None = None  # dataset yaml for the default calibration images
    parent_run_id: str | None = None
    notes: list[str] = field(default_factory=list)


def _inputs(args: argparse.Namespace, tracking_uri: str, downloads: Path) -> _Inputs:
    if not args.sweep:
        paths = list(args.checkpoints)
        freezes = _freeze_overrides(args.freeze, len(paths)) or [None] * len(paths)
        return _Inputs(args.base, paths, [label_for(p) for p in paths], freezes)
    if args.checkpoints or args.base:
        raise CompareError("give checkpoints or --sweep, not both")
    found = find_sweep(args.sweep, tracking_uri, args.experiment, downloads)
    return _Inputs(
        base=found.base,
        paths=[v.checkpoint for v in found.variants],
        labels=[v.label for v in found.variants],
        freezes=_freeze_overrides(args.freeze, len(found.variants))
        or [_recorded(v.freeze_layers) for v in found.variants],
        data=found.variants[0].data,
        parent_run_id=found.parent_run_id,
        notes=[f"skipped unfinished run {s}" for s in found.skipped],
    )


def _run(args: argparse.Namespace, downloads: Path) -> int:
    tracking_uri = args.tracking_uri or default_tracking_uri()
    inputs = _inputs(args, tracking_uri, downloads)
    base_path, base_freeze = inputs.base, None
    paths, labels, freezes = inputs.paths, inputs.labels, inputs.freezes
    if base_path is None:
        if len(paths) < 2:
            raise CompareError("give at least two checkpoints (or --base and one checkpoint)")
        inputs.notes.append(f"no base checkpoint given: {labels[0]} is the reference")
        base_path, base_freeze, paths, labels, freezes = paths[0], freezes[0], paths[1:], labels[1:], freezes[1:]
    elif not paths:
        raise CompareError("give at least one checkpoint to compare with the base")
    all_labels = unique_labels([label_for(base_path), *labels])
    base = load_checkpoint(base_path, all_labels[0], base_freeze)
    variants = [load_checkpoint(p, label, f) for p, label, f in zip(paths, all_labels[1:], freezes, strict=True)]
    options = Options(
        images=_calibration_images(args, variants[0], inputs.data, inputs.notes),
        imgsz=args.imgsz or _train_imgsz(variants[0]),
        cka_grid=args.cka_grid,
        dead_weight=args.dead_weight,
        dead_act=args.dead_act,
        feature_layers=_int_list(args.feature_layers),
        feature_image=args.feature_image,
    )
    start = time.perf_counter()
    comparison = run_comparison(base, variants, options)
    comparison.notes = inputs.notes + comparison.notes
    name = args.name or args.sweep or time.strftime("%Y%m%d-%H%M%S")
    out_dir = args.out or Path("outputs") / "compare" / name
    page = write_report(comparison, out_dir, f"freeze-sweep compare: {name}", args.top)
    print(summary_text(comparison, top=args.top))
    stages = ", ".join(f"{stage} {sec:.1f}s" for stage, sec in comparison.timings.items())
    print(f"\nTime: {time.perf_counter() - start:.1f}s ({stages})")
    print(f"Wrote {page} (plots and tables beside it)")
    if inputs.parent_run_id:
        log_to_parent(tracking_uri, inputs.parent_run_id, out_dir)
        print(f"Logged to MLflow run {inputs.parent_run_id} under {ARTIFACT_DIR}/")
    return 0


def _calibration_images(
    args: argparse.Namespace, variant: Checkpoint, data: str | None, notes: list[str]
) -> list[Path]:
    """--images, else the val split of the variant's dataset; none (with a note) when neither is there."""
    if args.n_images <= 0:
        return []
    if args.images:
        return pick(find_images(args.images), args.n_images)
    data = data or variant.train_args.get("data")
    if not data or not Path(data).is_file():
        notes.append(f"no --images given and dataset yaml {data!r} not found")
        return []
    return pick(val_images(data), args.n_images)


def _train_imgsz(checkpoint: Checkpoint) -> int:
    imgsz = checkpoint.train_args.get("imgsz", 640)
    return int(max(imgsz)) if isinstance(imgsz, list | tuple) else int(imgsz)


def _freeze_overrides(values: list[str] | None, n: int) -> list[DeclaredFreeze] | None:
    if values is None:
        return None
    if len(values) != n:
        raise CompareError(
            f"--freeze given {len(values)} times for {n} checkpoints; give it once per checkpoint, in order"
        )
    return [DeclaredFreeze(parse_freeze_option(v), f"--freeze {v}", override=True) for v in values]


def _recorded(freeze_layers: list[int] | None) -> DeclaredFreeze | None:
    """The sweep's `freeze_layers` param; None (not logged): the checkpoint's train args."""
    if freeze_layers is None:
        return None
    return DeclaredFreeze(frozenset(freeze_layers), "MLflow param freeze_layers")


def _int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError as e:
        raise CompareError(f"--feature-layers {text!r}: expected comma-separated layer indices, e.g. '4,9,21'") from e
