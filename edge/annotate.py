"""Draw what the pipeline saw onto a frame: boxes, labels, zones and a time stamp, with OpenCV only."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo

import cv2
import numpy as np

from edge.config.models import ZoneConfig
from edge.dataflow import Detections, FrameResult, Rule, SafetyEvent
from edge.label_layout import LabelLayout, Rect, overlaps, spots_around
from edge.labels import HEAD, HELMET, NO_VEST, PERSON, VEST

XYXY = tuple[float, float, float, float]
BGR = tuple[int, int, int]

VIOLATION_COLOUR: BGR = (0, 0, 255)  # red
COMPLIANT_COLOUR: BGR = (0, 200, 0)  # green
MUTED_COLOUR: BGR = (150, 150, 150)  # people an event's snapshot is not about
ZONE_COLOUR: BGR = (0, 215, 255)  # amber
# PPE colours stay clear of pure red and green so a person's state reads at a glance.
CLASS_COLOURS: dict[str, BGR] = {
    PERSON: (255, 160, 0),
    HELMET: (200, 200, 0),
    VEST: (160, 255, 120),
    HEAD: (0, 140, 255),
    NO_VEST: (255, 0, 255),
}
OTHER_COLOUR: BGR = (200, 200, 200)
#: What an event's own person is labelled with, in words a safety manager reads at a glance.
RULE_TEXT: dict[Rule, str] = {
    Rule.NO_HELMET: "NO HELMET",
    Rule.NO_VEST: "NO VEST",
    Rule.ZONE_ENTRY: "IN ZONE",
}
ZONE_ALPHA = 0.25
HEAD_SHARE = 0.2  # top share of a person box treated as head/face when blurring
#: Head and helmet boxes cover the top of the head (crown to eyebrows; a helmet's dome), so the face lies
#: below them: the blur reaches this many box heights down from the box's top edge.
FACE_DEPTH = 2.6
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLUR_CELLS = 6  # a blurred region keeps at most this many colour cells per side
_BLUR_MID = 8  # pixels per cell at which the cells are smoothed before being stretched to the box
MIN_TEXT_SCALE = 0.35  # smaller Hershey text is no longer readable on a 480p snapshot


@dataclass(frozen=True, slots=True)
class Focus:
    """The person an event is about: drawn bold with its rule and confidence, everyone else muted."""

    track_id: int
    rule: Rule
    zone: str | None
    confidence: float
    xyxy: XYXY  # pixels

    @classmethod
    def of_event(cls, event: SafetyEvent, result: FrameResult) -> Focus:
        """The event's person on this frame: its track's box, else the (normalised) box the event carries."""
        width, height = result.frame.size
        box: XYXY | None = next((t.xyxy for t in result.tracks if t.track_id == event.track_id), None)
        confidence = event.peak_confidence
        for violation in result.violations:
            if violation.key == (event.track_id, event.rule, event.zone):
                confidence = violation.confidence
                box = box or violation.person_xyxy
        if box is None and event.boxes:
            x1, y1, x2, y2 = event.boxes[0]
            box = (x1 * width, y1 * height, x2 * width, y2 * height)
        return cls(event.track_id, event.rule, event.zone, confidence, box or (0.0, 0.0, 0.0, 0.0))


@dataclass(frozen=True, slots=True)
class PlacedLabel:
    """A text tag as drawn: what it says, where (pixels, x2/y2 exclusive) and its background colour."""

    text: str
    rect: Rect
    colour: BGR
    kind: str  # caption, focus, zone, person or ppe


@dataclass(frozen=True, slots=True)
class Annotation:
    """An annotated frame and the tags on it (no two overlap); `dropped` tags found no free spot."""

    image: np.ndarray
    labels: tuple[PlacedLabel, ...]
    dropped: int


@dataclass(frozen=True, slots=True)
class _Tag:
    """A tag waiting for the layout: text, style, and the spots it would like, best first."""

    text: str
    colour: BGR
    text_scale: float
    kind: str
    spots: list[tuple[int, int]] | None  # None: around `box`
    box: Rect | None = None
    prefer_inside: np.ndarray | None = None  # zone polygon (pixels) the tag should lie within
    avoid_focus: bool = True


def _scale(image: np.ndarray) -> float:
    """Text scale that stays legible from 480p to 4K."""
    return max(0.4, min(int(image.shape[0]), int(image.shape[1])) / 1000.0)


def _clip_box(box: Iterable[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None
    xa, ya = max(0, math.floor(x1)), max(0, math.floor(y1))
    xb, yb = min(width, math.ceil(x2)), min(height, math.ceil(y2))
    if xb - xa < 1 or yb - ya < 1:
        return None
    return xa, ya, xb, yb


def _text_colour(background: BGR) -> BGR:
    b, g, r = background
    return (0, 0, 0) if 0.114 * b + 0.587 * g + 0.299 * r > 140 else (255, 255, 255)


def _tag_metrics(text: str, scale: float) -> tuple[int, int, int, int, int]:
    """Return (tag width, tag height, text height, padding, stroke thickness) of a tag."""
    thickness = max(1, round(scale * 1.5))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, round(3 * scale))
    return tw + 2 * pad, th + baseline + 2 * pad, th, pad, thickness


def _draw_tag(image: np.ndarray, label: PlacedLabel, scale: float) -> None:
    _, _, th, pad, thickness = _tag_metrics(label.text, scale)
    x1, y1, x2, y2 = label.rect
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), label.colour, cv2.FILLED)
    origin = (x1 + pad, y1 + pad + th)
    ink = _text_colour(label.colour)
    cv2.putText(image, label.text, origin, _FONT, scale, ink, thickness, cv2.LINE_AA)


def _leader(image: np.ndarray, rect: Rect, box: Rect, colour: BGR) -> None:
    """Join a tag pushed away from its box to the box with a thin line, so it is clear whose tag it is."""
    near = (box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2)
    if overlaps(rect, near):
        return
    tx, ty = min(max(box[0], rect[0]), rect[2] - 1), min(max(box[1], rect[1]), rect[3] - 1)
    bx, by = min(max(tx, box[0]), box[2] - 1), min(max(ty, box[1]), box[3] - 1)
    cv2.line(image, (tx, ty), (bx, by), colour, 1, cv2.LINE_AA)


def format_timestamp(timestamp: float, tz: tzinfo | None = None) -> str:
    """Render a wall-clock time as `2024-05-01 09:30:05+08:00` in the site time zone (local zone if None)."""
    moment = (
        datetime.fromtimestamp(timestamp, tz)
        if tz is not None
        else datetime.fromtimestamp(timestamp).astimezone()
    )
    return moment.isoformat(sep=" ", timespec="seconds")


def _violation_text(rule: Rule, zone: str | None) -> str:
    return f"{rule.value}:{zone}" if zone else rule.value


def _draw_zones(
    canvas: np.ndarray, zones: Sequence[ZoneConfig], violated: set[str], scale: float
) -> list[_Tag]:
    """Tint each polygon (clipped to it, so nothing else changes); return the tags naming the zones."""
    height, width = canvas.shape[:2]
    tags = []
    for zone in zones:
        points = np.array(
            [[round(x * (width - 1)), round(y * (height - 1))] for x, y in zone.polygon], dtype=np.int32
        )
        x0, y0, bw, bh = cv2.boundingRect(points)
        if bw <= 0 or bh <= 0:
            continue
        roi = canvas[y0 : y0 + bh, x0 : x0 + bw]
        local = points - np.array([x0, y0], dtype=np.int32)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillPoly(mask, [local], 255)
        colour = VIOLATION_COLOUR if zone.id in violated else ZONE_COLOUR
        layer = np.empty_like(roi)
        layer[:] = colour
        tinted = cv2.addWeighted(roi, 1.0 - ZONE_ALPHA, layer, ZONE_ALPHA, 0.0)
        # The outline is drawn twice as thick and clipped, so the visible half lies inside the zone.
        cv2.polylines(tinted, [local], True, colour, max(2, round(4 * scale)), cv2.LINE_AA)
        roi[...] = cv2.copyTo(tinted, mask, roi.copy())
        moments = cv2.moments(points)
        if moments["m00"] > 0:
            cx, cy = int(moments["m10"] / moments["m00"]), int(moments["m01"] / moments["m00"])
            name = zone.name or zone.id
            text_scale = max(MIN_TEXT_SCALE, scale * 0.8)
            w, h, *_ = _tag_metrics(name, text_scale)
            tags.append(_Tag(name, colour, text_scale, "zone", [(cx - w // 2, cy - h // 2)], None, points))
    return tags


def _draw_box(image: np.ndarray, box: tuple[int, int, int, int], colour: BGR, thickness: int) -> None:
    x1, y1, x2, y2 = box
    cv2.rectangle(image, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, thickness)


def _owns(box: Rect, others: Sequence[Rect], x: float, y: float) -> bool:
    """Whether a point belongs to `box`: inside it and inside no smaller box of another person."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    return (
        box[0] <= x <= box[2]
        and box[1] <= y <= box[3]
        and not any(
            o[0] <= x <= o[2] and o[1] <= y <= o[3] and (o[2] - o[0]) * (o[3] - o[1]) < area for o in others
        )
    )


