"""What the orchestrator costs: the same variants through `freeze-sweep -m` and through plain
`yolo train` command lines with identical arguments (ultralytics' own MLflow integration off).

    python bench/bench_overhead.py            # demo model, freeze=0,10,22, 3 epochs at 128 px, 4 pairs
    python bench/bench_overhead.py --quick    # tiny (tests' TINY overrides), 1 epoch, 1 pair: CI's smoke run
    python bench/bench_overhead.py --profile sweep.txt   # also: where a sweep spends its time (pyinstrument)

Whole processes, interleaved sweep / plain over the pairs so that load drifting on the machine hits
both sides alike. Per pair: wall ratio sweep / plain (goal <= 1.00, MLflow logging included), CPU
ratio, peak RSS of each process tree (goal <= +10%), and the final mAP50-95 of every variant on both
sides (they must match). Records bench/results/overhead-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.record import spread, write_result  # noqa: E402

FREEZES = (0, 10, 22)
FULL = {"pairs": 4, "overrides": ["train.epochs=3"]}  # the demo's own config otherwise: 128 px, 128 images
WALL_GOAL, MEMORY_GOAL = 1.00, 1.10
ACCURACY = "metrics/mAP50-95(B)"  # results.csv column compared between the two sides


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float  # user + system of the whole process tree
    peak_rss_mib: float  # the largest sum of RSS over the process tree, polled


def tree_rss(process: psutil.Process) -> int:
    """RSS of a process and all its descendants (dataloader workers), bytes; pages shared after a
    fork count once per process, alike on both sides of a comparison."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def kill_tree(process: psutil.Process) -> None:
    with contextlib.suppress(psutil.Error):  # gone already
        for p in [*process.children(recursive=True), process]:
            with contextlib.suppress(psutil.Error):
                p.kill()
    process.wait()


def measure(
    command: list[str], env: dict, log: Path, cwd: Path = ROOT, interval_s: float = 0.1, timeout_s: float | None = None
) -> Measured:
    """Run one command to its end; exits with the tail of its log when it fails or outlives
    `timeout_s` (then killed, with its children). CPU time comes from getrusage(RUSAGE_CHILDREN),
    so only one measured command may run at a time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    peak = 0
    with log.open("w") as out:
        process = psutil.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        while process.poll() is None:
            try:
                peak = max(peak, tree_rss(process))
            except psutil.Error:  # exited between poll() and the read
                pass
            if timeout_s is not None and time.perf_counter() - started > timeout_s:
                kill_tree(process)
                sys.exit(f"{' '.join(command[:4])} ... killed after {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")
            time.sleep(interval_s)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} ... failed (exit {process.returncode}):\n{log.read_text()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measured(wall, cpu, peak / 2**20)


def yolo_value(value: object) -> str:
    """`value` written so that ultralytics' CLI parser (`smart_value`) reads back the same value."""
    from ultralytics.cfg import smart_value

    text = repr(value).replace(" ", "") if isinstance(value, list | tuple | float) else str(value)
    if smart_value(text) != value:
        raise ValueError(f"{value!r} does not survive the yolo command line (it reads back {smart_value(text)!r})")
    return text


def yolo_command(yolo: Path, checkpoint: Path, data: Path, freeze: list[int], save_dir: Path, args: dict) -> list[str]:
    """The `yolo train` command line of what sweep.training.train passes to `model.train`. A GPU
    index is written as the number the command line reads `device=0` as; ultralytics takes the int
    and the sweep's "0" alike."""
    given = {
        "model": str(checkpoint),
        "data": str(data),
        "freeze": freeze,
        "project": str(save_dir.parent),
        "name": save_dir.name,
        "exist_ok": True,
        **args,
    }
    if str(given.get("device")).isdigit():
        given["device"] = int(given["device"])
    return [str(yolo), "train", *(f"{key}={yolo_value(value)}" for key, value in given.items())]


def plain_settings(yolo: Path, env: dict) -> None:
    """ultralytics' integrations off in `env`'s private settings, as the sweep turns them off."""
    from sweep.training import OFF_SETTINGS

    pairs = [f"{key}={value}" for key, value in OFF_SETTINGS.items()]
    subprocess.run([str(yolo), "settings", *pairs], env=env, check=True, capture_output=True)


def goal(figure: dict, at_most: float) -> dict:
    """A ratio's spread with its goal, met when its median is at most `at_most`."""
    return {**figure, "goal": f"<= {at_most:.2f}", "met": figure["median"] <= at_most}


def final_metric(results_csv: Path) -> float:
    with results_csv.open() as f:
        rows = list(csv.DictReader(f))
    return float({k.strip(): v for k, v in rows[-1].items()}[ACCURACY])


