"""Helpers building tiny real samples for the training tests from ../shared at test time (never committed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from training.datasets.model import ClassMapping

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
CSS = SHARED / "datasets" / "construction-site-safety"
VIDEO = SHARED / "videos" / "hardhat-workers.mp4"
MAPPING = REPO / "training" / "mappings" / "construction-site-safety.yaml"


def shared_dataset() -> Path:
    """The real construction-site-safety dataset, or a skip saying it is absent."""
    if not (CSS / "data.yaml").is_file():
        pytest.skip(f"real dataset not available at {CSS} (../shared is not checked out here)")
    return CSS


def source_names() -> list[str]:
    """The dataset's own class names, in id order."""
    return list(yaml.safe_load((shared_dataset() / "data.yaml").read_text())["names"])


def rich_images(split: str, n: int, min_classes: int = 3, skip: int = 0) -> list[Path]:
    """The first n images (sorted, after `skip`) whose labels hold at least min_classes canonical classes."""
    names = source_names()
    mapping = ClassMapping.load(MAPPING)
    chosen: list[Path] = []
    seen_groups: set[str] = set()
    for image in sorted((shared_dataset() / split / "images").glob("*.jpg")):
        label = shared_dataset() / split / "labels" / f"{image.stem}.txt"
        rows = [r.split() for r in label.read_text().splitlines() if r.strip()] if label.exists() else []
        classes = {mapping.map(names[int(r[0])])[1] for r in rows} - {None}
        group = image.stem.split(".rf.")[0]
        if len(classes) >= min_classes and group not in seen_groups:
            seen_groups.add(group)  # one variant per photo, so the sample spans different scenes
            if skip:
                skip -= 1
                continue
            chosen.append(image)
            if len(chosen) == n:
                break
    return chosen


def copy_yolo_sample(dest: Path, train: list[Path], valid: list[Path], link: bool = True) -> Path:
    """Lay out a YOLO dataset in the source classes from chosen shared images; return its data.yaml."""
    for split, images in (("train", train), ("valid", valid)):
        (dest / split / "images").mkdir(parents=True, exist_ok=True)
        (dest / split / "labels").mkdir(parents=True, exist_ok=True)
        for image in images:
            target = dest / split / "images" / image.name
            if link:
                os.symlink(image, target)
            else:
                shutil.copyfile(image, target)
            label = image.parent.parent / "labels" / f"{image.stem}.txt"
            shutil.copyfile(label, dest / split / "labels" / label.name)
    data = {"path": ".", "train": "train/images", "val": "valid/images", "names": source_names()}
    (dest / "data.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return dest / "data.yaml"
