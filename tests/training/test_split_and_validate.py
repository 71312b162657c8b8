"""Splitting never lets one source photo or video straddle splits; validation reports what is wrong."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

from training_samples import MAPPING, shared_dataset

from training.datasets.model import ClassMapping, Dataset, LabelledImage, source_group
from training.datasets.split import assign_missing_splits, remove_leaks, split_by_group
from training.datasets.validate import validate
from training.datasets.yolo import read_yolo


def real_file_names() -> list[Path]:
    return sorted((shared_dataset() / "train" / "images").glob("*.jpg"))


def splits_per_group(dataset: Dataset) -> dict[str, set[str | None]]:
    out: dict[str, set[str | None]] = defaultdict(set)
    for img in dataset.images:
        out[img.group].add(img.split)
    return out


def test_augmented_variants_of_one_photo_land_in_one_split() -> None:
    paths = real_file_names()
    dataset = Dataset([LabelledImage(p, [], source_group(p)) for p in paths])
    groups = splits_per_group(split_by_group(dataset, valid=0.2, test=0.1, seed=3))
    assert len(groups) < len(paths)  # the real data does hold several variants per photo
    assert all(len(splits) == 1 for splits in groups.values())
    shares = {
        s: sum(1 for v in groups.values() if v == {s}) / len(groups) for s in ("train", "valid", "test")
    }
    assert 0.15 < shares["valid"] < 0.25 and 0.06 < shares["test"] < 0.14


def test_frames_of_one_video_stay_together_and_the_split_is_repeatable() -> None:
    frames = [
        Path(f"/v/{video}_frame_{n:06d}.jpg") for video in ("gate-cam", "crane_2") for n in range(0, 500, 25)
    ]
    dataset = Dataset([LabelledImage(p, [], source_group(p)) for p in frames])
    assert {img.group for img in dataset.images} == {"gate-cam", "crane_2"}
    first = split_by_group(dataset, valid=0.5, seed=1)
    again = split_by_group(dataset, valid=0.5, seed=1)
    assert [i.split for i in first.images] == [i.split for i in again.images]
    assert all(len(s) == 1 for s in splits_per_group(first).values())


def test_merged_images_follow_the_split_of_their_group() -> None:
    old = [
        LabelledImage(Path(f"/d/cam1-20240501T09_frame_{n:07d}.jpg"), [], "cam1-20240501T09", "valid")
        for n in (1, 2)
    ]
    new = [LabelledImage(Path("/q/cam1-20240501T09_frame_3000000.jpg"), [], "cam1-20240501T09")]
    fresh = [LabelledImage(Path(f"/q/other-{i}.jpg"), [], f"other-{i}") for i in range(50)]
    merged = assign_missing_splits(Dataset(old + new + fresh), valid=0.2, seed=0)
    assert merged.images[2].split == "valid"
    assert {img.split for img in merged.images[3:]} == {"train", "valid"}


def test_leaking_training_copies_are_dropped_and_reported() -> None:
    images = [
        LabelledImage(Path("/a/x.rf.1.jpg"), [], "x", "train"),
        LabelledImage(Path("/a/x.rf.2.jpg"), [], "x", "valid"),
        LabelledImage(Path("/a/y.jpg"), [], "y", "train"),
    ]
    out = remove_leaks(Dataset(images))
    assert [i.path.name for i in out.images] == ["x.rf.2.jpg", "y.jpg"]
    assert any(p.where == "group x" and "dropped from train" in p.message for p in out.problems)


def test_validation_reports_bad_files_duplicates_boxes_and_counts(yolo_sample: Path) -> None:
    root = yolo_sample.parent
    train_images = sorted((root / "train" / "images").glob("*.jpg"))
    (root / "train" / "images" / "empty.jpg").write_bytes(b"")
    (root / "train" / "images" / "notes.jpg").write_text("this is not a picture")
    duplicate = root / "valid" / "images" / "copy-of-first.jpg"
    shutil.copyfile(train_images[0], duplicate)
    shutil.copyfile(
        root / "train" / "labels" / f"{train_images[0].stem}.txt",
        root / "valid" / "labels" / "copy-of-first.txt",
    )
    bad_label = root / "train" / "labels" / f"{train_images[1].stem}.txt"
    rows = bad_label.read_text().splitlines()
    bad_label.write_text("\n".join([*rows, "5 0.98 0.5 0.2 0.2", "5 0.5 0.5 0 0.1"]) + "\n")

    report = validate(read_yolo(yolo_sample, ClassMapping.load(MAPPING)))
    where = {p.where: p.message for p in report.problems}
    assert "empty file" in where[str(root / "train" / "images" / "empty.jpg")]
    assert "not a readable image" in where[str(root / "train" / "images" / "notes.jpg")]
    assert f"{bad_label}:{len(rows) + 2}" in where  # zero width: rejected on read, with its line
    edge = [m for w, m in where.items() if w.startswith(str(train_images[1])) and "out of range" in m]
    assert len(edge) == 1  # the box hanging past the right edge
    dup = [m for m in where.values() if "identical bytes" in m]
    assert len(dup) == 1 and "different splits" in dup[0]
    assert sorted(report.duplicates[0]) == sorted([str(train_images[0]), str(duplicate)])
    assert report.images == 11 and report.images_per_split == {"train": 8, "valid": 3}
    assert report.images_without_boxes == 2
    assert sum(report.image_sizes.values()) == 9  # every readable image
    counted = sum(sum(c.values()) for c in report.boxes_per_class.values())
    assert counted == report.boxes > 0 and report.boxes_per_class["train"]["person"] > 0
    json.dumps(report.to_dict())
