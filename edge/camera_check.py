"""`sitesentry camera check`: how one camera's workers look to the detector at each input size or slicing,
what to configure (`cameras[].detect`), and a preview of what is judged. A site installer runs it once per
camera; the benchmark (`sitesentry bench --resolution`) measures the same figures on reference videos."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config.models import INPUT_STRIDE, CameraConfig, DetectConfig, SiteConfig, TileGrid, ZoneConfig
from edge.dataflow import Detections
from edge.detections.base import Detector
from edge.detections.resolution import DetectPlan, resolve_plan
from edge.detections.tiling import detect_tiled
from edge.frames.sources import FrameSource, SourceError, open_source
from edge.labels import PERSON
from edge.violations.zones import anchor_point

log = logging.getLogger(__name__)

#: The recommendation: the cheapest option that finds at least this share of the persons, and of the
#: persons large enough to judge PPE, that the best option finds. Past it, docs/benchmarks/resolution.json
#: shows a larger input or more slices buying a few persons for two to four times the cost.
RECALL_SHARE = 0.9
#: Seconds between two sampled frames of a live source (a file is sampled evenly over its length).
LIVE_SAMPLE_INTERVAL_S = 1.0
#: Alternatives measured besides the camera's own setting: fixed input sizes and one slicing.
ALTERNATIVE_INPUTS = (416, 640)
ALTERNATIVE_TILES = TileGrid(rows=2, cols=2, overlap=0.2)

JUDGED_COLOUR = (0, 200, 0)  # green
UNJUDGED_COLOUR = (0, 140, 255)  # orange
ANCHOR_COLOUR = (255, 0, 255)  # magenta
ZONE_COLOUR = (0, 215, 255)  # amber
_FONT = cv2.FONT_HERSHEY_SIMPLEX


class CheckError(ValueError):
    """A camera check that cannot run (unknown camera, no frames); the message is one line."""


@dataclass(frozen=True)
class OptionResult:
    """One detection option measured on the sampled frames."""

    label: str
    setting: DetectConfig
    plan: DetectPlan
    ms_per_frame: float  # median wall time of detection (letterbox, inference, decode, merge) per frame
    persons: int
    frames: int
    heights_px: tuple[float, ...]  # each person's height at the model input (pixels)
    min_person_px: int

    @property
    def persons_per_frame(self) -> float:
        """Mean persons found per sampled frame."""
        return self.persons / self.frames if self.frames else 0.0

    @property
    def too_small(self) -> int:
        """Persons shorter than rules.min_person_px at the model input: too small to judge PPE on."""
        return sum(1 for h in self.heights_px if h < self.min_person_px)

    @property
    def judged_per_frame(self) -> float:
        """Mean persons per frame large enough at the model input to judge PPE."""
        return (self.persons - self.too_small) / self.frames if self.frames else 0.0

    def height_percentiles(self) -> dict[str, float | None]:
        """Person height at the model input: 10th, 50th and 90th percentile (None without persons)."""
        if not self.heights_px:
            return {"p10": None, "p50": None, "p90": None}
        values = np.percentile(np.asarray(self.heights_px), [10, 50, 90])
        return {k: round(float(v), 1) for k, v in zip(("p10", "p50", "p90"), values, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "option": self.label,
            "input": self.plan.describe(),
            "passes": self.plan.passes,
            "ms_per_frame_p50": round(self.ms_per_frame, 1),
            "persons_per_frame": round(self.persons_per_frame, 2),
            "judged_per_frame": round(self.judged_per_frame, 2),
            "too_small": self.too_small,
            "too_small_share": round(self.too_small / self.persons, 3) if self.persons else None,
            "person_height_at_input_px": self.height_percentiles(),
        }


@dataclass
class CheckReport:
    """What `camera check` found for one camera."""

    camera: str
    source: str
    frame: tuple[int, int]
    frames: int
    fps: float
    current: OptionResult
    options: list[OptionResult]
    recommended: OptionResult
    why: str
    preview: Path | None = None
    notes: list[str] = field(default_factory=list)

    def snippet(self) -> str:
        """The YAML to paste under this camera for the recommended setting."""
        return detect_snippet(self.camera, self.recommended.setting)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report."""
        return {
            "camera": self.camera,
            "source": self.source,
            "frame": list(self.frame),
            "frames_sampled": self.frames,
            "current": self.current.label,
            "recommended": self.recommended.label,
            "why": self.why,
            "snippet": self.snippet(),
            "options": [o.to_dict() for o in self.options],
            "preview": str(self.preview) if self.preview else None,
            "notes": self.notes,
        }


