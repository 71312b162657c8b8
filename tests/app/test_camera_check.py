"""`sitesentry camera check` end to end on a real video file source: the figures it reports (checked against
the detector run independently), the recommendation and snippet, the preview PNG; clear one-line errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edge.camera_check import legend_height, sample_frames
from edge.cli import app
from edge.config.models import CameraConfig
from edge.detections.onnxrt import OnnxDetector
from edge.labels import CLASS_NAMES, PERSON

REPO = Path(__file__).resolve().parents[2]
VIDEO = REPO / "samples" / "vtest.mp4"
MODEL = REPO / "models" / "ppe-yolo" / "model.onnx"


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI points the root logger at the runner's stderr, closed afterwards: later tests must not."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def site(tmp_path: Path, **camera: object) -> Path:
    data = {
        "site": {"id": "s", "name": "S"},
        "cameras": [
            {
                "id": "gate",
                "source": str(VIDEO),
                "zones": [{"id": "pit", "polygon": [[0.1, 0.5], [0.6, 0.5], [0.6, 0.98], [0.1, 0.98]]}],
            }
            | camera,
            {"id": "yard", "source": str(VIDEO)},
        ],
        "model": {"type": "onnxrt", "path": str(MODEL), "providers": ["cpu"]},
        "evidence": {"folder": str(tmp_path / "evidence")},
        "mqtt": {"outbox": str(tmp_path / "outbox.sqlite3")},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, ["camera", "check", *map(str, args)])


def test_camera_check_reports_sizes_recommends_and_draws_a_preview(tmp_path):
    config = site(tmp_path)
    preview, report_file = tmp_path / "gate.png", tmp_path / "gate.json"
    result = invoke(config, "--camera", "gate", "--frames", 4, "--preview", preview, "--json", report_file)
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    assert report["camera"] == "gate" and report["frame"] == [640, 480] and report["frames_sampled"] == 4
    options = {o["option"]: o for o in report["options"]}
    # The camera's own setting (auto: a 640x480 frame goes in unscaled) and the alternatives; 640 px and the
    # frame's own size resolve to the same input as auto here, so they are measured once.
    assert options["current"]["input"] == "640x480"
    assert set(options) == {"current", "input 416", "2x2 tiles"}
    assert options["2x2 tiles"]["passes"] == 5
    # The figures are what the detector finds on the same frames, run here independently.
    frames = sample_frames(CameraConfig(id="gate", source=str(VIDEO)), 4)
    detector = OnnxDetector(MODEL, expected_names=CLASS_NAMES, confidence={"person": 0.35})
    for label, long_side in (("current", 640), ("input 416", 416)):
        persons = [d.of(PERSON).xyxy for d in detector.detect_batch(frames, long_side)]
        gain = long_side / 640  # 640x480 frames: the long side sets the scale
        heights = np.concatenate([(p[:, 3] - p[:, 1]) * gain for p in persons])
        assert options[label]["persons_per_frame"] == round(len(heights) / 4, 2)
        assert options[label]["too_small"] == int((heights < 40).sum())
        assert options[label]["person_height_at_input_px"]["p50"] == round(float(np.median(heights)), 1)
    # A smaller input shrinks the persons: more of them are too small to judge.
    assert options["input 416"]["too_small"] >= options["current"]["too_small"]
    assert report["recommended"] in options
    snippet = yaml.safe_load(report["snippet"])
    assert snippet[0]["id"] == "gate" and set(snippet[0]["detect"]) == {"input", "tiling"}
    # What it printed: a row per option, the recommendation and the snippet to paste.
    assert "recommended: " in result.output and "detect:" in result.output
    assert result.output.count("\n") >= 8
    image = cv2.imread(str(preview))
    assert image is not None and image.shape == (480 + legend_height(640), 640, 3)


@pytest.mark.parametrize(
    ("args", "camera", "message"),
    [
        (("--camera", "nope"), {}, "error: no camera 'nope' in the config; cameras: gate, yard"),
        ((), {}, "error: the config has 2 cameras (gate, yard): choose one with --camera"),
        (
            ("--camera", "gate"),
            {"source": "rtsp://127.0.0.1:9/stream"},
            "error: camera gate: cannot open RTSP stream rtsp://127.0.0.1:9/stream: cannot connect to "
            "127.0.0.1:9",
        ),
        (
            ("--camera", "gate"),
            {"source": "/nowhere/gate.mp4"},
            "error: camera gate: cannot open video file /nowhere/gate.mp4: no such file",
        ),
    ],
)
def test_camera_check_errors_say_what_and_where(tmp_path, args, camera, message):
    result = invoke(site(tmp_path, **camera), *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_camera_check_without_the_model_file_says_so(tmp_path):
    config = site(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["model"]["path"] = str(tmp_path / "missing.onnx")
    config.write_text(yaml.safe_dump(data))
    result = invoke(config, "--camera", "gate")
    assert result.exit_code == 2
    assert f"{tmp_path / 'missing.onnx'}: model file not found" in " ".join(result.output.split())
