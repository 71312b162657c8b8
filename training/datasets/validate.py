"""A validation report for an imported dataset: what is wrong, what is duplicated, what it contains."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.labels import CLASS_NAMES
from training.datasets.model import Dataset, LabelledImage, Problem

#: A box may overshoot the image edge by this share before it is reported (annotation tools round).
EDGE_TOLERANCE = 1e-3
#: Boxes smaller than this many pixels on a side are reported: too small to learn from at any input size.
MIN_BOX_PX = 2.0


@dataclass(frozen=True)
class _FileCheck:
    digest: str | None
    size: tuple[int, int] | None  # (width, height)
    error: str | None


@dataclass
class ValidationReport:
    """What a dataset holds and what is wrong with it; `problems` lists each issue with file (and line)."""

    images: int = 0
    boxes: int = 0
    images_per_split: dict[str, int] = field(default_factory=dict)
    boxes_per_class: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> class -> boxes
    images_per_class: dict[str, int] = field(default_factory=dict)
    images_without_boxes: int = 0
    image_sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> images, most common first
    duplicates: list[list[str]] = field(default_factory=list)  # sets of byte-identical image files
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was reported."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = asdict(self)
        data["problems"] = [{"where": p.where, "message": p.message} for p in self.problems]
        return data


def _check_file(path: Path) -> _FileCheck:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _FileCheck(None, None, f"cannot read the file ({exc.strerror or exc})")
    if not data:
        return _FileCheck(None, None, "empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return _FileCheck(digest, None, "not a readable image (corrupt or not an image)")
    return _FileCheck(digest, (int(image.shape[1]), int(image.shape[0])), None)


def _check_boxes(img: LabelledImage, size: tuple[int, int] | None, problems: list[Problem]) -> None:
    for i, box in enumerate(img.boxes, 1):
        where = f"{img.path} box {i} ({box.label})"
        if box.label not in CLASS_NAMES:
            problems.append(Problem(where, f"class {box.label!r} is not canonical"))
            continue
        x1, y1 = box.cx - box.w / 2, box.cy - box.h / 2
        x2, y2 = box.cx + box.w / 2, box.cy + box.h / 2
        if min(x1, y1) < -EDGE_TOLERANCE or max(x2, y2) > 1 + EDGE_TOLERANCE or box.w <= 0 or box.h <= 0:
            problems.append(
                Problem(where, f"coordinates out of range: x {x1:.4f}..{x2:.4f}, y {y1:.4f}..{y2:.4f}")
            )
        elif size is not None and min(box.w * size[0], box.h * size[1]) < MIN_BOX_PX:
            problems.append(
                Problem(
                    where, f"box is {box.w * size[0]:.1f}x{box.h * size[1]:.1f} px, below {MIN_BOX_PX:g} px"
                )
            )


def validate(dataset: Dataset, workers: int = 2) -> ValidationReport:
    """Check every image file and box; report problems, duplicates, class counts and image sizes.

    Problems met during import (file:line of bad rows) are carried into the report first.
    """
    report = ValidationReport(images=len(dataset.images), problems=list(dataset.problems))
    with ThreadPoolExecutor(max(1, workers)) as pool:  # decoding releases the GIL
        checks = list(pool.map(_check_file, [img.path for img in dataset.images]))

    by_digest: dict[str, list[LabelledImage]] = defaultdict(list)
    sizes: Counter[str] = Counter()
    per_split: Counter[str] = Counter()
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    images_per_class: Counter[str] = Counter()
    for img, check in zip(dataset.images, checks, strict=True):
        split = img.split or "unsplit"
        per_split[split] += 1
        if check.error:
            report.problems.append(Problem(str(img.path), check.error))
        if check.digest:
            by_digest[check.digest].append(img)
        if check.size:
            sizes[f"{check.size[0]}x{check.size[1]}"] += 1
        _check_boxes(img, check.size, report.problems)
        report.boxes += len(img.boxes)
        if not img.boxes:
            report.images_without_boxes += 1
        per_class[split].update(box.label for box in img.boxes)
        images_per_class.update({box.label for box in img.boxes})

    for copies in by_digest.values():
        if len(copies) < 2:
            continue
        report.duplicates.append([str(c.path) for c in copies])
        splits = sorted({c.split or "unsplit" for c in copies})
        leak = f"; they are in different splits ({', '.join(splits)}): a leak" if len(splits) > 1 else ""
        report.problems.append(
            Problem(str(copies[0].path), f"identical bytes to {len(copies) - 1} other image(s){leak}")
        )
    report.images_per_split = dict(sorted(per_split.items()))
    report.boxes_per_class = {
        split: {name: per_class[split].get(name, 0) for name in CLASS_NAMES} for split in sorted(per_split)
    }
    report.images_per_class = {name: images_per_class.get(name, 0) for name in CLASS_NAMES}
    for name, count in report.images_per_class.items():
        if count == 0 and dataset.images:
            report.problems.append(
                Problem("dataset", f"no boxes of class {name!r}: the model cannot learn it")
            )
    report.image_sizes = dict(sizes.most_common())
    return report
