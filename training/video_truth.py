"""Ground truth for labelled video: who is where, in which zone, wearing what, over time.

One YAML file per video (format and labelling recipe: docs/video-eval.md). It names the video by file name
and sha256, so labels are never scored against another cut of the footage; it carries the zones drawn for
the evaluation (the camera's own ZoneConfig schema) and, per person, spans of time in which the person's
zone and PPE are constant. Each span holds keyframe boxes in pixels, linearly interpolated between
keyframes, so a predicted track can be matched to a labelled person at any analysed frame.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.config.loader import format_location
from edge.config.models import ZoneConfig

#: What the labeller saw of a PPE item: worn, missing, or unknown (too small, occluded, turned away).
ItemState = Literal["worn", "missing", "unknown"]
PixelBox = tuple[float, float, float, float]
#: Largest truth file read; a labelled hour of video with dozens of people stays well below it.
MAX_TRUTH_BYTES = 8 * 1024 * 1024
#: Boxes may reach this share of the frame beyond its edges (a person cut by the frame edge, labelled whole).
EDGE_SLACK = 0.1


class TruthError(ValueError):
    """A truth file that cannot be used; the message is one line: 'file: line N: path: problem'."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class Keyframe(_Strict):
    """A person's box at one moment of the video."""

    t: float = Field(ge=0, description="Media time in seconds (frame index / fps).")
    box: PixelBox = Field(description="[x1, y1, x2, y2] in pixels of the video frame.")

    @field_validator("box")
    @classmethod
    def _ordered(cls, value: PixelBox) -> PixelBox:
        x1, y1, x2, y2 = value
        if not (x2 > x1 and y2 > y1):
            raise ValueError("needs x1 < x2 and y1 < y2")
        return value


class Span(_Strict):
    """A stretch of time in which one person's zone and PPE states do not change."""

    start_s: float = Field(ge=0, description="First moment of the span, seconds.")
    end_s: float = Field(description="Last moment of the span, seconds (inclusive).")
    zone: str | None = Field(None, description="Id of the truth zone the person's feet are in; null: none.")
    helmet: ItemState = Field(description="Hard hat: worn, missing or unknown.")
    vest: ItemState = Field(description="High-visibility vest: worn, missing or unknown.")
    boxes: list[Keyframe] = Field(
        min_length=1, description="Keyframe boxes within the span, in time order; interpolated between."
    )

    @model_validator(mode="after")
    def _times(self) -> Span:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s {self.end_s:g} must be after start_s {self.start_s:g}")
        times = [k.t for k in self.boxes]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ValueError("boxes: keyframe times must increase")
        if times[0] < self.start_s - 1e-6 or times[-1] > self.end_s + 1e-6:
            raise ValueError(f"boxes: keyframe times must lie within {self.start_s:g}..{self.end_s:g} s")
        return self

    def covers(self, t: float) -> bool:
        """True when the span includes media time t."""
        return self.start_s - 1e-6 <= t <= self.end_s + 1e-6

    def box_at(self, t: float) -> PixelBox:
        """The person's box at time t: linear between keyframes, held before the first and after the last."""
        frames = self.boxes
        if t <= frames[0].t:
            return frames[0].box
        for a, b in zip(frames, frames[1:], strict=False):
            if t <= b.t:
                w = (t - a.t) / (b.t - a.t)
                return tuple(pa + w * (pb - pa) for pa, pb in zip(a.box, b.box, strict=True))  # type: ignore[return-value]
        return frames[-1].box


class Ignored(_Strict):
    """A stretch of video left out of the evaluation (a whip pan, a cut to a close-up of hands)."""

    start_s: float = Field(ge=0, description="Start, seconds.")
    end_s: float = Field(description="End, seconds (inclusive).")
    reason: str = Field(min_length=1, description="Why no person can be labelled here.")

    @model_validator(mode="after")
    def _times(self) -> Ignored:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s {self.end_s:g} must be after start_s {self.start_s:g}")
        return self


