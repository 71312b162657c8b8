"""Evaluate the edge pipeline on labelled video: the alerts it would raise against what really happened.

`run_video` plays a video file through the real per-camera pipeline, offline: the camera's fps cap skips
frames exactly as the frame reader does (RateCap on media time), the detector runs as the app runs it
(tiled when the camera says so), then tracker -> rules -> event lifecycle (debounce, cooldown, flood
control). It records each analysed frame's tracks and each event. `score` then compares that record with a
truth file (training/video_truth.py); matching rules are in docs/video-eval.md and summarised here:

- per analysed frame, labelled persons and tracks are paired one-to-one by box IoU >= MATCH_IOU;
- an event belongs to the labelled person its track(s) were paired with most often in its decision window
  (from the first sighting to the alert);
- an event catches every labelled violation of that person and rule (zone interval, missing helmet, missing
  vest) that its life [start, end] overlaps, widened by TOLERANCE_S; the first alert on a labelled
  violation counts, with its delay from the labelled start (0 when an alert was already open); an event
  that catches nothing new is a duplicate; an event on a person whose state was labelled unknown is "on
  unknown"; an event raised in an ignored stretch that catches nothing is left out; every other event is
  a false alert.

Nothing here imports torch or ultralytics: it runs wherever `sitesentry run` runs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from scipy.optimize import linear_sum_assignment

from contract.enums import Phase, Rule
from edge.config.models import CameraConfig, ModelConfig, RulesConfig, SiteSection
from edge.dataflow import Frame, FrameResult
from edge.detections.base import Detector
from edge.detections.resolution import DetectPlan, resolve_plan
from edge.detections.tiling import detect_planned
from edge.frames.reader import RateCap
from edge.frames.sources import SourceError, open_source
from edge.labels import PERSON
from edge.pipeline import CameraPipeline
from training.video_truth import PixelBox, VideoTruth, check_video, wider_view

log = logging.getLogger(__name__)

#: A track and a labelled person are the same person in a frame when their boxes overlap this much.
#: Below the usual 0.5: labelled boxes are interpolated between keyframes and lag a walking person a little.
MATCH_IOU = 0.4
#: Seconds by which an event's decision window and a labelled interval may miss each other and still match:
#: labels are set by eye to about one analysed frame, and a track is confirmed a frame or two late.
TOLERANCE_S = 1.0
#: Media time 0 of the video, as the wall-clock time the pipeline is fed (a Monday 10:00 in Hong Kong, the
#: default site time zone, so schedules of working hours are active). Only differences of it are reported.
EPOCH = 1_767_578_400.0  # 2026-01-05 02:00 UTC
SITE_TZ = ZoneInfo(SiteSection.model_fields["timezone"].default)
PPE_ITEMS = {"helmet": Rule.NO_HELMET, "vest": Rule.NO_VEST}
#: Where the per-track PPE state of the report comes from; replaced when the pipeline keeps its own.
PPE_STATE_SOURCE = (
    "the pipeline's per-track evidence (edge/violations/ppe_evidence.py) over rules.ppe_window_s:"
    " undetermined = neither missing nor worn by the evidence (too small, unseen, contradictory, too new)"
)


@dataclass(frozen=True)
class TrackSeen:
    """One track in one analysed frame, with the pipeline's judgement of each PPE item on it."""

    track_id: int
    box: PixelBox
    ppe: dict[str, str]  # item -> "worn" | "missing" | "undetermined"


@dataclass(frozen=True)
class FrameSeen:
    """What the pipeline saw in one analysed frame."""

    t: float  # media time, seconds
    persons_detected: int  # person boxes from the detector, before tracking
    tracks: tuple[TrackSeen, ...]


@dataclass
class EventSeen:
    """One event the pipeline raised, in media time."""

    event_id: str
    rule: str
    zone: str | None
    start_s: float  # when the violation was first seen (the event's started_at)
    alert_s: float  # when the START message would have gone out (the frame that started it)
    end_s: float | None  # None: still open at the end of the video (then closed as "stopped")
    track_ids: list[int] = field(default_factory=list)


@dataclass
class PipelineRun:
    """The record of one offline run: every analysed frame and every event, plus what was run."""

    video: str
    frames: list[FrameSeen]
    events: list[EventSeen]
    duration_s: float  # media time covered: last frame + one frame
    camera_fps: float
    video_fps: float
    frame_size: tuple[int, int]
    settings: dict[str, Any]
    suppressed_by_flood_control: int = 0
    wall_s: float = 0.0


