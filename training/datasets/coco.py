"""Import COCO detection JSON (as CVAT, Roboflow and Label Studio write it) onto the canonical classes.

A bad annotation is reported with the file and its place in the JSON (`annotations[12] (id 57)`, since a
JSON export is often one line) and skipped; the rest of the file is kept.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from training.datasets.model import (
    Box,
    ClassMapping,
    Dataset,
    LabelledImage,
    Problem,
    source_group,
    split_of_subset,
)
from training.datasets.pixels import BadBox, box_from_xyxy

#: Where an export keeps the images, relative to the JSON file: Roboflow beside it, CVAT in ../images.
_IMAGE_DIRS = (".", "images", "../images")


def _image_roots(json_path: Path) -> list[Path]:
    roots = [json_path.parent / d for d in _IMAGE_DIRS]
    # CVAT's "COCO 1.0" (datumaro, merge_images=False) writes annotations/instances_<subset>.json and puts
    # that subset's images in images/<subset>/ (`images/default/` for a task), not in images/ itself.
    if json_path.stem.startswith("instances_"):
        subset = json_path.stem.removeprefix("instances_")
        roots += [json_path.parent / "images" / subset, json_path.parent / "../images" / subset]
    return roots


def _find_image(file_name: str, json_path: Path, images_dir: Path | None) -> Path | None:
    roots = [images_dir] if images_dir is not None else _image_roots(json_path)
    for root in roots:
        for candidate in (root / file_name, root / Path(file_name).name):
            if candidate.is_file():
                return candidate
    return None


def _number_list(value: Any, length: int) -> list[float] | None:
    if not isinstance(value, list) or len(value) != length:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return None
    return [float(v) for v in value]


def read_coco(
    json_path: Path, images_dir: Path | None = None, mapping: ClassMapping | None = None
) -> Dataset:
    """Read a COCO JSON file; images are looked up beside it, in images/ or ../images unless given.

    One function on purpose: one pass per COCO section (categories, images, annotations, then the files),
    each using the tables the one before built and reporting into the same problem list.
    """
    json_path = Path(json_path)
    mapping = mapping or ClassMapping.identity()
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{json_path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{json_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{json_path}: not a COCO file (expected an object with `images` and `annotations`)")

    dataset = Dataset()
    categories: dict[Any, str] = {}
    for i, cat in enumerate(data.get("categories") or []):
        if isinstance(cat, dict) and "id" in cat and "name" in cat:
            categories[cat["id"]] = str(cat["name"])
        else:
            dataset.problems.append(
                Problem(f"{json_path}: categories[{i}]", "needs `id` and `name`; skipped")
            )

    images: dict[Any, tuple[str, float, float]] = {}
    first_entry: dict[str, int] = {}
    repeated: dict[Any, str] = {}  # image id -> where, for a file listed twice
    for i, img in enumerate(data["images"]):
        where = f"{json_path}: images[{i}]"
        if not isinstance(img, dict) or "id" not in img or not isinstance(img.get("file_name"), str):
            dataset.problems.append(Problem(where, "needs `id` and `file_name`; image skipped"))
            continue
        width, height = img.get("width"), img.get("height")
        if not (
            isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0
        ):
            dataset.problems.append(Problem(where, f"width/height missing or not positive: {width}x{height}"))
            continue
        if img["file_name"] in first_entry:
            # Label Studio's COCO export lists an image once per annotation (newest first): keep the first
            # entry, so one file never gets two conflicting label sets.
            repeated[img["id"]] = f"{where}: {img['file_name']} is listed again (first as images"
            repeated[img["id"]] += f"[{first_entry[img['file_name']]}])"
            continue
        first_entry[img["file_name"]] = i
        images[img["id"]] = (img["file_name"], float(width), float(height))

    boxes: dict[Any, list[Box]] = defaultdict(list)
    repeated_boxes: dict[Any, int] = defaultdict(int)
    for i, ann in enumerate(data.get("annotations") or []):
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        where = f"{json_path}: annotations[{i}]" + (f" (id {ann_id})" if ann_id is not None else "")
        if not isinstance(ann, dict):
            dataset.problems.append(Problem(where, "not an object; skipped"))
            continue
        if ann.get("image_id") in repeated:
            repeated_boxes[ann["image_id"]] += 1  # reported once, with the repeated image entry
            continue
        if ann.get("image_id") not in images:
            dataset.problems.append(
                Problem(where, f"image_id {ann.get('image_id')!r} is not in `images`; skipped")
            )
            continue
        if ann.get("iscrowd"):
            dataset.problems.append(Problem(where, "crowd region (iscrowd=1) is not a box label; skipped"))
            continue
        source = categories.get(ann.get("category_id"))
        if source is None:
            dataset.problems.append(
                Problem(where, f"category_id {ann.get('category_id')!r} is unknown; skipped")
            )
            continue
        known, label = mapping.map(source)
        if not known:
            dataset.problems.append(Problem(where, f"class {source!r} is not in the mapping; skipped"))
            continue
        if label is None:
            continue  # dropped on purpose by the mapping file
        bbox = _number_list(ann.get("bbox"), 4)
        if bbox is None:
            dataset.problems.append(
                Problem(where, f"bbox must be [x, y, width, height], got {ann.get('bbox')!r}")
            )
            continue
        _, width, height = images[ann["image_id"]]
        x, y, w, h = bbox
        try:
            box = box_from_xyxy(label, x, y, x + w, y + h, width, height)
            boxes[ann["image_id"]].append(mapping.reshape(source, box))
        except BadBox as exc:
            dataset.problems.append(Problem(where, f"{exc}; skipped"))

    for image_id, where in repeated.items():
        count = repeated_boxes.get(image_id, 0)
        dataset.problems.append(Problem(where, f"this entry and its {count} annotation(s) skipped"))
    split = _subset_split(json_path)
    for image_id, (file_name, _, _) in images.items():
        path = _find_image(file_name, json_path, images_dir)
        if path is None:
            count = len(boxes.get(image_id, []))
            dataset.problems.append(
                Problem(
                    f"{json_path}: image {file_name}",
                    f"file not found; image and its {count} box(es) skipped",
                )
            )
            continue
        dataset.images.append(LabelledImage(path, boxes.get(image_id, []), source_group(path), split))
    return dataset


def _subset_split(json_path: Path) -> str | None:
    """The split a COCO file's name or folder names: CVAT's instances_val.json, Roboflow's valid/*.json."""
    if json_path.stem.startswith("instances_"):
        return split_of_subset(json_path.stem.removeprefix("instances_"))
    return split_of_subset(json_path.parent.name)