def _draw_ppe(
    canvas: np.ndarray,
    detections: Detections,
    scale: float,
    include_person: bool,
    within: Rect | None = None,
    others: Sequence[Rect] = (),
) -> list[_Tag]:
    """Box each PPE detection (only those of the person `within`, if given); return their tags."""
    height, width = canvas.shape[:2]
    tags = []
    for box, confidence, name in zip(
        detections.xyxy, detections.confidence, detections.labels(), strict=True
    ):
        if name == PERSON and not include_person:
            continue
        clipped = _clip_box(box, width, height)
        if clipped is None:
            continue
        if within is not None:
            if not _owns(within, others, (clipped[0] + clipped[2]) / 2, (clipped[1] + clipped[3]) / 2):
                continue
        colour = CLASS_COLOURS.get(name, OTHER_COLOUR)
        thick = max(2, round(2 * scale)) if name == PERSON else max(1, round(scale))
        _draw_box(canvas, clipped, colour, thick)
        text = f"{name} {float(confidence):.2f}"
        tags.append(_Tag(text, colour, max(MIN_TEXT_SCALE, scale * 0.6), "ppe", None, clipped))
    return tags


def _caption(canvas: np.ndarray, text: str, scale: float) -> PlacedLabel:
    """Camera id and time on a black strip in the top-left corner."""
    w, h, *_ = _tag_metrics(text, scale)
    return PlacedLabel(text, (0, 0, min(w, canvas.shape[1]), min(h, canvas.shape[0])), (0, 0, 0), "caption")


