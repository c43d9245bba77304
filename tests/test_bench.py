"""The benchmarks' helpers: process-tree measurement, the yolo command line, FLOP shares and the
ideal speedup, and the summary table."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.__main__ import rows
from bench.bench_auto import goal, over_seeds, summarize
from bench.bench_budget import at_full_grid_speed, budget_rule, equal_epoch_halving, in_full_grid, pick
from bench.bench_freezing import ideal_speedup, layer_flops, steady
from bench.bench_overhead import measure, yolo_command, yolo_value

# A child that holds ~150 MiB, starts a grandchild holding ~150 MiB more, and burns CPU.
HUNGRY = """
import subprocess, sys, time
hold = bytearray(150 * 2**20)
child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(150 * 2**20); time.sleep(1.5)"])
end = time.process_time() + 0.6
while time.process_time() < end:
    pass
child.wait()
"""


def test_measure_sums_the_process_tree_and_counts_its_cpu(tmp_path: Path) -> None:
    measured = measure([sys.executable, "-c", HUNGRY], dict(os.environ), tmp_path / "log", cwd=tmp_path)
    assert measured.peak_rss_mib > 300  # both processes' memory at once
    assert measured.cpu_s >= 0.6
    assert measured.wall_s >= 1.5


def test_measure_exits_with_the_log_of_a_failing_command(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="exit 3"):
        measure([sys.executable, "-c", "import sys; sys.exit(3)"], dict(os.environ), tmp_path / "log", cwd=tmp_path)


@pytest.mark.parametrize("value", [[], [0, 1, 2], 0.02, 1.0, None, True, "SGD", 640, "cpu"])
def test_yolo_values_read_back_as_given(value: object) -> None:
    from ultralytics.cfg import smart_value

    assert smart_value(yolo_value(value)) == value


def test_a_value_the_yolo_command_line_would_change_is_refused() -> None:
    with pytest.raises(ValueError, match="'0' does not survive"):
        yolo_value("0")


def test_yolo_command_repeats_what_training_passes(tmp_path: Path) -> None:
    command = yolo_command(
        Path("/bin/yolo"), Path("/c/best.pt"), Path("/d/data.yaml"), [0, 1], tmp_path / "v0", {"epochs": 3}
    )
    assert command[:2] == ["/bin/yolo", "train"]
    assert set(command[2:]) == {
        "model=/c/best.pt",
        "data=/d/data.yaml",
        "freeze=[0,1]",
        f"project={tmp_path}",
        "name=v0",
        "exist_ok=True",
        "epochs=3",
    }


def test_layer_flops_match_ultralytics_own_count() -> None:
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False)
    flops = layer_flops(model, 64)
    assert len(flops) == len(model.model)
    assert flops[11] == 0 and flops[12] > 0  # Upsample counts nothing; the C2f after it does
    assert sum(flops) / 1e9 == pytest.approx(get_flops(model, 64), rel=0.05)


def test_ideal_speedup() -> None:
    flops = [1.0, 1.0, 1.0, 1.0]
    assert ideal_speedup(flops, []) == 1.0
    assert ideal_speedup(flops, [0, 1]) == pytest.approx(3 / (3 - 2 * 0.5))  # a prefix skips its backward
    assert ideal_speedup(flops, [2]) == pytest.approx(3 / (3 - 0.25))  # later: weight gradients only
    assert ideal_speedup(flops, [0, 2]) == pytest.approx(3 / (3 - 2 * 0.25 - 0.25))


def test_steady_drops_the_first_epoch_only_when_enough_remain() -> None:
    assert steady([9.0, 2.0, 3.0]) == [2.0, 3.0]
    assert steady([9.0, 2.0]) == [9.0, 2.0]


def test_rows_show_medians_ranges_goals_and_nested_levels() -> None:
    figures = {
        "wall ratio": {"min": 0.95, "median": 0.98, "max": 1.01, "runs": 4, "goal": "<= 1.00", "met": True},
        "yolov8n": {"none": {"images/s": 123.456}},
        "round_log": [{"fault": "kill -9"}],
        "goals met": True,
    }
    assert rows(figures) == [
        ("wall ratio", "0.98", "0.95-1.01 (4 runs) goal <= 1.00 (met)"),
        ("yolov8n: none: images/s", "123", ""),
        ("goals met", "True", ""),
    ]


def seeds(variant: str, maps: list[float], times: list[float]) -> list[dict]:
    return [
        {"variant": variant, "seed": seed, "mAP50-95": m, "train_time_s": t, "chosen": None}
        for seed, (m, t) in enumerate(zip(maps, times, strict=True))
    ]


def test_over_seeds_adds_mean_and_sample_std_to_the_spread() -> None:
    assert over_seeds([1.0, 2.0, 6.0]) == {
        "min": 1.0,
        "median": 2.0,
        "max": 6.0,
        "runs": 3,
        "mean": 3.0,
        "std": pytest.approx(2.6458, abs=1e-4),
    }
    assert over_seeds([0.5])["std"] is None


def test_the_auto_goal_needs_none_s_accuracy_and_three_quarters_of_its_time() -> None:
    none = seeds("none", [0.80, 0.82, 0.78], [30.0, 32.0, 34.0])
    assert goal(summarize(none + seeds("auto", [0.79, 0.80, 0.78], [22.0, 24.0, 23.0])))["met"]
    slow = goal(summarize(none + seeds("auto", [0.80, 0.80, 0.80], [25.0, 25.0, 25.0])))  # 25 / 32 = 0.78
    assert slow["mAP50-95 auto - none"]["met"] and not slow["train time auto / none"]["met"] and not slow["met"]
    worse = goal(summarize(none + seeds("auto", [0.78, 0.79, 0.785], [20.0, 20.0, 20.0])))  # 0.785: 0.015 below
    assert worse["mAP50-95 auto - none"]["value"] == pytest.approx(-0.015) and not worse["met"]


def crossing_grid() -> dict[str, list[dict]]:
    """Three configurations of 6 epochs: a frozen one fast early then flat, a slow unfrozen one that
    overtakes it late, and one in between that never leads."""

    def variant(epoch_s: float, scores: list[float]) -> list[dict]:
        return [{"epoch_times": [epoch_s] * len(scores), "scores": scores}]

    return {
        "frozen": variant(1.0, [0.40, 0.45, 0.47, 0.48, 0.48, 0.48]),
        "unfrozen": variant(2.0, [0.20, 0.35, 0.45, 0.52, 0.57, 0.60]),
        "mid": variant(1.5, [0.30, 0.35, 0.38, 0.40, 0.41, 0.41]),
    }


def test_replays_equal_epoch_halving_drops_the_late_winner_the_budget_rule_keeps_it() -> None:
    grid = crossing_grid()
    assert pick(grid, 0.01) == "unfrozen"
    survivors, cost = equal_epoch_halving(grid, eta=3, first=1)
    assert survivors == {"frozen"} and cost == pytest.approx(6 + 2 + 1.5)  # the others after one epoch
    finals, cost = budget_rule(grid, eta=3, budget_s=4.0, tolerance=0.01)
    assert pick({c: grid[c] for c in finals}, 0.01) == "unfrozen"
    assert "mid" not in finals and cost == pytest.approx(6 + 12 + 4.5)  # mid stopped after 3 epochs


def test_the_budgets_epochs_are_costed_at_the_full_grids_speed_and_its_pick_rated_there() -> None:
    # The budgeted sweep ran on a machine 1.5x slower: by its own seconds (7.5 s) it cost more than
    # the full grid (6 s); its epochs (all 4 of a, 2 of 4 of b) took 5 s there.
    full = {
        "variants": [
            {"candidate": "a", "seed": "0", "epoch_times": [1.0, 1.0, 1.0, 1.0]},
            {"candidate": "b", "seed": "0", "epoch_times": [0.5, 0.5, 0.5, 0.5]},
        ],
        "training_s": 6.0,
        "rows": {"m a": (0.80, 4.0), "m b": (0.795, 2.0)},
        "recommended": "m b",
        "tolerance": 0.01,
    }
    budgeted = {
        "variants": [
            {"candidate": "a", "seed": "0", "epoch_times": [1.5, 1.5, 1.5, 1.5]},
            {"candidate": "b", "seed": "0", "epoch_times": [0.75, 0.75]},
        ]
    }
    assert at_full_grid_speed(full, budgeted) == pytest.approx(5.0 / 6.0, abs=1e-3)
    rated = in_full_grid(full, "m a")
    assert rated["within the full grid's tolerance of its best"] and rated["full grid's pick"]["train_s"] == 2.0
    full["rows"]["m c"] = (0.70, 1.0)
    assert not in_full_grid(full, "m c")["within the full grid's tolerance of its best"]
