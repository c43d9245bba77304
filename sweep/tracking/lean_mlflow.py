"""Import mlflow the way mlflow-skinny does: without pandas and polars.

While `import mlflow` runs, its package loads pandas and polars for features freeze-sweep never
uses (dataset logging, model evaluation): about 55 MiB of resident memory and half a second in
every process that tracks. Each of those imports is optional in mlflow (guarded for mlflow-skinny,
which runs without pandas), so during `import mlflow` they are reported missing. Imported from
anywhere else or later (the report, ultralytics, a user's callback, mlflow's lazily loaded
modules), they load as usual. Measured by `bench/bench_overhead.py` (peak RSS of a sweep against
plain ultralytics).
"""

from __future__ import annotations

import importlib.abc
import sys

SKIPPED = frozenset({"pandas", "polars"})


class SkipOptionalImports(importlib.abc.MetaPathFinder):
    """Refuses pandas and polars while mlflow's package is initialising."""

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201 (importlib's signature)
        if name in SKIPPED and _mlflow_is_initialising():
            raise ModuleNotFoundError(f"freeze-sweep skips {name} while mlflow initialises", name=name)
        return None


def _mlflow_is_initialising() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "mlflow":
            return True
        frame = frame.f_back
    return False


def install() -> None:
    """Installs the finder once; a no-op when mlflow is already imported (nothing left to skip)."""
    if "mlflow" in sys.modules or any(isinstance(f, SkipOptionalImports) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, SkipOptionalImports())
