"""sweep.compare on real tiny checkpoints: real freeze=10 and callback-frozen trainings, perturbed copies,
constructed dead channels, three architectures.

ultralytics is imported inside helpers only: conftest sets its environment (offline, own
settings folder) in a session fixture, after this module is collected.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from copy import deepcopy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from sweep.compare.activations import shared_prefix
from sweep.compare.analysis import Options, run_comparison
from sweep.compare.checkpoints import (
    CompareError,
    DeclaredFreeze,
    load_checkpoint,
    parse_freeze_option,
    train_arg_frozen,
)
from sweep.compare.cli import main
from sweep.compare.dead import dead_by_activation, dead_by_weights
from sweep.compare.summary import summary_text
from sweep.tracking import names

ROOT = Path(__file__).resolve().parent.parent

TRAIN_SCRIPT = """
import sys
from ultralytics.utils import SETTINGS
SETTINGS.update({"mlflow": False})  # no stray MLflow runs from ultralytics' own callback
from ultralytics import YOLO

base, data, project = sys.argv[1:4]
args = dict(
    data=data, epochs=1, imgsz=64, batch=4, nbs=4, workers=0, device="cpu", val=False, plots=False,
    optimizer="SGD", lr0=0.02, warmup_epochs=0, mosaic=0.0, seed=0, project=project, exist_ok=True, verbose=False,
)
YOLO("yolov8n.yaml").save(base)
YOLO(base).train(freeze=10, name="freeze10", **args)


def freeze_by_hand(trainer):  # as the seed's user froze: requires_grad only; BN in train mode, freeze=None
    for name, p in trainer.model.named_parameters():
        if int(name.split(".")[1]) < 10:
            p.requires_grad = False


model = YOLO(base)
model.add_callback("on_train_start", freeze_by_hand)
model.train(name="callback10", **args)
"""


# ---------------------------------------------------------------- helpers


def make_dataset(root: Path, n: int = 8, size: int = 64) -> Path:
    """n noisy images with one red or green rectangle each, YOLO labels, and a data yaml (val = train)."""
    rng = np.random.default_rng(0)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i in range(n):
        image = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        x0, y0 = rng.integers(4, size // 2, 2)
        w, h = rng.integers(size // 5, size // 2, 2)
        cls = i % 2
        image[y0 : y0 + h, x0 : x0 + w] = (0, 0, 255) if cls == 0 else (0, 255, 0)
        cv2.imwrite(str(root / "images" / "train" / f"{i}.png"), image)
        box = f"{cls} {(x0 + w / 2) / size} {(y0 + h / 2) / size} {w / size} {h / size}\n"
        (root / "labels" / "train" / f"{i}.txt").write_text(box)
    data = root / "data.yaml"
    data.write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n  0: red\n  1: green\n")
    return data


def build(cfg: str, nc: int | None = None) -> torch.nn.Module:
    """A model from a bundled yaml, with BN running statistics of real activations, as a pretrained base has.

    A fresh model keeps mean 0 / variance 1, under which activations shrink layer after layer
    to ~1e-9 and the head's output is its constant bias: nothing to compare.
    """
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    model = DetectionModel(cfg, nc=nc, verbose=False)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one pass gives the batch statistics
    with torch.no_grad():
        model.train()(torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    for bn in bns:
        bn.momentum = 0.03
    return model.eval()


def save_checkpoint(model: torch.nn.Module, path: Path, half: bool = True, **train_args: object) -> Path:
    """The ultralytics checkpoint layout: an FP16 model (FP32 with half=False) under "model", train args beside it."""
    import ultralytics

    path.parent.mkdir(parents=True, exist_ok=True)
    stored = deepcopy(model).half() if half else deepcopy(model)
    ckpt = {"model": stored, "ema": None, "train_args": train_args, "version": ultralytics.__version__}
    torch.save(ckpt, path)
    return path


def perturbed(model: torch.nn.Module, layers: range, scale: float = 0.05, seed: int = 0) -> torch.nn.Module:
    """A copy with noise on every parameter and BN statistic of the given layers."""
    out = deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in layers:
            tensors = list(out.model[i].parameters()) + [
                b for name, b in out.model[i].named_buffers() if name.endswith("running_mean")
            ]
            for t in tensors:
                t.add_(torch.randn(t.shape, generator=g) * scale * (t.abs().mean() + 1e-2))
    return out


def calibration_images(dataset: Path) -> list[Path]:
    return sorted((dataset.parent / "images" / "train").glob("*.png"))


def valid_png(path: Path) -> bool:
    with Image.open(path) as image:
        image.verify()
        return image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("compare-data"))


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A yolov8n base (80 classes) and two real 1-epoch trainings of it on 2 classes: freeze=10, and
    layers 0-9 frozen by an on_train_start callback (requires_grad=False; the checkpoint says freeze=None).

    Trained in a subprocess: ultralytics' trainer changes process-wide torch settings.
    """
    folder = tmp_path_factory.mktemp("compare-train")
    base = folder / "base.pt"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'unused.db'}"}
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_SCRIPT, str(base), str(dataset), str(folder / "runs")],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = folder / "runs"
    return base, runs / "freeze10" / "weights" / "best.pt", runs / "callback10" / "weights" / "best.pt"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A yolov8n base and two perturbed variants, stored as if trained with freeze=10 and freeze=22."""
    folder = tmp_path_factory.mktemp("compare-ckpts")
    base = build("yolov8n.yaml")
    return {
        "base": save_checkpoint(base, folder / "base.pt"),
        "freeze10": save_checkpoint(perturbed(base, range(10, 23)), folder / "freeze10.pt", freeze=10, imgsz=64),
        "freeze22": save_checkpoint(perturbed(base, range(22, 23), seed=1), folder / "freeze22.pt", freeze=22),
    }


# ---------------------------------------------------------------- tests


def test_two_freeze_formats_never_meet() -> None:
    """A checkpoint's train arg `freeze` is ultralytics' (5 = layers 0..4); `--freeze` is freeze_layers' (JSON list)."""
    assert train_arg_frozen(3) == {0, 1, 2}
    assert train_arg_frozen([0, 4]) == {0, 4}
    assert train_arg_frozen(None) == train_arg_frozen(0) == frozenset()
    assert parse_freeze_option("[5]") == {5}
    assert parse_freeze_option("[0, 1, 2]") == {0, 1, 2}
    assert parse_freeze_option("[]") == frozenset()
    assert parse_freeze_option(names.freeze_layers_param(range(4))) == {0, 1, 2, 3}
    for bad in ("5", "0,1,2", "none", "backbone", "[-1]", "[1.5]"):
        with pytest.raises(CompareError, match=r"JSON list of layer indices.*not ultralytics' freeze=N"):
            parse_freeze_option(bad)
    with pytest.raises(CompareError, match=r"train arg freeze='10'.*an int N \(layers 0..N-1\)"):
        train_arg_frozen("10")


@pytest.mark.slow  # two real trainings (the module fixture `trained`)
def test_real_freeze_training_leaves_frozen_layers_unchanged(trained: tuple[Path, Path, Path]) -> None:
    base_path, best_path, _ = trained
    base, variant = load_checkpoint(base_path, "base"), load_checkpoint(best_path, "freeze10")
    assert variant.declared.layers == set(range(10))  # read from the checkpoint's train args
    comparison = run_comparison(base, [variant], Options())
    frozen = comparison.frozen["freeze10"]
    assert frozen.found == frozen.used == set(range(10)) and not frozen.undeclared
    changes = comparison.vs_base(variant)
    for ch in changes[:10]:
        assert ch.frozen and not ch.frozen_violation, ch
        assert ch.rel_change == 0 and ch.folded_rel_change == 0 and ch.bn_mean_shift == 0
    trained_layers = [ch for ch in changes[10:22] if ch.n_tensors]
    assert trained_layers
    for ch in trained_layers:
        assert ch.moved and ch.bn_stats_moved and not ch.frozen, ch
        assert ch.rel_change > 1e-3 and ch.folded_rel_change > 1e-2 and ch.bn_mean_shift > 0
    # 80 -> 2 classes: the head's class convs were re-initialised: new, not changed
    head = changes[22]
    assert head.new_tensors and all(".cv3." in f".{name}" for name in head.new_tensors)
    assert "new tensors" in head.status
    text = summary_text(comparison)
    assert "freeze10: layers 0-9 unchanged" in text and "WARNING" not in text
    assert "freeze10: model.22 Detect: 6 of" in text
    words = " ".join(text.split())  # the paragraph is wrapped for the terminal
    assert "layers 0-9 were frozen (checkpoint train arg freeze=10); verified: their weights equal the base's" in words
    # bit-identical to the base up to the first trained layer (10, 11: Upsample, Concat): activations start at 12
    assert shared_prefix(base.model, variant.model) == 12


@pytest.mark.slow  # two real trainings (the module fixture `trained`)
def test_layers_frozen_by_a_callback_are_found_and_their_bn_drift_flagged(trained: tuple[Path, Path, Path]) -> None:
    """The seed's case: requires_grad=False in on_train_start; the checkpoint says freeze=None, BN kept updating."""
    base_path, _, callback_path = trained
    base, variant = load_checkpoint(base_path, "base"), load_checkpoint(callback_path, "callback10")
    assert variant.train_args["freeze"] is None and variant.declared.layers == frozenset()
    comparison = run_comparison(base, [variant], Options())
    frozen = comparison.frozen["callback10"]
    assert frozen.found == frozen.used == frozen.undeclared == set(range(10))
    changes = comparison.vs_base(variant)
    assert all(ch.frozen and ch.rel_change == 0 for ch in changes[:10])
    assert all(ch.frozen_violation == "BN running stats moved" for ch in changes[:10])
    assert not any(ch.frozen for ch in changes[10:])
    text = summary_text(comparison)
    assert "callback10: no frozen layers" not in text
    assert "Variant: callback10 = " in text and "frozen layers: 0-9 (checkpoint train arg freeze=None)" in text
    assert "WARNING callback10: model.0 Conv is frozen but BN running stats moved" in text
    words = " ".join(text.split())  # the paragraph is wrapped for the terminal
    assert "layers 0-9 were frozen: found unchanged, not recorded (checkpoint train arg freeze=None)" in words
    assert "WARNING: BatchNorm running statistics moved in 0-9" in words
    assert shared_prefix(base.model, variant.model) == 0  # BN statistics moved from layer 0: a full forward pass