def ppe_judgements(pipeline: CameraPipeline, result: FrameResult) -> dict[int, dict[str, str]]:
    """Per track in this frame: is each required PPE item worn, missing, or undetermined by the pipeline."""
    judged = pipeline.engine.ppe  # the rules' own per-track verdicts for the frame just stepped
    out: dict[int, dict[str, str]] = {}
    for track in result.tracks:
        items = judged.get(track.track_id, {})  # only required items are judged
        out[track.track_id] = {
            item: str(items[item].verdict) if item in items else "undetermined" for item in PPE_ITEMS
        }
    return out


def detection_plan(detector: Detector, camera: CameraConfig, size: tuple[int, int]) -> DetectPlan:
    """The camera's detector input and slices for frames of this size, by the app's own rule."""
    return resolve_plan(
        size, camera.detect, imgsz=detector.info.imgsz, stride=detector.stride, dynamic=detector.dynamic_input
    )


def run_video(
    video: Path,
    camera: CameraConfig,
    rules: RulesConfig,
    model: ModelConfig,
    detector: Detector,
    truth: VideoTruth | None = None,
    max_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    tz: tzinfo = SITE_TZ,
    view_scale: float | None = None,
) -> PipelineRun:
    """Play a video file through the camera's real pipeline, as fast as the CPU allows, and record it.

    One loop on purpose (a little over 60 lines): the reader's frame skipping, detection and the pipeline
    step stay together and in the app's order, so what is measured is what runs on site.
    """
    try:
        source = open_source(str(video), realtime=False, loop=False)
    except SourceError as exc:
        raise ValueError(str(exc)) from None
    rate = source.fps or 25.0
    pipeline = CameraPipeline("eval", camera, rules, tz)
    cap = RateCap(camera.fps)
    frames: list[FrameSeen] = []
    events: dict[str, EventSeen] = {}
    size: tuple[int, int] | None = None
    plan: DetectPlan | None = None
    seq = 0
    last_t = 0.0
    started = time.perf_counter()
    try:
        while source.grab():
            t = source.position_s or 0.0
            if max_s is not None and t >= max_s:
                break
            last_t = t  # the covered time counts frames the cap skips, as a camera's time does
            if not cap.admit(t):
                continue
            image = source.retrieve()
            if image is None:
                break
            if view_scale is not None:
                image = wider_view(image, view_scale)
            if size is None:
                size = (int(image.shape[1]), int(image.shape[0]))
                plan = detection_plan(detector, camera, size)
                if truth is not None:
                    check_video(truth, video, rate, size)
            seq += 1
            frame = Frame(camera.id, seq, EPOCH + t, image)
            assert plan is not None  # resolved with the first frame
            detections = detect_planned(detector, image, plan, model.iou)
            result = pipeline.step(frame, detections, plan=plan)
            _record(frames, events, pipeline, result, t)
            if progress is not None:
                progress(t)
    finally:
        source.close()
    if size is None or plan is None:
        raise ValueError(f"{video}: no frame could be read")
    end = last_t + 1.0 / rate
    for event in pipeline.lifecycle.close_all(EPOCH + end, size):
        _note_event(events, event, end)
    return PipelineRun(
        video=Path(video).name,
        frames=frames,
        events=list(events.values()),
        duration_s=end,
        camera_fps=camera.fps,
        video_fps=rate,
        frame_size=size,
        settings=_settings(camera, pipeline.engine.rules, model, detector) | {"detected_at": plan.describe()},
        suppressed_by_flood_control=pipeline.lifecycle.stats.suppressed_rate,
        wall_s=time.perf_counter() - started,
    )


def _record(
    frames: list[FrameSeen],
    events: dict[str, EventSeen],
    pipeline: CameraPipeline,
    result: FrameResult,
    t: float,
) -> None:
    judged = ppe_judgements(pipeline, result)
    tracks = tuple(TrackSeen(tr.track_id, tr.xyxy, judged.get(tr.track_id, {})) for tr in result.tracks)
    frames.append(FrameSeen(t, len(result.detections.of(PERSON)), tracks))
    for event in result.events:
        _note_event(events, event, t)


def _note_event(events: dict[str, EventSeen], event: Any, t: float) -> None:
    key = str(event.event_id)
    record = events.get(key)
    if record is None:
        record = EventSeen(key, str(event.rule), event.zone, event.started_at.timestamp() - EPOCH, t, None)
        events[key] = record
        if event.phase is not Phase.START:
            log.warning("event %s first seen in phase %s", key, event.phase)
    if event.track_id not in record.track_ids:
        record.track_ids.append(event.track_id)
    if event.phase is Phase.END and event.ended_at is not None:
        record.end_s = event.ended_at.timestamp() - EPOCH