def _inside(polygon: np.ndarray) -> Callable[[Rect], bool]:
    """Return a test of whether a rect lies within a polygon (all four corners inside or on it)."""
    contour = polygon.reshape(-1, 1, 2).astype(np.float32)

    def test(rect: Rect) -> bool:
        corners = ((rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3]))
        return all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in corners)

    return test


def _lay_out(canvas: np.ndarray, caption: PlacedLabel, tags: list[_Tag], focus: Rect | None) -> Annotation:
    """Place the tags in order (most important first) so none overlaps another, then draw them."""
    height, width = canvas.shape[:2]
    layout = LabelLayout(width, height)
    layout.reserve(caption.rect)
    placed: list[tuple[PlacedLabel, float, Rect | None]] = []
    dropped = 0
    for tag in tags:
        w, h, *_ = _tag_metrics(tag.text, tag.text_scale)
        spots = tag.spots if tag.spots is not None else spots_around(tag.box or (0, 0, 0, 0), w, h)
        avoid = [focus] if focus is not None and tag.avoid_focus else []
        prefer = None if tag.prefer_inside is None else _inside(tag.prefer_inside)
        rect = layout.place((w, h), spots, avoid, prefer)
        if rect is None:
            dropped += 1
            continue
        placed.append((PlacedLabel(tag.text, rect, tag.colour, tag.kind), tag.text_scale, tag.box))
    for label, _, box in placed:  # lines first, so no line crosses a tag's text
        if box is not None:
            _leader(canvas, label.rect, box, label.colour)
    for label, text_scale, _ in placed:
        _draw_tag(canvas, label, text_scale)
    return Annotation(canvas, (caption, *(p[0] for p in placed)), dropped)


