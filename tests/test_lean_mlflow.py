"""mlflow imported without pandas and polars (sweep/tracking/lean_mlflow.py): less memory in every
tracking process, and nothing a sweep or a user's code needs goes missing.

Each case runs in a fresh interpreter: what is imported is process-wide state.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_mlflow_tracks_without_loading_pandas_or_polars(tmp_path: Path) -> None:
    out = run_python(
        f"""
        import sys
        import sweep
        import mlflow
        print("after import:", "pandas" in sys.modules, "polars" in sys.modules)
        client = mlflow.MlflowClient("sqlite:///{tmp_path}/mlflow.db")
        experiment = client.create_experiment("lean", artifact_location="{tmp_path}/artifacts")
        run = client.create_run(experiment).info.run_id
        client.log_param(run, "freeze", "backbone")
        for step in range(3):
            client.log_metric(run, "val/mAP50-95", 0.1 * step, step=step)
        (path := __import__("pathlib").Path("{tmp_path}/note.txt")).write_text("hi")
        client.log_artifact(run, str(path))
        client.set_terminated(run)
        found = client.search_runs([experiment])
        history = client.get_metric_history(run, "val/mAP50-95")
        print("runs:", len(found), found[0].data.params["freeze"], [m.value for m in history])
        print("artifacts:", [f.path for f in client.list_artifacts(run)])
        print("after tracking:", "pandas" in sys.modules, "polars" in sys.modules)
        """,
        tmp_path,
    )
    assert "after import: False False" in out
    assert "runs: 1 backbone [0.0, 0.1, 0.2]" in out
    assert "artifacts: ['note.txt']" in out
    assert "after tracking: False False" in out


def test_pandas_polars_and_mlflow_dataframe_apis_still_load_when_asked_for(tmp_path: Path) -> None:
    out = run_python(
        f"""
        import sweep
        import mlflow
        import pandas, polars
        from mlflow.data.pandas_dataset import from_pandas
        mlflow.set_tracking_uri("sqlite:///{tmp_path}/mlflow.db")
        experiment = mlflow.create_experiment("lean", artifact_location="{tmp_path}/artifacts")
        with mlflow.start_run(experiment_id=experiment):
            mlflow.log_metric("x", 1.0)
        frame = mlflow.search_runs([experiment])
        dataset = from_pandas(pandas.DataFrame({{"a": [1, 2]}}), name="tiny")
        print(type(frame).__name__, len(frame), float(frame["metrics.x"][0]), dataset.name, polars.__name__)
        """,
        tmp_path,
    )
    assert "DataFrame 1 1.0 tiny polars" in out


def test_pandas_imported_before_mlflow_is_left_alone(tmp_path: Path) -> None:
    out = run_python(
        """
        import sys
        import sweep
        import pandas
        import mlflow
        from mlflow.data import from_pandas  # registered: pandas was there when mlflow initialised
        print("ok", from_pandas.__name__)
        """,
        tmp_path,
    )
    assert "ok from_pandas" in out


def test_mlflow_imported_before_sweep_gets_no_finder(tmp_path: Path) -> None:
    out = run_python(
        """
        import sys
        import mlflow
        import sweep
        from sweep.tracking.lean_mlflow import SkipOptionalImports
        print("pandas:", "pandas" in sys.modules, "finder:", any(isinstance(f, SkipOptionalImports) for f in sys.meta_path))
        """,
        tmp_path,
    )
    assert "pandas: True finder: False" in out
