"""The generated demo data: deterministic, valid for ultralytics, a broad source and a narrow target."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from sweep.demo.data import TASKS, DemoDataSpec, ensure_dataset

SOURCE = DemoDataSpec("source", n_train=48, n_val=8, imgsz=64, seed=0)
TARGET = DemoDataSpec("target", n_train=24, n_val=8, imgsz=64, seed=0)
NEAR = DemoDataSpec("near", n_train=24, n_val=8, imgsz=64, seed=0)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("demo-cache")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def labels(data_yaml: Path) -> np.ndarray:
    """All label rows (class, cx, cy, w, h) of a generated dataset."""
    rows = [np.loadtxt(p, ndmin=2) for p in sorted(data_yaml.parent.glob("labels/*/*.txt"))]
    return np.concatenate(rows)


@pytest.mark.parametrize("spec", [SOURCE, TARGET], ids=lambda s: s.task)
def test_same_spec_gives_identical_files(spec: DemoDataSpec, tmp_path: Path) -> None:
    first, second = ensure_dataset(spec, tmp_path / "a").parent, ensure_dataset(spec, tmp_path / "b").parent
    assert len(files(first)) == 2 * (spec.n_train + spec.n_val) + 1
    assert files(first) == files(second)


def test_seed_changes_the_images(tmp_path: Path) -> None:
    reseeded = DemoDataSpec(TARGET.task, TARGET.n_train, TARGET.n_val, TARGET.imgsz, seed=1)
    assert reseeded.key() != TARGET.key()
    assert files(ensure_dataset(TARGET, tmp_path).parent) != files(ensure_dataset(reseeded, tmp_path).parent)


@pytest.mark.parametrize("spec", [SOURCE, TARGET, NEAR], ids=lambda s: s.task)
def test_ultralytics_accepts_every_image_and_label(spec: DemoDataSpec, cache: Path) -> None:
    from ultralytics.data.utils import check_det_dataset, img2label_paths, verify_image_label

    data = check_det_dataset(str(ensure_dataset(spec, cache)))
    assert list(data["names"].values()) == list(TASKS[spec.task])
    images = sorted(str(p) for split in ("train", "val") for p in Path(data[split]).glob("*.png"))
    assert len(images) == spec.n_train + spec.n_val
    for image, label in zip(images, img2label_paths(images), strict=True):
        _, boxes, shape, _, _, missing, found, empty, corrupt, msg = verify_image_label(
            (image, label, "", False, data["nc"], 0, 0, False)
        )
        assert (missing, found, empty, corrupt, msg) == (0, 1, 0, 0, ""), image
        assert shape == (spec.imgsz, spec.imgsz)
        assert 1 <= len(boxes) <= 4


def test_target_classes_are_new_shapes_of_a_broader_source() -> None:
    """As fine-tuning on VOC after COCO: the head must learn the target's classes, the features carry over."""
    assert len(TASKS["source"]) > 3 * len(TASKS["target"])
    assert not set(TASKS["source"]) & set(TASKS["target"])


def test_near_is_the_sources_kind_of_image_with_three_of_its_classes(cache: Path) -> None:
    """As VOC's classes are among COCO's: the head is new, everything the backbone knows carries over."""
    assert set(TASKS["near"]) < set(TASKS["source"]) and len(TASKS["near"]) == 3
    near = ensure_dataset(NEAR, cache).parent
    assert set(labels(near / "data.yaml")[:, 0].astype(int)) == set(range(3))
    brightness = np.array([np.median(cv2.imread(str(p))) for p in sorted(near.glob("images/*/*.png"))])
    assert brightness.min() < 80 and brightness.max() > 150  # the source's dark and light backgrounds
    assert NEAR.key() != TARGET.key() and files(near) != files(ensure_dataset(TARGET, cache).parent)


def test_source_draws_every_class_and_target_only_its_own(cache: Path) -> None:
    source, target = labels(ensure_dataset(SOURCE, cache)), labels(ensure_dataset(TARGET, cache))
    assert set(source[:, 0].astype(int)) == set(range(len(TASKS["source"])))
    assert set(target[:, 0].astype(int)) == set(range(len(TASKS["target"])))


def test_source_objects_vary_more_in_size(cache: Path) -> None:
    source, target = labels(ensure_dataset(SOURCE, cache)), labels(ensure_dataset(TARGET, cache))
    source, target = source[:, 3:].max(axis=1), target[:, 3:].max(axis=1)  # each object's longer side
    assert source.min() < target.min()
    assert source.max() > target.max()


def test_source_backgrounds_are_dark_and_light_target_ones_light(cache: Path) -> None:
    def brightness(spec: DemoDataSpec) -> np.ndarray:
        root = ensure_dataset(spec, cache).parent
        return np.array([np.median(cv2.imread(str(p))) for p in sorted(root.glob("images/*/*.png"))])

    source, target = brightness(SOURCE), brightness(TARGET)
    assert source.min() < 80 and source.max() > 150
    assert target.min() > 100


def test_copied_dataset_reads_its_own_images(cache: Path, tmp_path: Path) -> None:
    """data.yaml has no absolute `path:`: a copied outputs/ is self-contained."""
    from ultralytics.data.utils import check_det_dataset

    original = ensure_dataset(TARGET, cache).parent
    assert "path:" not in (original / "data.yaml").read_text()
    copy = tmp_path / "moved" / original.name
    shutil.copytree(original, copy)
    data = check_det_dataset(str(copy / "data.yaml"))
    for split in ("train", "val"):
        assert Path(data[split]) == (copy / "images" / split).resolve()
        assert files(Path(data[split])) == files(original / "images" / split)


def test_cached_dataset_is_reused(tmp_path: Path) -> None:
    data_yaml = ensure_dataset(TARGET, tmp_path)
    marker = data_yaml.parent / "images" / "train" / "00000.png"
    marker.write_bytes(b"stale")
    assert ensure_dataset(TARGET, tmp_path) == data_yaml
    assert marker.read_bytes() == b"stale"
