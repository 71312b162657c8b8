"""Import Label Studio exports onto the canonical classes: JSON, JSON-MIN, or its YOLO folder export.

Label Studio stores boxes in percent of the image, names uploaded files `<8 hex>-<original name>` and
refers to them by URL (`/data/upload/3/1a2b3c4d-photo.jpg`, `/data/local-files/?d=site/photo.jpg`,
`s3://...`). Images are looked up by file name in the folder given, with and without that upload prefix.
Bad results are reported as `file: task <id> result <n>` and skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from training.datasets.model import Box, ClassMapping, Dataset, LabelledImage, Problem, source_group
from training.datasets.pixels import BadBox, box_from_xyxy, rotated_bounds
from training.datasets.yolo import IMAGE_SUFFIXES, read_yolo_folder

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def image_file_name(url: str) -> str:
    """Return the file name a Label Studio image reference points to."""
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "d" in query:  # local-files storage: /data/local-files/?d=folder/photo.jpg
        return Path(unquote(query["d"][0])).name
    return Path(unquote(parsed.path)).name


def _image_reference(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    image = data.get("image")
    if isinstance(image, str):
        return image
    for value in data.values():  # the labelling config may call the image field something else
        if isinstance(value, str) and Path(urlparse(value).path).suffix.lower() in IMAGE_SUFFIXES:
            return value
    return None


def _locate(name: str, images_dir: Path) -> Path | None:
    for candidate in (name, _UPLOAD_PREFIX.sub("", name)):
        path = images_dir / candidate
        if path.is_file():
            return path
    return None


def _pick_annotation(task: dict[str, Any], where: str, dataset: Dataset) -> list[Any] | None:
    """Choose the annotation to import: the ground-truth one, else the latest that was not cancelled."""
    annotations = [
        a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")
    ]
    if not annotations:
        return None
    ground_truth = [a for a in annotations if a.get("ground_truth")]
    chosen = (ground_truth or annotations)[-1]
    if len(annotations) > 1:
        dataset.problems.append(
            Problem(where, f"{len(annotations)} annotations; imported annotation {chosen.get('id')} only")
        )
    result = chosen.get("result")
    return result if isinstance(result, list) else []


def _result_box(result: Any, mapping: ClassMapping, where: str, dataset: Dataset) -> Box | None:
    if not isinstance(result, dict):
        dataset.problems.append(Problem(where, "not an object; skipped"))
        return None
    kind = result.get("type", "rectanglelabels")
    value = result.get("value", result)  # JSON-MIN puts the value fields on the result itself
    if kind != "rectanglelabels" or not isinstance(value, dict) or "rectanglelabels" not in value:
        dataset.problems.append(Problem(where, f"{kind} results are not imported (boxes only); skipped"))
        return None
    labels = value.get("rectanglelabels") or []
    if len(labels) != 1:
        dataset.problems.append(Problem(where, f"expected one label per box, got {labels!r}; skipped"))
        return None
    known, label = mapping.map(str(labels[0]))
    if not known:
        dataset.problems.append(Problem(where, f"class {labels[0]!r} is not in the mapping; skipped"))
        return None
    if label is None:
        return None
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        rotation = float(value.get("rotation") or 0)
    except (KeyError, TypeError, ValueError):
        dataset.problems.append(Problem(where, "x, y, width and height must be numbers; skipped"))
        return None
    x1, y1, x2, y2 = x, y, x + w, y + h
    if rotation % 360:
        x1, y1, x2, y2 = rotated_bounds(x1, y1, x2, y2, rotation, (x, y))
        dataset.problems.append(
            Problem(where, f"box rotated {rotation:g} degrees; its upright bounds are used")
        )
    try:
        return box_from_xyxy(label, x1, y1, x2, y2, 100.0, 100.0)  # percent of the image
    except BadBox as exc:
        dataset.problems.append(Problem(where, f"{exc} (percent of the image); skipped"))
        return None


def _read_json(json_path: Path, images_dir: Path, mapping: ClassMapping) -> Dataset:
    try:
        tasks = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{json_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{json_path}: not a Label Studio export (expected a list of tasks)")
    dataset = Dataset()
    for i, task in enumerate(tasks):
        task_id = task.get("id", i) if isinstance(task, dict) else i
        where = f"{json_path}: task {task_id}"
        if not isinstance(task, dict):
            dataset.problems.append(Problem(where, "not an object; skipped"))
            continue
        if "annotations" in task:  # full JSON export
            reference, results = _image_reference(task.get("data")), _pick_annotation(task, where, dataset)
        else:  # JSON-MIN: the image field and one list of boxes per task, named after the labelling control
            reference = _image_reference(task)
            lists = [v for v in task.values() if isinstance(v, list)]
            results = lists[0] if lists else []
        if reference is None:
            dataset.problems.append(Problem(where, "no image reference in the task data; skipped"))
            continue
        if results is None:
            dataset.problems.append(
                Problem(where, "no completed annotation (unlabelled, not negative); skipped")
            )
            continue
        name = image_file_name(reference)
        path = _locate(name, images_dir)
        if path is None:
            dataset.problems.append(Problem(where, f"image {name} not found in {images_dir}; task skipped"))
            continue
        boxes = []
        for j, result in enumerate(results):
            box = _result_box(result, mapping, f"{where} result {j}", dataset)
            if box is not None:
                boxes.append(box)
        group = source_group(Path(_UPLOAD_PREFIX.sub("", name)))  # the upload prefix differs per copy
        dataset.images.append(LabelledImage(path, boxes, group))
    return dataset


def read_labelstudio(
    source: Path, images_dir: Path | None = None, mapping: ClassMapping | None = None
) -> Dataset:
    """Import a Label Studio JSON / JSON-MIN export (images from images_dir) or a YOLO export folder."""
    source = Path(source)
    mapping = mapping or ClassMapping.identity()
    if source.is_dir():
        classes = source / "classes.txt"
        if not classes.is_file():
            raise ValueError(f"{source}: no classes.txt (is it a Label Studio YOLO export?)")
        names = [line.strip() for line in classes.read_text(encoding="utf-8").splitlines() if line.strip()]
        return read_yolo_folder(source / "images", source / "labels", names, mapping)
    if images_dir is None:
        images_dir = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
    return _read_json(source, Path(images_dir), mapping)