class Person(_Strict):
    """One labelled person and the spans in which they are visible."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = Field(description="Unique id in the file.")
    note: str | None = Field(None, description="Free text: who this is, how they were judged.")
    spans: list[Span] = Field(min_length=1, description="Visible spans in time order, not overlapping.")

    @model_validator(mode="after")
    def _ordered(self) -> Person:
        for a, b in zip(self.spans, self.spans[1:], strict=False):
            if b.start_s < a.end_s - 1e-6:
                raise ValueError(f"spans overlap or are out of order at {b.start_s:g} s")
        return self

    def span_at(self, t: float) -> Span | None:
        """The span covering time t (the later one where two touch), or None when the person is not seen."""
        found = None
        for span in self.spans:
            if span.covers(t):
                found = span
        return found

    def intervals(self, keep: Callable[[Span], bool], gap_s: float) -> list[tuple[float, float]]:
        """Merge the spans `keep` accepts into intervals; spans at most gap_s apart join one interval."""
        out: list[tuple[float, float]] = []
        for span in self.spans:
            if not keep(span):
                continue
            if out and span.start_s - out[-1][1] <= gap_s:
                out[-1] = (out[-1][0], span.end_s)
            else:
                out.append((span.start_s, span.end_s))
        return out


class VideoTruth(_Strict):
    """The labels of one video file: its identity, the zones drawn on it, and every person in it."""

    video: str = Field(description="The video's file name (informative; the sha256 decides).")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 of the video file, lower-case hex: labels are refused for any other file."
    )
    fps: float = Field(gt=0, le=240, description="The video's frame rate; media time = frame index / fps.")
    size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] = Field(
        description="[width, height] in pixels; boxes are in these pixels."
    )
    duration_s: float = Field(gt=0, description="Length of the labelled video, seconds.")
    zones: list[ZoneConfig] = Field(
        default_factory=list, description="Zones drawn for the evaluation (the camera zone schema)."
    )
    persons: list[Person] = Field(default_factory=list, description="Every person labelled in the video.")
    ignore: list[Ignored] = Field(
        default_factory=list,
        description="Stretches not scored: no frame, event or labelled violation in them counts.",
    )
    recipe: str | None = Field(None, description="How the labels were made and checked.")

    @model_validator(mode="after")
    def _consistent(self) -> VideoTruth:
        stretches = sorted((r.start_s, r.end_s) for r in self.ignore)
        if any(b[0] < a[1] for a, b in zip(stretches, stretches[1:], strict=False)):
            raise ValueError("ignore: stretches overlap")
        zone_ids = [z.id for z in self.zones]
        if len(set(zone_ids)) != len(zone_ids):
            raise ValueError("zones: a zone id is used twice")
        ids: set[str] = set()
        width, height = self.size
        for p, person in enumerate(self.persons):
            if person.id in ids:
                raise ValueError(f"persons[{p}].id: {person.id!r} is used twice")
            ids.add(person.id)
            for s, span in enumerate(person.spans):
                where = f"persons[{p}].spans[{s}]"
                if span.zone is not None and span.zone not in zone_ids:
                    raise ValueError(f"{where}.zone: {span.zone!r} is not one of the zones {zone_ids}")
                if span.end_s > self.duration_s + 1.0 / self.fps:
                    raise ValueError(f"{where}.end_s: {span.end_s:g} is past the video's end")
                for k, key in enumerate(span.boxes):
                    x1, y1, x2, y2 = key.box
                    if (
                        min(x1, x2) < -EDGE_SLACK * width
                        or max(x1, x2) > (1 + EDGE_SLACK) * width
                        or (min(y1, y2) < -EDGE_SLACK * height or max(y1, y2) > (1 + EDGE_SLACK) * height)
                    ):
                        raise ValueError(f"{where}.boxes[{k}].box: outside the {width}x{height} frame")
        return self

    def ignored(self, t: float) -> bool:
        """True when time t lies in a stretch left out of the evaluation."""
        return any(r.start_s - 1e-6 <= t <= r.end_s + 1e-6 for r in self.ignore)

    def scored_s(self, until: float) -> float:
        """Seconds of video up to `until` that are scored (not ignored)."""
        left = sum(max(0.0, min(r.end_s, until) - r.start_s) for r in self.ignore)
        return max(0.0, until - left)

    def in_wider_view(self, scale: float) -> VideoTruth:
        """These labels for the video shrunk by `scale` onto the middle of a frame of its own size (a
        wider view of the same scene, workers `scale` times smaller: `wider_view`), boxes and zones moved."""
        if not 0 < scale <= 1:
            raise ValueError(f"view scale {scale:g}: must be above 0 and at most 1")
        width, height = self.size
        ox, oy = (width - width * scale) / 2, (height - height * scale) / 2

        def box(b: PixelBox) -> PixelBox:
            return (b[0] * scale + ox, b[1] * scale + oy, b[2] * scale + ox, b[3] * scale + oy)

        zones = [
            z.model_copy(
                update={"polygon": [(x * scale + ox / width, y * scale + oy / height) for x, y in z.polygon]}
            )
            for z in self.zones
        ]
        persons = [
            person.model_copy(
                update={
                    "spans": [
                        span.model_copy(
                            update={"boxes": [k.model_copy(update={"box": box(k.box)}) for k in span.boxes]}
                        )
                        for span in person.spans
                    ]
                }
            )
            for person in self.persons
        ]
        return self.model_copy(update={"zones": zones, "persons": persons})

    def visible_at(self, t: float) -> list[tuple[Person, Span, PixelBox]]:
        """Every labelled person seen at time t, with their span and box."""
        out = []
        for person in self.persons:
            span = person.span_at(t)
            if span is not None:
                out.append((person, span, span.box_at(t)))
        return out


@dataclass(frozen=True)
class TruthCheck:
    """What was compared between a truth file and a video, for the report."""

    sha256: str
    fps: float
    size: tuple[int, int]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, lower-case hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_video(truth: VideoTruth, video: Path, fps: float, size: tuple[int, int]) -> TruthCheck:
    """Refuse a video that is not the labelled one (sha256), or whose frame rate or size differ."""
    digest = file_sha256(video)
    if digest != truth.sha256:
        raise TruthError(
            f"{video}: sha256 {digest[:12]}... differs from the truth file's {truth.sha256[:12]}... "
            f"(labels for {truth.video!r}); these labels are for another file"
        )
    if abs(fps - truth.fps) > 0.01:
        raise TruthError(f"{video}: {fps:g} fps, but the truth file says {truth.fps:g}")
    if tuple(size) != tuple(truth.size):
        raise TruthError(f"{video}: {size[0]}x{size[1]} pixels, but the truth file says {truth.size}")
    return TruthCheck(digest, fps, size)


def _lines(node: yaml.Node, path: tuple[int | str, ...], out: dict[tuple[int | str, ...], int]) -> None:
    """Record the line of every path in a composed YAML document."""
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, (*path, str(key.value)), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, (*path, i), out)


def _where(loc: tuple[int | str, ...], lines: dict[tuple[int | str, ...], int]) -> str:
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return f"line {line}: {format_location(loc)}"
    return format_location(loc)


_NESTED_PATH = re.compile(r"^(persons\[\d+\]\S*|zones): ")


def parse_truth(text: str, source: str = "<truth>") -> VideoTruth:
    """Validate truth YAML text; raise TruthError naming the line and field of the first problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise TruthError(f"{source}: {where}not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise TruthError(f"{source}: expected a mapping with video, sha256, fps, size, duration_s, persons")
    lines: dict[tuple[int | str, ...], int] = {}
    if root is not None:
        _lines(root, (), lines)
    try:
        return VideoTruth.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        message = str(err["msg"]).removeprefix("Value error, ")
        loc = tuple(err["loc"])
        nested = _NESTED_PATH.match(message)  # a whole-file check names its own, deeper path
        if nested and not loc:
            path = nested.group(1)
            loc = tuple(int(p) if p.isdigit() else p for p in re.split(r"[.\[\]]+", path) if p)
            message = message[nested.end() :]
        more = len(exc.errors()) - 1
        extra = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        raise TruthError(f"{source}: {_where(loc, lines)}: {message}{extra}") from None


def load_truth(path: Path) -> VideoTruth:
    """Read and validate a truth YAML file (format: docs/video-eval.md)."""
    path = Path(path)
    if not path.is_file():
        raise TruthError(f"{path}: no such truth file")
    if path.stat().st_size > MAX_TRUTH_BYTES:
        raise TruthError(f"{path}: larger than {MAX_TRUTH_BYTES:,} bytes; not a truth file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TruthError(f"{path}: not UTF-8 text") from None
    return parse_truth(text, str(path))


def wider_view(image: np.ndarray, scale: float, fill: int = 114) -> np.ndarray:
    """The frame shrunk by `scale` onto the middle of a grey frame of its own size: the same scene as a wider
    camera view would show it, every worker `scale` times smaller (`sitesentry eval --view-scale`)."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
    canvas = np.full_like(image, fill)
    x = round((width - width * scale) / 2)
    y = round((height - height * scale) / 2)
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas
