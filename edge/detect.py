"""`sitesentry detect`: run the detector over one image or video and write an annotated copy."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.annotate import draw_detections
from edge.detections.base import Detector
from edge.events.video import encode_video

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def annotate_file(detector: Detector, source: Path, out: Path | None = None) -> tuple[Path, dict[str, int]]:
    """Annotate an image or every frame of a video; return the written path and box counts per class."""
    if not source.is_file():
        raise ValueError(f"{source}: no such file")
    counts: Counter[str] = Counter()
    if source.suffix.lower() in IMAGE_SUFFIXES:
        image = cv2.imread(str(source))
        if image is None:
            raise ValueError(f"{source}: not a readable image")
        detections = detector.detect(image)
        counts.update(detections.labels())
        out = out or source.with_name(f"{source.stem}.annotated{source.suffix}")
        if out.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{out}: an annotated image needs one of {', '.join(sorted(IMAGE_SUFFIXES))}")
        if not cv2.imwrite(str(out), draw_detections(image, detections)):
            raise OSError(f"{out}: could not write the annotated image")
        return out, dict(counts)
    capture = cv2.VideoCapture(str(source))
    ok, image = capture.read()
    if not ok or image is None:
        capture.release()
        raise ValueError(f"{source}: not a readable image or video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 10.0
    out = out or source.with_name(f"{source.stem}.annotated.mp4")
    if out.suffix.lower() not in {".mp4", ".avi", ".mkv", ".mov"}:
        capture.release()
        raise ValueError(f"{out}: an annotated video needs .mp4, .avi, .mkv or .mov")
    first = image

    def annotated_frames() -> Iterator[np.ndarray]:
        frame: np.ndarray | None = first
        while frame is not None:
            detections = detector.detect(frame)
            counts.update(detections.labels())
            yield draw_detections(frame, detections)
            ok, frame = capture.read()
            if not ok:
                frame = None

    try:
        encode_video(out, annotated_frames(), fps, (first.shape[1], first.shape[0]))
    finally:
        capture.release()
    return out, dict(counts)
