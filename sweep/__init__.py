"""freeze-sweep: how much of a pretrained detector should you freeze?

Importing the package sets ultralytics' environment before ultralytics itself is imported:
its settings file lives in a folder we own, and it never pip-installs at run time.
"""

import os
from pathlib import Path

__version__ = "0.1.0"

os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".config" / "freeze-sweep" / "ultralytics"))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_VERBOSE", "true")
