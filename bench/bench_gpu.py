"""The GPU path, measured: the gpu_bench sweep one variant after another and three at once on one
GPU, and the sweep's overhead there against plain `yolo train` with the same arguments.

    python bench/bench_gpu.py             # on a CUDA machine: experiment=gpu_bench (about 3 minutes on an H200)
    python bench/bench_gpu.py --quick     # tiny sizes on whatever is there: the CPU smoke run (CI)
    python bench/bench_gpu.py --prepare   # only generate the data (bench/gpu_check.sh runs it beside pytest)

Modes, each its own store under one root, the generated data shared:
- sequential: `-m experiment=gpu_bench train.device=0`;
- packed: the same three at once, `hydra/launcher=local_parallel hydra.launcher.n_jobs=3
  train.device=null sweep.variants_per_gpu=3`;
- overhead: freeze=none as a one-variant sweep, then as plain `yolo train` with the arguments the
  sweep passed (bench/bench_overhead.py builds the command line and measures both processes).
Per mode: the sweep's wall time and exit code, and per variant what MLflow recorded: peak memory
(torch's counters), GPU utilisation and memory as sampled (the per-process figures where
`gpu.source` is `process`), epoch times, `data_wait_pct`; plus nvidia-smi dmon's SM utilisation
over the sweep and over each variant's steady epochs (the 2nd to the last). The overhead pair
compares the same counters on both sides: torch's peaks of the training process (the sweep logs
them; plain `yolo train` runs under a launcher that reads them when it ends) and NVML's memory of
the GPU's processes, sampled alike for both. Every step has a timeout and a failed step is
recorded, not fatal. Records bench/results/gpu-*.json (bench/record.py: device, driver, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.record import write_result  # noqa: E402
from sweep.signals import stop_process_group  # noqa: E402
from sweep.tracking import names  # noqa: E402  (before mlflow: it then imports without polars, see lean_mlflow)

PEAKS_ENV = "BENCH_GPU_PEAKS"  # where the plain run's launcher writes torch's peak counters
PACKED = ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=3", "train.device=null", "sweep.variants_per_gpu=3"]
# Time limits of one run (a sweep, or one side of the overhead pair) on an H200: at most, and at
# least when a budget is tight. Expected: sequential ~80 s, packed ~55 s, each overhead side ~25 s.
LONGEST_S = {"sequential": 150, "packed": 120, "overhead": 75}
LEAST_S = {"sequential": 60, "packed": 45, "overhead": 30}
RUNS = {"sequential": 1, "packed": 1, "overhead": 2}
QUICK_SLOWER = 4  # the smoke run's tiny trainings take this much longer on a loaded 2-core CPU
QUICK_SIZES = ["data.n_train=16", "data.n_val=8", "data.imgsz=64", "train.epochs=2", "train.imgsz=64", "train.batch=8"]
QUICK_SIZES += ["train.workers=0", "tracking.gpu_sample_interval_s=0.5", "tracking.system_metrics_interval_s=1"]
PAIR = ["freeze=none", "train.epochs=5"]  # the overhead pair: long enough for its figures, short for the budget


@dataclass(frozen=True)
class Outcome:
    wall_s: float
    exit_code: int | None  # None: killed at its timeout


def size(quick: bool) -> tuple[list[str], list[str]]:
    """The sweeps' overrides and the overhead pair's: experiment=gpu_bench, or for --quick the
    tests' tiny sizes on it (conf/experiment/tiny.yaml less its demo-model and device keys)."""
    if not quick:
        return ["experiment=gpu_bench"], PAIR
    return ["experiment=gpu_bench", *QUICK_SIZES], PAIR[:1]


class Limits:
    """Each mode's time limit, taken when it starts: its longest, or with a budget what is left of
    it less the least the modes after it need (never below its own least)."""

    def __init__(self, modes: list[str], quick: bool, budget_s: float | None) -> None:
        self.modes = modes
        self.scale = QUICK_SLOWER if quick else 1
        self.deadline = None if budget_s is None else time.monotonic() + budget_s

    def __call__(self, mode: str) -> float:
        longest, least = LONGEST_S[mode] * self.scale, LEAST_S[mode] * self.scale
        if self.deadline is None:
            return longest
        later = self.modes[self.modes.index(mode) + 1 :]
        reserve = sum(LEAST_S[m] * RUNS[m] for m in later) * self.scale
        return max(least, min(longest, (self.deadline - time.monotonic() - reserve) / RUNS[mode]))


def sweep_env(root: Path) -> dict:
    return {
        **os.environ,
        "FREEZE_SWEEP_ROOT": str(root),
        "YOLO_OFFLINE": "true",
        "YOLO_AUTOINSTALL": "false",
        "YOLO_CONFIG_DIR": str(root / "yolo-config"),
    }


