"""Starting weights from a file: a local checkpoint, an official one, or nothing (from scratch),
and the architecture they hold. Official checkpoints download only when online; offline a missing
one stops with one line before anything trains. (`sweep.sources` puts these beside the other
sources of weights.)
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from sweep.errors import ConfigError
from sweep.files import write_atomic

SCRATCH = ("", "scratch", "none", "null")


def official_checkpoint_names() -> frozenset[str]:
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    return GITHUB_ASSETS_NAMES


def resolve_checkpoint(weights: str | None, named: tuple[str, ...] = ()) -> Path | None:
    """Absolute path of a checkpoint that exists on disk, downloading an official one if online.

    Returns None for "from scratch". `named`: the other values `model.weights` accepts (the
    sources that are not files), for the error a missing file gives.
    """
    if weights is None or str(weights).lower() in SCRATCH:
        return None
    path = Path(str(weights)).expanduser()
    if path.is_file():
        return path.resolve()
    from ultralytics.utils import ONLINE, SETTINGS
    from ultralytics.utils.checks import check_yolov5u_filename

    name = check_yolov5u_filename(path.name, verbose=False)
    local = Path(SETTINGS["weights_dir"]) / name
    if local.is_file():
        return local.resolve()
    if name not in official_checkpoint_names() or path.parent != Path("."):
        sources = "".join(f"'{n}', " for n in named)
        raise ConfigError(
            f"model.weights={weights}: no such file; give a local .pt path, an official ultralytics "
            f"checkpoint name (e.g. yolov8s.pt), {sources}or null to train from scratch"
        )
    if not ONLINE:
        raise ConfigError(
            f"model.weights={weights}: checkpoint {name} is not on disk and there is no internet to "
            f"download it; copy it to {local} or pass model.weights=/path/to/{name}"
        )
    from ultralytics.utils.downloads import attempt_download_asset

    local.parent.mkdir(parents=True, exist_ok=True)
    downloaded = Path(attempt_download_asset(local))
    if not downloaded.is_file():
        raise ConfigError(f"model.weights={weights}: download of {name} failed; pass a local file instead")
    return downloaded.resolve()


def load_arch_yaml(arch: str) -> dict:
    """An architecture yaml: a bundled name (yolov8n.yaml) or a path."""
    from ultralytics.nn.tasks import yaml_model_load

    try:
        return yaml_model_load(arch)
    except Exception as error:
        raise ConfigError(
            f"model.arch={arch}: not a readable model yaml ({type(error).__name__}); "
            "use a bundled one such as yolov8n.yaml or a path to your own"
        ) from None


def model_yaml_of(checkpoint: Path) -> dict:
    """The architecture yaml stored in an ultralytics checkpoint."""
    from ultralytics.nn.tasks import load_checkpoint

    try:
        model, _ = load_checkpoint(str(checkpoint), device="cpu")
    except Exception as error:  # a truncated or foreign file: say which one, in one line
        reason = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ConfigError(f"model.weights={checkpoint}: not a readable ultralytics checkpoint ({reason})") from None
    return dict(model.yaml)


def checkpoint_identity(path: Path) -> str:
    """A checkpoint's content hash: a file replaced under the same name is another experiment."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256(path: str, _size: int, _mtime_ns: int) -> str:
    return f"sha256:{file_sha256(Path(path))[:16]}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the checkpoints a variant writes ---------------------------------------------------------

CONFIG_HASH_FILE = "config_hash.txt"  # in a variant's ultralytics save_dir, beside weights/


def config_hash_of(save_dir: Path) -> str | None:
    """The config hash of the training whose checkpoints are in `save_dir`, if recorded."""
    try:
        return (Path(save_dir) / CONFIG_HASH_FILE).read_text().strip() or None
    except OSError:
        return None


def record_config_hash(save_dir: Path, config_hash: str) -> None:
    """Written before a fresh training writes its first last.pt: a later resume checks it."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    write_atomic(Path(save_dir) / CONFIG_HASH_FILE, config_hash + "\n")


def output_dir_for(job_dir: Path, config_hash: str) -> Path:
    """`<job>/train`, unless another config trained there (a re-run of the same sweep folder with
    other settings): then `<job>/train-<hash>`, so neither overwrites the other's last.pt."""
    default = Path(job_dir) / "train"
    recorded = config_hash_of(default)
    holds_other = recorded != config_hash if recorded else (default / "weights").is_dir()
    return Path(job_dir) / f"train-{config_hash}" if holds_other else default
