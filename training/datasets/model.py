"""The in-memory dataset every importer produces: images with boxes in canonical classes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edge.labels import CLASS_NAMES


@dataclass(frozen=True)
class Box:
    """One labelled box in normalised centre format, class given by canonical name."""

    label: str
    cx: float
    cy: float
    w: float
    h: float


@dataclass
class LabelledImage:
    """One image file, its boxes, and the group it must share a split with."""

    path: Path
    boxes: list[Box]
    group: str
    split: str | None = None


#: Subset names that labelling tools export and that we take as splits; others leave it to the splitter.
SUBSET_SPLITS = {
    "train": "train",
    "training": "train",
    "validation": "valid",
    "valid": "valid",
    "val": "valid",
    "test": "test",
}


def split_of_subset(subset: str | None) -> str | None:
    """The split a tool's subset name (CVAT subset, COCO instances_<subset>.json) stands for, if any."""
    return SUBSET_SPLITS.get((subset or "").lower())


@dataclass
class Problem:
    """A row or file that was skipped or looks wrong, with where it is."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class Dataset:
    """Images plus the problems met while reading them (nothing is dropped silently)."""

    images: list[LabelledImage] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


_ROBOFLOW_VARIANT = re.compile(r"\.rf\.[0-9a-f]{32}$")
_VIDEO_FRAME = re.compile(r"^(?P<video>.+?)[_-](?:frame[_-]?)?\d{3,}$")


def source_group(path: Path) -> str:
    """Name the source an image came from, so its augmented variants or sibling frames stay together.

    Roboflow exports append `.rf.<hash>` to every augmented copy of one photo; frames we extract from
    video are named `<video>_frame_<n>`. Both collapse to one group.
    """
    stem = _ROBOFLOW_VARIANT.sub("", path.stem)
    match = _VIDEO_FRAME.match(stem)
    return match.group("video") if match and "frame" in stem else stem


class ClassMapping:
    """Maps source class names onto canonical names; None means the class is dropped on purpose.

    A class may also carry `keep_top`: the share of each box's height to keep, from its top edge. It
    converts another labelling convention onto ours, e.g. whole-head boxes (hair to chin) onto the top
    of the head that a helmet covers, which is how the shipped model's `head` and `helmet` boxes are drawn.
    """

    def __init__(
        self,
        mapping: dict[str, str | None],
        where: str = "mapping",
        keep_top: dict[str, float] | None = None,
    ) -> None:
        for source, target in mapping.items():
            if target is not None and target not in CLASS_NAMES:
                raise ValueError(
                    f"{where}: class {source!r} maps to {target!r}, "
                    f"which is not one of {', '.join(CLASS_NAMES)}"
                )
        for source, share in (keep_top or {}).items():
            if not 0 < share <= 1:
                raise ValueError(f"{where}: class {source!r}: keep_top must be in (0, 1], got {share}")
        self.mapping = dict(mapping)
        self.keep_top = dict(keep_top or {})
        self.where = where

    @classmethod
    def load(cls, path: Path) -> ClassMapping:
        """Read a YAML mapping file: `source: canonical` (null drops the class) or
        `source: {class: canonical, keep_top: share}`."""
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of source class -> canonical class")
        mapping: dict[str, str | None] = {}
        keep_top: dict[str, float] = {}
        for key, value in data.items():
            source = str(key)
            if isinstance(value, dict):
                unknown = set(value) - {"class", "keep_top"}
                if unknown or "class" not in value:
                    raise ValueError(
                        f"{path}: class {source!r}: expected {{class: NAME, keep_top: SHARE}}, "
                        f"got keys {sorted(map(str, value))}"
                    )
                if "keep_top" in value:
                    share = value["keep_top"]
                    if isinstance(share, bool) or not isinstance(share, (int, float)):
                        raise ValueError(
                            f"{path}: class {source!r}: keep_top must be a number, got {share!r}"
                        )
                    keep_top[source] = float(share)
                value = value["class"]
            mapping[source] = None if value is None else str(value)
        return cls(mapping, where=str(path), keep_top=keep_top)

    @classmethod
    def identity(cls) -> ClassMapping:
        """Map every canonical class onto itself."""
        return cls({name: name for name in CLASS_NAMES}, where="canonical")

    def map(self, source: str) -> tuple[bool, str | None]:
        """Return (known, canonical name or None); unknown classes are reported by the caller."""
        if source in self.mapping:
            return True, self.mapping[source]
        return False, None

    def reshape(self, source: str, box: Box) -> Box:
        """Apply the source class's box convention change (keep_top) to one of its boxes."""
        share = self.keep_top.get(source)
        if share is None or share == 1:
            return box
        top = box.cy - box.h / 2
        h = box.h * share
        return Box(box.label, box.cx, top + h / 2, box.w, h)
