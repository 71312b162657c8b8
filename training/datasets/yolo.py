"""Read and write YOLO-format datasets (a data.yaml beside images/ and labels/ folders)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from edge.labels import CLASS_NAMES
from training.datasets.model import Box, ClassMapping, Dataset, LabelledImage, Problem, source_group

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_SPLIT_KEYS = {"train": "train", "val": "valid", "valid": "valid", "test": "test"}


def label_path(image: Path) -> Path:
    """Find an image's label file the way ultralytics does: swap the last `images` folder for `labels`."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _read_names(data: dict, where: str) -> list[str]:
    names = data.get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list):
        return [str(n) for n in names]
    raise ValueError(f"{where}: `names` must be a list or an index->name mapping")


def read_labels(label_file: Path, names: list[str], mapping: ClassMapping, dataset: Dataset) -> list[Box]:
    """Parse one YOLO label file, reporting bad rows (file:line) and skipping only those rows."""
    boxes: list[Box] = []
    if not label_file.exists():
        return boxes
    for lineno, line in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{label_file}:{lineno}"
        fields = line.split()
        if len(fields) != 5:
            kind = "polygon rows are not supported" if len(fields) > 5 else "expected `class cx cy w h`"
            dataset.problems.append(Problem(where, f"{kind}; row skipped"))
            continue
        try:
            cls_id = int(fields[0])
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            dataset.problems.append(Problem(where, f"not numbers: {line.strip()!r}; row skipped"))
            continue
        if not 0 <= cls_id < len(names):
            dataset.problems.append(
                Problem(where, f"class id {cls_id} outside 0..{len(names) - 1}; row skipped")
            )
            continue
        if not (0 <= cx <= 1 and 0 <= cy <= 1 and 0 < w <= 1 and 0 < h <= 1):
            dataset.problems.append(Problem(where, "coordinates out of range [0, 1]; row skipped"))
            continue
        known, label = mapping.map(names[cls_id])
        if not known:
            dataset.problems.append(
                Problem(where, f"class {names[cls_id]!r} is not in the mapping; row skipped")
            )
            continue
        if label is not None:
            boxes.append(mapping.reshape(names[cls_id], Box(label, cx, cy, w, h)))
    return boxes


def read_yolo(data_yaml: Path, mapping: ClassMapping | None = None) -> Dataset:
    """Import a YOLO dataset described by data.yaml, mapping its classes onto the canonical ones."""
    data_yaml = Path(data_yaml)
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{data_yaml}: not a YOLO data.yaml (expected a mapping)")
    names = _read_names(data, str(data_yaml))
    mapping = mapping or ClassMapping.identity()
    root = (data_yaml.parent / str(data.get("path", "."))).resolve()
    unsplit = data.get("unsplit") is True  # a labelling batch: its `train:` key is not a split decision
    dataset = Dataset()
    read: set[Path] = set()
    for key, split in _SPLIT_KEYS.items():
        if key not in data or data[key] is None:
            continue
        folder = root / str(data[key])
        if folder.resolve() in read:
            continue  # `val: train/images` (no validation split yet): the images are read once, as train
        read.add(folder.resolve())
        if not folder.is_dir():
            dataset.problems.append(Problem(f"{data_yaml}:{key}", f"folder {folder} does not exist"))
            continue
        stems = set()
        for image in sorted(folder.iterdir()):
            if image.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            stems.add(image.stem)
            boxes = read_labels(label_path(image), names, mapping, dataset)
            image_split = None if unsplit else split
            dataset.images.append(LabelledImage(image, boxes, source_group(image), image_split))
        labels_dir = label_path(folder / "x.jpg").parent
        if labels_dir != folder and labels_dir.is_dir():
            for label in sorted(labels_dir.glob("*.txt")):
                if label.stem not in stems:
                    dataset.problems.append(Problem(str(label), "label file has no image beside it; skipped"))
    return dataset


def split_folders(data_yaml: Path) -> dict[str, Path]:
    """Each split's image folder as data.yaml names it (resolved), e.g. {'train': ..., 'valid': ...}.

    `read_yolo` reads a folder named by two splits once (as the first); this says which splits share it.
    """
    data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{data_yaml}: not a YOLO data.yaml (expected a mapping)")
    root = (Path(data_yaml).parent / str(data.get("path", "."))).resolve()
    return {
        split: (root / str(data[key])).resolve()
        for key, split in _SPLIT_KEYS.items()
        if data.get(key) is not None
    }


def read_yolo_folder(
    images_dir: Path, labels_dir: Path, names: list[str], mapping: ClassMapping | None = None
) -> Dataset:
    """Import a flat images/ + labels/ pair with the class names given (Label Studio's YOLO export)."""
    mapping = mapping or ClassMapping.identity()
    dataset = Dataset()
    stems = set()
    for image in sorted(Path(images_dir).iterdir()):
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stems.add(image.stem)
        boxes = read_labels(Path(labels_dir) / f"{image.stem}.txt", names, mapping, dataset)
        dataset.images.append(LabelledImage(image, boxes, source_group(image)))
    for label in sorted(Path(labels_dir).glob("*.txt")):
        if label.stem not in stems:
            dataset.problems.append(Problem(str(label), "label file has no image beside it; skipped"))
    return dataset


def format_labels(boxes: list[Box]) -> str:
    """Render boxes as the text of a YOLO label file (canonical class ids)."""
    rows = [f"{CLASS_NAMES.index(b.label)} {b.cx:.6f} {b.cy:.6f} {b.w:.6f} {b.h:.6f}" for b in boxes]
    return "\n".join(rows) + ("\n" if rows else "")


def write_yolo(dataset: Dataset, out_dir: Path, link_images: bool = True) -> Path:
    """Write a canonical-class YOLO dataset (images linked, not copied, by default); return its data.yaml."""
    out_dir = Path(out_dir)
    splits = sorted({img.split or "train" for img in dataset.images})
    used: set[str] = set()
    for img in dataset.images:
        split = img.split or "train"
        name = img.path.name
        if name in used:  # two sources may share a file name; keep both
            name = f"{img.group}_{len(used)}{img.path.suffix}"
        used.add(name)
        image_dst = out_dir / split / "images" / name
        label_dst = out_dir / split / "labels" / Path(name).with_suffix(".txt")
        image_dst.parent.mkdir(parents=True, exist_ok=True)
        label_dst.parent.mkdir(parents=True, exist_ok=True)
        if image_dst.exists() or image_dst.is_symlink():
            image_dst.unlink()
        if link_images:
            os.symlink(img.path.resolve(), image_dst)
        else:
            image_dst.write_bytes(img.path.read_bytes())
        label_dst.write_text(format_labels(img.boxes), encoding="utf-8")
    data = {"path": str(out_dir.resolve()), "names": list(CLASS_NAMES), "nc": len(CLASS_NAMES)}
    for split in splits:
        data["val" if split == "valid" else split] = f"{split}/images"
    if "val" not in data and "train" in data:
        data["val"] = data["train"]
    data_yaml = out_dir / "data.yaml"
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return data_yaml
