"""freeze-sweep: how much of a pretrained detector should you freeze?

Importing the package sets ultralytics' environment before ultralytics itself is imported:
its settings file lives in a folder we own, and it never pip-installs at run time. It also keeps
mlflow from importing pandas and polars for dataset logging we never do (sweep/tracking/lean_mlflow.py).
"""

import os
from pathlib import Path

from sweep.tracking import lean_mlflow

__version__ = "0.1.0"

os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".config" / "freeze-sweep" / "ultralytics"))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "true")

lean_mlflow.install()
