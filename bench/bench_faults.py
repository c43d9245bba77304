"""Randomised fault benchmark: tiny sweeps on one store, hit by kill -9, SIGTERM and SIGINT at
random moments, pairs of identical sweeps started together, a disk that fills, a read-only
output folder, budgeted sweeps hit by kill -9 between rungs or SIGTERM mid-rung, kill -9 of a parallel sweep's launching process, the tracking server down for
60 s, credentials in MLFLOW_TRACKING_URI, and a report run while a sweep trains; then a plain
re-run, and an audit of the store, the files and every console line.

    python bench/bench_faults.py --rounds 20 --seed 0      # full (about 30-40 min on 2 cores)
    python bench/bench_faults.py --quick                    # CI's smoke run: one round of each of QUICK_FAULTS
    python bench/bench_faults.py --quick --faults ...       # one round of each fault named

Prints, and records in bench/results/faults-*.json: rounds of each kind, variants lost,
duplicate FINISHED runs per config hash, runs left RUNNING, histories that are not exactly 1..N,
secrets found (grep of the store, its artifacts, the outputs and the consoles), processes that
outlived their sweep, bookkeeping faults not ending in one line and a non-zero exit, parent runs of
refused sweeps, and parents whose params a report fixed before their sweep ended.
The disk rounds mount a small tmpfs (root only); elsewhere they are recorded as skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.record import write_result  # noqa: E402
from sweep.tracking import names  # noqa: E402
from sweep.tracking.store import open_experiment  # noqa: E402
from tests.conftest import TINY  # noqa: E402

EPOCHS = 3
FREEZES = "0,4,8,12"
EXPERIMENT = "fault-bench"
SIGNAL_FAULTS = ("kill -9", "SIGTERM", "SIGINT")
FAULTS = (
    *SIGNAL_FAULTS,
    "two sweeps at once",
    "disk full",
    "read-only output",
    "kill -9 of a parallel parent",
    "server down 60 s",
    "credentials in the environment URI",
    "report during the sweep",
    "budget: kill -9 between rungs",
    "budget: SIGTERM mid-rung",
)
# CI's smoke run keeps the script from rotting within its time budget: one fault of each mechanism
# (a signal, a full disk, a dead launching process, a budget's rungs). The tests cover every fault
# class on its own (tests/test_record.py, test_launchers.py, test_reliability.py, test_budget_rungs.py);
# the full run draws from all of them.
QUICK_FAULTS = ("kill -9", "disk full", "kill -9 of a parallel parent", "budget: SIGTERM mid-rung")
SIGNALS = {"kill -9": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGINT": signal.SIGINT}
# Rounds that train variants of their own (train.seed = 1000 + round), so that they hit training
# even after earlier rounds finished the default variants; the final re-run covers every seed.
OWN_VARIANTS = (
    "disk full",
    "kill -9 of a parallel parent",
    "server down 60 s",
    "credentials in the environment URI",
    "report during the sweep",
    "budget: kill -9 between rungs",
    "budget: SIGTERM mid-rung",
)
BUDGET = ("sweep.budget=0.01", "sweep.eta=2")  # each rung one more epoch per variant (tiny: all tied, all kept)
DEFAULT_SEED = 0  # ultralytics' own
SERVER_DOWN_S = 60.0
ORPHAN_GRACE_S = 60.0  # how long a parallel sweep's workers may take to notice their parent died
SECRET = f"bench-{secrets.token_hex(8)}"  # the password of the credentials round, grepped for at the end


def own_seed(number: int) -> int:
    return 1000 + number


def sweep_dir(root: Path, name: str) -> Path:
    return root / "outputs" / "multiruns" / name


def start(
    root: Path,
    name: str,
    experiment: str = EXPERIMENT,
    extra: tuple[str, ...] = (),
    env: dict | None = None,
    folder: Path | None = None,
) -> subprocess.Popen:
    """A sweep in its own session, its console in <root>/consoles/<name>.log."""
    command = [
        sys.executable,
        "-m",
        "sweep",
        "-m",
        *TINY,
        f"train.epochs={EPOCHS}",
        f"freeze={FREEZES}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={folder or sweep_dir(root, name)}",
        *extra,
    ]
    full_env = {**os.environ, "FREEZE_SWEEP_ROOT": str(root), "YOLO_OFFLINE": "true", **(env or {})}
    console = root / "consoles" / f"{name}.log"
    console.parent.mkdir(parents=True, exist_ok=True)
    with console.open("w") as out:
        return subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def console_of(root: Path, name: str) -> str:
    return (root / "consoles" / f"{name}.log").read_text(errors="ignore")


def hit(process: subprocess.Popen, fault: str, after_s: float) -> str:
    """Send the fault's signal after `after_s` (to the sweep's process; kill -9 to its group)."""
    try:
        process.wait(timeout=after_s)
        return "finished first"
    except subprocess.TimeoutExpired:
        if fault == "kill -9":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.send_signal(SIGNALS[fault])
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:  # it must end by itself within seconds; count it if not
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return f"{fault}: did not exit within 120 s"
        return f"{fault} landed, exit {process.returncode}"


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 600) -> bool:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.exists()


def one_line_failure(console: str, code: int | None, expected: int) -> bool:
    """A bookkeeping fault ended as promised: that exit code, no traceback, at most one error line."""
    errors = [line for line in console.splitlines() if line.startswith("freeze-sweep: error:")]
    return code == expected and "Traceback" not in console and len(errors) <= 1


class SmallDisk:
    """A tmpfs of `size_mb` at `path` (root only); `mounted` is False where it cannot be mounted."""

    def __init__(self, path: Path, size_mb: int, read_only: bool = False) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        options = f"size={size_mb}m" + (",ro" if read_only else "")
        mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
        self.mounted = subprocess.run(mount, capture_output=True).returncode == 0

    def fill(self) -> None:
        for name, block in (("filler", 1 << 20), ("filler-tail", 512)):
            try:
                with (self.path / name).open("ab") as filler:
                    while True:
                        filler.write(b"\0" * block)
                        filler.flush()
            except OSError:
                pass

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


def disk_full(root: Path, name: str, seed: tuple[str, ...], delay: float, tally: Counter) -> str:
    """The sweep folder on a small disk that something else fills while it trains."""
    disk = SmallDisk(root / "disks" / name, 200)
    if not disk.mounted:
        return "skipped: cannot mount a tmpfs here (needs root)"
    try:
        process = start(root, name, extra=seed, folder=disk.path / name)
        if wait_for(disk.path / name / "sweep.json", process):
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                disk.fill()
        code = wait_or_kill(process)
        ok = one_line_failure(console_of(root, name), code, expected=1) or code == 0  # 0: it finished first
        tally["bookkeeping faults not ending in one line and exit 1 or 2"] += not ok
        return f"disk filled, exit {code}"
    finally:
        disk.unmount()


def read_only_output(root: Path, name: str, client: MlflowClient, tally: Counter) -> str:
    disk = SmallDisk(root / "disks" / name, 1, read_only=True)
    if not disk.mounted:
        return "skipped: cannot mount a tmpfs here (needs root)"
    try:
        code = wait_or_kill(start(root, name, folder=disk.path / name))
    finally:
        disk.unmount()
    tally["bookkeeping faults not ending in one line and exit 1 or 2"] += not one_line_failure(
        console_of(root, name), code, expected=2
    )
    experiment = client.get_experiment_by_name(EXPERIMENT)
    query = f"tags.`{names.SWEEP_ID}` = '{name}'"
    parents = client.search_runs([experiment.experiment_id], query) if experiment else []
    tally["parent runs of refused sweeps"] += len(parents)
    return f"read-only sweep dir, exit {code}"


def kill_parallel_parent(root: Path, name: str, seed: tuple[str, ...], delay: float, tally: Counter) -> str:
    """kill -9 of a local_parallel sweep's launching process only: its workers must not outlive it."""
    process = start(root, name, extra=(*seed, "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2"))
    wait_for(sweep_dir(root, name) / "sweep.json", process)  # the delay counts from the sweep's start
    try:
        process.wait(timeout=delay)
        return f"finished first, exit {process.returncode}"
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    deadline = time.monotonic() + ORPHAN_GRACE_S
    while time.monotonic() < deadline and session_processes(process.pid):
        time.sleep(1)
    left = session_processes(process.pid)
    tally["processes outliving their sweep"] += len(left)
    for orphan in left:  # clean up, so later rounds start on an idle machine
        try:
            orphan.kill()
        except psutil.Error:
            pass
    return f"parent killed -9, {len(left)} workers alive after {ORPHAN_GRACE_S:.0f} s"