def test_unchanged_layers_are_found_frozen_and_an_override_is_checked_as_given(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """Without a recorded freeze, layers equal to the base's are frozen; --freeze replaces that, finding nothing."""
    ckpt = torch.load(checkpoints["freeze10"], map_location="cpu", weights_only=False)
    ckpt["train_args"] = {"freeze": None, "imgsz": 64}  # frozen by hand: nothing recorded
    with torch.no_grad():
        ckpt["model"].model[4].cv1.bn.running_var *= 1.5  # BN left in train mode in a frozen layer
    unrecorded = tmp_path / "unrecorded.pt"
    torch.save(ckpt, unrecorded)
    base, variant = load_checkpoint(checkpoints["base"], "base"), load_checkpoint(unrecorded, "v")
    comparison = run_comparison(base, [variant], Options())
    frozen = comparison.frozen["v"]
    assert frozen.found == frozen.used == frozen.undeclared == set(range(10))
    assert [ch.layer.index for ch in comparison.vs_base(variant) if ch.frozen_violation] == [4]
    text = summary_text(comparison)
    assert "WARNING v: model.4 C2f is frozen but BN running stats moved" in text
    assert "v: layers 0-9 found frozen (parameters equal the base's), not declared by checkpoint train arg" in text

    for given, flagged in ((frozenset(), []), (frozenset({3, 12}), [12])):
        declared = DeclaredFreeze(given, "--freeze", override=True)
        comparison = run_comparison(base, [load_checkpoint(unrecorded, "v", declared)], Options())
        assert comparison.frozen["v"].used == given and comparison.frozen["v"].found == set(range(10))
        assert [ch.layer.index for ch in comparison.vs_base(comparison.variants[0]) if ch.frozen_violation] == flagged
        assert "found frozen" not in summary_text(comparison)


@pytest.mark.slow  # two real trainings (the module fixture `trained`)
def test_frozen_layer_that_moved_is_flagged(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A frozen layer whose BN statistics drifted (BN left in train mode) or whose weights moved."""
    base_path, best_path, _ = trained
    ckpt = torch.load(best_path, map_location="cpu", weights_only=False)
    model = ckpt["model"]
    with torch.no_grad():
        model.model[3].bn.running_mean += 0.5
        model.model[5].conv.weight.mul_(1.01)
    torch.save(ckpt, tmp_path / "drifted.pt")
    base, variant = load_checkpoint(base_path, "base"), load_checkpoint(tmp_path / "drifted.pt", "drifted")
    comparison = run_comparison(base, [variant], Options())
    changes = comparison.vs_base(variant)
    assert changes[3].frozen_violation == "BN running stats moved"
    assert changes[3].rel_change == 0 and changes[3].bn_mean_shift > 0
    assert changes[5].frozen_violation == "weights moved"
    assert [ch.layer.index for ch in changes if ch.frozen_violation] == [3, 5]
    assert "WARNING drifted: model.3 Conv is frozen but BN running stats moved" in summary_text(comparison)


def test_head_reinitialised_for_another_class_count_is_new(tmp_path: Path) -> None:
    base = build("yolov8n.yaml", nc=80)
    variant = build("yolov8n.yaml", nc=3)
    variant.load(base, verbose=False)  # transfer what fits, as ultralytics does when nc changes
    paths = [save_checkpoint(base, tmp_path / "b.pt"), save_checkpoint(variant, tmp_path / "v.pt", freeze=22)]
    b, v = load_checkpoint(paths[0], "base"), load_checkpoint(paths[1], "nc3")
    changes = run_comparison(b, [v], Options()).vs_base(v)
    head = changes[-1]
    assert head.new_tensors and all(name.startswith("cv3.") for name in head.new_tensors)
    assert head.rel_change == 0 and not head.moved  # the transferred tensors are unchanged
    assert head.status == f"unchanged, {len(head.new_tensors)} new tensors"
    assert all(not ch.new_tensors for ch in changes[:-1])


@pytest.mark.parametrize(
    ("first", "second"),
    [("yolov5nu.yaml", "yolov8n.yaml"), pytest.param("yolov8n.yaml", "yolov8s.yaml", marks=pytest.mark.slow)],
    ids=["v5u-v8", "n-s"],
)
def test_different_architectures_exit_2(first: str, second: str, tmp_path: Path, capsys) -> None:
    a = save_checkpoint(build(first), tmp_path / "a.pt")
    b = save_checkpoint(build(second), tmp_path / "b.pt")
    assert main(["--base", str(a), str(b), "--n-images", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different architectures" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("cfg", "n_backbone", "head"),
    [
        pytest.param("yolov5nu.yaml", 10, 24, marks=pytest.mark.slow),
        ("yolov8n.yaml", 10, 22),
        pytest.param("yolo11n.yaml", 11, 23, marks=pytest.mark.slow),
    ],
)
def test_architectures_compare_end_to_end(cfg: str, n_backbone: int, head: int, dataset: Path, tmp_path: Path) -> None:
    """Backbone frozen and later layers perturbed: backbone identical (CKA 1), neck and head changed."""
    base = build(cfg)
    variant = perturbed(base, range(n_backbone, head + 1), scale=0.5)
    b = load_checkpoint(save_checkpoint(base, tmp_path / "base.pt"), "base")
    v = load_checkpoint(save_checkpoint(variant, tmp_path / "v.pt", freeze=n_backbone), "v")
    images = sorted((dataset.parent / "images" / "train").glob("*.png"))[:6]
    c = run_comparison(b, [v], Options(images=images, imgsz=64))
    assert [la.section for la in c.layers].count("backbone") == n_backbone
    assert c.layers[-1].index == head and c.layers[-1].section == "head" and c.layers[-1].kind == "Detect"
    changes = c.vs_base(v)
    assert not any(ch.frozen_violation for ch in changes)
    assert all(ch.rel_change == 0 for ch in changes[:n_backbone])
    assert all(ch.rel_change > 1e-3 for ch in changes[n_backbone:] if ch.n_tensors)
    cka = c.cka[("base", "v")]
    assert all(cka[i] == pytest.approx(1.0, abs=1e-6) for i in range(n_backbone))
    assert cka[head] < 1 - 1e-5  # changed, though linear CKA on 6 images barely moves
    assert set(c.feature_maps["v"]) == {n_backbone // 2, n_backbone - 1, head - 1}


def test_dead_channels_by_weights_and_by_activation(dataset: Path, tmp_path: Path) -> None:
    """gamma = 0 makes a Conv-BN-SiLU channel constant: both criteria must find it, as gained channels."""
    base = build("yolov8n.yaml")
    variant = deepcopy(base)
    with torch.no_grad():
        variant.model[1].bn.weight[:5] = 0.0
    b = load_checkpoint(save_checkpoint(base, tmp_path / "base.pt"), "base")
    v = load_checkpoint(save_checkpoint(variant, tmp_path / "v.pt"), "v")
    c = run_comparison(b, [v], Options(images=calibration_images(dataset), imgsz=64))
    assert c.dead_weight["v"][1].gained_lost(c.dead_weight["base"][1]) == (5, 0)
    assert c.dead_act["v"][1].gained_lost(c.dead_act["base"][1]) == (5, 0)
    assert c.dead_weight["base"][1].gained_lost(c.dead_weight["v"][1]) == (0, 5)
    assert 10 not in c.dead_act["v"]  # Upsample/Concat pass on other layers' channels: not counted again
    assert dead_by_activation(torch.tensor([1.0, 1.2, 0.0, 1e-5]), 1e-2).dead == 2
    assert dead_by_weights(variant.model[1], 1e-2).dead == 5
    words = " ".join(summary_text(c).split())
    assert "Dead channels against the base: by weights 5 gained, 0 lost" in words


def test_dead_channel_criteria_follow_the_function_not_the_parametrisation(dataset: Path, tmp_path: Path) -> None:
    """The issue's two constructed cases in layer 1 (Conv-BN-SiLU), plus an untouched control channel.

    Channel 3: conv weights x c, running mean x c, running variance so that (var + eps) scales by c^2
    (c = 1e4; this base's channels start at |gamma| / sqrt(var + eps) ~ 3): the network computes the same
    function, |gamma| / sqrt(var + eps) drops c-fold below the former threshold 1e-3, and the channel is alive. Channel 7: conv weights x 1e-4 with BN statistics left as they were: the output is near-constant,
    yet gamma and the statistics are untouched. Channel 0: control.
    """
    control, rescaled, shrunk, c_up = 0, 3, 7, 1e4
    base = build("yolov8n.yaml")
    variant = deepcopy(base)
    conv, bn = variant.model[1].conv, variant.model[1].bn
    with torch.no_grad():
        conv.weight[rescaled] *= c_up
        bn.running_mean[rescaled] *= c_up
        bn.running_var[rescaled] = c_up**2 * (bn.running_var[rescaled] + bn.eps) - bn.eps
        conv.weight[shrunk] *= 1e-4
    images = calibration_images(dataset)
    batch = torch.stack([torch.from_numpy(cv2.resize(cv2.imread(str(f)), (64, 64))) for f in images])
    batch = batch.permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        out_base, out_variant = base.model[1](base.model[0](batch)), variant.model[1](variant.model[0](batch))
    torch.testing.assert_close(out_variant[:, rescaled], out_base[:, rescaled], rtol=1e-4, atol=1e-5)
    assert out_variant[:, shrunk].std() < 0.05 * out_base[:, shrunk].std()
    old_scale = bn.weight.abs() / torch.sqrt(bn.running_var + bn.eps)  # the former criterion, below 1e-3: "dead"
    assert old_scale[rescaled] < 1e-3 < old_scale[shrunk]

    b = load_checkpoint(save_checkpoint(base, tmp_path / "base.pt", half=False), "base")
    v = load_checkpoint(save_checkpoint(variant, tmp_path / "v.pt", half=False), "v")  # c^2 x var overflows FP16
    c = run_comparison(b, [v], Options(images=images, imgsz=64))
    for dead in (c.dead_weight, c.dead_act):
        assert not dead["base"][1].mask[[control, rescaled, shrunk]].any()
        assert dead["v"][1].mask[[control, rescaled, shrunk]].tolist() == [False, False, True]
        assert dead["v"][1].gained_lost(dead["base"][1]) == (1, 0)


@pytest.mark.slow  # activations, CKA and all plots of three models
def test_cli_writes_html_and_pngs(checkpoints: dict[str, Path], dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    images = dataset.parent / "images" / "train"
    args = ["--base", str(checkpoints["base"]), str(checkpoints["freeze10"]), str(checkpoints["freeze22"])]
    assert main([*args, "--images", str(images), "--n-images", "8", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "freeze10: layers 0-9 unchanged" in stdout
    assert "freeze22: layers 0-21 unchanged" in stdout
    assert "Calibration: 8 images at 64 px" in stdout  # imgsz from the first variant's train args
    pngs = sorted(out.glob("*.png"))
    expected = {"weight_change", "bn_drift", "weight_distributions", "dead_channels", "pairs_by_layer"}
    assert expected | {"cka_section_ends"} <= {p.stem for p in pngs}
    assert any(p.stem.startswith("feature_maps_layer") for p in pngs)
    assert all(valid_png(p) for p in pngs)
    page = (out / "index.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(pngs)
    assert "http://" not in page and "https://" not in page  # self-contained
    words = page[page.index("<h2>In words</h2>") : page.index("<h2>Summary</h2>")]  # the words come first
    assert words.count("<p>") == 2 and "<p>freeze10 (against base): layers 0-9 were frozen" in words
    assert "<p>freeze22 (against base): layers 0-21 were frozen" in words and "In words" not in page.split("<pre>")[1]
    assert (out / "layers.csv").read_text().count("\n") == 1 + 3 * 23  # header + 3 pairs x 23 layers


def test_freeze_option_overrides_train_args_and_flags_moved_layers(
    checkpoints: dict[str, Path], tmp_path: Path, capsys
) -> None:
    """freeze10.pt changed layers 10-22; declared as layers 0-21, layers 12-21 must be flagged."""
    args = ["--base", str(checkpoints["base"]), str(checkpoints["freeze10"]), "--freeze", str(list(range(22)))]
    assert main([*args, "--n-images", "0", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Variant: freeze10 = " in out and "frozen layers: 0-21" in out
    assert "WARNING freeze10: model.9 SPPF" not in out
    assert "WARNING freeze10: model.12 C2f is frozen but weights moved, BN running stats moved" in out
    page = (tmp_path / "index.html").read_text()
    words = page[page.index("<h2>In words</h2>") : page.index("<h2>Summary</h2>")]  # the words come first
    assert "<p>freeze10 (against base): layers 0-21 are frozen as given by --freeze [0, 1," in words
    assert "WARNING: weights moved in layers 12-21, so they did not stay frozen" in words
    assert main([*args, "--freeze", "[]", "--n-images", "0"]) == 2
    assert "--freeze given 2 times for 1 checkpoints" in capsys.readouterr().err


@pytest.fixture
def sweep_store(checkpoints: dict[str, Path], dataset: Path, tmp_path: Path) -> tuple[str, str]:
    """An MLflow store laid out as the tracking code writes it: a parent and three variant runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("freeze-sweep", artifact_location=(tmp_path / "artifacts").as_uri())
    parent = client.create_run(exp, tags={names.SWEEP_ID: "s1", names.ROLE: names.ROLE_PARENT})
    on_disk = tmp_path / "runs" / "f10"
    (on_disk / "weights").mkdir(parents=True)
    shutil.copy(checkpoints["freeze10"], on_disk / "weights" / "best.pt")
    upload = tmp_path / "upload" / "best.pt"  # freeze22: output_dir gone, best.pt only as an artifact
    upload.parent.mkdir()
    shutil.copy(checkpoints["freeze22"], upload)
    for name, output_dir, freeze_layers, status in (
        ("f10", on_disk, names.freeze_layers_param(range(10)), "FINISHED"),
        ("f22", tmp_path / "runs" / "gone", names.freeze_layers_param(range(22)), "FINISHED"),
        ("broken", tmp_path / "runs" / "broken", "[]", "FAILED"),
    ):
        tags = {
            names.SWEEP_ID: "s1",
            names.ROLE: names.ROLE_VARIANT,
            names.PARENT_RUN_ID: parent.info.run_id,
            names.OUTPUT_DIR: str(output_dir),
        }
        run = client.create_run(exp, tags=tags, run_name=name)
        params = {names.P_WEIGHTS: str(checkpoints["base"]), names.P_FREEZE_LAYERS: freeze_layers}
        for key, value in {**params, names.P_DATA: str(dataset)}.items():
            client.log_param(run.info.run_id, key, value)
        if name == "f22":
            client.log_artifact(run.info.run_id, str(upload), artifact_path="weights")
        client.set_terminated(run.info.run_id, status)
    client.set_terminated(parent.info.run_id)
    return uri, parent.info.run_id


@pytest.mark.slow  # a new MLflow SQLite store (its migrations take seconds) and a full report
def test_sweep_mode_reads_mlflow_and_logs_to_the_parent(sweep_store: tuple[str, str], tmp_path: Path, capsys) -> None:
    from mlflow.tracking import MlflowClient

    uri, parent_id = sweep_store
    out = tmp_path / "cmp"
    args = ["--sweep", "s1", "--tracking-uri", uri, "--n-images", "6", "--imgsz", "64", "--out", str(out)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "Base: base = " in stdout and "skipped unfinished run broken (FAILED)" in stdout
    assert "f10: layers 0-9 unchanged" in stdout and "f22: layers 0-21 unchanged" in stdout
    assert "Calibration: 6 images at 64 px" in stdout  # the val images of the variants' dataset
    logged = {Path(a.path).name for a in MlflowClient(uri).list_artifacts(parent_id, "compare")}
    assert {"index.html", "layers.csv", "weight_change.png"} <= logged

    assert main(["--sweep", "nope", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--sweep nope: unknown sweep" in err and "recent sweeps: s1" in err


def test_bad_input_is_a_one_line_error(checkpoints: dict[str, Path], dataset: Path, tmp_path: Path, capsys) -> None:
    images = str(dataset.parent / "images" / "train")
    pair = [str(checkpoints["base"]), str(checkpoints["freeze10"])]
    for args, message in (
        ([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")], "checkpoint not found"),
        (["--sweep", "s1", "--tracking-uri", f"sqlite:///{tmp_path / 'none.db'}"], "no MLflow database"),
        ([*pair, "--images", images, "--feature-layers", "4,22"], "the head has no feature map"),
        ([*pair, "--images", images, "--n-images", "3"], "at least 4 calibration images"),
        ([*pair, "--images", str(tmp_path / "nothing")], "no images found"),
        (
            [*pair, "--freeze", "5", "--freeze", "[]"],
            "--freeze '5': give the frozen layers as a JSON list of layer indices",
        ),
    ):
        assert main([*args, "--out", str(tmp_path / "out")]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.slow
def test_compare_a_real_sweep(tiny_sweep, tmp_path: Path, capsys) -> None:
    """The real CLI sweep (conftest): every variant's frozen layers must match the shared base."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tiny_sweep.tracking_uri)
    exp = client.get_experiment_by_name("freeze-sweep")
    parent = client.search_runs([exp.experiment_id], f"tags.`{names.ROLE}` = '{names.ROLE_PARENT}'")[0]
    sweep_id = parent.data.tags[names.SWEEP_ID]
    args = ["--sweep", sweep_id, "--tracking-uri", tiny_sweep.tracking_uri, "--n-images", "8", "--out", str(tmp_path)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "WARNING" not in stdout and "unchanged (weights and BN running statistics)" in stdout
    assert (tmp_path / "index.html").is_file()


def test_a_variant_the_budget_stopped_is_labelled_so_in_the_comparison(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from sweep.compare.sweep_runs import variant_label

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("labels")
    full = client.create_run(exp, run_name="none 0/23")
    stopped = client.create_run(exp, run_name="backbone 10/23", tags={names.STOPPED_AT_RUNG: "2"})
    assert variant_label(client.get_run(full.info.run_id)) == "none 0/23"
    assert variant_label(client.get_run(stopped.info.run_id)) == "backbone 10/23 (stopped at rung 2)"
