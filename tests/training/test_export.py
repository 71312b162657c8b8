"""ONNX export with SiteSentry metadata (round trip through the edge detector), refusals, calibration images
and the TensorRT step that says why it skips without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from edge.detections.onnxrt import OnnxDetector
from edge.labels import CLASS_NAMES, CLASS_SET_VERSION
from training.datasets.model import Dataset, LabelledImage
from training.export import (
    ExportError,
    export_onnx,
    read_metadata,
    write_calibration_set,
)
from training.train import resolve_base_weights


@pytest.mark.train
def test_exported_model_carries_metadata_the_edge_reads_back(canonical_weights: Path, tmp_path: Path) -> None:
    metrics = {"mAP50": 0.61, "no_helmet_recall": 0.8}
    meta = {
        "model_name": "ppe-yolo",
        "model_version": "2.1.0",
        "training_data_hash": "ab12",
        "metrics": metrics,
    }
    onnx_path = export_onnx(canonical_weights, tmp_path / "m" / "model.onnx", 96, metadata=meta)
    stored = read_metadata(onnx_path)
    assert {"names", "imgsz", "stride", "task"} <= set(stored)  # ultralytics' own entries are kept
    assert stored["sitesentry_class_set"] == CLASS_SET_VERSION and stored["training_data_hash"] == "ab12"
    assert json.loads(stored["metrics"]) == metrics
    detector = OnnxDetector(onnx_path, expected_names=CLASS_NAMES)
    assert detector.info.name == "ppe-yolo" and detector.info.version == "2.1.0"
    assert detector.info.imgsz == (96, 96) and detector.info.batch == 1
    assert detector.info.metadata["sitesentry_class_set"] == CLASS_SET_VERSION
    assert not list(canonical_weights.parent.glob("*.onnx"))  # nothing written beside the weights


@pytest.mark.train
def test_dynamic_half_export_keeps_float_inputs_for_the_edge(canonical_weights: Path, tmp_path: Path) -> None:
    onnx_path = export_onnx(
        canonical_weights, tmp_path / "half.onnx", 64, dynamic=True, half=True, metadata={}
    )
    model = onnx.load(onnx_path)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    detector = OnnxDetector(onnx_path)
    assert detector.info.batch is None
    images = [np.full((120, 90, 3), 114, np.uint8)] * 3
    assert len(detector.detect_batch(images)) == 3


@pytest.mark.train
def test_a_model_with_other_classes_is_refused(ultralytics_offline: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"model classes \['Normal', 'Fall'\] differ from SiteSentry's"):
        export_onnx(resolve_base_weights("fall-detection-yolov8s"), tmp_path / "x.onnx", 64)
    assert not (tmp_path / "x.onnx").exists()


def test_calibration_images_spread_across_source_groups(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    images = []
    for group, n in (("video-a", 30), ("photo-b", 1), ("photo-c", 1)):
        for i in range(n):
            path = src / f"{group}_frame_{i:04d}.jpg"
            path.write_bytes(f"{group}{i}".encode())
            images.append(LabelledImage(path, [], group, "train"))
    images.append(LabelledImage(src / "held-out.jpg", [], "held-out", "valid"))
    listing = write_calibration_set(Dataset(images), tmp_path / "calib", count=5, seed=1)
    names = listing.read_text().split()
    assert len(names) == 5 and all((tmp_path / "calib" / n).is_file() for n in names)
    assert any("photo-b" in n for n in names) and any("photo-c" in n for n in names)
    assert not any("held-out" in n for n in names)  # evaluation images stay unseen


def test_training_data_hash_follows_every_label_even_under_an_images_folder(tmp_path: Path) -> None:
    from training.train import dataset_hash

    # A dataset kept under a folder that is itself called `images`: only the last one is swapped.
    root = tmp_path / "images" / "ppe-v1"
    for split in ("train", "valid"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "labels").mkdir(parents=True)
        (root / split / "labels" / "a.txt").write_text("2 0.5 0.5 0.1 0.1\n")
    data = root / "data.yaml"
    data.write_text(
        "path: .\ntrain: train/images\nval: valid/images\nnames: [person, helmet, head, vest, no_vest]\n"
    )
    before = dataset_hash(data)
    (root / "valid" / "labels" / "a.txt").write_text("1 0.5 0.5 0.1 0.1\n")  # a head relabelled as a helmet
    assert dataset_hash(data) != before
    # A list of folders (as ultralytics allows) is hashed too.
    data.write_text(
        "path: .\ntrain: [train/images]\nval: [valid/images]\nnames: [person, helmet, head, vest, no_vest]\n"
    )
    relisted = dataset_hash(data)
    (root / "train" / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    assert dataset_hash(data) != relisted
