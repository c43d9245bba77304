"""The sweep's own files on disk: written whole or not at all, and a folder checked before use.

A full disk or a read-only folder must never leave a half-written `variant.json` or `sweep.json`
for the sweep's summary to choke on, and must be found before anything is recorded.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from sweep.errors import ConfigError

MIB = 1 << 20
NEW_FILE_MODE = 0o644  # as `open()` makes it under the usual umask; mkstemp's own is 0o600


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write `text` to `path` through a temporary file and a rename: readers see the old file or
    the whole new one, never a truncated one. Raises OSError (disk full, read-only)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else NEW_FILE_MODE)
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_dir(path: Path, what: str, needed_bytes: int) -> None:
    """One line if `path` cannot be created and written, or if its filesystem has less than
    `needed_bytes` free. `what` names the setting (`hydra.sweep.dir=...`)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".freeze-sweep-write-check"
        write_atomic(probe, "freeze-sweep checks that it can write here\n")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"{what}: cannot write there ({error.strerror or error}); pick a writable folder") from None
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise ConfigError(
            f"{what}: {free / MIB:.1f} MiB free on its filesystem, the sweep needs about {needed_bytes / MIB:.0f} MiB "
            "(checkpoints and records); free some space or pick another folder"
        )
