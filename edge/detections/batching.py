"""Frames of several cameras through one detector: batched where they share a model input size, sliced
where their plan says so, with each frame's share of the time spent per stage."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from edge.dataflow import Detections, Frame
from edge.detections.base import Detector
from edge.detections.resolution import DetectPlan
from edge.detections.tiling import detect_tiled

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Planned(Generic[K]):
    """A frame to detect, the plan it is detected by, and the caller's key (its camera)."""

    key: K
    frame: Frame
    plan: DetectPlan


def detect_frames(
    detector: Detector, planned: Sequence[Planned[K]], max_batch: int, iou: float
) -> Iterator[tuple[Planned[K], Detections, dict[str, float]]]:
    """Detect every frame as its plan says, yielding each with its detections and stage times (ms).

    Frames going into the same model input size are batched, `max_batch` at a time (a fixed-batch model:
    1); a sliced frame is detected alone (its slices are the batch). Results come chunk by chunk, so the
    caller handles a chunk before the next one is detected.
    """
    plain: dict[tuple[int, tuple[int, int]], list[Planned[K]]] = {}
    tiled: list[Planned[K]] = []
    for item in planned:
        if item.plan.tiles is None:
            plain.setdefault((item.plan.long_side, item.plan.input_hw), []).append(item)
        else:
            tiled.append(item)
    for (long_side, _), group in plain.items():
        for i in range(0, len(group), max_batch):
            chunk = group[i : i + max_batch]
            found = _detect_batch(detector, [p.frame for p in chunk], long_side)
            for item, (detections, timings) in zip(chunk, found, strict=True):
                yield item, detections, timings
    for item in tiled:
        assert item.plan.tiles is not None
        t0 = time.perf_counter()
        detections = detect_tiled(detector, item.frame.image, item.plan.tiles, iou, item.plan.long_side)
        yield item, detections, {"inference": (time.perf_counter() - t0) * 1e3}


def _detect_batch(
    detector: Detector, frames: list[Frame], long_side: int
) -> list[tuple[Detections, dict[str, float]]]:
    t0 = time.perf_counter()
    blob, boxes = detector.preprocess([f.image for f in frames], long_side)
    t1 = time.perf_counter()
    output = detector.infer(blob)
    t2 = time.perf_counter()
    detections = detector.postprocess(output, boxes)
    t3 = time.perf_counter()
    n = len(frames)  # batched stages are shared; attribute each frame its share
    timings = {
        "preprocess": (t1 - t0) * 1e3 / n,
        "inference": (t2 - t1) * 1e3 / n,
        "postprocess": (t3 - t2) * 1e3 / n,
    }
    return [(d, dict(timings)) for d in detections]
