"""bench/bench_gpu.py's pieces that the GPU run must not discover broken: dmon parsing, the
steady-epoch windows, time limits, the process-group timeout and the `yolo` launcher. Its whole
run is exercised on CPU by `python bench/bench_gpu.py --quick` (CI's `python -m bench --quick`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench.bench_gpu import (
    LEAST_S,
    LONGEST_S,
    QUICK_SLOWER,
    Dmon,
    Limits,
    failures,
    mean_within,
    median_after_first,
    parse_dmon,
    run_timed,
    yolo_launcher,
)
from bench.bench_overhead import yolo_command

DMON = """\
#Date       Time        gpu     sm    mem    enc    dec    jpg    ofa
#YYYYMMDD   HH:MM:SS    Idx      %      %      %      %      %      %
 20261204   16:11:01      0     12      3      0      0      0      0
 20261204   16:11:02      0     -       -      0      0      0      0
 20261204   16:11:03      0     80     40      0      0      0      0
 20261204   16:11:04      0     90     41      0      0      0      0
"""


def test_dmon_samples_are_read_by_their_header_and_averaged_within_a_window() -> None:
    samples = parse_dmon("Failed to start? no.\n" + DMON)
    start = time.mktime(time.strptime("20261204 16:11:01", "%Y%m%d %H:%M:%S"))
    assert samples == [(start, 12.0), (start + 2, 80.0), (start + 3, 90.0)]
    assert mean_within(samples, (start + 2, start + 3)) == 85.0
    assert mean_within(samples, None) is None and mean_within([], (0, 1)) is None


def test_dmon_runs_beside_a_command_and_its_samples_are_read_when_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in `nvidia-smi` (this machine has none) that prints dmon's lines and waits, as dmon does."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\ncat <<'EOF'\n{DMON}EOF\nexec sleep 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with Dmon(tmp_path / "dmon.txt") as dmon:
        time.sleep(1)
    assert [sm for _, sm in dmon.samples] == [12.0, 80.0, 90.0]


def test_the_steady_figure_leaves_out_the_first_epoch_when_there_is_another() -> None:
    assert median_after_first([9.0, 2.0, 4.0]) == 3.0
    assert median_after_first([9.0]) == 9.0
    assert median_after_first([]) is None


def test_time_limits_leave_the_later_modes_their_least_and_stretch_for_the_cpu_smoke_run() -> None:
    modes = ["sequential", "packed", "overhead"]
    assert [Limits(modes, False, None)(m) for m in modes] == [LONGEST_S[m] for m in modes]
    assert Limits(modes, True, None)("packed") == LONGEST_S["packed"] * QUICK_SLOWER
    tight = Limits(modes, False, 200)
    first = tight("sequential")
    assert first == pytest.approx(200 - LEAST_S["packed"] - 2 * LEAST_S["overhead"], abs=1)
    assert tight("overhead") == pytest.approx(min(LONGEST_S["overhead"], 200 / 2), abs=1)  # nothing spent yet
    assert Limits(modes, False, 10)("sequential") == LEAST_S["sequential"]


def test_failed_killed_or_stopped_modes_are_failures() -> None:
    figures = {
        "sequential": {"exit code": 0},
        "packed": {"exit code": "killed after 90 s"},
        "overhead": {"error": "stopped"},
        "packing speedup (sequential / packed wall)": 2.0,
    }
    assert failures(figures) == ["packed", "overhead"]


def test_a_command_past_its_limit_goes_with_every_process_it_started(tmp_path: Path) -> None:
    pid_file = tmp_path / "child"
    command = ["sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"]
    outcome = run_timed(command, dict(os.environ), tmp_path / "log", timeout_s=1)
    assert outcome.exit_code is None and outcome.wall_s < 30
    child = int(pid_file.read_text())
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_the_plain_command_names_a_gpu_as_the_yolo_command_line_reads_it(tmp_path: Path) -> None:
    command = yolo_command(Path("yolo"), Path("yolov8s.yaml"), Path("d.yaml"), [], tmp_path / "t", {"device": "0"})
    assert "device=0" in command


def test_the_launcher_is_ultralytics_yolo(tmp_path: Path) -> None:
    from ultralytics import __version__

    launcher = yolo_launcher(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([str(launcher), "version"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert __version__ in result.stdout


@pytest.mark.parametrize("bad", ["#Date Time gpu sm\n 2026 xx 0 5\n", "garbage\n"])
def test_unreadable_dmon_lines_are_skipped(bad: str) -> None:
    assert parse_dmon(bad) == []
