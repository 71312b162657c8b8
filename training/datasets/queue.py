"""Turn the edge's hard-example queue into a labelling batch (CVAT or YOLO), pre-filled with predictions.

The labelled batch comes back through `sitesentry dataset import ... --merge DATA.yaml`, which keeps each
camera-hour in one split (see edge/hard_examples.py for the naming that makes that work).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from edge.hard_examples import QueuedExample, read_queue
from edge.labels import CLASS_NAMES
from training.datasets.cvat import write_cvat
from training.datasets.model import ClassMapping, Dataset, LabelledImage, source_group
from training.datasets.yolo import format_labels, read_labels

log = logging.getLogger(__name__)

FORMATS = ("cvat", "yolo")


def _select(items: list[QueuedExample], reasons: set[str] | None, limit: int | None) -> list[QueuedExample]:
    chosen = [item for item in items if reasons is None or item.reason in reasons]
    # False alarms first: they are rare and teach the most; then newest first.
    chosen.sort(key=lambda item: (not item.false_alarm, -item.captured_at))
    return chosen[:limit] if limit is not None else chosen


def _write_yolo_batch(dataset: Dataset, out: Path) -> None:
    """Write a flat YOLO batch: images/, labels/, classes.txt and a data.yaml without `path`."""
    # Flat images/ + labels/ + classes.txt is the layout Label Studio's YOLO import reads (a split folder such
    # as train/images is read by neither it nor datumaro's `yolo` importer); data.yaml is what datumaro,
    # ultralytics and `sitesentry dataset import` look for. No `path`: the batch is moved to be labelled.
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for img in dataset.images:
        shutil.copyfile(img.path, out / "images" / img.path.name)
        (out / "labels" / f"{img.path.stem}.txt").write_text(format_labels(img.boxes), encoding="utf-8")
    (out / "classes.txt").write_text("\n".join(CLASS_NAMES) + "\n", encoding="utf-8")
    # `unsplit`: `sitesentry dataset import` splits the batch by camera-hour instead of taking `train:`
    # for a split, so new frames can reach validation too (ultralytics ignores the key).
    data = {
        "train": "images",
        "val": "images",
        "nc": len(CLASS_NAMES),
        "names": list(CLASS_NAMES),
        "unsplit": True,
    }
    (out / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


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
    YOLO: images/ + labels/ + classes.txt + data.yaml (see _write_yolo_batch). Both get a manifest.json.

    One function on purpose: the queue is changed (items moved out) only after the whole batch and its
    manifest are written, and that order is easiest to see in one place.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown batch format {fmt!r}; use one of {', '.join(FORMATS)}")
    queue, out = Path(queue), Path(out)
    if not queue.is_dir():
        raise ValueError(f"{queue}: no such queue folder")
    # Written in name order: CVAT matches an <image> to a task frame by name and, when no name matches (say
    # the task's frames are named images/...), by the <image> id, which must then be that frame's number;
    # CVAT numbers a task's frames in name order by default.
    items = sorted(_select(read_queue(queue), reasons, limit), key=lambda item: item.image.name)
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
        _write_yolo_batch(dataset, out)
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