def _plain_tags(
    canvas: np.ndarray, result: FrameResult, zones: Sequence[ZoneConfig], thin: int
) -> list[_Tag]:
    """Draw every person (red: violating, green: compliant), zone and PPE box; return their tags in order."""
    height, width = canvas.shape[:2]
    scale = _scale(canvas)
    rules_by_track: dict[int, list[str]] = {}
    for violation in result.violations:
        rules_by_track.setdefault(violation.track_id, []).append(
            _violation_text(violation.rule, violation.zone)
        )
    violated = {v.zone for v in result.violations if v.rule is Rule.ZONE_ENTRY and v.zone}
    tags = _draw_zones(canvas, zones, violated, scale)
    ppe_tags = _draw_ppe(canvas, result.detections, scale, include_person=False)
    violating: list[_Tag] = []
    compliant: list[_Tag] = []
    for track_id, box in _people(result).items():
        clipped = _clip_box(box, width, height)
        if clipped is None:
            continue
        rules = rules_by_track.get(track_id)
        colour = VIOLATION_COLOUR if rules else COMPLIANT_COLOUR
        _draw_box(canvas, clipped, colour, max(2, round(3 * scale)) if rules else thin)
        text = f"#{track_id}" + (" " + ", ".join(dict.fromkeys(rules)) if rules else "")
        (violating if rules else compliant).append(
            _Tag(text, colour, max(MIN_TEXT_SCALE, scale * 0.7), "person", None, clipped)
        )
    return tags + violating + compliant + ppe_tags


def _focus_tags(
    canvas: np.ndarray, result: FrameResult, zones: Sequence[ZoneConfig], focus: Focus
) -> tuple[list[_Tag], Rect | None]:
    """Draw the focus person bold red with its own PPE, everyone else thin grey; return tags and its box."""
    height, width = canvas.shape[:2]
    scale = _scale(canvas)
    violated = {focus.zone} if focus.rule is Rule.ZONE_ENTRY and focus.zone else set()
    zone_tags = _draw_zones(canvas, zones, violated, scale)
    others = []
    for track_id, person in _people(result).items():
        clipped = _clip_box(person, width, height)
        if clipped is not None and track_id != focus.track_id:
            _draw_box(canvas, clipped, MUTED_COLOUR, 1)
            others.append(clipped)
    box = _clip_box(focus.xyxy, width, height)
    if box is None:
        return zone_tags, None
    ppe_tags = _draw_ppe(canvas, result.detections, scale, include_person=False, within=box, others=others)
    _draw_box(canvas, box, VIOLATION_COLOUR, max(3, round(4 * scale)))
    words = RULE_TEXT.get(focus.rule, focus.rule.value)
    if focus.zone:
        words += " " + next((z.name or z.id for z in zones if z.id == focus.zone), focus.zone)
    own = _Tag(f"{words} {focus.confidence:.2f}", VIOLATION_COLOUR, max(0.5, scale), "focus", None, box)
    # Its own tag and PPE tags sit on the person; other tags (zone names) keep clear of it.
    return [
        replace(own, avoid_focus=False),
        *zone_tags,
        *(replace(t, avoid_focus=False) for t in ppe_tags),
    ], box


def _people(result: FrameResult) -> dict[int, XYXY]:
    """Every tracked person's box, plus those of violations whose track is missing on this frame."""
    people: dict[int, XYXY] = {track.track_id: track.xyxy for track in result.tracks}
    for violation in result.violations:
        people.setdefault(violation.track_id, violation.person_xyxy)
    return people


def annotate(
    result: FrameResult,
    zones: Sequence[ZoneConfig] = (),
    tz: tzinfo | None = None,
    violations_only_highlight: bool = True,
    focus: Focus | None = None,
) -> Annotation:
    """Annotate a copy of the frame: zones, PPE boxes, tracked people (red: violating) and time.

    With `focus` (an event's snapshot) only that person is highlighted, bold red with the event's rule and
    confidence, with its own PPE boxes; everyone else is a thin grey box. Without it, violating people get
    thick red boxes and compliant ones thin green boxes (equally thick without
    `violations_only_highlight`). Tags are laid out so that none overlaps another or the caption.
    """
    canvas = result.frame.image.copy()
    scale = _scale(canvas)
    if focus is None:
        thin = max(1, round(1.5 * scale)) if violations_only_highlight else max(2, round(3 * scale))
        tags, focus_box = _plain_tags(canvas, result, zones, thin), None
    else:
        tags, focus_box = _focus_tags(canvas, result, zones, focus)
    caption = _caption(
        canvas, f"{result.frame.camera_id}  {format_timestamp(result.frame.captured_at, tz)}", scale
    )
    annotation = _lay_out(canvas, caption, tags, focus_box)
    _draw_tag(canvas, caption, scale)
    return annotation


