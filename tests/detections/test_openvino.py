"""The OpenVINO backend against ONNX Runtime on the shipped model and real photos, its async batches, and
how `model.type: auto` chooses (and falls back when openvino is missing)."""

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config.models import ModelConfig
from edge.detections import choose_backend, create_detector
from edge.detections.base import ModelError
from edge.detections.onnxrt import OnnxDetector
from edge.labels import CLASS_NAMES

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "ppe-yolo" / "model.onnx"
PHOTOS = REPO.parent / "shared" / "datasets" / "construction-site-safety" / "valid" / "images"
VIDEO = REPO / "samples" / "vtest.mp4"


def photos(n: int) -> list[Path]:
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos not available at {PHOTOS}")
    return sorted(PHOTOS.glob("*.jpg"))[:n]


@pytest.fixture(scope="module")
def openvino_detector():
    pytest.importorskip("openvino", reason="needs the openvino extra (pip install -e '.[openvino]')")
    from edge.detections.openvino_backend import OpenVinoDetector

    return OpenVinoDetector(MODEL, default_confidence=0.25, expected_names=CLASS_NAMES)


@pytest.fixture(scope="module")
def onnx_detector() -> OnnxDetector:
    return OnnxDetector(MODEL, default_confidence=0.25, expected_names=CLASS_NAMES)


def assert_same(a, b, box_px: float = 1.0, conf: float = 1e-2) -> None:
    assert len(a) == len(b)
    order_a = np.lexsort((a.xyxy[:, 0], a.class_id))
    order_b = np.lexsort((b.xyxy[:, 0], b.class_id))
    np.testing.assert_array_equal(a.class_id[order_a], b.class_id[order_b])
    np.testing.assert_allclose(a.xyxy[order_a], b.xyxy[order_b], atol=box_px)
    np.testing.assert_allclose(a.confidence[order_a], b.confidence[order_b], atol=conf)


def test_openvino_reads_the_same_metadata_as_onnx_runtime(openvino_detector, onnx_detector):
    assert openvino_detector.info.names == onnx_detector.info.names == CLASS_NAMES
    assert openvino_detector.info.imgsz == onnx_detector.info.imgsz
    assert openvino_detector.info.version == onnx_detector.info.version != "unknown"
    assert openvino_detector.info.metadata["sitesentry_class_set"]


def test_openvino_fp32_matches_onnx_runtime_on_real_photos_and_video(openvino_detector, onnx_detector):
    capture = cv2.VideoCapture(str(VIDEO))
    ok, frame = capture.read()
    capture.release()
    assert ok
    images = [cv2.imread(str(p)) for p in photos(8)] + [frame]  # squares (416x416) and 4:3 video (416x320)
    compared = 0
    for image in images:
        ours, reference = openvino_detector.detect(image), onnx_detector.detect(image)
        assert_same(ours, reference)
        compared += len(ours)
    assert compared > 30


def test_a_batch_runs_as_parallel_requests_with_the_single_image_results(openvino_detector):
    images = [cv2.imread(str(p)) for p in photos(4)]
    singles = [openvino_detector.detect(i) for i in images]
    blob, boxes = openvino_detector.preprocess(images)
    batched = openvino_detector.postprocess(openvino_detector.infer(blob), boxes)
    assert openvino_detector._queues  # the batch really went through the asynchronous queue
    for a, b in zip(singles, batched, strict=True):
        assert_same(a, b, box_px=1e-3, conf=1e-5)


def test_auto_picks_openvino_when_installed_and_says_why(openvino_detector, caplog):
    caplog.set_level(logging.INFO, logger="edge.detections")
    detector = create_detector(ModelConfig(path=MODEL, providers=["cpu"]))
    assert type(detector).__name__ == "OpenVinoDetector"
    assert "backend openvino (model.type auto: no NVIDIA GPU; the openvino package is" in caplog.text
    assert choose_backend(ModelConfig(path=Path("m.xml"))) == ("openvino", "m.xml is an OpenVINO IR")
    assert choose_backend(ModelConfig(type="onnxrt")) == ("onnxrt", "set by model.type")


def test_without_openvino_auto_falls_back_to_onnx_runtime_and_openvino_says_what_is_missing(
    monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the extra were not installed
    caplog.set_level(logging.INFO, logger="edge.detections")
    detector = create_detector(ModelConfig(path=MODEL, providers=["cpu"]))
    assert isinstance(detector, OnnxDetector)
    assert "detector backend onnxrt (model.type auto: no NVIDIA GPU and no openvino package" in caplog.text
    with pytest.raises(ModelError, match=r"the `openvino` package is not installed"):
        create_detector(ModelConfig(type="openvino", path=MODEL))