def run_timed(command: list[str], env: dict, log: Path, timeout_s: float) -> Outcome:
    """Run to its end or its timeout; then its whole process group goes (joblib workers included)."""
    started = time.perf_counter()
    code = None
    with log.open("w") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
        finally:  # also when this process is stopped itself
            if process.poll() is None:
                stop_process_group(process)
    return Outcome(time.perf_counter() - started, code)


class Dmon:
    """`nvidia-smi dmon` beside a sweep, one line a second with date and time; nothing without nvidia-smi."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.samples: list[tuple[float, float]] = []  # (unix seconds, SM %), GPU 0
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Dmon:
        if shutil.which("nvidia-smi"):
            command = ["nvidia-smi", "dmon", "-s", "u", "-d", "1", "-o", "DT", "-i", "0"]
            with self.log.open("w") as out:  # the child keeps its own copy of the descriptor
                self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(timeout=10)
            self.samples = parse_dmon(self.log.read_text())


def parse_dmon(text: str) -> list[tuple[float, float]]:
    """(unix seconds, SM %) from `nvidia-smi dmon -o DT` output, columns found by its header line
    (`#Date Time gpu sm mem ...`); lines without a reading ("-") are left out."""
    samples: list[tuple[float, float]] = []
    columns: list[str] = []
    for line in text.splitlines():
        fields = line.lstrip("#").split()
        if line.startswith("#"):
            columns = fields if {"Date", "Time", "sm"} <= set(fields) else columns
            continue
        if not columns or len(fields) != len(columns) or not fields[columns.index("sm")].isdigit():
            continue
        try:
            stamp = time.strptime(f"{fields[columns.index('Date')]} {fields[columns.index('Time')]}", "%Y%m%d %H:%M:%S")
        except ValueError:
            continue
        samples.append((time.mktime(stamp), float(fields[columns.index("sm")])))
    return samples


def mean_within(samples: list[tuple[float, float]], window: tuple[float, float] | None) -> float | None:
    inside = [value for stamp, value in samples if window and window[0] <= stamp <= window[1]]
    return statistics.fmean(inside) if inside else None


class NvmlPeak:
    """The most memory the GPU's compute processes held at once (their CUDA contexts included),
    sampled every 0.1 s; None without NVML. Beside one training at a time, that training's figure."""

    def __init__(self) -> None:
        self.peak_mb: float | None = None
        self._stop = threading.Event()

    def __enter__(self) -> NvmlPeak:
        try:
            import pynvml

            pynvml.nvmlInit()
            from sweep.tracking.resources import nvml_index

            handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index(0))
        except Exception:  # no driver, no library: no figure
            return self
        self.peak_mb = 0.0

        def sample() -> None:
            while not self._stop.wait(0.1):
                try:
                    used = sum(p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle))
                except pynvml.NVMLError:
                    continue
                self.peak_mb = max(self.peak_mb or 0.0, used / 2**20)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.peak_mb is not None:
            self._thread.join()
            self.peak_mb = self.peak_mb or None  # no process seen (a container NVML cannot look into)


def run_sweep_mode(name: str, root: Path, overrides: list[str], timeout_s: float) -> dict:
    """One sweep in its own store; its wall time, dmon's SM samples and each variant's figures."""
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "sweep", "-m", *overrides, f"hydra.sweep.dir={home / 'sweep'}"]
    print(f"{name}: {' '.join(command[3:])}", flush=True)
    with Dmon(root / "logs" / f"dmon_{name}.txt") as dmon:
        outcome = run_timed(command, sweep_env(home), root / "logs" / f"{name}.log", timeout_s)
    print(f"{name}: exit {outcome.exit_code} after {outcome.wall_s:.1f} s", flush=True)
    figures = {
        "wall s": outcome.wall_s,
        "exit code": outcome.exit_code if outcome.exit_code is not None else f"killed after {timeout_s:.0f} s",
        "dmon SM mean %": mean_within(dmon.samples, (0, float("inf"))),
        "dmon SM max %": max((sm for _, sm in dmon.samples), default=None),
    }
    store = home / "outputs" / "mlflow.db"
    if store.is_file():
        figures["variants"] = variant_figures(f"sqlite:///{store}", dmon.samples)
    return figures


