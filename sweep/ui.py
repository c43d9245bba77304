"""`freeze-sweep-ui`: the MLflow UI on the project's store, and the address of the latest sweep's runs.

    freeze-sweep-ui                                  # outputs/mlflow.db of this folder, on 127.0.0.1:5000
    freeze-sweep-ui --tracking-uri sqlite:///elsewhere/mlflow.db --port 5001

MLflow 3.17 opens an experiment on its GenAI overview unless the address says otherwise: the UI
picks the landing tab from its `workflowType` (the URL's `workflowType=` parameter, else a setting
kept in the browser, "genai" when new), not from the `mlflow.experimentKind` tag. The printed
address names `workflowType=machine_learning`, the runs tab, and a view MLflow's "share view"
stores as an experiment tag (`mlflow.sharedViewState.<key>`, read for `viewStateShareKey=<key>`):
sorted by the variants' numeric `frozen_layers` metric (any order but by date lists parent and
children flat, so all show without expanding anything), with the freeze, accuracy and time
columns shown (a fresh browser shows no metric column).

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
DEFAULT_PORT = 5000
VIEW_KEY = "freeze-sweep-runs"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key; what the UI's "share view" writes


def runs_view() -> dict:
    """The runs table as the sweep is read: by freeze level, with what answers the question."""
    from sweep.tracking import names

    metrics = [
        names.P_FROZEN_LAYERS,
        names.P_TRAINABLE_PCT,
        names.BEST["mAP50"],
        names.BEST["mAP50-95"],
        names.TRAIN_TIME,
    ]
    return {
        "orderByKey": f"metrics.`{names.P_FROZEN_LAYERS}`",
        "orderByAsc": True,
        "selectedColumns": [f"params.`{names.P_FREEZE}`", *(f"metrics.`{m}`" for m in metrics)],
    }


def share_view(client, experiment_id: str) -> None:
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + VIEW_KEY, json.dumps(runs_view()))


def runs_url(base_url: str, experiment_id: str) -> str:
    """The runs table of the experiment in the view `share_view` stored, not the GenAI overview."""
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base_url}/#/experiments/{experiment_id}/runs?{query}"


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
        description="Start the MLflow UI on the sweeps' store and print the address of the latest sweep's runs, "
        "sorted by freeze level. Runs until Ctrl-C.",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///<cwd>/outputs/mlflow.db)",
    )
    p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="MLflow experiment of the sweeps")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the UI to answer (default: 120)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sweep.tracking.store import default_tracking_uri
    from sweep.tracking.sweeps import connect, find_sweeps

    uri = args.tracking_uri or default_tracking_uri()
    try:
        client = connect(uri)
        sweep = find_sweeps(client, args.experiment)[0]
        check_port(args.host, args.port)
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    share_view(client, sweep.experiment_id)
    # Ctrl-C and SIGTERM both stop the server: a shell's background job inherits SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = start_server(uri, args.host, args.port)
    base = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    try:
        if not wait_until_up(base, server, args.timeout):
            print(f"{PROG}: error: the MLflow UI did not answer at {base} within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        print(f"MLflow UI on {uri}\n")
        print(f"sweep {sweep.sweep_id}, runs by freeze level: {runs_url(base, sweep.experiment_id)}")
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
    """`mlflow server` in its own process group, so that stopping it stops its workers too."""
    command = [
        *(sys.executable, "-m", "mlflow", "server"),
        *("--backend-store-uri", tracking_uri, "--host", host, "--port", str(port), "--workers", "1"),
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
