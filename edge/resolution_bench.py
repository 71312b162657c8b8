"""`sitesentry bench --resolution`: the cost and the persons found per detection option (416 px, 640 px, the
frame's own size, 2x2 slices, and what `detect: auto` picks) on real video, and what `camera check`'s rule
recommends for each view; the figures behind AUTO_MAX_INPUT and RECALL_SHARE (docs/benchmarks/)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.camera_check import candidate_settings, measure_options, recommend, sample_frames
from edge.config.models import CameraConfig, DetectConfig, ModelConfig, RulesConfig
from edge.detections import create_detector

#: Input sizes measured besides camera check's alternatives (416, 640, the frame's own size, 2x2 slices).
BENCH_EXTRA_INPUTS = (960, 1280)


@dataclass(frozen=True)
class BenchView:
    """A camera view to measure: real frames, and what they are."""

    name: str
    description: str
    frames: list[np.ndarray]


def mosaic(frames: list[np.ndarray], side: int) -> list[np.ndarray]:
    """Wide views made of real frames side by side (side x side each), taken far apart in the video so every
    cell shows another moment: workers keep their native detail and become small in the whole view."""
    cells = side * side
    count = len(frames) // cells
    out = []
    for k in range(count):
        picked = [frames[k + j * count] for j in range(cells)]
        rows = [np.hstack(picked[r * side : (r + 1) * side]) for r in range(side)]
        out.append(np.vstack(rows))
    return out


def reference_views(videos: list[Path], frames: int, mosaics: tuple[int, ...] = (2, 4)) -> list[BenchView]:
    """Each video's own frames, and for the last one (the site footage) mosaics of them as wide views."""
    views = []
    for i, video in enumerate(videos):
        camera = CameraConfig(id="bench", source=str(video))
        own = sample_frames(camera, frames)
        h, w = own[0].shape[:2]
        views.append(BenchView(video.name, f"{w}x{h}, the video's own frames", own))
        if i != len(videos) - 1:
            continue
        for side in mosaics:
            many = sample_frames(camera, frames * side * side)
            tiles = mosaic(many, side)
            th, tw = tiles[0].shape[:2]
            views.append(
                BenchView(
                    f"{video.stem} {side}x{side} mosaic",
                    f"{tw}x{th}: {side}x{side} real frames side by side, a wide view at native detail",
                    tiles,
                )
            )
    return views


def run_resolution_bench(
    videos: list[Path], model: Path, frames: int = 12, backend: str = "onnxrt"
) -> dict[str, Any]:
    """Measure every option on every view; one JSON-ready dict (docs/benchmarks/resolution.json)."""
    for video in videos:
        if not video.is_file():
            raise ValueError(f"{video}: video not found")
    if not model.is_file():
        raise ValueError(f"{model}: model not found")
    cv2.setNumThreads(1)
    detector = create_detector(ModelConfig(type=backend, path=model, providers=["cpu"]))  # type: ignore[arg-type]
    rules, iou = RulesConfig(), ModelConfig().iou
    results = []
    for view in reference_views(videos, frames):
        frame = (int(view.frames[0].shape[1]), int(view.frames[0].shape[0]))
        # Fixed options only (candidate_settings' first entry is a camera's own setting: left out), so the
        # figures do not depend on the rule `detect: auto` follows; the README table says what auto picks.
        settings = candidate_settings(DetectConfig(), frame)[1:]
        settings[2:2] = [(f"input {n}", DetectConfig(input=n, tiling="off")) for n in BENCH_EXTRA_INPUTS]
        t0 = time.perf_counter()
        measured = [r for r, _ in measure_options(detector, view.frames, settings, iou, rules.min_person_px)]
        base = next(
            (r.ms_per_frame for r in measured if r.plan.input_hw[1] == 416 and r.plan.tiles is None), None
        )
        pick, why = recommend(measured)
        results.append(
            {
                "view": view.name,
                "description": view.description,
                "frames": len(view.frames),
                "options": [
                    r.to_dict() | {"cost_vs_416": round(r.ms_per_frame / base, 2) if base else None}
                    for r in measured
                ],
                "recommended": pick.label,
                "why": why,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        },
        "model": str(model),
        "backend": detector.info.providers,
        "min_person_px": rules.min_person_px,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "views": results,
    }
