"""MLflow's own tracking server app, plus one page of ours: `/freeze-sweep/open`.

MLflow 3.17 keeps what a browser shows of an experiment in that browser's localStorage: the runs
table's columns, the charts, and whether its Assistant panel has been opened once (it opens by
itself on a first visit to a local server, over a third of a 1366 px screen). A stored "shared view"
(`viewStateShareKey=`) sets the columns but keeps a "You're viewing a shared view" banner above
them. The page here applies a view stored as MLflow stores shared views (the experiment tag
`mlflow.sharedViewState.<key>`) as the browser's own view instead, marks the Assistant as already
shown, and goes on to the runs table with the view's filter and order in the address: no banner,
no panel, every click afterwards the user's own.

Served by `mlflow server --app-name freeze-sweep` (the `mlflow.app` entry point in pyproject.toml,
as MLflow's own `basic-auth` app is): MLflow sets up the store, the artifact root and the server;
`freeze-sweep-ui` starts it that way.
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

from sweep.html_page import escape

APP_NAME = "freeze-sweep"  # its `mlflow.app` entry point (pyproject.toml)
LANDING = "/freeze-sweep/open"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key: where MLflow's "share view" keeps a view
# What MLflow's UI reads from the address (the rest of a view is the browser's UI state).
URL_FACETS = ("searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter")
ASSISTANT_SHOWN = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false"}


def ui_state_key(experiment_id: str) -> str:
    """Where MLflow's UI keeps the runs page's state of one experiment (its `getStoreForComponent`)."""
    return f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([experiment_id])}-ReactComponentState"


def landing_page(experiment_id: str, view: dict, compare: bool, run_id: str | None = None) -> str:
    """HTML that stores the view as the browser's own (its filter and order too: where the address
    has none, MLflow falls back on the kept ones), then opens the runs page (its charts with
    `compare`, or one run's page with `run_id`: the Assistant kept closed there too)."""
    facets = {k: str(view[k]).lower() if isinstance(view[k], bool) else view[k] for k in URL_FACETS if k in view}
    query = {"workflowType": "machine_learning", **facets, **({"compareRunsMode": "CHART"} if compare else {})}
    target = f"/#/experiments/{experiment_id}/runs?{urlencode(query)}"
    if run_id:
        target = f"/#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    script = (
        f"const items = {json.dumps(ASSISTANT_SHOWN)};"
        "for (const [k, v] of Object.entries(items)) localStorage.setItem(k, v);"
        f"const key = {json.dumps(ui_state_key(experiment_id))};"
        "let saved = {}; try { saved = JSON.parse(localStorage.getItem(key)) || {}; } catch (e) {}"
        f"localStorage.setItem(key, JSON.stringify({{...saved, ...{json.dumps(view)}}}));"
        f"location.replace({json.dumps(target)});"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>freeze-sweep</title></head><body>"
        f"<p>Opening <a href='{escape(target)}'>the sweep in MLflow</a>…</p><script>{script}</script></body></html>"
    )


def create_app():  # noqa: ANN201 (a FastAPI app; its import is the server's)
    """MLflow's FastAPI app with the landing page in front of the routes MLflow mounts at `/`
    (a factory: `mlflow server` has set the store's environment before uvicorn calls it)."""
    from fastapi.responses import HTMLResponse, PlainTextResponse
    from fastapi.routing import APIRoute
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR
    from mlflow.server.fastapi_app import app
    from mlflow.tracking import MlflowClient

    def open_view(experiment: str, view: str, compare: bool = False, run: str | None = None):  # noqa: ANN202
        tag = (
            MlflowClient(os.environ[BACKEND_STORE_URI_ENV_VAR])
            .get_experiment(experiment)
            .tags.get(SHARED_VIEW_TAG + view)
        )
        if tag is None:
            return PlainTextResponse(f"no view {view!r} in experiment {experiment}: run freeze-sweep-ui", 404)
        return HTMLResponse(landing_page(experiment, json.loads(tag), compare, run))

    app.router.routes.insert(0, APIRoute(LANDING, open_view, methods=["GET"]))
    return app
