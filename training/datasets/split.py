"""Splitting by source group, so augmented variants of one photo or frames of one video never leak."""

from __future__ import annotations

import hashlib
from collections import defaultdict

from training.datasets.model import Dataset, LabelledImage, Problem

EVAL_SPLITS = ("valid", "test")


def _group_rank(group: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_by_group(dataset: Dataset, valid: float = 0.1, test: float = 0.0, seed: int = 0) -> Dataset:
    """Assign every image a split by hashing its source group, so each group lands in exactly one split."""
    if not 0 <= valid < 1 or not 0 <= test < 1 or valid + test >= 1:
        raise ValueError(f"split shares must be in [0, 1) and sum below 1; got valid={valid}, test={test}")
    out = Dataset(problems=list(dataset.problems))
    for img in dataset.images:
        rank = _group_rank(img.group, seed)
        split = "test" if rank < test else "valid" if rank < test + valid else "train"
        out.images.append(LabelledImage(img.path, img.boxes, img.group, split))
    return out


def remove_leaks(dataset: Dataset) -> Dataset:
    """Drop training copies of any source group that also appears in an evaluation split (reported)."""
    eval_groups = {img.group for img in dataset.images if img.split in EVAL_SPLITS}
    out = Dataset(problems=list(dataset.problems))
    dropped: dict[str, int] = defaultdict(int)
    for img in dataset.images:
        if img.split not in EVAL_SPLITS and img.group in eval_groups:
            dropped[img.group] += 1
            continue
        out.images.append(img)
    for group, count in sorted(dropped.items()):
        out.problems.append(
            Problem(
                f"group {group}", f"{count} training image(s) also in an evaluation split; dropped from train"
            )
        )
    return out


def assign_missing_splits(dataset: Dataset, valid: float = 0.1, test: float = 0.0, seed: int = 0) -> Dataset:
    """Give images without a split one: their group's existing split if it has one, else by group hash.

    Used when merging new labels (a labelling batch, a COCO or CVAT export) into a dataset that is already
    split: a new frame of a known source follows its siblings instead of leaking into another split.
    """
    known: dict[str, str] = {}
    for img in dataset.images:
        if img.split is not None:
            # An evaluation split wins, so a group seen in both is never trained on (remove_leaks agrees).
            if known.get(img.group) not in EVAL_SPLITS:
                known[img.group] = img.split
    pending = Dataset(images=[img for img in dataset.images if img.split is None])
    resplit = split_by_group(pending, valid, test, seed).images
    hashed = {id(a): b.split for a, b in zip(pending.images, resplit, strict=True)}
    out = Dataset(problems=list(dataset.problems))
    for img in dataset.images:
        split = img.split or known.get(img.group) or hashed[id(img)]
        out.images.append(LabelledImage(img.path, img.boxes, img.group, split))
    return out