def variant_figures(tracking_uri: str, dmon: list[tuple[float, float]]) -> dict:
    """Per variant (by its freeze value), what MLflow recorded."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("freeze-sweep")
    if experiment is None:  # the sweep ended before its first run
        return {}
    runs = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "variant"]
    found = {}
    for run in runs:
        m, run_id = run.data.metrics, run.info.run_id
        history = {key: client.get_metric_history(run_id, key) for key in (names.EPOCH_TIME, names.DATA_WAIT)}
        epochs = sorted(history[names.EPOCH_TIME], key=lambda p: p.step)
        steady = (epochs[0].timestamp / 1000, epochs[-1].timestamp / 1000) if len(epochs) > 1 else None
        util = [(p.timestamp / 1000, p.value) for p in client.get_metric_history(run_id, names.GPU_UTIL)]
        memory = [p.value for p in client.get_metric_history(run_id, names.GPU_MEMORY)]
        waits = [p.value for p in sorted(history[names.DATA_WAIT], key=lambda p: p.step)]
        found[run.data.params.get(names.P_FREEZE, run_id)] = {
            "status": run.info.status,
            "gpu.source": run.data.tags.get(names.GPU_SOURCE),
            "peak allocated MB": m.get(names.GPU_PEAK_ALLOCATED),
            "peak reserved MB": m.get(names.GPU_PEAK_RESERVED),
            "GPU memory max MB (sampled)": max(memory, default=None),
            "utilisation mean %": m.get(names.GPU_UTIL_MEAN),
            "utilisation max %": m.get(names.GPU_UTIL_MAX),
            "utilisation steady epochs %": mean_within(util, steady),
            "dmon SM steady epochs % (whole GPU)": mean_within(dmon, steady),
            "train time s": m.get(names.TRAIN_TIME),
            "epoch time s (median after the first)": median_after_first([p.value for p in epochs]),
            "data wait % (median after the first)": median_after_first(waits),
            "mAP50-95": m.get(names.BEST["mAP50-95"]),
            "epoch times s": [p.value for p in epochs],
            "data wait %": waits,
        }
    return found


def median_after_first(values: list[float]) -> float | None:
    """The steady figure: the first epoch also warms up (cuDNN, the loaders' first batches, the cache)."""
    kept = values[1:] or values
    return statistics.median(kept) if kept else None


def overhead_pair(root: Path, overrides: list[str], device: str, timeout_s: float) -> dict:
    """One variant (`overrides` say which) as a one-variant sweep and as plain `yolo train`, one after the other."""
    from bench.bench_overhead import final_metric, measure, plain_settings, yolo_command

    home = root / "overhead"
    home.mkdir(parents=True, exist_ok=True)
    pair = overrides
    sweep_dir = home / "sweep"
    sweep = [sys.executable, "-m", "sweep", "-m", *pair, f"train.device={device}", f"hydra.sweep.dir={sweep_dir}"]
    launcher = yolo_launcher(home)
    peaks_file = home / "peaks.json"
    plain_env = {**sweep_env(home), "YOLO_CONFIG_DIR": str(home / "yolo-config-plain"), PEAKS_ENV: str(peaks_file)}
    logs = root / "logs"
    print(f"overhead: {' '.join(sweep[3:])}, then the same as plain yolo train", flush=True)
    try:
        with NvmlPeak() as sweep_nvml:
            ours = measure(sweep, sweep_env(home), logs / "overhead_sweep.log", timeout_s=timeout_s)
        spec = variant_spec(home, pair)
        plain_settings(launcher, plain_env)
        save_dir = home / "plain" / "train"
        args = {**spec.train_args, "device": device}
        command = yolo_command(launcher, spec.checkpoint or spec.arch, spec.data.yaml, [], save_dir, args)
        with NvmlPeak() as plain_nvml:
            plain = measure(command, plain_env, logs / "overhead_plain.log", timeout_s=timeout_s)
    except SystemExit as error:  # measure exits with the log's tail when a side fails or hangs
        return {"error": str(error)[-2000:]}
    variant = variant_figures(f"sqlite:///{home / 'outputs' / 'mlflow.db'}", []).get("none", {})
    peaks = json.loads(peaks_file.read_text()) if peaks_file.is_file() else {}
    return {
        "sweep wall s": ours.wall_s,
        "plain wall s": plain.wall_s,
        "wall ratio (sweep / plain)": ours.wall_s / plain.wall_s,
        "peak RSS MiB sweep": ours.peak_rss_mib,
        "peak RSS MiB plain": plain.peak_rss_mib,
        "peak allocated MB sweep": variant.get("peak allocated MB"),
        "peak allocated MB plain": peaks.get("peak allocated MB"),
        "peak reserved MB sweep": variant.get("peak reserved MB"),
        "peak reserved MB plain": peaks.get("peak reserved MB"),
        "GPU processes' memory max MB sweep (NVML)": sweep_nvml.peak_mb,
        "GPU processes' memory max MB plain (NVML)": plain_nvml.peak_mb,
        "mAP50-95 sweep": final_metric(sweep_dir / "0" / "train" / "results.csv"),
        "mAP50-95 plain": final_metric(save_dir / "results.csv"),
    }


def variant_spec(home: Path, overrides: list[str]):
    """The variant the one-variant sweep trained, resolved as the job resolved it (on the CPU: the
    bench's own process must not take a CUDA context the NVML figures would count)."""
    from bench.bench_overhead import variant_spec as resolve

    return resolve(home, [*overrides, "train.device=cpu"])


def yolo_launcher(home: Path) -> Path:
    """An executable that is `yolo` plus a note of torch's peak counters when it ends: what
    bench_overhead's command line expects in place of ultralytics' own `yolo` script."""
    launcher = home / "yolo"
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from bench.bench_gpu import yolo_with_peaks\nyolo_with_peaks()\n"
    )
    launcher.chmod(0o755)
    return launcher


