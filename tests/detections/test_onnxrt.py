"""The ONNX Runtime detector: metadata, batching, bad model files, tiling, and parity with ultralytics."""

import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edge.config.models import ModelConfig, TilingConfig
from edge.detections import create_detector
from edge.detections.base import ModelError
from edge.detections.onnxrt import OnnxDetector
from edge.detections.tiling import detect_tiled, tile_windows
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
def detector() -> OnnxDetector:
    return OnnxDetector(MODEL, default_confidence=0.25, expected_names=CLASS_NAMES)


def test_model_metadata_gives_canonical_classes_and_input_size(detector):
    assert detector.info.names == CLASS_NAMES
    assert detector.info.imgsz[0] % 32 == 0 and detector.info.imgsz[1] % 32 == 0
    assert "CPUExecutionProvider" in detector.info.providers
    assert detector.info.metadata.get("sitesentry_class_set")


def test_detects_people_in_a_real_site_photo(detector):
    found = [detector.detect(cv2.imread(str(p))) for p in photos(20)]
    assert sum(len(d.of("person")) for d in found) > 10
    for d in found:
        assert d.xyxy.shape[1] == 4 and np.all(d.xyxy[:, 2] >= d.xyxy[:, 0]) and np.all(d.confidence >= 0.25)


def test_batch_matches_single_image_results(detector):
    images = [cv2.imread(str(p)) for p in photos(3)]
    singles = [detector.detect(i) for i in images]
    batched = detector.detect_batch(images)
    for a, b in zip(singles, batched, strict=True):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5)


def test_unavailable_providers_fall_back_to_cpu_and_say_what_they_got():
    d = create_detector(ModelConfig(type="onnxrt", path=MODEL, providers=["tensorrt", "cuda", "cpu"]))
    assert d.info.providers == ["CPUExecutionProvider"]


def test_a_file_that_is_not_a_model_is_refused_clearly(tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("not a model")
    with pytest.raises(ModelError, match=r"model.onnx: not a loadable ONNX model"):
        OnnxDetector(bogus)
    with pytest.raises(ModelError, match="model file not found"):
        OnnxDetector(tmp_path / "missing.onnx")


def test_an_onnx_model_that_is_not_a_detector_is_refused(tmp_path):
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "g", [inp], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "identity.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="no class names in the ONNX metadata"):
        OnnxDetector(path)
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", str(dict(enumerate(CLASS_NAMES)))
    onnx.save(model, path)
    with pytest.raises(ModelError, match=r"unexpected outputs .* one output of shape \[batch, 9, anchors\]"):
        OnnxDetector(path)


def test_model_with_other_classes_is_refused_by_the_runtime(tmp_path):
    model = onnx.load(MODEL)
    for prop in model.metadata_props:
        if prop.key == "names":
            prop.value = str({0: "cat", 1: "dog", 2: "a", 3: "b", 4: "c"})
    path = tmp_path / "other.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="differ from the expected"):
        create_detector(ModelConfig(path=path))


def test_tile_windows_cover_the_frame_with_overlap():
    windows = tile_windows(1920, 1080, 2, 3, 0.2)
    assert len(windows) == 6
    assert min(w[0] for w in windows) == 0 and max(w[2] for w in windows) == 1920
    assert max(w[3] for w in windows) == 1080
    assert windows[1][0] < windows[0][2]  # neighbours overlap


def test_tiling_finds_small_people_the_full_frame_misses(detector):
    # A wide view made of real photos shrunk into a 3x3 mosaic: each worker is a third of their size.
    tiles = [cv2.resize(cv2.imread(str(p)), (427, 360)) for p in photos(9)]
    mosaic = np.vstack([np.hstack(tiles[r * 3 : r * 3 + 3]) for r in range(3)])
    full = detector.detect(mosaic)
    tiled = detect_tiled(detector, mosaic, TilingConfig(enabled=True, rows=3, cols=3, overlap=0.1), iou=0.5)
    assert len(tiled.of("person")) > len(full.of("person"))
    # Merging removed the duplicates that overlapping tiles produce: no two persons overlap like one.
    boxes = tiled.of("person").xyxy
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            assert inter / union <= 0.5


def test_tiling_does_not_report_the_pieces_of_a_worker_that_tiles_cut(detector):
    # One big worker filling the view: every tile sees only a piece of them (a head and shoulders, legs),
    # which the model calls a person too. Those pieces overlap the whole worker too little for NMS.
    best = None
    for path in photos(12):
        image = cv2.imread(str(path))
        for box in detector.detect(image).of("person").xyxy:
            area = (box[2] - box[0]) * (box[3] - box[1])
            if best is None or area > best[0]:
                best = (area, image, box)
    _, image, box = best
    x1, y1, x2, y2 = (int(v) for v in box)
    pad_x, pad_y = (x2 - x1) // 10, (y2 - y1) // 20
    crop = image[max(0, y1 - pad_y) : y2 + pad_y, max(0, x1 - pad_x) : x2 + pad_x]
    worker = cv2.resize(crop, None, fx=720 / crop.shape[0], fy=720 / crop.shape[0])
    full = detector.detect(worker).of("person")
    tiled = detect_tiled(detector, worker, TilingConfig(enabled=True, rows=2, cols=2, overlap=0.2), iou=0.5)
    assert len(full) >= 1
    assert len(tiled.of("person")) == len(full)
    for piece in tiled.of("person").xyxy:
        inter_w = np.clip(
            np.minimum(piece[2], full.xyxy[:, 2]) - np.maximum(piece[0], full.xyxy[:, 0]), 0, None
        )
        inter_h = np.clip(
            np.minimum(piece[3], full.xyxy[:, 3]) - np.maximum(piece[1], full.xyxy[:, 1]), 0, None
        )
        inter = inter_w * inter_h
        union = (
            (piece[2] - piece[0]) * (piece[3] - piece[1])
            + ((full.xyxy[:, 2] - full.xyxy[:, 0]) * (full.xyxy[:, 3] - full.xyxy[:, 1]))
            - inter
        )
        assert (inter / union).max() >= 0.5


def test_a_tile_box_touching_a_cut_edge_is_a_piece_but_the_frame_border_is_not():
    from edge.detections.tiling import cut_by_tile

    window = (100, 0, 300, 200)  # cuts the frame on its left (x=100), right (x=300) and bottom (y=200)
    boxes = np.array(
        [
            [150, 50, 250, 150],  # whole, inside the tile
            [101, 50, 180, 150],  # touches the left cut
            [150, 120, 250, 199],  # touches the bottom cut
            [150, 0, 250, 80],  # touches the top, which is the frame's own border
        ],
        np.float32,
    )
    assert cut_by_tile(boxes, window, width=400, height=300).tolist() == [False, True, True, False]


@pytest.mark.train
def test_boxes_match_ultralytics_predictions_on_the_same_onnx_file(detector, tmp_path):
    pytest.importorskip("ultralytics", reason="parity needs the train extra")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from training.offline import prepare_offline

    prepare_offline(tmp_path / "yolo")
    from ultralytics import YOLO

    reference = YOLO(str(MODEL), task="detect")
    imgsz = detector.info.imgsz[0]
    compared = 0
    for path in photos(8):
        ours = detector.detect(cv2.imread(str(path)))
        theirs = reference.predict(str(path), imgsz=imgsz, conf=0.25, iou=0.5, verbose=False)[0].boxes
        assert len(ours) == len(theirs), path.name
        order = np.lexsort((theirs.xyxy.numpy()[:, 0], theirs.cls.numpy()))
        mine = np.lexsort((ours.xyxy[:, 0], ours.class_id))
        np.testing.assert_allclose(ours.xyxy[mine], theirs.xyxy.numpy()[order], atol=1.0)
        np.testing.assert_array_equal(ours.class_id[mine], theirs.cls.numpy()[order].astype(int))
        np.testing.assert_allclose(ours.confidence[mine], theirs.conf.numpy()[order], atol=1e-3)
        compared += len(ours)
    assert compared > 10


def test_a_fixed_batch_larger_than_one_is_refused_with_a_clear_error(tmp_path):
    model = onnx.load(MODEL)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    path = tmp_path / "batch4.onnx"
    onnx.save(model, path)
    with pytest.raises(ModelError, match="fixed batch size 4 is not supported"):
        OnnxDetector(path)


def test_dynamic_model_takes_a_letterboxed_rectangle_and_finds_the_same_people(detector):
    capture = cv2.VideoCapture(str(VIDEO))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 150)
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[:2] == (480, 640)
    assert detector.input_size([frame]) == (320, 416)  # 4:3 video: 23 % fewer pixels than 416x416
    rect = detector.detect(frame).of("person")
    square = OnnxDetector(MODEL, default_confidence=0.25)
    square._dynamic_hw = False  # the fixed-square path, as for a model exported with a static shape
    full = square.detect(frame).of("person")
    assert abs(len(rect) - len(full)) <= 1 and len(full) >= 3
    # The same people, within a few pixels; one borderline person may clear the threshold in one only.
    unmatched = [box for box in full.xyxy if np.abs(rect.xyxy - box).max(axis=1).min() >= 12]
    assert len(unmatched) <= 1, unmatched
