"""CPU time of the commands a user waits on before anything trains: `freeze-sweep --help` and
Hydra's bash tab completion (goal: under 2 s of CPU each).

    python bench/bench_startup.py            # 5 runs of each
    python bench/bench_startup.py --quick    # 2 runs of each (CI's smoke run)

CPU time (user + system of the child process), not wall time: it is what the command costs, and
it barely moves when other processes share the cores. Records bench/results/startup-*.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.bench_overhead import measure  # noqa: E402
from bench.record import spread, write_result  # noqa: E402

GOAL_CPU_S = 2.0
# What Hydra's bash completion script runs on <TAB>: `$helper -sc query=bash` with the line typed
# so far in COMP_LINE (hydra/_internal/core_plugins/bash_completion.py).
# Each command with its environment and a word its output must contain (it did the real work).
COMMANDS = {
    "freeze-sweep --help": (["--help"], {}, "all_but_head"),
    "tab completion of 'freeze-sweep '": (["-sc", "query=bash"], {"COMP_LINE": "freeze-sweep "}, "model="),
    "tab completion of 'freeze-sweep train.'": (
        ["-sc", "query=bash"],
        {"COMP_LINE": "freeze-sweep train."},
        "train.epochs=",
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs of each command (CI's smoke run)")
    parser.add_argument("--runs", type=int, help="runs of each command (default: 5, or 2 with --quick)")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for label, (arguments, extra_env, expected) in COMMANDS.items():
            env = {**os.environ, "FREEZE_SWEEP_ROOT": tmp, **extra_env}
            # `python -m sweep` is what the `freeze-sweep` console script runs (sweep.cli:cli),
            # with this checkout's code rather than whichever copy is installed.
            command = [sys.executable, "-m", "sweep", *arguments]
            log = Path(tmp) / "out.log"
            measured = [measure(command, env, log) for _ in range(runs)]
            if expected not in log.read_text():
                sys.exit(f"{label}: its output lacks {expected!r}:\n{log.read_text()[-2000:]}")
            cpu = spread([m.cpu_s for m in measured])
            figures[f"{label}: CPU s"] = {**cpu, "goal": f"< {GOAL_CPU_S:.0f}", "met": cpu["median"] < GOAL_CPU_S}
            figures[f"{label}: wall s"] = spread([m.wall_s for m in measured])
            print(f"{label:42s} CPU {cpu['median']:5.2f} s (min {cpu['min']:.2f}, max {cpu['max']:.2f})", flush=True)
    path = write_result("startup", figures, {"quick": args.quick, "runs": runs})
    print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
