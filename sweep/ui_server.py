"""MLflow's own tracking server app, plus one page of ours: `/freeze-sweep/open`.

MLflow 3.17 keeps what a browser shows of an experiment in that browser's localStorage: the runs
table's columns, the charts, and whether its Assistant panel has been opened once (it opens by
itself on a first visit to a local server, over a third of a 1366 px screen). A stored "shared view"
(`viewStateShareKey=`) sets the columns but keeps a "You're viewing a shared view" banner above
them. The page here applies a view stored as MLflow stores shared views (the experiment tag
`mlflow.sharedViewState.<key>`) as the browser's own view instead, marks the Assistant as already
shown, and goes on to the runs table with the view's filter and order in the address: no banner,
no panel, every click afterwards the user's own.

Run by `freeze-sweep-ui` as `python -m sweep.ui_server --backend-store-uri URI --host H --port P`,
which prepares the store and serves as `mlflow server --backend-store-uri URI` does.
"""

from __future__ import annotations

import argparse
import json
import os
from urllib.parse import urlencode

from sweep.html_page import escape

LANDING = "/freeze-sweep/open"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key: where MLflow's "share view" keeps a view
# What MLflow's UI reads from the address (the rest of a view is the browser's UI state).
URL_FACETS = ("searchFilter", "orderByKey", "orderByAsc", "startTime", "lifecycleFilter")
ASSISTANT_SHOWN = {"mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true", "mlflow.assistant.panelOpen_v1": "false"}


def ui_state_key(experiment_id: str) -> str:
    """Where MLflow's UI keeps the runs page's state of one experiment (its `getStoreForComponent`)."""
    return f"MLflowLocalStorage-1.1-ExperimentPage-{json.dumps([experiment_id])}-ReactComponentState"


def landing_page(experiment_id: str, view: dict, compare: bool) -> str:
    """HTML that stores the view's UI state as the browser's own, then opens the runs page."""
    facets = {k: str(view[k]).lower() if isinstance(view[k], bool) else view[k] for k in URL_FACETS if k in view}
    query = {"workflowType": "machine_learning", **facets, **({"compareRunsMode": "CHART"} if compare else {})}
    target = f"/#/experiments/{experiment_id}/runs?{urlencode(query)}"
    ui_state = {k: v for k, v in view.items() if k not in URL_FACETS}
    script = (
        f"const items = {json.dumps(ASSISTANT_SHOWN)};"
        "for (const [k, v] of Object.entries(items)) localStorage.setItem(k, v);"
        f"const key = {json.dumps(ui_state_key(experiment_id))};"
        "let saved = {}; try { saved = JSON.parse(localStorage.getItem(key)) || {}; } catch (e) {}"
        f"localStorage.setItem(key, JSON.stringify({{...saved, ...{json.dumps(ui_state)}}}));"
        f"location.replace({json.dumps(target)});"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>freeze-sweep</title></head><body>"
        f"<p>Opening <a href='{escape(target)}'>the sweep's runs</a>…</p><script>{script}</script></body></html>"
    )


def create_app():  # noqa: ANN201 (a FastAPI app; its import is the server's)
    """MLflow's FastAPI app with the landing page in front of the routes MLflow mounts at `/`."""
    from fastapi.responses import HTMLResponse, PlainTextResponse
    from fastapi.routing import APIRoute
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR
    from mlflow.server.fastapi_app import app
    from mlflow.tracking import MlflowClient

    def open_view(experiment: str, view: str, compare: bool = False):  # noqa: ANN202
        tag = (
            MlflowClient(os.environ[BACKEND_STORE_URI_ENV_VAR])
            .get_experiment(experiment)
            .tags.get(SHARED_VIEW_TAG + view)
        )
        if tag is None:
            return PlainTextResponse(f"no view {view!r} in experiment {experiment}: run freeze-sweep-ui", 404)
        return HTMLResponse(landing_page(experiment, json.loads(tag), compare))

    app.router.routes.insert(0, APIRoute(LANDING, open_view, methods=["GET"]))
    return app


def main() -> None:
    """`mlflow server --backend-store-uri URI` with our app: the same store set-up and settings."""
    p = argparse.ArgumentParser(prog="python -m sweep.ui_server")
    p.add_argument("--backend-store-uri", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    import uvicorn
    from mlflow import server
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server.handlers import initialize_backend_stores
    from mlflow.utils.server_cli_utils import resolve_default_artifact_root

    artifact_root = resolve_default_artifact_root(True, None, args.backend_store_uri)
    os.environ.update(
        {
            server.BACKEND_STORE_URI_ENV_VAR: args.backend_store_uri,
            server.REGISTRY_STORE_URI_ENV_VAR: args.backend_store_uri,
            server.ARTIFACT_ROOT_ENV_VAR: artifact_root,
            server.SERVE_ARTIFACTS_ENV_VAR: "true",
            _MLFLOW_SGI_NAME.name: "uvicorn",
        }
    )
    initialize_backend_stores(args.backend_store_uri, args.backend_store_uri, artifact_root)
    uvicorn.run("sweep.ui_server:create_app", factory=True, host=args.host, port=args.port, workers=1)


if __name__ == "__main__":
    main()