def session_processes(session_id: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id:
                found.append(process)
        except (OSError, psutil.Error):
            pass
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`mlflow server` on the bench's own SQLite store, so the audit sees what the sweeps wrote;
    its own log in <root>/consoles/server.log."""

    def __init__(self, uri: str, log: Path) -> None:
        self.uri, self.port, self.log = uri, free_port(), log
        self.address = f"http://127.0.0.1:{self.port}"
        self.up()

    def up(self) -> None:
        from sweep.ui import wait_until_up

        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.uri]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        with self.log.open("a") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until_up(self.address, self.process, 120):
            raise RuntimeError(f"mlflow server on {self.address} did not start (log: {self.log})")

    def down(self) -> None:
        from sweep.ui import stop

        stop(self.process)


def server_down(root: Path, name: str, seed: tuple[str, ...], uri: str, delay: float) -> str:
    server = Server(uri, root / "consoles" / "server.log")
    try:
        process = start(root, name, extra=(*seed, f"tracking.uri={server.address}"))
        wait_for(sweep_dir(root, name) / "sweep.json", process)  # the delay counts from the sweep's start
        try:
            process.wait(timeout=delay)
            return f"finished first, exit {process.returncode}"
        except subprocess.TimeoutExpired:
            server.down()
            time.sleep(SERVER_DOWN_S)
            server.up()
        return f"server down {SERVER_DOWN_S:.0f} s, exit {wait_or_kill(process)}"
    finally:
        server.down()


def credentials_in_environment(root: Path, name: str, seed: tuple[str, ...], uri: str) -> str:
    """MLFLOW_TRACKING_URI=http://user:<SECRET>@host with `tracking=server`: the secret is grepped for at the end."""
    server = Server(uri, root / "consoles" / "server.log")
    try:
        host = server.address.split("://", 1)[1]
        env = {"MLFLOW_TRACKING_URI": f"http://bench:{SECRET}@{host}"}
        code = wait_or_kill(start(root, name, extra=(*seed, "tracking=server"), env=env))
        return f"credentials in MLFLOW_TRACKING_URI, exit {code}"
    finally:
        server.down()


def report_during_sweep(root: Path, name: str, seed: tuple[str, ...], uri: str, delay: float) -> str:
    process = start(root, name, extra=seed)
    reported = "no report: the sweep ended first"
    if wait_for(sweep_dir(root, name) / "sweep.json", process):
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            report = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "sweep.report",
                    "--tracking-uri",
                    uri,
                    "--experiment",
                    EXPERIMENT,
                    "--sweep",
                    name,
                ],
                cwd=ROOT,
                env={**os.environ, "FREEZE_SWEEP_ROOT": str(root)},
                capture_output=True,
                text=True,
                timeout=600,
            )
            (root / "consoles" / f"{name}-report.log").write_text(report.stdout + report.stderr)
            reported = f"report exit {report.returncode}"
    return f"{reported}, sweep exit {wait_or_kill(process)}"


