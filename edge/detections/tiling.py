"""SAHI-style slicing for wide views: overlapping tiles plus the full frame, merged by class-aware NMS."""

from __future__ import annotations

import numpy as np

from edge.config.models import TilingConfig
from edge.dataflow import Detections
from edge.detections.base import Detector
from edge.detections.boxes import merge


def tile_windows(
    width: int, height: int, rows: int, cols: int, overlap: float
) -> list[tuple[int, int, int, int]]:
    """Return (x1, y1, x2, y2) pixel windows covering the frame in rows x cols with the given overlap."""
    tile_w = width / (cols - (cols - 1) * overlap)
    tile_h = height / (rows - (rows - 1) * overlap)
    windows = []
    for r in range(rows):
        for c in range(cols):
            x1 = round(c * tile_w * (1 - overlap))
            y1 = round(r * tile_h * (1 - overlap))
            windows.append((x1, y1, min(width, round(x1 + tile_w)), min(height, round(y1 + tile_h))))
    return windows


def detect_tiled(detector: Detector, image: np.ndarray, tiling: TilingConfig, iou: float) -> Detections:
    """Detect on the full frame and every tile in one batch; map tile boxes back and merge duplicates."""
    h, w = image.shape[:2]
    windows = tile_windows(w, h, tiling.rows, tiling.cols, tiling.overlap)
    crops = [image] + [image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
    results = detector.detect_batch(crops)
    parts = [results[0]]
    for (x1, y1, _, _), det in zip(windows, results[1:], strict=True):
        shifted = det.xyxy + np.array([x1, y1, x1, y1], np.float32)
        parts.append(Detections(shifted, det.confidence, det.class_id, det.names))
    return merge(parts, iou)