def _settings(camera: CameraConfig, rules: RulesConfig, model: ModelConfig, detector: Detector) -> dict:
    return {
        "camera_fps": camera.fps,
        "detect": camera.detect.model_dump(mode="json"),
        "model": str(model.path),
        "model_input": list(detector.info.imgsz),
        "confidence": model.confidence,
        "rules": rules.model_dump(
            include={
                "require",
                "debounce_s",
                "min_share",
                "end_after_s",
                "cooldown_s",
                "ppe_window_s",
                "ppe_min_absent_share",
                "ppe_absent_confidence",
                "ppe_absent_dominance",
                "min_person_px",
                "max_new_events_per_min",
            }
        ),  # fmt: skip
        "zones": [z.id for z in camera.zones],
    }


# ---------------------------------------------------------------- scoring


def box_iou(a: PixelBox, b: PixelBox) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pair_frame(truth: VideoTruth, frame: FrameSeen) -> dict[int, str]:
    """Pair this frame's tracks and labelled persons one-to-one by IoU >= MATCH_IOU: track id -> person id."""
    visible = truth.visible_at(frame.t)
    if not visible or not frame.tracks:
        return {}
    iou = np.array([[box_iou(t.box, box) for _, _, box in visible] for t in frame.tracks])
    rows, cols = linear_sum_assignment(-iou)
    return {
        frame.tracks[r].track_id: visible[c][0].id
        for r, c in zip(rows, cols, strict=True)
        if iou[r, c] >= MATCH_IOU
    }


@dataclass(frozen=True)
class Labelled:
    """One labelled violation: a person's interval in a zone, or without an item."""

    person: str
    rule: str
    zone: str | None
    start_s: float
    end_s: float


