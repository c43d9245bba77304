"""`freeze-sweep-ui`: the MLflow UI on the project's store, opened on the latest sweep's answer.

    freeze-sweep-ui                                  # outputs/mlflow.db of this folder, on 127.0.0.1:5050
    freeze-sweep-ui --sweep 2025-01-31_12-00-00-000000   # another sweep; --all: every sweep of the experiment
    freeze-sweep-ui --tracking-uri sqlite:///elsewhere/mlflow.db --port 5051

The printed address opens the runs table of one sweep (a `sweep.id` filter), sorted by frozen layers,
with the columns that decide in view at 1366 px: which variant is recommended, freeze, mAP50-95, its
difference to the unfrozen variant, the speed-up, training time and GPU memory where logged (the
report writes them on the variants as rounded text tags, beside exact metrics). A second address
opens the same runs as charts: freeze -> mAP50-95 -> train time (-> GPU memory) in parallel
coordinates, and accuracy against time.

MLflow 3.17 opens an experiment on its GenAI overview unless the address says
`workflowType=machine_learning`, keeps the runs page's columns in the browser, and opens an
Assistant panel on a first visit: `sweep.ui_server` serves MLflow with one page of ours in front,
which applies the view as the browser's own (see there). The default port is not 5000, where
`make services` runs the shared tracking server.

Exit codes: 0 stopped with Ctrl-C, 1 the server did not start, 2 bad input (no store, no sweep,
port taken).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlencode

from sweep.errors import USAGE_ERROR, ConfigError

PROG = "freeze-sweep-ui"
DEFAULT_PORT = 5050  # 5000 is the tracking server of `make services`
ALL_SWEEPS = "all"


def view_key(sweep_id: str | None) -> str:
    return f"freeze-sweep-{sweep_id or ALL_SWEEPS}"


def runs_view(sweep_id: str | None, gpu_logged: bool) -> dict:
    """One sweep's runs (every sweep's with `sweep_id=None`, then with a sweep column) by freeze
    level, with the columns that answer, and the compare charts; in MLflow's view-state format."""
    from sweep.tracking import names

    decision = [names.VIEW_MAP, names.VIEW_DELTA, names.VIEW_SPEEDUP, names.VIEW_TRAIN_TIME]
    decision += [names.VIEW_GPU_MEM] * gpu_logged
    columns = [f"tags.`{names.VIEW_VERDICT}`", f"params.`{names.P_FREEZE}`", *(f"tags.`{t}`" for t in decision)]
    if sweep_id is None:
        columns.append(f"tags.`{names.SWEEP_ID}`")
    view = {
        "orderByKey": f"metrics.`{names.M_FROZEN_LAYERS}`",
        "orderByAsc": True,
        "selectedColumns": columns,
        "columnWidths": {f"tags.`{names.VIEW_VERDICT}`": 140},
        "compareRunCharts": compare_charts(gpu_logged),
        "compareRunSections": [{"uuid": "freeze-sweep", "name": "answer", "display": True, "isReordered": False}],
        "runsHiddenMode": "SHOW_ALL",
    }
    if sweep_id is not None:
        view["searchFilter"] = f"tags.`{names.SWEEP_ID}` = '{sweep_id}'"
    return view


def compare_charts(gpu_logged: bool) -> list[dict]:
    """Parallel coordinates freeze -> mAP50-95 -> train time (-> GPU memory), and mAP50-95 against time."""
    from sweep.tracking import names

    best = names.BEST["mAP50-95"]
    card = {"runsCountToCompare": 100, "metricSectionId": "freeze-sweep", "deleted": False, "isGenerated": False}
    metrics = [names.M_FROZEN_LAYERS, best, names.TRAIN_TIME, *[names.GPU_PEAK_RESERVED] * gpu_logged]
    return [
        {
            **card,
            "uuid": "freeze-sweep-parallel",
            "type": "PARALLEL",
            "selectedParams": [],
            "selectedMetrics": metrics,
            "showAllRuns": True,
        },
        {
            **card,
            "uuid": "freeze-sweep-scatter",
            "type": "SCATTER",
            "xaxis": {"key": names.TRAIN_TIME, "type": "METRIC"},
            "yaxis": {"key": best, "type": "METRIC"},
        },
    ]


