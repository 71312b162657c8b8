"""SAHI-style slicing for wide views: overlapping tiles plus the full frame, merged by class-aware NMS."""

from __future__ import annotations

import numpy as np

from edge.config.models import TileGrid, TilingConfig
from edge.dataflow import Detections
from edge.detections.base import Detector
from edge.detections.boxes import merge
from edge.detections.resolution import DetectPlan, tile_windows

#: A tile box this close (pixels) to a cut edge of its tile is taken to be cut off by it.
CUT_MARGIN_PX = 2.0


def detect_tiled(
    detector: Detector,
    image: np.ndarray,
    tiling: TileGrid | TilingConfig,
    iou: float,
    long_side: int | None = None,
) -> Detections:
    """Detect on the full frame and every tile in one batch; map tile boxes back and merge duplicates.

    Every pass runs at an input of long_side (default: the model's own size), so a slice magnifies by
    about `cols` over the full frame.

    A tile box that touches an edge where the tile cuts the frame is dropped: it is a piece of something
    larger (a worker's upper half), which NMS cannot match to the whole (their IoU is low) and which the
    full frame or the overlapping neighbour tile sees whole.
    """
    h, w = image.shape[:2]
    windows = tile_windows(w, h, tiling.rows, tiling.cols, tiling.overlap)
    crops = [image] + [image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
    results = detector.detect_batch(crops, long_side)
    parts = [results[0]]
    for (x1, y1, x2, y2), det in zip(windows, results[1:], strict=True):
        shifted = det.xyxy + np.array([x1, y1, x1, y1], np.float32)
        whole = ~cut_by_tile(shifted, (x1, y1, x2, y2), w, h)
        parts.append(Detections(shifted[whole], det.confidence[whole], det.class_id[whole], det.names))
    return merge(parts, iou)


def cut_by_tile(xyxy: np.ndarray, window: tuple[int, int, int, int], width: int, height: int) -> np.ndarray:
    """Mark boxes (frame pixels) that touch an edge where the window cuts into the frame."""
    x1, y1, x2, y2 = window
    cut = np.zeros(len(xyxy), bool)
    if x1 > 0:
        cut |= xyxy[:, 0] <= x1 + CUT_MARGIN_PX
    if y1 > 0:
        cut |= xyxy[:, 1] <= y1 + CUT_MARGIN_PX
    if x2 < width:
        cut |= xyxy[:, 2] >= x2 - CUT_MARGIN_PX
    if y2 < height:
        cut |= xyxy[:, 3] >= y2 - CUT_MARGIN_PX
    return cut


def detect_planned(detector: Detector, image: np.ndarray, plan: DetectPlan, iou: float) -> Detections:
    """Detect one frame as its camera's plan says: the full frame at the plan's input, plus slices if any."""
    if plan.tiles is None:
        return detector.detect_batch([image], plan.long_side)[0]
    return detect_tiled(detector, image, plan.tiles, iou, plan.long_side)
