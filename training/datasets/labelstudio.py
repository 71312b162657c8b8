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
    return _reference_path(url).name


def _reference_path(url: str) -> Path:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    if "d" in query:  # local-files storage: /data/local-files/?d=folder/photo.jpg
        return Path(unquote(query["d"][0]))
    return Path(unquote(parsed.path))


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


def _locate(reference: Path, images_dir: Path) -> Path | None:
    # Local-files references keep their folders (`?d=site-a/cam1/0001.jpg`, relative to the storage
    # root), and two folders may hold the same file name: try the longest relative path first.
    parts = [p for p in reference.parts if p not in ("/", "..")]
    candidates = [Path(*parts[i:]) for i in range(len(parts) - 1)]
    candidates += [Path(reference.name), Path(_UPLOAD_PREFIX.sub("", reference.name))]
    for candidate in candidates:
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
    value = result.get("value", result)  # JSON-MIN puts the value fields on the result itself
    # JSON-MIN drops `type`; the `<control>labels` key (rectanglelabels, polygonlabels, ...) still names it
    label_keys = [k for k in value if str(k).endswith("labels")] if isinstance(value, dict) else []
    kind = result.get("type") or (label_keys[0] if label_keys else "unlabelled")
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
        box = box_from_xyxy(label, x1, y1, x2, y2, 100.0, 100.0)  # percent of the image
        return mapping.reshape(str(labels[0]), box)
    except BadBox as exc:
        dataset.problems.append(Problem(where, f"{exc} (percent of the image); skipped"))
        return None


def _min_results(task: dict[str, Any], where: str, seen: set[Any], dataset: Dataset) -> list[Any] | None:
    """Results of a JSON-MIN record: one list per labelling control, one record per annotation.

    Label Studio writes a record for every annotation of a task, newest first, so only the first record
    of a task is kept; an unlabelled task gets a record with `annotation_id` null and no results.
    """
    task_id = task.get("id")
    if task_id is not None and task_id in seen:
        dataset.problems.append(
            Problem(where, f"another annotation (id {task.get('annotation_id')}) of this task; skipped")
        )
        return None
    seen.add(task_id)
    if "annotation_id" in task and task["annotation_id"] is None:
        dataset.problems.append(Problem(where, "no completed annotation (unlabelled, not negative); skipped"))
        return None
    # every control's list of regions (boxes and any other shapes, so those are reported, not lost)
    return [r for v in task.values() if isinstance(v, list) for r in v if isinstance(r, dict)]


def _read_json(json_path: Path, images_dir: Path, mapping: ClassMapping) -> Dataset:
    try:
        tasks = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{json_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(tasks, list):
        raise ValueError(f"{json_path}: not a Label Studio export (expected a list of tasks)")
    dataset = Dataset()
    seen: set[Any] = set()
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            dataset.problems.append(Problem(f"{json_path}: tasks[{i}]", "not an object; skipped"))
            continue
        task_id = task.get("id", i)
        where = f"{json_path}: task {task_id}"
        if "annotations" in task:  # full JSON export
            reference, results = _image_reference(task.get("data")), _pick_annotation(task, where, dataset)
        else:
            reference, results = _image_reference(task), _min_results(task, where, seen, dataset)
        if reference is None:
            dataset.problems.append(Problem(where, "no image reference in the task data; skipped"))
            continue
        if results is None:
            if "annotations" in task:  # JSON-MIN records were reported by _min_results
                dataset.problems.append(
                    Problem(where, "no completed annotation (unlabelled, not negative); skipped")
                )
            continue
        referenced = _reference_path(reference)
        path = _locate(referenced, images_dir)
        if path is None:
            dataset.problems.append(
                Problem(where, f"image {referenced.name} not found in {images_dir}; task skipped")
            )
            continue
        boxes = []
        for j, result in enumerate(results):
            box = _result_box(result, mapping, f"{where} result {j}", dataset)
            if box is not None:
                boxes.append(box)
        # the upload prefix differs per copy of one photo
        group = source_group(Path(_UPLOAD_PREFIX.sub("", referenced.name)))
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
        # The plain "YOLO" export holds labels only (and an empty images/): the images come from --images.
        images = Path(images_dir) if images_dir is not None else source / "images"
        if images_dir is None and not (
            images.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in images.iterdir())
        ):
            raise ValueError(
                f"{source}: no images in images/ (the plain YOLO export holds labels only); "
                "pass the image folder with --images"
            )
        return read_yolo_folder(images, source / "labels", names, mapping)
    if images_dir is None:
        images_dir = source.parent / "images" if (source.parent / "images").is_dir() else source.parent
    return _read_json(source, Path(images_dir), mapping)