def detect_snippet(camera_id: str, setting: DetectConfig) -> str:
    """YAML for a camera's `detect` section, to paste into the site config."""
    tiling = setting.tiling
    tiling_text = (
        tiling
        if isinstance(tiling, str)
        else f"{{rows: {tiling.rows}, cols: {tiling.cols}, overlap: {tiling.overlap:g}}}"
    )
    return f"  - id: {camera_id}\n    detect:\n      input: {setting.input}\n      tiling: {tiling_text}"


def sample_frames(camera: CameraConfig, count: int, timeout_s: float = 60.0) -> list[np.ndarray]:
    """Read `count` frames from the camera's source through the edge's own readers: a file evenly over its
    length, a live source one frame every LIVE_SAMPLE_INTERVAL_S; SourceError when it cannot be opened."""
    source = open_source(camera.source, realtime=False, loop=False)
    try:
        frames = (
            _sample_live(source, count, timeout_s) if source.live else _sample_file(source, camera, count)
        )
    finally:
        source.close()
    if not frames:
        raise CheckError(f"camera {camera.id}: {source.describe()} gave no frame")
    return frames


def _sample_file(source: FrameSource, camera: CameraConfig, count: int) -> list[np.ndarray]:
    probe = cv2.VideoCapture(camera.source)
    total = int(probe.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    probe.release()
    step = max(1, total // count) if total > 0 else 1
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < count and source.grab():
        if index % step == 0:
            image = source.retrieve()
            if image is not None:
                frames.append(image)
        index += 1
    return frames


def _sample_live(source: FrameSource, count: int, timeout_s: float) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    deadline = time.monotonic() + timeout_s
    next_at = 0.0
    while len(frames) < count and time.monotonic() < deadline:
        image = source.read()
        if image is None:
            break
        if time.monotonic() >= next_at:
            frames.append(image)
            next_at = time.monotonic() + LIVE_SAMPLE_INTERVAL_S
    return frames


def candidate_settings(current: DetectConfig, frame: tuple[int, int]) -> list[tuple[str, DetectConfig]]:
    """The camera's own setting first, then the alternatives worth comparing on frames of this size:
    416 and 640 px, the frame's own size, and 2x2 slices at the model's size."""
    native = -(-max(frame) // INPUT_STRIDE) * INPUT_STRIDE  # the frame unscaled (the input is capped to it)
    options = [("current", current)]
    for size in ALTERNATIVE_INPUTS:
        options.append((f"input {size}", DetectConfig(input=size, tiling="off")))
    options.append(("frame size", DetectConfig(input=native, tiling="off")))
    options.append(("2x2 tiles", DetectConfig(input="auto", tiling=ALTERNATIVE_TILES)))
    return options


def plan_for(detector: Detector, frame: tuple[int, int], setting: DetectConfig) -> DetectPlan:
    """Resolve a setting for frames of this size on this detector, as the app does."""
    return resolve_plan(
        frame,
        setting,
        imgsz=detector.info.imgsz,
        stride=detector.stride,
        dynamic=detector.dynamic_input,
    )


def detect_with(detector: Detector, image: np.ndarray, plan: DetectPlan, iou: float) -> Detections:
    """Detect one frame as a camera with this plan does (full frame, or full frame plus slices)."""
    if plan.tiles is not None:
        return detect_tiled(detector, image, plan.tiles, iou, plan.long_side)
    return detector.detect_batch([image], plan.long_side)[0]


def measure_options(
    detector: Detector,
    images: Sequence[np.ndarray],
    settings: Sequence[tuple[str, DetectConfig]],
    iou: float,
    min_person_px: int,
) -> list[tuple[OptionResult, list[Detections]]]:
    """Detect every image with each option (settings that resolve to the same input are measured once);
    time them and measure the persons they find.

    Options take turns frame by frame, so a busy machine slows them all alike and their costs compare.
    """
    frame = (int(images[0].shape[1]), int(images[0].shape[0]))
    chosen: dict[str, tuple[str, DetectConfig, DetectPlan]] = {}
    for label, setting in settings:
        plan = plan_for(detector, frame, setting)
        chosen.setdefault(plan.describe(), (label, setting, plan))
    options = list(chosen.values())
    for _, _, plan in options:  # warm-up: a new input shape allocates (or compiles)
        detect_with(detector, images[0], plan, iou)
    times: list[list[float]] = [[] for _ in options]
    found: list[list[Detections]] = [[] for _ in options]
    for image in images:
        for i, (_, _, plan) in enumerate(options):
            t0 = time.perf_counter()
            found[i].append(detect_with(detector, image, plan, iou))
            times[i].append((time.perf_counter() - t0) * 1e3)
    results = []
    for (label, setting, plan), took, detections in zip(options, times, found, strict=True):
        heights = [float(h) for d in detections for h in plan.heights_at_input(d.of(PERSON).xyxy)]
        result = OptionResult(
            label=label,
            setting=setting,
            plan=plan,
            ms_per_frame=float(np.median(took)),
            persons=sum(len(d.of(PERSON)) for d in detections),
            frames=len(images),
            heights_px=tuple(heights),
            min_person_px=min_person_px,
        )
        results.append((result, detections))
    return results


def recommend(options: Sequence[OptionResult]) -> tuple[OptionResult, str]:
    """The cheapest option within RECALL_SHARE of the best at finding persons and judgeable persons."""
    best_found = max(o.persons_per_frame for o in options)
    best_judged = max(o.judged_per_frame for o in options)
    if best_found == 0:
        current = options[0]
        return current, "no person was found in the sampled frames; sample again while workers are in view"
    good = [
        o
        for o in options
        if o.persons_per_frame >= RECALL_SHARE * best_found
        and o.judged_per_frame >= RECALL_SHARE * best_judged
    ]
    pick = min(good, key=lambda o: o.ms_per_frame)
    why = (
        f"the cheapest option ({pick.ms_per_frame:.0f} ms per frame) that finds at least "
        f"{RECALL_SHARE:.0%} of the most persons any option finds ({best_found:.2f} per frame) and of "
        f"those large enough to judge PPE ({best_judged:.2f} per frame)"
    )
    return pick, why


def check_camera(
    detector: Detector,
    config: SiteConfig,
    camera_id: str | None,
    frames: int,
    preview: Path | None = None,
) -> CheckReport:
    """Sample a camera's frames, measure its own setting and the alternatives, recommend one, and draw the
    preview (when asked) at the camera's own setting."""
    camera = pick_camera(config, camera_id)
    try:
        images = sample_frames(camera, frames)
    except SourceError as exc:
        raise CheckError(f"camera {camera.id}: {exc}") from None
    frame = (int(images[0].shape[1]), int(images[0].shape[0]))
    notes = []
    if any((int(im.shape[1]), int(im.shape[0])) != frame for im in images):
        notes.append(f"the stream changed size while sampled; measured {frame[0]}x{frame[1]} frames only")
        images = [im for im in images if (int(im.shape[1]), int(im.shape[0])) == frame]
    min_px = config.rules.min_person_px
    measured = measure_options(
        detector, images, candidate_settings(camera.detect, frame), config.model.iou, min_px
    )
    results = [r for r, _ in measured]
    current, current_found = measured[0]  # the camera's own setting comes first
    pick, why = recommend(results)
    if pick is current:
        why = "keep the camera's setting: " + why
    report = CheckReport(
        camera.id, camera.source, frame, len(images), camera.fps, current, results, pick, why
    )
    report.notes = notes
    if pick.ms_per_frame * camera.fps > 1000:
        report.notes.append(
            f"at {pick.ms_per_frame:.0f} ms per frame this box detects at most "
            f"{1000 / pick.ms_per_frame:.1f} frames/s for this camera alone (cameras[].fps is {camera.fps:g})"
        )
    if preview is not None:
        best = int(np.argmax([len(d.of(PERSON)) for d in current_found]))
        image = draw_preview(
            images[best],
            camera.zones,
            current_found[best].of(PERSON).xyxy,
            current.plan.heights_at_input(current_found[best].of(PERSON).xyxy).tolist(),
            min_px,
            f"{camera.id}: {current.plan.describe()} (current)  recommended: {pick.plan.describe()}",
        )
        preview.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(preview), image):
            raise CheckError(f"{preview}: cannot write the preview (not a .png path, or no permission)")
        report.preview = preview
    return report


def pick_camera(config: SiteConfig, camera_id: str | None) -> CameraConfig:
    """The camera to check: the one named, or the only one; CheckError names the known ids otherwise."""
    known = ", ".join(c.id for c in config.cameras)
    if camera_id is None:
        if len(config.cameras) == 1:
            return config.cameras[0]
        raise CheckError(f"the config has {len(config.cameras)} cameras ({known}): choose one with --camera")
    for camera in config.cameras:
        if camera.id == camera_id:
            return camera
    raise CheckError(f"no camera {camera_id!r} in the config; cameras: {known}")


def _legend_scale(width: int) -> float:
    return max(0.45, width / 1400)


def legend_height(width: int) -> int:
    """Height of the legend band under the preview: a title and two lines of keys, scaled with the width."""
    return 3 * round(48 * _legend_scale(width)) + 8


def draw_preview(
    image: np.ndarray,
    zones: Sequence[ZoneConfig],
    persons: np.ndarray,
    heights_px: Sequence[float],
    min_person_px: int,
    title: str,
) -> np.ndarray:
    """The frame with zones, persons judged (green) or too small to judge (orange, with their height at the
    model input) and each person's zone anchor point, above a legend band."""
    height, width = image.shape[:2]
    scale = max(0.4, min(width, height) / 900)
    thick = max(2, round(2 * scale))
    canvas = image.copy()
    for zone in zones:
        points = np.array(
            [[round(x * (width - 1)), round(y * (height - 1))] for x, y in zone.polygon], np.int32
        )
        layer = canvas.copy()
        cv2.fillPoly(layer, [points], ZONE_COLOUR)
        canvas = cv2.addWeighted(canvas, 0.75, layer, 0.25, 0.0)
        cv2.polylines(canvas, [points], True, ZONE_COLOUR, thick + 1, cv2.LINE_AA)
        top = points[np.argmin(points[:, 1])]
        _text(canvas, zone.name or zone.id, int(top[0]), max(int(top[1]) - 4, 12), ZONE_COLOUR, scale)
    anchors = sorted({z.anchor for z in zones}) or ["bottom_center"]
    for box, h in zip(persons, heights_px, strict=True):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        judged = h >= min_person_px
        colour = JUDGED_COLOUR if judged else UNJUDGED_COLOUR
        if judged:
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thick)
        else:
            _dashed_rectangle(canvas, (x1, y1), (x2, y2), colour, thick)
        _text(canvas, f"{h:.0f}px", x1, max(y1 - 3, 10), colour, scale * 0.8)
        for anchor in anchors:
            ax, ay = anchor_point((float(box[0]), float(box[1]), float(box[2]), float(box[3])), anchor)
            cv2.circle(canvas, (round(ax), round(ay)), max(3, round(4 * scale)), ANCHOR_COLOUR, cv2.FILLED)
            cv2.circle(canvas, (round(ax), round(ay)), max(3, round(4 * scale)), (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([canvas, _legend(width, title, min_person_px, anchors, thick)])


def _legend(width: int, title: str, min_person_px: int, anchors: Sequence[str], thick: int) -> np.ndarray:
    """The band under the preview: its title, then what each colour and mark means."""
    band = np.full((legend_height(width), width, 3), 32, np.uint8)
    small = _legend_scale(width)
    line = round(48 * small)
    _text(band, title, 8, line - 4, (255, 255, 255), small)
    keys = [
        [
            (JUDGED_COLOUR, f"judged (>= {min_person_px}px tall at the model input)", "box"),
            (UNJUDGED_COLOUR, "too small to judge PPE", "dashed"),
        ],
        [(ANCHOR_COLOUR, f"zone anchor point ({', '.join(anchors)})", "dot"), (ZONE_COLOUR, "zone", "box")],
    ]
    mark = round(24 * small)
    for row, entries in enumerate(keys, start=2):
        x, y = 8, row * line - 4
        for colour, text, kind in entries:
            if kind == "dot":
                cv2.circle(band, (x + mark // 2, y - mark // 2), mark // 3, colour, cv2.FILLED)
            elif kind == "dashed":
                _dashed_rectangle(band, (x, y - mark), (x + mark, y), colour, thick)
            else:
                cv2.rectangle(band, (x, y - mark), (x + mark, y), colour, thick)
            x += mark + 6
            _text(band, text, x, y, (230, 230, 230), small)
            x += cv2.getTextSize(text, _FONT, small, 1)[0][0] + 24
    return band


def _text(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """Text on a dark tag (baseline at y), legible on any background."""
    thickness = max(1, round(scale * 1.2))
    (tw, th), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    x = max(0, min(x, image.shape[1] - tw - 4))
    cv2.rectangle(image, (x, y - th - 3), (x + tw + 4, y + baseline), (24, 24, 24), cv2.FILLED)
    cv2.putText(image, text, (x + 2, y), _FONT, scale, colour, thickness, cv2.LINE_AA)


def _dashed_rectangle(
    image: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], colour: tuple[int, int, int], thickness: int
) -> None:
    (x1, y1), (x2, y2) = p1, p2
    dash = 6
    for x in range(x1, x2, dash * 2):
        cv2.line(image, (x, y1), (min(x + dash, x2), y1), colour, thickness)
        cv2.line(image, (x, y2), (min(x + dash, x2), y2), colour, thickness)
    for y in range(y1, y2, dash * 2):
        cv2.line(image, (x1, y), (x1, min(y + dash, y2)), colour, thickness)
        cv2.line(image, (x2, y), (x2, min(y + dash, y2)), colour, thickness)


def render_report(report: CheckReport) -> str:
    """The report as plain text: one row per option, the recommendation and the snippet to paste."""
    rows = [
        (
            "option",
            "input",
            "passes",
            "ms/frame",
            "persons/frame",
            "judged/frame",
            "too small",
            "height p10/p50/p90",
        )
    ]
    for o in report.options:
        p = o.height_percentiles()
        heights = "/".join("-" if v is None else f"{v:.0f}" for v in p.values())
        share = f" ({o.too_small / o.persons:.0%})" if o.persons else ""
        rows.append(
            (
                o.label,
                o.plan.describe(),
                str(o.plan.passes),
                f"{o.ms_per_frame:.0f}",
                f"{o.persons_per_frame:.2f}",
                f"{o.judged_per_frame:.2f}",
                f"{o.too_small}{share}",
                heights,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    lines = [
        f"camera {report.camera}: {report.frame[0]}x{report.frame[1]} frames, {report.frames} sampled "
        f"(persons under {report.current.min_person_px}px at the model input are too small to judge PPE)",
        table,
        f"recommended: {report.recommended.label} ({report.recommended.plan.describe()}): {report.why}",
        "paste into the camera's entry under `cameras:` in the site config:",
        report.snippet(),
    ]
    lines += [f"note: {n}" for n in report.notes]
    if report.preview is not None:
        lines.append(f"preview: {report.preview}")
    return "\n".join(lines)