def yolo_with_peaks() -> None:
    """ultralytics' `yolo` command; then torch's peaks of GPU 0, as the sweep logs them for a variant."""
    from ultralytics.cfg import entrypoint

    try:
        entrypoint()
    finally:
        import torch

        target = os.environ.get(PEAKS_ENV)
        if target and torch.cuda.is_available() and torch.cuda.is_initialized():
            peaks = {
                "peak allocated MB": torch.cuda.max_memory_allocated(0) / 2**20,
                "peak reserved MB": torch.cuda.max_memory_reserved(0) / 2**20,
            }
            Path(target).write_text(json.dumps(peaks))


def prepare(overrides: list[str]) -> None:
    """Generate the experiment's data into the shared cache (what the first sweep would do first)."""
    from sweep.sources import data_source
    from sweep.variant import plain
    from tests.conftest import compose_config

    started = time.perf_counter()
    cfg = compose_config(ROOT, overrides, shrink=False)
    data_source(plain(cfg.data), Path(cfg.paths.cache_dir))
    print(f"data ready in {cfg.paths.cache_dir} ({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the CPU smoke run (CI)")
    parser.add_argument("--prepare", action="store_true", help="only generate the data into --root's cache")
    parser.add_argument("--root", type=Path, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--logs", type=Path, help="also copy the sweeps' logs and dmon output here")
    parser.add_argument("--budget-s", type=float, help="end within about this many seconds (bench/gpu_check.sh)")
    parser.add_argument("--only", nargs="+", choices=[*LONGEST_S], default=list(LONGEST_S), metavar="MODE")
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    if not gpu and not args.quick:
        print("bench_gpu: skipped, no CUDA GPU here (--quick runs the CPU smoke run)")
        return 0
    device = "0" if gpu else "cpu"
    overrides, pair = size(args.quick)
    limits = Limits(args.only, args.quick, args.budget_s)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        root = (args.root or Path(tmp)).resolve()
        (root / "logs").mkdir(parents=True, exist_ok=True)
        shared = [*overrides, f"paths.cache_dir={root / 'cache'}"]
        if args.prepare:
            prepare(shared)
            return 0
        try:
            figures = measure_all(root, shared, pair, device, limits)
        finally:
            if args.logs:
                shutil.copytree(root / "logs", args.logs, dirs_exist_ok=True)
    settings = {"quick": args.quick, "device": device, "overrides": overrides, "packed": PACKED, "overhead pair": pair}
    settings["budget s"] = args.budget_s
    path = write_result("gpu", figures, settings)
    print(f"recorded: {path.relative_to(ROOT)}")
    return 1 if failures(figures) else 0


def measure_all(root: Path, overrides: list[str], pair: list[str], device: str, limits: Limits) -> dict:
    """The modes of `limits`, in order, each within its limit; a SIGTERM (an outer timeout) ends
    the current one and keeps what the others measured."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    plans = {
        "sequential": lambda s: run_sweep_mode("sequential", root, [*overrides, f"train.device={device}"], s),
        "packed": lambda s: run_sweep_mode("packed", root, [*overrides, *PACKED], s),
        "overhead": lambda s: overhead_pair(root, [*overrides, *pair], device, s),
    }
    figures: dict = {}
    for mode in limits.modes:
        try:
            figures[mode] = plans[mode](limits(mode))
        except KeyboardInterrupt:
            figures[mode] = {"error": "stopped (SIGTERM or Ctrl-C) before it finished"}
            break
    seq, packed = figures.get("sequential", {}), figures.get("packed", {})
    if seq.get("exit code") == 0 and packed.get("exit code") == 0:
        figures["packing speedup (sequential / packed wall)"] = seq["wall s"] / packed["wall s"]
    return figures


def failures(figures: dict) -> list[str]:
    """The modes that did not finish cleanly."""
    return [m for m, f in figures.items() if isinstance(f, dict) and ("error" in f or f.get("exit code", 0) != 0)]


if __name__ == "__main__":
    sys.exit(main())