def store_view(client, experiment_id: str, sweep_id: str | None) -> str:  # noqa: ANN001 (MlflowClient)
    """The view as an experiment tag, where MLflow's "share view" keeps views; returns its key."""
    from sweep.tracking import names
    from sweep.ui_server import SHARED_VIEW_TAG

    gpu = client.search_runs([experiment_id], f"tags.`{names.VIEW_GPU_MEM}` LIKE '%'", max_results=1)
    key = view_key(sweep_id)
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, json.dumps(runs_view(sweep_id, bool(gpu))))
    return key


def open_url(base_url: str, experiment_id: str, key: str, compare: bool = False) -> str:
    """The landing page that applies the stored view and opens the runs table (or its charts)."""
    from sweep.ui_server import LANDING

    query = {"experiment": experiment_id, "view": key, **({"compare": "true"} if compare else {})}
    return f"{base_url}{LANDING}?{urlencode(query)}"


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    return f"{base_url}/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"


def hint(tracking_uri: str) -> str:
    """The line the end of a sweep prints: how to open its runs in the MLflow UI."""
    from sweep.tracking.credentials import redact
    from sweep.tracking.store import default_tracking_uri

    where = "" if tracking_uri == default_tracking_uri() else f" --tracking-uri {redact(tracking_uri)}"
    return f"see it in the MLflow UI: {PROG}{where}  (then open the address it prints)"


def build_parser() -> argparse.ArgumentParser:
    from sweep.tracking.sweeps import DEFAULT_EXPERIMENT

    p = argparse.ArgumentParser(
        prog=PROG,
        description="Start the MLflow UI on the sweeps' store and print the address of the latest sweep's runs: "
        "which variant to pick, and what it costs and saves. Runs until Ctrl-C.",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/outputs/mlflow.db)",
    )
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment of the sweeps")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--sweep", metavar="ID", default=None, help="open this sweep (default: the latest)")
    which.add_argument("--all", action="store_true", help="open every sweep of the experiment, with a sweep column")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the UI to answer (default: 120)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sweep.tracking.store import connect, default_tracking_uri
    from sweep.tracking.sweeps import find_sweeps

    uri = args.tracking_uri or default_tracking_uri()
    try:
        client = connect(uri)
        sweep = find_sweeps(client, args.experiment, [args.sweep] if args.sweep else [])[0]
        check_port(args.host, args.port)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    key = store_view(client, sweep.experiment_id, None if args.all else sweep.sweep_id)
    # Ctrl-C and SIGTERM both stop the server: a shell's background job inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = start_server(uri, args.host, args.port)
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    try:
        if not wait_until_up(base, server, args.timeout):
            print(f"{PROG}: error: the MLflow UI did not answer at {base} within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        which = "every sweep" if args.all else f"sweep {sweep.sweep_id}"
        print(f"MLflow UI on {uri}\n")
        print(f"{which}, runs by freeze level: {open_url(base, sweep.experiment_id, key)}")
        print(f"{which}, compare charts:       {open_url(base, sweep.experiment_id, key, compare=True)}")
        print(f"its summary (verdict, table, report):  {run_url(base, sweep.experiment_id, sweep.parent_run_id)}")
        print("\nCtrl-C stops it.", flush=True)
        server.wait()
        return 0 if server.returncode in (0, -signal.SIGTERM) else 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); pass a free --port"
            ) from None


def start_server(tracking_uri: str, host: str, port: int) -> subprocess.Popen:
    """MLflow's server (`sweep.ui_server`) in its own process group, so that stopping it stops its workers too."""
    command = [
        *(sys.executable, "-m", "sweep.ui_server"),
        *("--backend-store-uri", tracking_uri, "--host", host, "--port", str(port)),
    ]
    return subprocess.Popen(command, start_new_session=True)


def wait_until_up(base_url: str, server: subprocess.Popen, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
