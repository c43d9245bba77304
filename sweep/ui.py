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
Assistant panel on a first visit: `mlflow server --app-name freeze-sweep` (`sweep.ui_server`)
serves MLflow with one page of ours in front, which applies the view as the browser's own. The default port is not 5000, where
`make services` runs the shared tracking server.

Exit codes: 0 stopped with Ctrl-C, 1 the server did not start, 2 bad input (no store, no sweep,
port taken, the app not installed).
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
from sweep.signals import stop_process_group

PROG = "freeze-sweep-ui"
DEFAULT_PORT = 5050  # 5000 is the tracking server of `make services`
JOB_EXECUTION = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
ALL_SWEEPS = "all"
# Column ids of MLflow 3.17's runs table (its ag-grid `colId`s): the run name, and two columns it
# always shows ("Created" stays beside the name, whatever the order says).
RUN_NAME, CREATED, DURATION = "attributes.`Run Name`", "runDateAndNestInfo", "duration"


def view_key(sweep_id: str | None, compare: bool = False) -> str:
    return f"freeze-sweep-{sweep_id or ALL_SWEEPS}{'-charts' * compare}"


# Column widths (px) that fit the decision columns (and with --all the sweep's) into a 1366x768
# window beside MLflow's sidebar: about 1,035 px for the table's columns after its checkboxes. The
# run name gets what is left, up to its longest name; MLflow's own columns other than "Created" go
# after ours.
TABLE_PX = 1035
WIDTHS = {"created": 105, "verdict": 115, "freeze": 95, "sweep": 170}  # the figures': their header's
# Its two charts side by side, each wide enough for four parallel axes.
SECTION = {"display": True, "isReordered": False, "columns": 2, "cardHeight": 400}
MIN_NAME_PX, CHAR_PX = 110, 6  # about one character of the runs table's font


def runs_view(sweep_id: str | None, gpu_logged: bool, longest_name: int = 40, compare: bool = False) -> dict:
    """One sweep's runs (every sweep's with `sweep_id=None`, then with a sweep column) by freeze
    level, with the columns that answer first and MLflow's own (created, duration) after them, and
    the compare charts; in MLflow's view-state format. `compare`: the variants only (the charts'
    runs; the parent has no figure of its own to plot)."""
    from sweep.tracking import names

    decision = [names.VIEW_MAP, names.VIEW_DELTA, names.VIEW_SPEEDUP, names.VIEW_TRAIN_TIME]
    decision += [names.VIEW_GPU_MEM] * gpu_logged
    verdict, freeze, sweep = f"tags.`{names.VIEW_VERDICT}`", f"params.`{names.P_FREEZE}`", f"tags.`{names.SWEEP_ID}`"
    columns = [verdict, freeze, *(f"tags.`{t}`" for t in decision), *[sweep] * (sweep_id is None)]
    widths = {CREATED: WIDTHS["created"], verdict: WIDTHS["verdict"], freeze: WIDTHS["freeze"], sweep: WIDTHS["sweep"]}
    widths |= {f"tags.`{t}`": CHAR_PX * len(t) + 32 for t in decision}  # the header whole, its sort arrow too
    widths = {c: widths[c] for c in [CREATED, *columns]}
    room = TABLE_PX - sum(widths.values())
    widths[RUN_NAME] = max(MIN_NAME_PX, min(room, CHAR_PX * longest_name + 40))  # + the colour dot
    filters = [f"tags.`{names.SWEEP_ID}` = '{sweep_id}'"] * (sweep_id is not None)
    filters += [f"tags.`{names.ROLE}` = '{names.ROLE_VARIANT}'"] * compare
    return {
        "searchFilter": " AND ".join(filters),  # also when empty: not a filter the browser kept from before
        "orderByKey": f"metrics.`{names.M_FROZEN_LAYERS}`",
        "orderByAsc": True,
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME, CREATED, *columns, DURATION],
        "columnWidths": widths,
        "compareRunCharts": compare_charts(gpu_logged),
        "compareRunSections": [{"uuid": "freeze-sweep", "name": "the answer", **SECTION}],
        "isAccordionReordered": True,  # keeps our section first (MLflow otherwise sorts sections by name)
        "runsHiddenMode": "SHOW_ALL",
    }


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