@dataclass
class Outcome:
    """Catches and misses of one kind of labelled violation."""

    labelled: int = 0
    caught: int = 0
    missed: int = 0
    missed_shorter_than_debounce: int = 0  # labelled violations briefer than rules.debounce_s: never alerted
    time_to_alert_s: list[float] = field(default_factory=list)
    missed_list: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures as JSON-ready values: counts, and mean / max seconds from labelled start to alert."""
        delays = self.time_to_alert_s
        return {
            "labelled": self.labelled,
            "caught": self.caught,
            "missed": self.missed,
            "missed_shorter_than_debounce": self.missed_shorter_than_debounce,
            "recall": round(self.caught / self.labelled, 3) if self.labelled else None,
            "time_to_alert_s": {
                "mean": round(float(np.mean(delays)), 2) if delays else None,
                "max": round(float(np.max(delays)), 2) if delays else None,
                "each": [round(d, 2) for d in delays],
            },
            "missed_list": self.missed_list,
        }


def labelled_violations(truth: VideoTruth, require: Iterable[str], analysed_until: float) -> list[Labelled]:
    """Every labelled interval in a danger zone, and every interval without a required item."""
    gap = 1.5 / truth.fps  # spans that touch (to the frame) are one interval
    out: list[Labelled] = []
    danger = {z.id for z in truth.zones if z.entry_forbidden}
    for person in truth.persons:
        for zone in sorted(danger):
            for start, end in person.intervals(lambda s, z=zone: s.zone == z, gap):  # type: ignore[misc]
                out.append(Labelled(person.id, str(Rule.ZONE_ENTRY), zone, start, end))
        for item in require:
            for start, end in person.intervals(lambda s, i=item: getattr(s, i) == "missing", gap):  # type: ignore[misc]
                out.append(Labelled(person.id, str(PPE_ITEMS[item]), None, start, end))
    kept = [v for v in out if v.start_s < analysed_until]
    return [v for v in kept if truth.scored_s(v.end_s) - truth.scored_s(v.start_s) > 0]


def _state(truth: VideoTruth, person: str, rule: str, zone: str | None, t: float) -> str | None:
    """The labelled state behind a rule at time t: 'violation', 'ok', 'unknown', or None when not seen."""
    span = next(p for p in truth.persons if p.id == person).span_at(t)
    if span is None:
        return None
    if rule == str(Rule.ZONE_ENTRY):
        return "violation" if span.zone == zone else "ok"
    item = "helmet" if rule == str(Rule.NO_HELMET) else "vest"
    value = getattr(span, item)
    return {"missing": "violation", "worn": "ok"}.get(value, "unknown")


def score(truth: VideoTruth, run: PipelineRun, require: Iterable[str]) -> dict[str, Any]:
    """Compare a pipeline run with the labels; return the report (docs/video-eval.md explains each figure)."""
    require = [item for item in require if item in PPE_ITEMS]
    # Ignored stretches: no pairing there, so their frames count for nothing and vote for no one.
    pairs = [{} if truth.ignored(frame.t) else pair_frame(truth, frame) for frame in run.frames]
    labelled = labelled_violations(truth, require, run.duration_s)
    outcomes: dict[str, Outcome] = defaultdict(Outcome)
    for v in labelled:
        outcomes[v.rule].labelled += 1
    caught, kinds, false_alerts, event_rows = _classify_events(truth, run, pairs, labelled)
    debounce = float(run.settings.get("rules", {}).get("debounce_s", 0.0))
    for v in labelled:
        outcome = outcomes[v.rule]
        if v in caught:
            outcome.caught += 1
            outcome.time_to_alert_s.append(caught[v])
        else:
            outcome.missed += 1
            outcome.missed_shorter_than_debounce += v.end_s - v.start_s < debounce
            outcome.missed_list.append(
                {"person": v.person, "zone": v.zone, "start_s": v.start_s, "end_s": v.end_s}
            )
    scored_s = truth.scored_s(run.duration_s)
    hours = scored_s / 3600.0
    rules = [str(Rule.ZONE_ENTRY)] + [str(PPE_ITEMS[i]) for i in require]
    by_rule = Counter(f["rule"] for f in false_alerts)
    return {
        "video": run.video,
        "truth_sha256": truth.sha256,
        "duration_s": round(run.duration_s, 2),
        "scored_s": round(scored_s, 2),
        "analysed_frames": len(run.frames),
        "analysed_fps": round(len(run.frames) / run.duration_s, 2) if run.duration_s else 0.0,
        "wall_s": round(run.wall_s, 1),
        "settings": run.settings,
        "match": {"iou": MATCH_IOU, "tolerance_s": TOLERANCE_S},
        "zone_entries": outcomes[str(Rule.ZONE_ENTRY)].summary(),
        "ppe": {r: outcomes[r].summary() for r in rules[1:]},
        "false_alerts": {
            "count": len(false_alerts),
            "per_camera_hour": round(len(false_alerts) / hours, 1) if hours else None,
            "by_rule": {r: by_rule.get(r, 0) for r in rules},
            "list": false_alerts,
        },
        "events": {
            "started": len(run.events),
            "caught": kinds["caught"],
            "duplicates": kinds["duplicate"],
            "on_unknown": kinds["on_unknown"],
            "in_ignored_stretch": kinds["ignored"],
            "false_alerts": kinds["false_alert"],
            "suppressed_by_flood_control": run.suppressed_by_flood_control,
        },
        "undetermined": _undetermined(truth, run, pairs, require),
        "persons_per_frame": _persons(truth, run, pairs),
        "event_list": event_rows,
    }


def _classify_events(
    truth: VideoTruth, run: PipelineRun, pairs: list[dict[int, str]], labelled: list[Labelled]
) -> tuple[dict[Labelled, float], Counter[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """Give every event its person and verdict; return the first-alert delay of each caught violation,
    the verdict counts, the false alerts and the event rows of the report."""
    caught: dict[Labelled, float] = {}
    kinds: Counter[str] = Counter()
    false_alerts: list[dict[str, Any]] = []
    event_rows = []
    for event in sorted(run.events, key=lambda e: e.alert_s):
        end = event.end_s if event.end_s is not None else run.duration_s
        person = _event_person(event, run, pairs, end)
        verdict, hits = _judge(event, person, labelled, truth, end)
        new = [v for v in hits if v not in caught]
        for v in new:  # an alert already open when the labelled violation starts has no delay
            caught[v] = max(0.0, event.alert_s - v.start_s)
        if verdict == "caught" and not new:
            verdict = "duplicate"
        if verdict in ("on_unknown", "false_alert") and truth.ignored(event.alert_s):
            verdict = "ignored"
        kinds[verdict] += 1
        row = asdict(event) | {"person": person, "verdict": verdict}
        for key in ("start_s", "alert_s", "end_s"):
            row[key] = None if row[key] is None else round(row[key], 3)
        event_rows.append(row)
        if verdict == "false_alert":
            false_alerts.append({k: row[k] for k in ("rule", "zone", "start_s", "alert_s", "person")})
    return caught, kinds, false_alerts, event_rows


def _event_person(event: EventSeen, run: PipelineRun, pairs: list[dict[int, str]], end: float) -> str | None:
    """The labelled person the alert was raised on: the one its tracks were paired with most often in the
    decision window [start, alert]; when nothing was paired there (ignored), over the event's whole life."""
    for lo, hi in ((event.start_s, event.alert_s), (event.start_s, end)):
        votes: Counter[str] = Counter()
        for frame, paired in zip(run.frames, pairs, strict=True):
            if lo - 1e-6 <= frame.t <= hi + 1e-6:
                for track_id in event.track_ids:
                    if track_id in paired:
                        votes[paired[track_id]] += 1
        if votes:
            return votes.most_common(1)[0][0]
    return None