def quick_size() -> dict:
    """The tests' TINY demo (64 px, 16 images, a 1-epoch base), one epoch per variant, one pair.
    Imported here, not at the top: tests.conftest sets up the tests' environment when imported."""
    from tests.conftest import TINY

    return {"pairs": 1, "overrides": [*TINY, "train.epochs=1"]}  # later overrides win: device is set after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny trainings, one pair (CI's smoke run)")
    parser.add_argument("--pairs", type=int, help="sweep/plain pairs (default: 4, or 1 with --quick)")
    parser.add_argument("--device", default="cpu", help="train.device of every training (cpu, 0, ...)")
    parser.add_argument("--root", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument(
        "--profile", type=Path, help="then run one more sweep under pyinstrument (not counted); its text profile here"
    )
    args = parser.parse_args()
    size = quick_size() if args.quick else FULL
    pairs = args.pairs or size["pairs"]
    # ultralytics' own CPU thread count on both sides (the demo would use every core)
    overrides = [*size["overrides"], f"train.device={args.device}", "sweep.cpu_threads=null"]
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        root = (args.root or Path(tmp)).resolve()
        figures = run_pairs(root, overrides, pairs, args.profile)
    settings = {"quick": args.quick, "pairs": pairs, "freeze": list(FREEZES), "overrides": overrides}
    path = write_result("overhead", figures, settings)
    print(f"recorded: {path.relative_to(ROOT)}")


def run_pairs(root: Path, overrides: list[str], pairs: int, profile: Path | None = None) -> dict:
    yolo = Path(sys.executable).parent / "yolo"
    base_env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "YOLO_OFFLINE": "true", "YOLO_AUTOINSTALL": "false"}
    sweep_env = {**base_env, "YOLO_CONFIG_DIR": str(root / "yolo-config-sweep")}
    plain_env = {**base_env, "YOLO_CONFIG_DIR": str(root / "yolo-config-plain")}
    plain_settings(yolo, plain_env)
    freeze_arg = f"freeze={','.join(map(str, FREEZES))}"

    def sweep(name: str, runner: tuple[str, ...] = ()) -> list[str]:
        sweep_dir = f"hydra.sweep.dir={root}/outputs/multiruns/{name}"
        return [sys.executable, *runner, "-m", "sweep", "-m", *overrides, freeze_arg, "sweep.rerun=true", sweep_dir]

    (root / "logs").mkdir(parents=True, exist_ok=True)
    print("warm-up sweep (generates the data and pretrains the demo base; not counted)", flush=True)
    measure(sweep("warmup"), sweep_env, root / "logs" / "warmup.log")
    specs = [variant_spec(root, [*overrides, f"freeze={freeze}"]) for freeze in FREEZES]

    wall, cpu, memory, differences = [], [], [], []
    for pair in range(pairs):
        a = measure(sweep(f"pair{pair}"), sweep_env, root / "logs" / f"sweep{pair}.log")
        plain_dirs = [root / "plain" / f"pair{pair}" / f"freeze{len(spec.freeze_layers)}" for spec in specs]
        plain = []
        for spec, save_dir in zip(specs, plain_dirs, strict=True):
            command = yolo_command(
                yolo, spec.checkpoint, spec.data.yaml, list(spec.freeze_layers), save_dir, spec.train_args
            )
            plain.append(measure(command, plain_env, root / "logs" / f"plain{pair}-{save_dir.name}.log"))
        b = Measured(sum(m.wall_s for m in plain), sum(m.cpu_s for m in plain), max(m.peak_rss_mib for m in plain))
        wall.append(a.wall_s / b.wall_s)
        cpu.append(a.cpu_s / b.cpu_s)
        memory.append((a.peak_rss_mib, b.peak_rss_mib))
        for job, save_dir in enumerate(plain_dirs):
            ours = final_metric(root / "outputs" / "multiruns" / f"pair{pair}" / str(job) / "train" / "results.csv")
            differences.append(abs(ours - final_metric(save_dir / "results.csv")))
        print(
            f"pair {pair + 1}/{pairs}: sweep {a.wall_s:6.1f} s, plain {b.wall_s:6.1f} s, ratio {wall[-1]:.3f};"
            f" peak RSS {a.peak_rss_mib:,.0f} vs {b.peak_rss_mib:,.0f} MiB",
            flush=True,
        )
    memory_ratio = [s / p for s, p in memory]
    figures = {
        "wall ratio (sweep / plain)": goal(spread(wall), WALL_GOAL),
        "CPU ratio (sweep / plain)": spread(cpu),
        "peak RSS sweep (MiB)": spread([m[0] for m in memory]),
        "peak RSS plain (MiB)": spread([m[1] for m in memory]),
        "peak RSS ratio (sweep / plain)": goal(spread(memory_ratio), MEMORY_GOAL),
        "largest mAP50-95 difference": max(differences),
    }
    if profile:
        print(f"profiled sweep (not counted) -> {profile}", flush=True)
        pyinstrument = ("-m", "pyinstrument", "-r", "text", "-o", str(profile.resolve()))
        measure(sweep("profiled", pyinstrument), sweep_env, root / "logs" / "profiled.log")
    return figures


def variant_spec(root: Path, overrides: list[str]):
    """The resolved variant a sweep job trains (sweep.variant.resolve on the same config),
    after the warm-up built its data and base: what the plain command line must repeat."""
    from sweep.variant import resolve
    from tests.conftest import compose_config

    return resolve(compose_config(root, overrides, shrink=False))


if __name__ == "__main__":
    main()