def draw(
    result: FrameResult,
    zones: Sequence[ZoneConfig] = (),
    tz: tzinfo | None = None,
    violations_only_highlight: bool = True,
    focus: Focus | None = None,
) -> np.ndarray:
    """Return an annotated copy of the frame (see `annotate`)."""
    return annotate(result, zones, tz, violations_only_highlight, focus).image


def draw_view(image: np.ndarray, camera_id: str, timestamp: float, tz: tzinfo | None = None) -> np.ndarray:
    """Return a copy of a frame with only the camera id and time on it: the camera's view as a person
    drawing zones on it needs it, without boxes or zone outlines in the way."""
    canvas = image.copy()
    scale = _scale(canvas)
    _draw_tag(canvas, _caption(canvas, f"{camera_id}  {format_timestamp(timestamp, tz)}", scale), scale)
    return canvas


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """Return a copy of an image with every detection boxed and labelled with class and confidence."""
    canvas = image.copy()
    tags = _draw_ppe(canvas, detections, _scale(canvas), include_person=True)
    layout = LabelLayout(canvas.shape[1], canvas.shape[0])
    for tag in tags:
        w, h, *_ = _tag_metrics(tag.text, tag.text_scale)
        rect = layout.place((w, h), spots_around(tag.box or (0, 0, 0, 0), w, h))
        if rect is not None:
            _draw_tag(canvas, PlacedLabel(tag.text, rect, tag.colour, tag.kind), tag.text_scale)
    return canvas


def blur_regions(image: np.ndarray, boxes_xyxy: Iterable[Iterable[float]]) -> np.ndarray:
    """Return a copy with each box reduced to a few colour cells and smoothed: faces become unrecognisable."""
    out = image.copy()
    height, width = out.shape[:2]
    for box in boxes_xyxy:
        clipped = _clip_box(box, width, height)
        if clipped is None:
            continue
        xa, ya, xb, yb = clipped
        bw, bh = xb - xa, yb - ya
        roi = out[ya:yb, xa:xb]
        # Downsampling throws the detail away (irreversibly); upsampling and a blur hide the cell edges.
        small = cv2.resize(roi, (min(bw, _BLUR_CELLS), min(bh, _BLUR_CELLS)), interpolation=cv2.INTER_AREA)
        # The blur runs at a few pixels per cell and is then stretched: the same look as blurring at full
        # size (blur is on by default), at a fixed cost instead of one growing with the box (~40x on 1080p).
        mid_w, mid_h = min(bw, _BLUR_CELLS * _BLUR_MID), min(bh, _BLUR_CELLS * _BLUR_MID)
        smooth = cv2.resize(small, (mid_w, mid_h), interpolation=cv2.INTER_LINEAR)
        sigma = max(0.8, max(mid_w, mid_h) / _BLUR_CELLS / 2)
        smooth = cv2.GaussianBlur(smooth, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
        out[ya:yb, xa:xb] = cv2.resize(smooth, (bw, bh), interpolation=cv2.INTER_LINEAR)
    return out


def head_boxes(result: FrameResult, pad: float = 0.2) -> list[XYXY]:
    """Return the regions to blur: each head or helmet box with the face below it, padded, plus the top
    20% of every person box."""
    boxes: list[XYXY] = []
    for label in (HEAD, HELMET):
        for x1, y1, x2, y2 in result.detections.of(label).xyxy.tolist():
            dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
            boxes.append((x1 - dx, y1 - dy, x2 + dx, y1 + FACE_DEPTH * (y2 - y1)))
    # Person boxes from the detector as well as tracks: an untracked person's face needs hiding too.
    people = [track.xyxy for track in result.tracks]
    people += [tuple(b) for b in result.detections.of(PERSON).xyxy.tolist()]
    for x1, y1, x2, y2 in people:
        boxes.append((float(x1), float(y1), float(x2), float(y1 + HEAD_SHARE * (y2 - y1))))
    return boxes
