"""Cameras with different detector inputs (`cameras[].detect`) in one app: batched by input size, each
frame detected exactly as it would be alone, the choice logged at the first frame and shown in the stats."""

import logging
import time
from pathlib import Path

import numpy as np

from edge.app import EdgeApp
from edge.config import load_config
from edge.config.models import DetectConfig, TileGrid
from edge.dataflow import FrameResult

REPO = Path(__file__).resolve().parents[2]


def test_cameras_with_different_inputs_are_batched_by_input_size(tmp_path, caplog):
    site = load_config(REPO / "samples" / "site.yaml")
    gate = site.cameras[0].model_copy(update={"realtime": False, "loop": False})
    settings = {
        "auto": DetectConfig(),  # 640x480 frames: the frame's own size
        "small": DetectConfig(input=416),
        "same": DetectConfig(input=640, tiling="off"),  # resolves to what `auto` does: one batch with it
        "tiled": DetectConfig(tiling=TileGrid(rows=2, cols=2, overlap=0.2)),
    }
    config = site.model_copy(
        update={
            "cameras": [gate.model_copy(update={"id": cid, "detect": d}) for cid, d in settings.items()],
            "evidence": site.evidence.model_copy(update={"folder": tmp_path / "evidence"}),
        }
    )
    results: dict[str, FrameResult] = {}
    app = EdgeApp(config, on_result=lambda r: results.setdefault(r.frame.camera_id, r))
    shapes: list[tuple[int, ...]] = []
    infer = app.detector.infer

    def spy(blob: np.ndarray) -> np.ndarray:  # records each batch, and runs the real model on it
        shapes.append(blob.shape)
        return infer(blob)

    app.detector.infer = spy  # type: ignore[method-assign]
    for runtime in app.cameras.values():
        runtime.reader.start()
    try:
        deadline = time.monotonic() + 60
        while any(r.reader.newest_seq < 0 for r in app.cameras.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        with caplog.at_level(logging.INFO, logger="edge.app"):
            assert app.step() == 4
    finally:
        app.stop()
    # One batch per input size: auto and 640 together; 416 alone; the tiled camera's frame and 4 slices.
    assert sorted(shapes) == [(1, 3, 320, 416), (2, 3, 480, 640), (5, 3, 320, 416)]
    # Batched, every camera's frame got what it gets alone at its own input.
    for cid, long_side in (("auto", 640), ("small", 416), ("same", 640)):
        alone = app.detector.detect_batch([results[cid].frame.image], long_side)[0]
        got = results[cid].detections
        assert len(got) == len(alone) > 0
        np.testing.assert_allclose(got.xyxy, alone.xyxy, atol=0.5)
    stats = app.stats()["cameras"]
    assert stats["auto"]["detect"] == "640x480" and stats["small"]["detect"] == "416x320"
    assert stats["tiled"]["detect"] == "416x320 + 2x2 tiles (overlap 0.2)"
    assert app.heartbeat_stats()["cameras"]["same"]["detect"] == "640x480"
    logged = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("camera auto: 640x480 frames detected at 640x480 (auto: the frame's own size")
        for m in logged
    )
    assert any(m.startswith("camera tiled: 640x480 frames detected at 416x320 + 2x2 tiles") for m in logged)
