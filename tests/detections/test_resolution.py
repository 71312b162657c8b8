"""Per-camera detector input (`cameras[].detect`): what `auto` picks for each frame size, caps, fixed-input
models, and that a larger input really finds more and smaller persons in a real wide view."""

import math
from pathlib import Path

import numpy as np
import pytest

from edge.camera_check import sample_frames
from edge.config.models import CameraConfig, DetectConfig, TileGrid
from edge.detections.onnxrt import OnnxDetector
from edge.detections.resolution import (
    AUTO_MAX_INPUT,
    AUTO_MIN_INPUT,
    AUTO_SCALE,
    AUTO_TILE_RATIO,
    AUTO_TILES,
    fit_input,
    resolve_plan,
)
from edge.labels import CLASS_NAMES, PERSON
from edge.resolution_bench import mosaic

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "ppe-yolo" / "model.onnx"
VIDEO = REPO / "samples" / "vtest.mp4"
MODEL_SIZE = (416, 416)


def plan(frame, setting=None, imgsz=MODEL_SIZE, dynamic=True):
    return resolve_plan(frame, setting or DetectConfig(), imgsz=imgsz, stride=32, dynamic=dynamic)


@pytest.mark.parametrize(
    "frame",
    [
        (320, 240),
        (416, 234),
        (640, 480),
        (640, 352),
        (848, 480),
        (1280, 720),
        (1920, 1080),
        (3840, 2160),
        (480, 640),
    ],
)
def test_auto_input_follows_the_rule_for_each_frame_size(frame):
    got = plan(frame)
    long = max(frame)
    # The rule: the model's own size when it holds the frame, the frame's own size up to AUTO_MIN_INPUT, then
    # AUTO_SCALE of the frame (stride-aligned), at least AUTO_MIN_INPUT and at most AUTO_MAX_INPUT.
    if long <= max(MODEL_SIZE):
        expected_long = max(MODEL_SIZE)
    elif long <= AUTO_MIN_INPUT:
        expected_long = long
    else:
        expected_long = min(AUTO_MAX_INPUT, max(AUTO_MIN_INPUT, math.ceil(long * AUTO_SCALE / 32) * 32))
    assert got.long_side == expected_long and got.tiles is None
    assert got.input_hw == fit_input(*frame, expected_long, 32)
    in_h, in_w = got.input_hw
    assert in_h % 32 == 0 and in_w % 32 == 0
    gain = min(in_h / frame[1], in_w / frame[0])
    if max(MODEL_SIZE) < long <= AUTO_MIN_INPUT:  # the frame goes in unscaled, padded to the stride
        assert gain == 1 and in_w - frame[0] < 32 and in_h - frame[1] < 32
    assert round(frame[0] * gain) <= in_w and round(frame[1] * gain) <= in_h  # the whole frame fits


def test_wide_views_get_a_larger_input_and_small_views_keep_their_own_size():
    assert plan((3840, 2160)).describe() == "1088x640"  # 4K: AUTO_SCALE of its long side
    assert plan((7680, 4320)).describe() == "1280x736"  # 8K: the auto limit
    assert plan((1920, 1080)).describe() == "640x384"  # 1080p: at least 640
    assert plan((848, 480)).describe() == "640x384"  # larger than 640: at least 640
    assert plan((640, 480)).describe() == "640x480"  # the frame's own size
    assert plan((640, 352)).describe() == "640x352"  # the yard camera: unscaled
    assert plan((320, 240)).describe() == "416x320"  # the model's own size


def test_an_explicit_input_is_capped_at_the_frame_and_may_be_smaller_than_the_models():
    capped = plan((640, 480), DetectConfig(input=1280))
    assert capped.long_side == 640 and capped.input_hw == (480, 640) and "capped" in capped.reason
    small = plan((640, 480), DetectConfig(input=320))
    assert small.input_hw == (256, 320) and "set by detect.input 320" in small.reason
    # A frame smaller than the model's size may still be sent at the model's size.
    assert plan((320, 240), DetectConfig(input=640)).long_side == 416


def test_slices_run_at_the_models_own_size_unless_an_input_is_set():
    grid = TileGrid(rows=2, cols=3, overlap=0.1)
    tiled = plan((1920, 1080), DetectConfig(tiling=grid))
    assert tiled.tiles == grid and tiled.long_side == 416 and tiled.passes == 7
    assert plan((1920, 1080), DetectConfig(input=640, tiling=grid)).long_side == 640
    assert plan((1920, 1080), DetectConfig(tiling="off")).tiles is None


def test_a_fixed_input_model_keeps_its_size_and_slices_wide_views_under_auto():
    fixed = (640, 640)
    wide = plan((1920, 1080), imgsz=fixed, dynamic=False)
    assert wide.input_hw == fixed and wide.tiles == AUTO_TILES
    narrow_frame = (int(AUTO_TILE_RATIO * 640) - 1, 720)
    assert plan(narrow_frame, imgsz=fixed, dynamic=False).tiles is None
    asked = plan((1920, 1080), DetectConfig(input=1280, tiling="off"), imgsz=fixed, dynamic=False)
    assert asked.input_hw == fixed and asked.tiles is None and "detect.input 1280 ignored" in asked.reason


@pytest.fixture(scope="module")
def detector() -> OnnxDetector:
    return OnnxDetector(MODEL, expected_names=CLASS_NAMES)


def test_the_detector_takes_a_frame_unscaled_at_its_own_size(detector):
    image = np.full((480, 848, 3), 114, np.uint8)
    blob, (box,) = detector.preprocess([image], 848)
    assert blob.shape == (1, 3, 480, 864) and box.gain == 1
    blob, (box,) = detector.preprocess([image])  # without a size: the model's own, as before
    assert blob.shape[2:] == (256, 416)


def test_a_larger_input_finds_more_and_smaller_persons_in_a_real_wide_view(detector):
    # Wide views made of real frames of the sample video, 3x3 side by side (1920x1440): its pedestrians keep
    # their native detail and become small in the whole view, as on a wide site camera.
    frames = sample_frames(CameraConfig(id="v", source=str(VIDEO)), 18)
    views = mosaic(frames, 3)
    assert views[0].shape[:2] == (1440, 1920)
    found = {}
    for size in (416, AUTO_MAX_INPUT):
        persons = [d.of(PERSON).xyxy for d in detector.detect_batch(views, size)]
        heights = np.concatenate([p[:, 3] - p[:, 1] for p in persons])
        found[size] = heights
    small, large = found[416], found[AUTO_MAX_INPUT]
    assert len(large) > len(small)
    assert len(small) == 0 or large.min() < small.min()


def test_person_heights_are_measured_at_the_input_of_the_pass_that_sees_them_largest():
    boxes = np.array([[100, 100, 140, 220], [900, 100, 1000, 1000]], np.float32)  # 120 and 900 px tall
    full = plan((1920, 1080), DetectConfig(input=640, tiling="off"))
    assert full.gain == pytest.approx(640 / 1920)
    assert full.heights_at_input(boxes) == pytest.approx([120 * full.gain, 900 * full.gain])
    tiled = plan((1920, 1080), DetectConfig(input=640, tiling=TileGrid(rows=2, cols=2, overlap=0.2)))
    heights = tiled.heights_at_input(boxes)
    # The small person lies inside the top-left slice, which the model sees larger than the whole frame;
    # the tall one fits in no slice and is seen at the full frame's scale.
    (window, gain), *_ = tiled.slices
    assert window[0] == 0 and window[1] == 0 and gain > tiled.gain
    assert heights == pytest.approx([120 * gain, 900 * tiled.gain])
    assert plan((640, 352)).heights_at_input(boxes[:1]) == pytest.approx([120.0])  # unscaled
