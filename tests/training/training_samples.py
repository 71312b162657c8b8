"""Helpers building tiny real samples for the training tests from ../shared at test time (never committed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper

from edge.labels import CLASS_NAMES
from training.datasets.model import ClassMapping, Dataset
from training.datasets.yolo import read_yolo, write_yolo
from training.evaluate import ground_truth

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CSS = SHARED / "datasets" / "construction-site-safety"
VIDEO = SHARED / "videos" / "hardhat-workers.mp4"
MAPPING = REPO / "training" / "mappings" / "construction-site-safety.yaml"


def shared_dataset() -> Path:
    """The real construction-site-safety dataset, or a skip saying it is absent."""
    if not (CSS / "data.yaml").is_file():
        pytest.skip(f"real dataset not available at {CSS} (../shared is not checked out here)")
    return CSS


def source_names() -> list[str]:
    """The dataset's own class names, in id order."""
    return list(yaml.safe_load((shared_dataset() / "data.yaml").read_text())["names"])


def rich_images(split: str, n: int, min_classes: int = 3, skip: int = 0) -> list[Path]:
    """The first n images (sorted, after `skip`) whose labels hold at least min_classes canonical classes."""
    names = source_names()
    mapping = ClassMapping.load(MAPPING)
    chosen: list[Path] = []
    seen_groups: set[str] = set()
    for image in sorted((shared_dataset() / split / "images").glob("*.jpg")):
        label = shared_dataset() / split / "labels" / f"{image.stem}.txt"
        rows = [r.split() for r in label.read_text().splitlines() if r.strip()] if label.exists() else []
        classes = {mapping.map(names[int(r[0])])[1] for r in rows} - {None}
        group = image.stem.split(".rf.")[0]
        if len(classes) >= min_classes and group not in seen_groups:
            seen_groups.add(group)  # one variant per photo, so the sample spans different scenes
            if skip:
                skip -= 1
                continue
            chosen.append(image)
            if len(chosen) == n:
                break
    return chosen


def copy_yolo_sample(dest: Path, train: list[Path], valid: list[Path], link: bool = True) -> Path:
    """Lay out a YOLO dataset in the source classes from chosen shared images; return its data.yaml."""
    for split, images in (("train", train), ("valid", valid)):
        (dest / split / "images").mkdir(parents=True, exist_ok=True)
        (dest / split / "labels").mkdir(parents=True, exist_ok=True)
        for image in images:
            target = dest / split / "images" / image.name
            if link:
                os.symlink(image, target)
            else:
                shutil.copyfile(image, target)
            label = image.parent.parent / "labels" / f"{image.stem}.txt"
            shutil.copyfile(label, dest / split / "labels" / label.name)
    data = {"path": ".", "train": "train/images", "val": "valid/images", "names": source_names()}
    (dest / "data.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return dest / "data.yaml"


PHOTO = "ppe_0355_jpg"  # a 640x640 validation photo with all five classes, workers with and without PPE


def photo_dataset(tmp_path: Path) -> tuple[Path, Dataset]:
    full = read_yolo(shared_dataset() / "data.yaml", ClassMapping.load(MAPPING))
    chosen = [img for img in full.images if img.path.name.startswith(PHOTO)]
    if not chosen:
        pytest.skip(f"{PHOTO} is not in the shared dataset")
    chosen[0].split = "valid"
    dataset = Dataset(chosen)
    return write_yolo(dataset, tmp_path / "data"), dataset


def fixed_output_model(path: Path, boxes: list[tuple[str, float, float, float, float, float]]) -> Path:
    """An ONNX 'detector' (1x3x640x640 in) whose output always holds these (label, conf, x1, y1, x2, y2)."""
    out = np.zeros((1, 4 + len(CLASS_NAMES), len(boxes)), np.float32)
    for i, (label, conf, x1, y1, x2, y2) in enumerate(boxes):
        out[0, :4, i] = [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]
        out[0, 4 + CLASS_NAMES.index(label), i] = conf
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["fixed", "nothing"], ["output0"]),  # depends on the input, adds nothing
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(out.shape))],
        [helper.make_tensor("fixed", TensorProto.FLOAT, out.shape, out.ravel()),
         helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    names = {i: n for i, n in enumerate(CLASS_NAMES)}
    meta = {"names": str(names), "imgsz": "[640, 640]", "stride": "32", "task": "detect", "batch": "1"}
    meta |= {"model_name": "fixed-answers", "model_version": "1"}
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def truth_boxes(dataset: Dataset, conf: float = 0.9) -> list[tuple[str, float, float, float, float, float]]:
    truth = ground_truth(dataset.images[0], 640, 640)
    return [
        (truth.names[c], conf, *map(float, xyxy)) for xyxy, c in zip(truth.xyxy, truth.class_id, strict=True)
    ]
