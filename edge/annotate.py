"""Draw what the pipeline saw onto a frame: boxes, labels, zones and a time stamp, with OpenCV only."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo

import cv2
import numpy as np

from edge.config.models import ZoneConfig
from edge.dataflow import Detections, FrameResult, Rule
from edge.labels import HEAD, HELMET, NO_VEST, PERSON, VEST

XYXY = tuple[float, float, float, float]
BGR = tuple[int, int, int]

VIOLATION_COLOUR: BGR = (0, 0, 255)  # red
COMPLIANT_COLOUR: BGR = (0, 200, 0)  # green
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
ZONE_ALPHA = 0.25
HEAD_SHARE = 0.2  # top share of a person box treated as head/face when blurring
#: Head and helmet boxes cover the top of the head (crown to eyebrows; a helmet's dome), so the face lies
#: below them: the blur reaches this many box heights down from the box's top edge.
FACE_DEPTH = 2.6
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_BLUR_CELLS = 6  # a blurred region keeps at most this many colour cells per side


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


def _label(image: np.ndarray, text: str, x: int, y: int, colour: BGR, scale: float) -> None:
    """Draw text on a filled tag just above (x, y), or just below it when there is no room above."""
    thickness = max(1, round(scale * 1.5))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, round(3 * scale))
    top = y - th - baseline - 2 * pad
    if top < 0:
        top = y
    x = max(0, min(x, image.shape[1] - tw - 2 * pad))
    cv2.rectangle(image, (x, top), (x + tw + 2 * pad, top + th + baseline + 2 * pad), colour, cv2.FILLED)
    cv2.putText(
        image, text, (x + pad, top + pad + th), _FONT, scale, _text_colour(colour), thickness, cv2.LINE_AA
    )


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


def _draw_zones(canvas: np.ndarray, zones: Sequence[ZoneConfig], violated: set[str], scale: float) -> None:
    """Tint each polygon and write its name; everything is clipped to the polygon so nothing else changes."""
    height, width = canvas.shape[:2]
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
        moments = cv2.moments(local)
        if moments["m00"] > 0:
            cx, cy = int(moments["m10"] / moments["m00"]), int(moments["m01"] / moments["m00"])
            name = zone.name or zone.id
            text_scale = scale * 0.8
            (tw, th), _ = cv2.getTextSize(name, _FONT, text_scale, 1)
            _label(tinted, name, cx - tw // 2, cy + th // 2, colour, text_scale)
        roi[...] = cv2.copyTo(tinted, mask, roi.copy())


def _draw_box(image: np.ndarray, box: tuple[int, int, int, int], colour: BGR, thickness: int) -> None:
    x1, y1, x2, y2 = box
    cv2.rectangle(image, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), colour, thickness)


def _draw_ppe(canvas: np.ndarray, detections: Detections, scale: float, include_person: bool) -> None:
    height, width = canvas.shape[:2]
    for box, confidence, name in zip(
        detections.xyxy, detections.confidence, detections.labels(), strict=True
    ):
        if name == PERSON and not include_person:
            continue
        clipped = _clip_box(box, width, height)
        if clipped is None:
            continue
        colour = CLASS_COLOURS.get(name, OTHER_COLOUR)
        thick = max(2, round(2 * scale)) if name == PERSON else max(1, round(scale))
        _draw_box(canvas, clipped, colour, thick)
        _label(canvas, f"{name} {float(confidence):.2f}", clipped[0], clipped[1], colour, scale * 0.6)


def _draw_caption(canvas: np.ndarray, text: str, scale: float) -> None:
    """Camera id and time on a black strip in the top-left corner."""
    thickness = max(1, round(scale * 1.5))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(3, round(6 * scale))
    cv2.rectangle(canvas, (0, 0), (tw + 2 * pad, th + baseline + 2 * pad), (0, 0, 0), cv2.FILLED)
    cv2.putText(canvas, text, (pad, pad + th), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def draw(
    result: FrameResult,
    zones: Sequence[ZoneConfig] = (),
    tz: tzinfo | None = None,
    violations_only_highlight: bool = True,
) -> np.ndarray:
    """Return an annotated copy of the frame: zones, PPE boxes, tracked people (red: violating) and time.

    With `violations_only_highlight`, violating people get thick red boxes and compliant ones thin green
    boxes; without it every person box is drawn equally thick.
    """
    canvas = result.frame.image.copy()
    height, width = canvas.shape[:2]
    scale = _scale(canvas)
    rules_by_track: dict[int, list[str]] = {}
    for violation in result.violations:
        rules_by_track.setdefault(violation.track_id, []).append(
            _violation_text(violation.rule, violation.zone)
        )
    violated_zones = {v.zone for v in result.violations if v.rule is Rule.ZONE_ENTRY and v.zone}

    _draw_zones(canvas, zones, violated_zones, scale)
    _draw_ppe(canvas, result.detections, scale, include_person=False)

    thick = max(2, round(3 * scale))
    thin = max(1, round(1.5 * scale)) if violations_only_highlight else thick
    people: dict[int, XYXY] = {track.track_id: track.xyxy for track in result.tracks}
    for violation in result.violations:  # a violation whose track is missing still gets its box
        people.setdefault(violation.track_id, violation.person_xyxy)
    for track_id, box in people.items():
        clipped = _clip_box(box, width, height)
        if clipped is None:
            continue
        rules = rules_by_track.get(track_id)
        colour = VIOLATION_COLOUR if rules else COMPLIANT_COLOUR
        _draw_box(canvas, clipped, colour, thick if rules else thin)
        text = f"#{track_id}" + (" " + ", ".join(dict.fromkeys(rules)) if rules else "")
        _label(canvas, text, clipped[0], clipped[1], colour, scale * 0.7)

    _draw_caption(
        canvas, f"{result.frame.camera_id}  {format_timestamp(result.frame.captured_at, tz)}", scale
    )
    return canvas


def draw_detections(image: np.ndarray, detections: Detections) -> np.ndarray:
    """Return a copy of an image with every detection boxed and labelled with class and confidence."""
    canvas = image.copy()
    _draw_ppe(canvas, detections, _scale(canvas), include_person=True)
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
        smooth = cv2.resize(small, (bw, bh), interpolation=cv2.INTER_LINEAR)
        sigma = max(1.0, max(bw, bh) / _BLUR_CELLS / 2)
        out[ya:yb, xa:xb] = cv2.GaussianBlur(smooth, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REPLICATE)
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