def budgeted(root: Path, name: str, seed: tuple[str, ...], fault: str) -> str:
    """A budgeted sweep hit between its first two rungs (once rung 1 is decided) or in the middle of
    rung 2 (once its first variant trained its second epoch)."""
    process = start(root, name, extra=(*seed, *BUDGET))
    folder = sweep_dir(root, name)
    results = folder / "0" / "train" / "results.csv"

    def moment() -> bool:
        if "between" in fault:
            return (folder / "budget.json").is_file()
        return results.is_file() and len(results.read_text().splitlines()) >= 3

    deadline = time.monotonic() + 900
    while not moment():
        if process.poll() is not None or time.monotonic() > deadline:
            return f"finished first, exit {wait_or_kill(process)}"
        time.sleep(0.05)
    if "kill -9" in fault:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.send_signal(signal.SIGTERM)
    return f"{fault} landed, exit {wait_or_kill(process, 120)}"


def wait_or_kill(process: subprocess.Popen, timeout_s: float = 900) -> int:
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def run_round(root: Path, number: int, fault: str, delay: float, uri: str, tally: Counter) -> str:
    name = f"round{number}"
    seed = (f"train.seed={own_seed(number)}",)
    if fault == "two sweeps at once":
        pair = [start(root, f"{name}{side}") for side in "ab"]
        codes = [p.wait() for p in pair]
        return f"two sweeps, exits {codes}"
    if fault == "disk full":
        return disk_full(root, name, seed, delay, tally)
    if fault == "read-only output":
        return read_only_output(root, name, MlflowClient(uri), tally)
    if fault == "kill -9 of a parallel parent":
        return kill_parallel_parent(root, name, seed, delay, tally)
    if fault == "server down 60 s":
        return server_down(root, name, seed, uri, delay)
    if fault == "credentials in the environment URI":
        return credentials_in_environment(root, name, seed, uri)
    if fault == "report during the sweep":
        return report_during_sweep(root, name, seed, uri, delay)
    if fault.startswith("budget:"):
        return budgeted(root, name, seed, fault)
    return hit(start(root, name), fault, delay)


def secrets_found(root: Path) -> list[str]:
    """Every file under the bench's root (store, artifacts, outputs, consoles) that holds SECRET."""
    needle = SECRET.encode()
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and needle in path.read_bytes():
                found.append(str(path.relative_to(root)))
        except OSError:
            pass
    return found


