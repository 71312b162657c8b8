"""Extract labelled frames from a video at a chosen rate, as a canonical YOLO folder.

Two label sources are supported, both as CVAT writes them for a video task:
- "CVAT for video 1.1" (annotations.xml with <track> elements; frame numbers are the video's own), and
- "YOLO 1.1" (a folder of `frame_000123.txt` label files with obj.names, or classes.txt / data.yaml).

Frames are written as `<video>_frame_<n>.jpg`, so `source_group` keeps every frame of one video in
one split. A sampled frame with no label file (YOLO) is reported and left out: unlabelled is not negative.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from training.datasets.cvat import read_cvat_video
from training.datasets.model import Box, ClassMapping, Dataset, LabelledImage, Problem, source_group
from training.datasets.yolo import format_labels, read_labels

log = logging.getLogger(__name__)

_FRAME_NUMBER = re.compile(r"(\d+)$")


@dataclass
class FrameLabels:
    """Boxes by absolute video frame number; `labelled(frame)` says whether a frame was labelled at all."""

    boxes: Callable[[int], list[Box]]
    labelled: Callable[[int], bool]
    problems: list[Problem]
    last: int | None = None  # no labelled frame after this one, so decoding can stop there


def cvat_video_labels(xml_path: Path, mapping: ClassMapping | None = None) -> FrameLabels:
    """Frame labels from a "CVAT for video 1.1" export: every frame from start to stop is labelled."""
    video = read_cvat_video(xml_path, mapping)
    stop = video.stop_frame

    def labelled(frame: int) -> bool:
        return frame >= video.start_frame and (stop is None or frame <= stop)

    return FrameLabels(video.boxes_at, labelled, video.problems, stop)


def _names_for(folder: Path) -> list[str]:
    for parent in (folder, folder.parent):
        for name in ("obj.names", "classes.txt"):
            if (parent / name).is_file():
                text = (parent / name).read_text(encoding="utf-8")
                return [line.strip() for line in text.splitlines() if line.strip()]
        if (parent / "data.yaml").is_file():
            names = yaml.safe_load((parent / "data.yaml").read_text(encoding="utf-8")).get("names")
            return (
                [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
            )
    raise ValueError(
        f"{folder}: no class names found (obj.names, classes.txt or data.yaml beside the labels)"
    )


def yolo_frame_labels(
    folder: Path, mapping: ClassMapping | None = None, names: list[str] | None = None
) -> FrameLabels:
    """Frame labels from a folder of per-frame YOLO files named `..._<frame number>.txt`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of per-frame label files")
    if (folder / "obj_train_data").is_dir():  # CVAT's YOLO 1.1 zip layout
        folder = folder / "obj_train_data"
    names = names or _names_for(folder)
    mapping = mapping or ClassMapping.identity()
    files: dict[int, Path] = {}
    problems: list[Problem] = []
    for label in sorted(folder.glob("*.txt")):
        match = _FRAME_NUMBER.search(label.stem)
        if match is None:
            if label.name not in ("classes.txt", "train.txt", "valid.txt", "test.txt"):
                problems.append(Problem(str(label), "no frame number at the end of the name; skipped"))
            continue
        files[int(match.group(1))] = label
    scratch = Dataset(problems=problems)  # bad rows found while reading frames land in the same list

    def boxes(frame: int) -> list[Box]:
        return read_labels(files[frame], names, mapping, scratch) if frame in files else []

    return FrameLabels(boxes, lambda frame: frame in files, scratch.problems, max(files, default=None))


def extract_frames(
    video_path: Path,
    labels: FrameLabels,
    out_dir: Path,
    fps: float = 1.0,
    jpeg_quality: int = 95,
) -> Dataset:
    """Save labelled frames every 1/fps seconds as images/ + labels/ with a data.yaml; return the dataset."""
    if fps <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    capture = cv2.VideoCapture(str(video_path))
    if not capture.isOpened():
        raise ValueError(f"{video_path}: cannot open this video")
    video_fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    if video_fps <= 0:
        capture.release()
        raise ValueError(f"{video_path}: the video reports no frame rate")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    dataset = Dataset()
    unlabelled, frame_no, last_slot = 0, 0, -1
    try:
        while True:
            if labels.last is not None and frame_no > labels.last:
                break
            ok, image = capture.read()
            if not ok:
                break
            slot = int(frame_no * fps / video_fps + 1e-9)  # the 1/fps-second interval this frame falls in
            if slot != last_slot:
                last_slot = slot
                if labels.labelled(frame_no):
                    dataset.images.append(
                        _save_frame(video_path, frame_no, image, labels, out_dir, jpeg_quality)
                    )
                else:
                    unlabelled += 1
            frame_no += 1
    finally:
        capture.release()
    dataset.problems[:0] = labels.problems
    if unlabelled:
        dataset.problems.append(
            Problem(
                str(video_path),
                f"{unlabelled} sampled frame(s) have no labels (unlabelled, not negative); skipped",
            )
        )
    if frame_no == 0:
        raise ValueError(f"{video_path}: no frames could be decoded")
    names = ClassMapping.identity().mapping
    data = {"path": str(out_dir.resolve()), "train": "images", "names": list(names), "nc": len(names)}
    (out_dir / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    log.info("extracted %d labelled frames of %d from %s", len(dataset.images), frame_no, video_path)
    return dataset


def _save_frame(
    video_path: Path, frame_no: int, image: np.ndarray, labels: FrameLabels, out_dir: Path, jpeg_quality: int
) -> LabelledImage:
    name = f"{Path(video_path).stem}_frame_{frame_no:06d}"
    image_path = out_dir / "images" / f"{name}.jpg"
    if not cv2.imwrite(str(image_path), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
        raise OSError(f"{image_path}: cannot write the frame")
    boxes = labels.boxes(frame_no)
    (out_dir / "labels" / f"{name}.txt").write_text(format_labels(boxes), encoding="utf-8")
    return LabelledImage(image_path, boxes, source_group(image_path))
