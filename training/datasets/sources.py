"""Recognise what a labelling tool exported (YOLO, COCO, CVAT, Label Studio) and read it as one Dataset."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from training.datasets.coco import read_coco
from training.datasets.cvat import read_cvat
from training.datasets.labelstudio import read_labelstudio
from training.datasets.model import ClassMapping, Dataset
from training.datasets.yolo import read_yolo

FORMATS = ("auto", "yolo", "coco", "cvat", "labelstudio")


def unpack(archive: Path, dest: Path) -> Path:
    """Extract a zip export into dest (refusing members that would land outside it); return dest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise ValueError(f"{archive}: member {member!r} would be written outside {dest}")
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise ValueError(f"{archive}: not a readable zip file") from None
    return dest


def _json_kind(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, list):
        return "labelstudio"
    raise ValueError(f"{path}: JSON is neither COCO (images + annotations) nor a Label Studio task list")


def locate(source: Path) -> tuple[str, Path]:
    """Detect an export's format (file or unpacked folder); return (format, the file or folder to read)."""
    source = Path(source)
    if source.is_file():
        suffix = source.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return "yolo", source
        if suffix == ".xml":
            return "cvat", source
        if suffix == ".json":
            return _json_kind(source), source
        raise ValueError(
            f"{source}: unknown export file type {suffix!r} (expected data.yaml, .xml, .json or .zip)"
        )
    if not source.is_dir():
        raise ValueError(f"{source}: no such file or folder")
    for name, kind in (("data.yaml", "yolo"), ("data.yml", "yolo"), ("annotations.xml", "cvat")):
        if (source / name).is_file():
            return kind, source / name
    if (source / "classes.txt").is_file() and (source / "labels").is_dir():
        return "labelstudio", source
    candidates = sorted(source.glob("annotations/*.json")) + sorted(source.glob("*.json"))
    if len(candidates) == 1:
        return _json_kind(candidates[0]), candidates[0]
    # datumaro's CVAT writer names the XML after the subset (default.xml) instead of annotations.xml
    xml_files = [p for p in sorted(source.glob("*.xml")) if b"<annotations" in p.read_bytes()[:4096]]
    if not candidates and len(xml_files) == 1:
        return "cvat", xml_files[0]
    raise ValueError(
        f"{source}: cannot tell the export format (looked for data.yaml, annotations.xml or one CVAT .xml, "
        f"classes.txt + labels/, one COCO or Label Studio JSON; found {len(candidates)} JSON files): "
        "pass the file itself"
    )


def read_source(
    source: Path, fmt: str = "auto", mapping: ClassMapping | None = None, images_dir: Path | None = None
) -> Dataset:
    """Read one export in the given (or detected) format, mapping its classes onto the canonical ones."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    detected, path = locate(source)
    fmt = detected if fmt == "auto" else fmt
    if fmt == "yolo":
        return read_yolo(path if path.is_file() else path / "data.yaml", mapping)
    if fmt == "coco":
        return read_coco(path, images_dir, mapping)
    if fmt == "cvat":
        return read_cvat(path, images_dir, mapping)
    return read_labelstudio(path, images_dir, mapping)
