"""A real tiny multirun through the CLI: three variants, each freezing what it says it does."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from sweep.freeze import is_frozen
from sweep.variant import saved_variant
from tests.conftest import Sweep

pytestmark = pytest.mark.slow
TOLERANCE = 1e-3  # checkpoints hold FP16 EMA weights


def state_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return {k: v.float() for k, v in (ckpt.get("ema") or ckpt["model"]).state_dict().items() if v.is_floating_point()}


def variant_dirs(sweep: Sweep) -> list[Path]:
    return sorted(p.parent for p in sweep.sweep_dir.glob("*/variant.json"))


def test_the_default_sweep_trains_the_three_presets(tiny_sweep: Sweep) -> None:
    statuses = [json.loads((d / "variant.json").read_text()) for d in variant_dirs(tiny_sweep)]
    assert [s["name"] for s in statuses] == [
        "none 0/23 · yolov8n-demo",
        "backbone 10/23 · yolov8n-demo",
        "all_but_head 22/23 · yolov8n-demo",
    ]
    assert all(s["status"] == "FINISHED" for s in statuses)
    assert all((d / "train" / "weights" / "best.pt").is_file() for d in variant_dirs(tiny_sweep))
    assert "3/3 variants finished" in tiny_sweep.result.stdout
    assert "freeze=backbone -> layers 0..9 (10/23 frozen)" in tiny_sweep.result.stdout + tiny_sweep.result.stderr


def test_the_multirun_writes_its_report_when_it_ends(tiny_sweep: Sweep) -> None:
    assert f"report: {tiny_sweep.sweep_dir / 'report' / 'report.html'}" in tiny_sweep.result.stdout
    table_rows = [
        line
        for line in tiny_sweep.result.stdout.splitlines()
        if line.startswith(("| none", "| backbone", "| all_but_head"))
    ]
    assert len(table_rows) == 3
    assert "see it in the MLflow UI: freeze-sweep-ui" in tiny_sweep.result.stdout


@pytest.mark.parametrize(("job", "layers"), [(0, []), (1, list(range(10))), (2, list(range(22)))])
def test_frozen_weights_and_bn_statistics_stay_at_the_base(tiny_sweep: Sweep, job: int, layers: list[int]) -> None:
    (base,) = tiny_sweep.root.glob("outputs/cache/demo-base-*/weights/best.pt")
    before = state_of(base)
    after = state_of(tiny_sweep.sweep_dir / str(job) / "train" / "weights" / "last.pt")
    assert before.keys() == after.keys()

    def moved(key: str) -> bool:  # a new shape: the head's class outputs, re-made for the target's classes
        return before[key].shape != after[key].shape or not torch.allclose(
            before[key], after[key], atol=TOLERANCE, rtol=TOLERANCE
        )

    frozen = [k for k in before if is_frozen(k, layers)]
    moved_frozen = [k for k in frozen if moved(k)]
    assert moved_frozen == [], f"frozen tensors changed: {moved_frozen[:5]}"
    frozen_bn_stats = [k for k in frozen if k.endswith(("running_mean", "running_var"))]
    assert len(frozen_bn_stats) == 2 * sum(1 for k in frozen if k.endswith("bn.weight"))

    trainable_layers = {int(k.split(".")[1]) for k in before if not is_frozen(k, layers)}
    changed_layers = {int(k.split(".")[1]) for k in before if not is_frozen(k, layers) and moved(k)}
    assert changed_layers == trainable_layers


def test_the_console_is_quiet_and_says_where_the_sweep_stands(tiny_sweep: Sweep) -> None:
    output = tiny_sweep.result.stdout + tiny_sweep.result.stderr
    assert len(output.splitlines()) < 100, len(output.splitlines())
    assert "Freezing layer" not in output and "engine/trainer:" not in output
    assert re.search(r"\[2/3\] backbone 10/23 · yolov8n-demo  epoch 2/2 .* sweep: ~\S+ left", output)
    assert "epoch 3/2" not in output  # ultralytics' final re-validation is not an epoch
    assert re.search(r"\[3/3\] all_but_head 22/23 · yolov8n-demo  done: mAP50 \d\.\d{3}", output)
    train_log = (tiny_sweep.sweep_dir / "1" / "train.log").read_text()
    assert "Freezing layer 'model.9." in train_log  # ultralytics' own output is kept, in the log


def test_help_describes_the_tool_presets_and_default_sweep(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    result = run_cli(["--help"], tmp_path, timeout=120)
    assert result.returncode == 0
    for expected in ("how much of a pretrained detector", "all_but_head", "freeze=none,backbone,all_but_head", "-m"):
        assert expected in result.stdout


def test_each_job_takes_the_variant_the_launching_process_resolved(tiny_sweep: Sweep) -> None:
    """Resolved once per variant: each job finds its own under its overrides, on this host."""
    for job_dir in variant_dirs(tiny_sweep):
        overrides = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
        spec = saved_variant(tiny_sweep.sweep_dir, list(overrides))
        status = json.loads((job_dir / "variant.json").read_text())
        assert spec is not None and spec.run_name == status["name"]