def store_view(client, experiment_id: str, sweep_id: str | None) -> None:  # noqa: ANN001 (MlflowClient)
    """The runs view and its charts' as experiment tags (`view_key`), where MLflow's "share view" keeps views."""
    from sweep.tracking import names
    from sweep.ui_server import SHARED_VIEW_TAG

    shown = f"tags.`{names.SWEEP_ID}` = '{sweep_id}'" if sweep_id else ""
    runs = client.search_runs([experiment_id], shown, max_results=1000)
    gpu = any(names.VIEW_GPU_MEM in r.data.tags for r in runs)
    longest = max((len(r.info.run_name or "") for r in runs), default=0)
    for compare in (False, True):
        view = runs_view(sweep_id, gpu, longest, compare)
        client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + view_key(sweep_id, compare), json.dumps(view))


def open_url(
    base_url: str, experiment_id: str, sweep_id: str | None, compare: bool = False, run_id: str | None = None
) -> str:
    """The landing page that applies the stored view and opens the runs table (its charts, or a run's page)."""
    from sweep.ui_server import LANDING

    query = {"experiment": experiment_id, "view": view_key(sweep_id, compare)}
    query |= {"compare": "true"} if compare else {}
    query |= {"run": run_id} if run_id else {}
    return f"{base_url}{LANDING}?{urlencode(query)}"


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
        check_app()
    except ConfigError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    shown = None if args.all else sweep.sweep_id
    store_view(client, sweep.experiment_id, shown)
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
        print(f"{which}, runs by freeze level: {open_url(base, sweep.experiment_id, shown)}")
        print(f"{which}, compare charts:       {open_url(base, sweep.experiment_id, shown, compare=True)}")
        print(
            f"its summary (verdict, table, report):  {open_url(base, sweep.experiment_id, shown, run_id=sweep.parent_run_id)}"
        )
        print("\nCtrl-C stops it.", flush=True)
        server.wait()
        return 0 if server.returncode in (0, -signal.SIGTERM) else 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(server)


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server binds: a port a stopped server left in TIME_WAIT is free, a listening one is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"--port {port}: cannot listen on {host}:{port} ({error.strerror}); pass a free --port"
            ) from None


def check_app() -> None:
    """`mlflow server --app-name` finds apps by their entry point, which only an install records."""
    from importlib.metadata import entry_points

    from sweep.ui_server import APP_NAME

    if not any(e.name == APP_NAME for e in entry_points(group="mlflow.app")):
        raise ConfigError(
            f"MLflow app {APP_NAME!r} is not installed (an entry point of freeze-sweep since this version): "
            "run `pip install -e .` in the project again"
        )


def start_server(tracking_uri: str, host: str, port: int) -> subprocess.Popen:
    """`mlflow server` with our app in its own process group, so that stopping it stops its workers too.

    Without MLflow's job execution unless asked for ($MLFLOW_SERVER_ENABLE_JOB_EXECUTION): it serves
    GenAI scoring and trace archival, which runs of trainings never use, from eight more processes.
    """
    from sweep.ui_server import APP_NAME

    command = [
        *(sys.executable, "-m", "mlflow", "server", "--app-name", APP_NAME, "--workers", "1"),
        *("--backend-store-uri", tracking_uri, "--host", host, "--port", str(port)),
    ]
    env = {JOB_EXECUTION: "false", **os.environ}
    return subprocess.Popen(command, env=env, start_new_session=True)


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
    """The server and its workers: a worker left behind would hold the port."""
    stop_process_group(server, term_grace_s=10.0)


if __name__ == "__main__":
    sys.exit(main())