def parents_fixed_early(client: MlflowClient, report_rounds: list[str]) -> int:
    """Parents of report rounds whose `sweep.swept` param does not name every freeze value."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    fixed = 0
    for name in report_rounds:
        for parent in client.search_runs([experiment.experiment_id], f"tags.`{names.SWEEP_ID}` = '{name}'"):
            swept = parent.data.params.get("sweep.swept", "")
            fixed += bool(swept) and not all(value in swept for value in FREEZES.split(","))
    return fixed


def audit(uri: str, seeds: int = 1) -> dict[str, int]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    variants = [r for r in runs if r.data.tags.get(names.ROLE) == names.ROLE_VARIANT]
    finished = Counter(r.data.tags[names.CONFIG_HASH] for r in variants if r.info.status == "FINISHED")
    bad_histories = 0
    for run in variants:
        if run.info.status == "FINISHED":
            for key in ("mAP50", names.EPOCH_TIME):
                steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
                stopped = names.STOPPED_AT_RUNG in run.data.tags  # a budget stopped it: its epochs so far
                bad_histories += steps != list(range(1, (len(steps) if stopped else EPOCHS) + 1))
    expected = len(FREEZES.split(",")) * seeds
    return {
        "variants expected": expected,
        "variants finished": len(finished),
        "variants lost": expected - len(finished),
        "duplicate FINISHED runs per config hash": sum(n - 1 for n in finished.values()),
        "runs left RUNNING": sum(r.info.status == "RUNNING" for r in runs),
        "histories not exactly 1..N": bad_histories,
        "runs in store (parents, variants, superseded)": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-delay-s", type=float, default=45.0)
    parser.add_argument("--quick", action="store_true", help="one round of each of --faults (CI's smoke run)")
    parser.add_argument(
        "--faults", nargs="+", choices=FAULTS, help="only these faults (default: all; --quick: QUICK_FAULTS)"
    )
    parser.add_argument("--root", type=Path, help="keep everything here (default: a temporary folder)")
    args = parser.parse_args()
    args.faults = args.faults or list(QUICK_FAULTS if args.quick else FAULTS)
    rng = random.Random(args.seed)
    rounds = len(args.faults) if args.quick else args.rounds
    faults = list(args.faults) if args.quick else [rng.choice(args.faults) for _ in range(rounds)]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        start(root, "warmup", experiment="warmup").wait()  # builds the tiny demo base, outside the count
        uri = f"sqlite:///{root}/outputs/mlflow.db"
        open_experiment(uri, EXPERIMENT)  # artifacts beside the store, whichever round comes first
        started = time.monotonic()
        outcomes = []
        tally: Counter = Counter()
        for number, fault in enumerate(faults):
            delay = rng.uniform(1.0, args.max_delay_s)
            outcome = run_round(root, number, fault, delay, uri, tally)
            outcomes.append({"fault": fault, "delay_s": round(delay, 1), "outcome": outcome})
            print(f"round {number:2d}: {fault:36s} after {delay:5.1f} s -> {outcome}", flush=True)
        seeds = [DEFAULT_SEED] + [own_seed(n) for n, fault in enumerate(faults) if fault in OWN_VARIANTS]
        final = start(root, "final", extra=(f"train.seed={','.join(map(str, seeds))}",))
        final_exit = final.wait()
        figures = {**audit(uri, len(seeds)), "final re-run exit code": final_exit}
        leaked = secrets_found(root)
        figures["secrets found (store, artifacts, outputs, consoles)"] = len(leaked)
        figures["processes outliving their sweep"] = tally["processes outliving their sweep"]
        figures["bookkeeping faults not ending in one line and exit 1 or 2"] = tally[
            "bookkeeping faults not ending in one line and exit 1 or 2"
        ]
        figures["parent runs of refused sweeps"] = tally["parent runs of refused sweeps"]
        report_rounds = [f"round{n}" for n, fault in enumerate(faults) if fault == "report during the sweep"]
        figures["parents whose params a report fixed before their sweep ended"] = parents_fixed_early(
            MlflowClient(uri), report_rounds
        )
        if leaked:
            figures["files holding the secret"] = leaked[:20]
        figures["rounds"] = dict(Counter(faults))
        figures["total_s"] = round(time.monotonic() - started)
        for key, value in figures.items():
            print(f"{key}: {value}")
        path = write_result(
            "faults",
            {**figures, "round_log": outcomes},
            {"rounds": rounds, "seed": args.seed, "quick": args.quick, "faults": args.faults},
        )
        print(f"recorded: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
