"""One camera's step: detections -> tracks -> violations -> events, timed per stage."""

from __future__ import annotations

import time
from datetime import datetime, tzinfo

from edge.config.models import CameraConfig, RulesConfig
from edge.dataflow import Detections, Frame, FrameResult
from edge.detections.resolution import DetectPlan
from edge.events.lifecycle import EventLifecycle
from edge.tracks.tracker import PersonTracker
from edge.violations.engine import RuleEngine


class CameraPipeline:
    """The per-camera state (tracker, rules, debouncer) and the step that advances it by one frame."""

    def __init__(self, site_id: str, camera: CameraConfig, rules: RulesConfig, tz: tzinfo) -> None:
        self.camera = camera
        self.tz = tz
        self.engine = RuleEngine(camera, rules)
        self.tracker = PersonTracker(frame_rate=camera.fps)
        self.lifecycle = EventLifecycle(site_id, camera.id, self.engine.rules, tz)

    def step(
        self,
        frame: Frame,
        detections: Detections,
        stage_ms: dict[str, float] | None = None,
        plan: DetectPlan | None = None,
    ) -> FrameResult:
        """Advance tracking, rules and event lifecycles by one frame detected as `plan` says."""
        timings = dict(stage_ms or {})
        t0 = time.perf_counter()
        tracks = self.tracker.update(detections)
        t1 = time.perf_counter()
        now = datetime.fromtimestamp(frame.captured_at, self.tz)
        violations = self.engine.evaluate(frame, detections, tracks, now, plan)
        t2 = time.perf_counter()
        events = self.lifecycle.update(violations, frame.captured_at, frame.seq, frame.size)
        t3 = time.perf_counter()
        timings.update(tracking=(t1 - t0) * 1e3, rules=(t2 - t1) * 1e3 + (t3 - t2) * 1e3)
        return FrameResult(frame, detections, tracks, violations, tuple(events), timings)

    def reset_tracks(self) -> None:
        """Forget tracks after a reconnect, so ids from the old stream do not leak into the new one."""
        self.tracker.reset()
        self.engine.evidence.end_all()
