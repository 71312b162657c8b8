"""Builds every stage from the site config and owns the threads: readers, inference loop, evidence, alerts."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import cv2
import numpy as np
from prometheus_client import CollectorRegistry

from edge.app_metrics import AppMetrics
from edge.config.models import CameraConfig, SiteConfig, ZoneConfig
from edge.dataflow import Detections, EvidenceRef, Frame, FrameResult, Phase, Rule, SafetyEvent
from edge.detections import create_detector
from edge.detections.base import Detector
from edge.detections.batching import Planned, detect_frames
from edge.detections.resolution import DetectPlan, resolve_plan
from edge.events.evidence import EvidenceRecorder
from edge.events.ledger import EvidenceLedger
from edge.events.retention import RetentionSweeper
from edge.frames.health import CameraStatus
from edge.frames.reader import CameraReader
from edge.hard_examples import HardExampleQueue, Reason, has_uncertain
from edge.pipeline import CameraPipeline
from edge.violations.ppe_evidence import Verdict

log = logging.getLogger(__name__)

#: While flood control holds alerts back, `on_flood` is called at most this often (an early heartbeat, so
#: the dashboard says so within seconds, not at the next regular heartbeat).
FLOOD_NOTICE_EVERY_S = 5.0


class AlertSink(Protocol):
    """Where events, statuses and snapshots go (the MQTT publisher implements it)."""

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...
    def publish_event(self, event: SafetyEvent) -> None: ...
    def publish_alarm(self, event: SafetyEvent) -> None: ...
    def publish_camera_status(self, camera_id: str, status: str, detail: str | None) -> None: ...
    def publish_snapshot(self, camera_id: str, jpeg: bytes) -> None: ...


@dataclass
class CameraRuntime:
    """One camera's live parts: its reader, its pipeline, and whether it is paused by control."""

    config: CameraConfig
    reader: CameraReader
    pipeline: CameraPipeline
    last_seq: int = -1
    paused: bool = False
    recent: list[float] = field(default_factory=list)  # processing times, for fps
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=200))  # capture to result
    frame_size: tuple[int, int] | None = None  # of the last analysed frame, to normalise closing boxes
    shown_at: float = 0.0  # the last analysed frame's time; an unpaced file's may run ahead of the clock
    plan: DetectPlan | None = None  # detector input and slices, resolved for the current frame size
    view_sent_at: float | None = None  # monotonic time the camera's view last went out as its snapshot
    view_seq: int = -1  # the frame it showed: events starting together send it once

    def fps(self, now: float, window_s: float = 10.0) -> float:
        """Frames processed per second over the last window."""
        self.recent = [t for t in self.recent if t >= now - window_s]
        return len(self.recent) / window_s

    def closing_size(self) -> tuple[int, int]:
        """The frame size that events closed outside a frame (control, shutdown) are normalised by."""
        return self.frame_size or (1, 1)

    def end_time(self, now: float) -> float:
        """When events closed by control or shutdown end: now, or after the last frame if that is later."""
        return max(now, self.shown_at)

    def heartbeat_figures(self, now: float, held_back_last_min: int) -> dict[str, Any]:
        """This camera's part of the MQTT heartbeat (contract.payloads.CameraFigures)."""
        latencies = np.asarray(self.latencies_ms)
        return {
            "fps": round(self.fps(now), 2),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies.size else None,
            "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1) if latencies.size else None,
            "frames_dropped": self.reader.health.snapshot().frames_dropped,
            "detect": self.plan.describe() if self.plan is not None else None,
            "events_suppressed": {
                str(rule): n for rule, n in self.pipeline.lifecycle.stats.suppressed_rate_by_rule.items()
            },
            "events_suppressed_last_min": held_back_last_min,
            "ppe_tracks": _ppe_tracks(self.pipeline.engine.evidence.stats.ended),
        }

    def display_figures(self, now: float, held_back_last_min: int) -> dict[str, Any]:
        """This camera's figures for `stats()`: status, fps, pause, open events, alerts held back."""
        return {
            "status": self.reader.status.value,
            "fps": round(self.fps(now), 2),
            "paused": self.paused,
            "open_events": self.pipeline.lifecycle.active_count,
            "held_back_last_min": held_back_last_min,
            "detect": self.plan.describe() if self.plan is not None else None,
        }


