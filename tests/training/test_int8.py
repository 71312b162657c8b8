"""INT8 export with NNCF on the shipped model and real photos: `sitesentry export --int8` writes an IR the
OpenVINO backend reads with its metadata, the box-decoding tail stays FP32, and detections stay close to
FP32; the committed INT8 model and its metrics agree with the FP32 ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge.config.models import ModelConfig
from edge.dataflow import Detections
from edge.detections import create_detector
from edge.detections.onnxrt import OnnxDetector
from edge.labels import CLASS_NAMES
from training.cli import register
from training.datasets.model import Dataset, LabelledImage
from training.export import decode_tail_scope, write_calibration_set

pytest.importorskip("nncf", reason="needs the openvino extra (pip install -e '.[openvino]')")

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "models" / "ppe-yolo"
CSS = REPO.parent / "shared" / "datasets" / "construction-site-safety"


def real_photos(split: str, n: int) -> list[Path]:
    folder = CSS / split / "images"
    if not folder.is_dir():
        pytest.skip(f"real photos not available at {folder}")
    return sorted(folder.glob("*.jpg"))[:n]


def matched_share(reference: Detections, other: Detections, iou: float = 0.5) -> float:
    """Share of reference boxes that `other` finds too (same class, IoU >= iou)."""
    if len(reference) == 0:
        return 1.0
    found = 0
    for box, cls in zip(reference.xyxy, reference.class_id, strict=True):
        same = other.xyxy[other.class_id == cls]
        if len(same) == 0:
            continue
        inter_w = np.clip(np.minimum(box[2], same[:, 2]) - np.maximum(box[0], same[:, 0]), 0, None)
        inter_h = np.clip(np.minimum(box[3], same[:, 3]) - np.maximum(box[1], same[:, 1]), 0, None)
        inter = inter_w * inter_h
        union = (box[2] - box[0]) * (box[3] - box[1]) + (same[:, 2] - same[:, 0]) * (same[:, 3] - same[:, 1])
        found += bool((inter / (union - inter)).max() >= iou)
    return found / len(reference)


@pytest.fixture(scope="module")
def fp32() -> OnnxDetector:
    return OnnxDetector(SHIPPED / "model.onnx", expected_names=CLASS_NAMES)


def test_export_int8_writes_an_ir_beside_the_onnx_with_metadata_and_an_fp32_decoding_tail(
    tmp_path: Path, fp32: OnnxDetector
) -> None:
    import openvino as ov

    calibration = tmp_path / "calib"
    dataset = Dataset(images=[LabelledImage(p, [], p.stem, "train") for p in real_photos("train", 16)])
    write_calibration_set(dataset, calibration, count=16)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.symlink_to(SHIPPED / "model.onnx")
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app, ["export", "--weights", str(onnx_path), "--int8", "--calibration", str(calibration)]
    )
    assert result.exit_code == 0, result.output
    xml = tmp_path / "model-int8.xml"
    assert xml.is_file() and xml.with_suffix(".bin").is_file()
    assert xml.with_suffix(".bin").stat().st_size < (SHIPPED / "model.onnx").stat().st_size / 3

    model = ov.Core().read_model(str(xml))
    ops = list(model.get_ops())
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops) > 50  # really quantized
    patterns, _ = decode_tail_scope([op.get_friendly_name() for op in ops])
    tail = [
        op
        for op in ops
        if op.get_type_name() != "FakeQuantize" and re.match(patterns[0], op.get_friendly_name())
    ]
    assert any("dfl" in op.get_friendly_name() for op in tail)
    for op in tail:  # nothing in the decoding tail reads a quantized tensor (ShapeOf reads only its shape)
        if op.get_type_name() == "ShapeOf":
            continue
        for source in (i.get_source_output().get_node() for i in op.inputs()):
            assert source.get_type_name() != "FakeQuantize", op.get_friendly_name()

    int8 = create_detector(ModelConfig(path=xml))  # auto: an IR goes to OpenVINO
    assert type(int8).__name__ == "OpenVinoDetector"
    assert (int8.info.name, int8.info.version, int8.info.names) == (
        fp32.info.name,
        fp32.info.version,
        CLASS_NAMES,
    )
    images = [cv2.imread(str(p)) for p in real_photos("valid", 6)]
    shares = [matched_share(fp32.detect(i), int8.detect(i)) for i in images]
    assert np.mean(shares) >= 0.8, shares  # 16 calibration images already keep most boxes


def test_committed_int8_model_keeps_fp32_detections_and_its_metrics_are_within_the_targets(
    fp32: OnnxDetector,
) -> None:
    int8 = create_detector(ModelConfig(path=SHIPPED / "model-int8.xml"))
    images = [cv2.imread(str(p)) for p in real_photos("valid", 8)]
    shares = [matched_share(fp32.detect(i), int8.detect(i)) for i in images]
    assert np.mean(shares) >= 0.9, shares
    fp32_report = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    int8_report = json.loads((SHIPPED / "model-int8.metrics.json").read_text(encoding="utf-8"))
    assert int8_report["model"].endswith("model-int8.xml") and int8_report["images"] == fp32_report["images"]
    assert int8_report["map50"] >= fp32_report["map50"] - 0.01
    recall = {
        r: {v["rule"]: v["recall"] for v in rep["violations"]}
        for r, rep in (("fp32", fp32_report), ("int8", int8_report))
    }
    for rule in ("no_helmet", "no_vest"):
        assert recall["int8"][rule] >= recall["fp32"][rule] - 0.02, rule