def _judge(
    event: EventSeen, person: str | None, labelled: list[Labelled], truth: VideoTruth, end: float
) -> tuple[str, list[Labelled]]:
    """Classify one event: caught (with the labelled violations its life overlaps), on_unknown or false."""
    if person is None:
        return "false_alert", []
    lo, hi = event.start_s - TOLERANCE_S, end + TOLERANCE_S
    hits = [
        v
        for v in labelled
        if v.person == person
        and v.rule == event.rule
        and (v.zone == event.zone or v.zone is None)
        and v.start_s <= hi
        and v.end_s >= lo
    ]
    if hits:
        return "caught", hits
    times = np.arange(event.start_s, event.alert_s + 1e-6, 1.0 / truth.fps)
    states = {_state(truth, person, event.rule, event.zone, float(t)) for t in times} - {None}
    if event.rule != str(Rule.ZONE_ENTRY) and states and states <= {"unknown", "ok"} and "unknown" in states:
        return "on_unknown", []
    return "false_alert", []


def _undetermined(
    truth: VideoTruth, run: PipelineRun, pairs: list[dict[int, str]], require: list[str]
) -> dict[str, Any]:
    """Per item: of the labelled person-time a person could judge (worn or missing), the share the pipeline
    left undetermined, and the share it did not see at all (no track paired)."""
    out: dict[str, Any] = {"source": PPE_STATE_SOURCE}
    step = 1.0 / run.camera_fps if run.frames else 0.0
    for item in require:
        counts: Counter[str] = Counter()
        for frame, paired in zip(run.frames, pairs, strict=True):
            if truth.ignored(frame.t):
                continue
            by_person = {person: track for track, person in paired.items()}
            tracks = {t.track_id: t for t in frame.tracks}
            for person, span, _ in truth.visible_at(frame.t):
                if getattr(span, item) == "unknown":
                    continue
                track = by_person.get(person.id)
                if track is None:
                    counts["not_detected"] += 1
                else:
                    counts[tracks[track].ppe.get(item, "undetermined")] += 1
        total = sum(counts.values())
        out[item] = {
            "labelled_person_s": round(total * step, 1),
            "undetermined_share": round(counts["undetermined"] / total, 3) if total else None,
            "not_detected_share": round(counts["not_detected"] / total, 3) if total else None,
            "judged_share": round((counts["worn"] + counts["missing"]) / total, 3) if total else None,
        }
    return out


def _persons(truth: VideoTruth, run: PipelineRun, pairs: list[dict[int, str]]) -> dict[str, Any]:
    """Mean persons per analysed frame: labelled, detected (before tracking), tracked, and paired."""
    frames = [f for f in run.frames if not truth.ignored(f.t)]
    n = len(frames) or 1
    labelled = sum(len(truth.visible_at(f.t)) for f in frames)
    paired = sum(len(p) for p in pairs)
    return {
        "frames": len(frames),
        "labelled": round(labelled / n, 2),
        "detected": round(sum(f.persons_detected for f in frames) / n, 2),
        "tracked": round(sum(len(f.tracks) for f in frames) / n, 2),
        "paired": round(paired / n, 2),
        "recall": round(paired / labelled, 3) if labelled else None,
    }


def evaluate_video(
    video: Path,
    truth_path: Path,
    camera: CameraConfig,
    rules: RulesConfig,
    model: ModelConfig,
    max_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    tz: tzinfo = SITE_TZ,
    view_scale: float | None = None,
) -> dict[str, Any]:
    """Run the camera's pipeline on a labelled video and score it; the truth's zones replace the camera's.

    `view_scale`: play the video as a wider view of the same scene (each frame shrunk onto a grey frame of
    its own size, the labels moved with it), to measure how alerts hold up on smaller workers.
    """
    from edge.detections import create_detector
    from training.video_truth import load_truth

    truth = load_truth(truth_path)
    if view_scale is not None:
        truth = truth.in_wider_view(view_scale)
    if not Path(video).is_file():
        raise FileNotFoundError(f"{video}: no such video file")
    camera = camera.model_copy(update={"zones": list(truth.zones), "source": str(video)})
    detector = create_detector(model)
    run = run_video(Path(video), camera, rules, model, detector, truth, max_s, progress, tz, view_scale)
    report = score(truth, run, run.settings["rules"]["require"])
    return {"truth": str(truth_path), "view_scale": view_scale} | report