class EdgeApp:
    """The running edge box: every enabled camera through detection, rules, evidence and alerts.

    Over 250 lines because this is where the threads meet, and their order is the point: start and stop
    (end events, then flush clips, then close alerts), the inference loop, control from the dashboard
    (rules, cameras, zones) under one lock, and what each event sets off (evidence, alarm, snapshot,
    metrics). Each stage's own logic lives in its module: batching in edge/detections/batching.py, the
    per-camera pipeline in edge/pipeline.py, evidence references in edge/events/ledger.py, figures in
    edge/app_metrics.py and CameraRuntime.
    """

    def __init__(
        self,
        config: SiteConfig,
        *,
        detector: Detector | None = None,
        alerts: AlertSink | None = None,
        registry: CollectorRegistry | None = None,
        on_result: Callable[[FrameResult], None] | None = None,
        on_event: Callable[[SafetyEvent], None] | None = None,
        on_evidence: Callable[[str, EvidenceRef], None] | None = None,
    ) -> None:
        self.config = config
        # OpenCV's own thread pool would fight ONNX Runtime's for the same cores; one thread each for
        # decoding, letterboxing and encoding leaves the cores to inference (process-wide by necessity).
        cv2.setNumThreads(1)
        self.tz = ZoneInfo(config.site.timezone)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.detector = detector or create_detector(config.model)
        self.alerts = alerts
        self.on_result = on_result
        self.on_event = on_event
        self.on_evidence = on_evidence  # each written snapshot and clip, e.g. to push it to the dashboard
        self.on_flood: Callable[[], None] | None = None  # flood control held an alert back (rate-limited)
        self._flood_noticed = 0.0
        self._stop = threading.Event()
        # Readers set this on every new frame, so the inference loop sleeps until there is work.
        self._frame_arrived = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ledger = EvidenceLedger()
        # Zones drawn on evidence, per camera; the zone editor replaces entries while the app runs.
        self._drawn_zones: dict[str, list[ZoneConfig]] = {c.id: c.zones for c in config.cameras}
        self.evidence = EvidenceRecorder(
            config.evidence,
            zones=self._drawn_zones,
            tz=self.tz,
            registry=self.registry,
            on_clip_ready=self._clip_ready,
            on_clip_failed=self._clip_failed,
            on_disk_full=lambda: self.retention.poke(),
        )
        self.retention = RetentionSweeper(
            config.evidence.folder,
            config.evidence.retention_days,
            config.evidence.min_free_gb,
            registry=self.registry,
        )
        self.metrics = AppMetrics(self.registry)
        hard = config.hard_examples
        self.hard_examples = (
            HardExampleQueue(
                hard.folder, hard.max_items, registry=self.registry, min_interval_s=hard.min_interval_s
            )
            if hard.enabled
            else None
        )
        self.cameras = {c.id: self._camera_runtime(c) for c in config.cameras if c.enabled}

    def _camera_runtime(self, camera: CameraConfig) -> CameraRuntime:
        """A camera's reader (waking the inference loop on each frame) and its pipeline."""
        reader = CameraReader(
            camera.id,
            camera.source,
            fps_cap=camera.fps,
            realtime=camera.realtime,
            loop=camera.loop,
            decoder=camera.decoder,
            registry=self.registry,
            on_status=self._camera_status,
            on_frame=self._frame_arrived.set,
        )
        return CameraRuntime(
            camera, reader, CameraPipeline(self.config.site.id, camera, self.config.rules, self.tz)
        )

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start alerts, evidence, retention, every camera reader and the inference loop."""
        if self.alerts is not None:
            self.alerts.start()
        self.evidence.start()
        self.retention.start(interval_s=600)
        for runtime in self.cameras.values():
            runtime.reader.start()
        self._thread = threading.Thread(target=self._loop, name="inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop cleanly: end open events, flush evidence clips, then close alerts (in that order)."""
        self._stop.set()
        self._frame_arrived.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for runtime in self.cameras.values():
            runtime.reader.stop(timeout=2.0)
        now = time.time()
        with self._lock:  # in case the inference thread outlived the join timeout
            closing = [
                event
                for runtime in self.cameras.values()
                for event in runtime.pipeline.lifecycle.close_all(
                    runtime.end_time(now), runtime.closing_size()
                )
            ]
        for event in closing:
            self._emit(event, None)
        self.evidence.stop(timeout)
        self.retention.stop()
        if self.alerts is not None:
            self.alerts.stop(timeout=5.0)

    def wait(self, stop: threading.Event, until: Callable[[], bool] | None = None) -> None:
        """Block until `stop` is set, every camera has ended or cannot play, or `until()` says so."""
        while not stop.is_set() and not self._stop.is_set():
            if until is not None and until():
                return
            if (
                self.cameras
                and all(
                    r.reader.status in (CameraStatus.ENDED, CameraStatus.DISABLED) or r.reader.unplayable
                    for r in self.cameras.values()
                )
                and not self._pending_frames()
            ):
                return
            stop.wait(0.2)

    def unplayable_cameras(self) -> dict[str, str]:
        """Return the cameras offline because their file is not a playable video, with the reason."""
        return {cid: reason for cid, r in self.cameras.items() if (reason := r.reader.unplayable)}

    # -- control ---------------------------------------------------------------------------------
    def set_rule_enabled(self, rule: Rule, enabled: bool, camera_id: str | None = None) -> None:
        """Switch a rule on or off for one camera or all; open events of a disabled rule end normally."""
        targets = [self._camera(camera_id)] if camera_id else list(self.cameras.values())
        with self._lock:
            for runtime in targets:
                (
                    runtime.pipeline.engine.disabled.discard
                    if enabled
                    else runtime.pipeline.engine.disabled.add
                )(rule)

    def set_camera_enabled(self, camera_id: str, enabled: bool) -> None:
        """Pause or resume analysis of one camera (its stream stays connected)."""
        runtime = self._camera(camera_id)
        with self._lock:
            runtime.paused = not enabled
            if not enabled:
                closing = runtime.pipeline.lifecycle.close_all(
                    runtime.end_time(time.time()), runtime.closing_size()
                )
                for event in closing:
                    self._emit(event, None)
        self._camera_status(
            camera_id, CameraStatus.DISABLED if not enabled else runtime.reader.status, "by control"
        )

    def camera_zones(self) -> dict[str, list[ZoneConfig]]:
        """Return the zones each running camera applies now."""
        with self._lock:
            return {cid: list(r.config.zones) for cid, r in self.cameras.items()}

    def set_zones(self, camera_id: str, zones: list[ZoneConfig]) -> None:
        """Replace a camera's zones from the next frame on, without a restart (zone editor, `set_zones`)."""
        runtime = self._camera(camera_id)
        with self._lock:  # between two frames of this camera, never in the middle of one
            runtime.config = runtime.config.model_copy(update={"zones": list(zones)})
            runtime.pipeline.camera = runtime.config
            runtime.pipeline.engine.set_zones(list(zones))
            self._drawn_zones[camera_id] = list(zones)

    def _camera(self, camera_id: str) -> CameraRuntime:
        if camera_id not in self.cameras:
            raise KeyError(f"unknown camera {camera_id!r}; known: {', '.join(self.cameras) or 'none'}")
        return self.cameras[camera_id]

    # -- the loop --------------------------------------------------------------------------------
    def _pending_frames(self) -> bool:
        return any(
            r.reader.latest(after_seq=r.last_seq) is not None for r in self.cameras.values() if not r.paused
        )

    def _loop(self) -> None:
        while not self._stop.is_set():
            # Cleared before looking, so a frame that lands after the look still wakes the wait below.
            self._frame_arrived.clear()
            try:
                if not self.step():
                    self._frame_arrived.wait(0.5)
            except Exception:  # one bad frame must not stop every camera
                log.exception("inference loop error; continuing")
                time.sleep(0.1)

    def step(self) -> int:
        """Process the freshest new frame of every camera once; return how many frames were processed."""
        batch: list[tuple[CameraRuntime, Frame]] = []
        for runtime in self.cameras.values():
            frame = runtime.reader.latest(after_seq=runtime.last_seq)
            if frame is None:
                continue
            runtime.last_seq = frame.seq
            if not runtime.paused:
                batch.append((runtime, frame))
        if not batch:
            return 0
        planned = [Planned(runtime, frame, self._plan(runtime, frame)) for runtime, frame in batch]
        max_batch = self.config.model.max_batch if self.detector.info.batch is None else 1
        for item, detections, timings in detect_frames(
            self.detector, planned, max_batch, self.config.model.iou
        ):
            self._process(item.key, item.frame, detections, timings)
        return len(batch)

    def _plan(self, runtime: CameraRuntime, frame: Frame) -> DetectPlan:
        """The camera's detector input for this frame's size: resolved (and logged) at its first frame and
        again whenever the stream's size changes."""
        if runtime.plan is None or runtime.plan.frame != frame.size:
            runtime.plan = resolve_plan(
                frame.size,
                runtime.config.detect,
                imgsz=self.detector.info.imgsz,
                stride=self.detector.stride,
                dynamic=self.detector.dynamic_input,
            )
            log.info(
                "camera %s: %dx%d frames detected at %s (%s)",
                runtime.config.id,
                *frame.size,
                runtime.plan.describe(),
                runtime.plan.reason,
                extra={"camera": runtime.config.id},
            )
        return runtime.plan

    def _process(
        self, runtime: CameraRuntime, frame: Frame, detections: Detections, timings: dict[str, float]
    ) -> None:
        camera = runtime.config.id
        try:
            with self._lock:
                if runtime.paused:  # disabled by control while this frame was being detected
                    return
                result = runtime.pipeline.step(frame, detections, timings, runtime.plan)
                held_back = self.metrics.carry_suppressed(
                    camera, runtime.pipeline.lifecycle.stats.suppressed_rate_by_rule
                )
                ppe = runtime.pipeline.engine.evidence.stats
                self.metrics.carry_ppe(camera, ppe.now, ppe.ended)
            if held_back and self.on_flood is not None:
                self._notice_flood()
            t0 = time.perf_counter()
            self.evidence.observe(result)
            for event in result.events:
                try:  # one failed delivery must not cost the other events of this frame
                    self._emit(event, result)
                except Exception:
                    self.metrics.errors.labels(camera, "emit").inc()
                    log.exception("camera %s: event %s could not be emitted", camera, event.event_id)
            if self.hard_examples is not None:
                self._queue_hard_example(result)
            result.stage_ms["evidence"] = (time.perf_counter() - t0) * 1e3
        except Exception:
            self.metrics.errors.labels(camera, "pipeline").inc()
            log.exception("camera %s: frame %d failed", camera, frame.seq)
            return
        now = time.time()
        runtime.frame_size = frame.size
        runtime.shown_at = frame.captured_at
        runtime.recent.append(now)
        runtime.latencies_ms.append((now - frame.received_at) * 1e3)
        self.metrics.frame_done(camera, runtime.fps(now), result.stage_ms)
        self._send_view(result)
        if self.on_result is not None:
            self.on_result(result)

    def _send_view(self, result: FrameResult, now: bool = False) -> None:
        """Publish the camera's view (heads blurred, no boxes) as its snapshot: at its first frame, every
        `evidence.view_every_s` and (`now`) as an event starts, once per frame. A camera without any
        violation still shows on the dashboard, and zones are drawn on a clean picture."""
        runtime = self.cameras.get(result.frame.camera_id)
        every = self.config.evidence.view_every_s
        if self.alerts is None or runtime is None or runtime.view_seq == result.frame.seq:
            return
        clock = time.monotonic()
        due = runtime.view_sent_at is None or (every > 0 and clock - runtime.view_sent_at >= every)
        if not (now or due):
            return
        runtime.view_sent_at, runtime.view_seq = clock, result.frame.seq
        try:
            self.alerts.publish_snapshot(result.frame.camera_id, self.evidence.view_jpeg(result))
        except Exception:  # a failed view must not cost the frame
            log.exception("camera %s: its view could not be sent", result.frame.camera_id)

    def _queue_hard_example(self, result: FrameResult) -> None:
        """Keep frames the model may be getting wrong, for labelling: violations and unsure detections."""
        assert self.hard_examples is not None
        starts = [e for e in result.events if e.phase is Phase.START]
        if starts:
            self.hard_examples.add(result.frame, result.detections, Reason.VIOLATION, starts[0].event_id)
        elif has_uncertain(result.detections, 0.0, self.config.hard_examples.uncertain_below):
            self.hard_examples.add(result.frame, result.detections, Reason.LOW_CONFIDENCE)

    def _emit(self, event: SafetyEvent, result: FrameResult | None) -> None:
        if event.phase is Phase.START and result is not None:
            event = self.evidence.record(event, result)
        event = self._ledger.carry(event)
        self.metrics.event(event)
        log.info(
            "%s %s camera=%s zone=%s track=%d conf=%.2f",
            event.phase.value,
            event.rule.value,
            event.camera_id,
            event.zone or "-",
            event.track_id,
            event.peak_confidence,
            extra={"camera": event.camera_id, "event_id": str(event.event_id), "rule": event.rule.value},
        )
        if self.alerts is not None:
            self.alerts.publish_event(event)
            if event.phase in (Phase.START, Phase.END):  # sirens switch on at the start, off at the end
                self.alerts.publish_alarm(event)
            if event.phase is Phase.START and result is not None:
                # The camera's snapshot is its view (heads blurred, no boxes): refreshed as an event starts;
                # the event's own annotated snapshot goes to the dashboard as evidence.
                self._send_view(result, now=True)
        if self.on_evidence is not None and event.phase is Phase.START and result is not None:
            for ref in event.evidence:
                if ref.sha256 is not None:  # the snapshot; its clip follows in _clip_ready
                    self.on_evidence(event.camera_id, ref)
        if self.on_event is not None:
            self.on_event(event)

    def _clip_ready(self, event: SafetyEvent, clip: EvidenceRef) -> None:
        """A clip finished after the start event went out: send an update (or the END again) carrying it."""
        update = self._ledger.with_clip(event, clip)
        if self.alerts is not None:
            self.alerts.publish_event(update)
        if self.on_evidence is not None:
            self.on_evidence(event.camera_id, clip)  # once per clip: events sharing it are deduplicated
        if self.on_event is not None:
            self.on_event(update)

    def _clip_failed(self, event: SafetyEvent, relpath: str) -> None:
        """A clip named in a START could not be written (full disk, encoder): retract it with an update, or
        a repeated END if the event has ended, whose evidence no longer names it."""
        retraction = self._ledger.without_clip(event, relpath)
        if self.alerts is not None:
            self.alerts.publish_event(retraction)
        if self.on_event is not None:
            self.on_event(retraction)

    def _notice_flood(self) -> None:
        """Tell `on_flood` that alerts are being held back, at most every FLOOD_NOTICE_EVERY_S."""
        now = time.monotonic()
        if now - self._flood_noticed < FLOOD_NOTICE_EVERY_S:
            return
        self._flood_noticed = now
        try:
            assert self.on_flood is not None
            self.on_flood()
        except Exception:  # a failed notice must not cost the frame
            log.exception("flood control notice failed")

    def _camera_status(self, camera_id: str, status: CameraStatus, detail: str | None) -> None:
        runtime = self.cameras.get(camera_id)
        if runtime is not None and status is CameraStatus.ONLINE:
            with self._lock:  # the inference thread may be stepping this camera's tracker right now
                runtime.pipeline.reset_tracks()  # a reconnected stream may show a different scene
        if self.alerts is not None:
            self.alerts.publish_camera_status(camera_id, status.value, detail)

    def _held_back(self, now: float) -> dict[str, int]:
        """Per camera, the new events flood control held back in the minute before `now`."""
        with self._lock:  # the lifecycles change on the inference thread
            return {cid: r.pipeline.lifecycle.suppressed_recently(now) for cid, r in self.cameras.items()}

    def heartbeat_stats(self) -> dict[str, Any]:
        """Figures for the MQTT heartbeat: per camera fps, capture-to-result latency, drops; queue depths."""
        now = time.time()
        held_back = self._held_back(now)
        info = self.detector.info
        return {
            "cameras": {cid: r.heartbeat_figures(now, held_back[cid]) for cid, r in self.cameras.items()},
            "queues": {"evidence_clips": {"depth": self.evidence.pending_clips}},
            "detector": {"model": f"{info.name} {info.version}", "providers": list(info.providers)},
        }

    def stats(self) -> dict[str, Any]:
        """Figures for display: status, fps, open events and alerts flood control held back in the last
        minute per camera, pending clips."""
        now = time.time()
        held_back = self._held_back(now)
        return {
            "cameras": {cid: r.display_figures(now, held_back[cid]) for cid, r in self.cameras.items()},
            "pending_clips": self.evidence.pending_clips,
        }


def _ppe_tracks(ended: Mapping[tuple[str, Verdict], int]) -> dict[str, dict[str, int]]:
    """Ended tracks by item and verdict, as the heartbeat carries them."""
    out: dict[str, dict[str, int]] = {}
    for (item, verdict), n in sorted(ended.items()):
        out.setdefault(item, {})[verdict.value] = n
    return out
