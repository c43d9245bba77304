"""Every config composes, offline, into arguments ultralytics accepts; real models train with
ultralytics' own defaults, the demo with its own tuning."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from ultralytics.cfg import DEFAULT_CFG_DICT, get_cfg

from sweep.cli import CONF_DIR
from sweep.cli_check import group_options
from sweep.train_defaults import OWN_KEYS, train_defaults
from tests.conftest import compose_config

CONF = Path(CONF_DIR)
MODELS = group_options(CONF, "model")
DATA = group_options(CONF, "data")
EXPERIMENTS = group_options(CONF, "experiment")


def train_args(overrides: list[str], tmp_path: Path) -> dict:
    cfg = compose_config(tmp_path, overrides, shrink=False)
    return OmegaConf.to_container(cfg.train, resolve=True)


def check_accepted_by_ultralytics(args: dict) -> None:
    assert set(args) <= set(DEFAULT_CFG_DICT), set(args) - set(DEFAULT_CFG_DICT)
    get_cfg(overrides={k: v for k, v in args.items() if k != "device"})  # ultralytics' own type and range checks


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_data_composes_into_ultralytics_arguments(model: str, data: str, tmp_path: Path) -> None:
    args = train_args([f"model={model}", f"data={data}"], tmp_path)
    check_accepted_by_ultralytics(args)
    if (model, data) != ("demo", "demo"):  # only the demo on its own data carries the demo's tuning
        assert args == train_defaults()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_into_ultralytics_arguments(experiment: str, tmp_path: Path) -> None:
    args = train_args([f"experiment={experiment}"], tmp_path)
    check_accepted_by_ultralytics(args)
    experiment_yaml = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml")
    for key, value in (experiment_yaml.get("train") or {}).items():
        assert args[key] == value, key
    untouched = set(args) - set(experiment_yaml.get("train") or {})
    base = train_args(chosen_groups(experiment_yaml), tmp_path)  # its model and data without the experiment
    assert {k: args[k] for k in untouched} == {k: base[k] for k in untouched}


def chosen_groups(experiment_yaml) -> list[str]:
    """`override /model: yolov5m` in an experiment's defaults as the override `model=yolov5m`."""
    entries = [e for e in experiment_yaml.get("defaults") or [] if not isinstance(e, str)]
    return [f"{key.removeprefix('override /')}={value}" for e in entries for key, value in e.items()]


def test_a_real_model_trains_with_ultralytics_defaults_plus_the_users_overrides(tmp_path: Path) -> None:
    args = train_args(["model=yolov8s", "data=coco128", "train.lr0=0.005", "train.mosaic=0.5"], tmp_path)
    expected = {k: v for k, v in DEFAULT_CFG_DICT.items() if k in args}
    assert args == {**expected, "lr0": 0.005, "mosaic": 0.5}
    assert (args["epochs"], args["imgsz"], args["lr0"], args["nbs"], args["workers"]) == (100, 640, 0.005, 64, 8)
    assert args["optimizer"] == DEFAULT_CFG_DICT["optimizer"]


def test_the_train_group_is_every_ultralytics_training_argument_but_those_the_sweep_sets() -> None:
    defaults = train_defaults()
    assert {"epochs", "imgsz", "batch", "lr0", "nbs", "mosaic", "close_mosaic", "iou", "plots"} <= set(defaults)
    assert not OWN_KEYS & set(defaults)
    assert not {"source", "format", "show", "tracker"} & set(defaults)  # predict, export, track settings
    assert all(defaults[k] == DEFAULT_CFG_DICT[k] for k in defaults)


def test_the_demo_keeps_its_tuning(tmp_path: Path) -> None:
    args = train_args([], tmp_path)
    assert (args["epochs"], args["imgsz"], args["optimizer"]) == (8, 128, "SGD")
    assert args["nbs"] == 16 and args["workers"] == 2
    assert compose_config(tmp_path, [], shrink=False).sweep.cpu_threads == "all"


@pytest.mark.parametrize("model", [m for m in MODELS if m != "demo"])
def test_real_models_keep_ultralytics_cpu_threads_unless_asked(model: str, tmp_path: Path) -> None:
    assert compose_config(tmp_path, [f"model={model}"], shrink=False).sweep.cpu_threads is None
    asked = compose_config(tmp_path, [f"model={model}", "sweep.cpu_threads=3"], shrink=False)
    assert asked.sweep.cpu_threads == 3  # the command line wins over the specialising config
    demo_asked = compose_config(tmp_path, ["sweep.cpu_threads=1"], shrink=False)
    assert demo_asked.sweep.cpu_threads == 1


def test_the_demo_base_pretraining_arguments_are_ultralytics_arguments(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, [], shrink=False)
    check_accepted_by_ultralytics(OmegaConf.to_container(cfg.model.pretrain.train, resolve=True))
