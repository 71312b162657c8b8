"""Turn the edge's hard-example queue into a labelling batch (CVAT or YOLO), pre-filled with predictions.

The labelled batch comes back through `sitesentry dataset import ... --merge DATA.yaml`, which keeps each
camera-hour in one split (see edge/hard_examples.py for the naming that makes that work).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from edge.hard_examples import QueuedExample, read_queue
from edge.labels import CLASS_NAMES
from training.datasets.cvat import write_cvat
from training.datasets.model import ClassMapping, Dataset, LabelledImage, source_group
from training.datasets.yolo import read_labels, write_yolo

log = logging.getLogger(__name__)

FORMATS = ("cvat", "yolo")


def _select(items: list[QueuedExample], reasons: set[str] | None, limit: int | None) -> list[QueuedExample]:
    chosen = [item for item in items if reasons is None or item.reason in reasons]
    # False alarms first: they are rare and teach the most; then newest first.
    chosen.sort(key=lambda item: (not item.false_alarm, -item.captured_at))
    return chosen[:limit] if limit is not None else chosen


def export_queue(
    queue: Path,
    out: Path,
    fmt: str = "cvat",
    reasons: set[str] | None = None,
    limit: int | None = None,
    move: bool = True,
) -> Dataset:
    """Write a labelling batch from the queue; with `move`, exported items leave the queue.

    CVAT: images/ + annotations.xml ("CVAT for images 1.1", upload it to a task created from images/).
    YOLO: a canonical YOLO folder (data.yaml, train/images, train/labels). Both get a manifest.json.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown batch format {fmt!r}; use one of {', '.join(FORMATS)}")
    queue, out = Path(queue), Path(out)
    if not queue.is_dir():
        raise ValueError(f"{queue}: no such queue folder")
    items = _select(read_queue(queue), reasons, limit)
    if not items:
        raise ValueError(
            f"{queue}: no queued frames" + (f" with reason {sorted(reasons)}" if reasons else "")
        )
    dataset = Dataset()
    names = list(CLASS_NAMES)
    for item in items:
        boxes = read_labels(item.labels, names, ClassMapping.identity(), dataset)
        dataset.images.append(LabelledImage(item.image, boxes, source_group(item.image)))
    if fmt == "cvat":
        images_dir = out / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
        for img in dataset.images:
            shutil.copyfile(img.path, images_dir / img.path.name)
        sizes = {item.image: (item.width, item.height) for item in items}
        write_cvat(
            dataset, out / "annotations.xml", sizes, {img.path: img.path.name for img in dataset.images}
        )
    else:
        write_yolo(dataset, out, link_images=False)
    manifest = [
        {
            "image": item.image.name,
            "camera_id": item.camera_id,
            "captured_at": item.captured_at,
            "reason": item.reason,
            "event_id": item.event_id,
            "false_alarm": item.false_alarm,
        }
        for item in items
    ]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    if move:
        done = queue / "exported" / out.name
        done.mkdir(parents=True, exist_ok=True)
        for item in items:
            for path in (item.sidecar, item.image, item.labels):  # sidecar first: the item leaves at once
                if path.exists():
                    shutil.move(str(path), done / path.name)
    for problem in dataset.problems:
        log.warning("%s", problem)
    log.info("exported %d queued frame(s) to %s (%s)", len(items), out, fmt)
    return dataset
