"""Every benchmark in one command, one table at the end.

    python -m bench                     # full sizes (an idle machine; see README "Benchmarks")
    python -m bench --quick             # CI's smoke run: every benchmark at its smallest
    python -m bench --only startup overhead
    python -m bench --device 0          # trainings on GPU 0 (overhead, freezing)
    python -m bench --only gpu          # the GPU benchmark (skips without CUDA; --quick: its CPU smoke run)

Each benchmark runs as its own process (`python bench/bench_<name>.py [--quick]`) and writes its
JSON record under bench/results/ through bench/record.py; the table is read back from the records
written during this run. Exits 1 when any benchmark failed, so CI notices one that rots.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.record import RESULTS  # noqa: E402

BENCHMARKS = (
    "startup",
    "overhead",
    "freezing",
    "report",
    "compare",
    "demo",
    "schedule",
    "auto",
    "budget",
    "faults",
    "gpu",
)
TAKES_DEVICE = ("overhead", "freezing")


def rows(figures: dict, prefix: str = "") -> list[tuple[str, str, str]]:
    """(figure, median or value, min-max over runs) for every figure of a record, nested levels
    joined into the label; a figure recorded with `spread` shows its median and range."""
    found = []
    for key, value in figures.items():
        label = f"{prefix}{key}"
        if isinstance(value, dict) and "median" in value:
            spread = f"{fmt(value['min'])}-{fmt(value['max'])} ({value['runs']} runs)"
            goal = f" goal {value['goal']}" if "goal" in value else ""
            goal += {True: " (met)", False: " (NOT met)"}.get(value.get("met"), "")
            found.append((label, fmt(value["median"]), spread + goal))
        elif isinstance(value, dict):
            found += rows(value, f"{label}: ")
        elif not isinstance(value, list):
            found.append((label, fmt(value), ""))
    return found


def fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def run(name: str, quick: bool, device: str | None) -> tuple[int, float, list[Path]]:
    """Exit code, wall seconds and the records a benchmark wrote."""
    command = [sys.executable, str(ROOT / "bench" / f"bench_{name}.py"), *(["--quick"] if quick else [])]
    if device is not None and name in TAKES_DEVICE:
        command += ["--device", device]
    before = set(RESULTS.glob("*.json"))
    print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.run(command, cwd=ROOT).returncode
    return code, time.monotonic() - started, sorted(set(RESULTS.glob("*.json")) - before)


def table(outcomes: dict[str, tuple[int, float, list[Path]]]) -> str:
    lines = []
    for name, (code, seconds, records) in outcomes.items():
        state = "ok" if code == 0 else f"FAILED (exit {code})"
        lines.append(f"{name}: {state} in {seconds:.0f} s")
        for record in records:
            lines.append(f"  {record.relative_to(ROOT)}")
            for label, value, spread in rows(json.loads(record.read_text())["figures"]):
                lines.append(f"    {label:<64} {value:>10} {spread}")
        if code == 0 and not records:
            lines.append("  (wrote no record under bench/results/)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark at its smoke-run size (CI)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=BENCHMARKS, metavar="NAME")
    parser.add_argument("--device", help=f"ultralytics device for the trainings of {', '.join(TAKES_DEVICE)}")
    args = parser.parse_args()
    outcomes = {name: run(name, args.quick, args.device) for name in args.only}
    print(f"\n{'=' * 30} benchmarks{' (quick)' if args.quick else ''}\n{table(outcomes)}")
    return 0 if all(code == 0 for code, _, _ in outcomes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
