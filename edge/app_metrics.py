"""The running app's Prometheus figures: per-stage latency, fps, events, errors, and the running totals the
pipeline's own stages keep (flood control, PPE verdicts) carried into counters."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge.dataflow import Rule, SafetyEvent
from edge.violations.engine import PPE_ITEMS
from edge.violations.ppe_evidence import Verdict


class AppMetrics:
    """The app's instruments in one registry; the stages own their counts, this only publishes them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stage_seconds = Histogram(
            "sitesentry_stage_seconds",
            "Per-frame latency of each pipeline stage.",
            ["camera", "stage"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.fps = Gauge(
            "sitesentry_camera_fps", "Frames analysed per second.", ["camera"], registry=registry
        )
        self.events = Counter(
            "sitesentry_events", "Violation events by phase.", ["camera", "rule", "phase"], registry=registry
        )
        self.suppressed = Counter(
            "sitesentry_events_suppressed",
            "New events not started because of flood control (rules.max_new_events_per_min).",
            ["camera", "rule"],
            registry=registry,
        )
        self.ppe_persons = Gauge(
            "sitesentry_ppe_persons",
            "Tracked persons in the latest frame by PPE verdict over the window (rules.ppe_window_s).",
            ["camera", "item", "verdict"],
            registry=registry,
        )
        self.ppe_tracks = Counter(
            "sitesentry_ppe_tracks",
            "Ended tracks by the strongest PPE verdict they reached; undetermined: never judged (too small, "
            "occluded, turned away), so never alerted.",
            ["camera", "item", "verdict"],
            registry=registry,
        )
        self.errors = Counter(
            "sitesentry_pipeline_errors",
            "Frames whose processing failed.",
            ["camera", "stage"],
            registry=registry,
        )
        self._carried: dict[tuple[str, ...], int] = {}  # (metric, *label values) -> total carried so far

    def frame_done(self, camera: str, fps: float, stage_ms: Mapping[str, float]) -> None:
        """Record an analysed frame: the camera's fps now and each stage's latency."""
        self.fps.labels(camera).set(fps)
        for stage, ms in stage_ms.items():
            self.stage_seconds.labels(camera, stage).observe(ms / 1e3)

    def event(self, event: SafetyEvent) -> None:
        """Count an emitted event by camera, rule and phase."""
        self.events.labels(event.camera_id, event.rule.value, event.phase.value).inc()

    def carry_suppressed(self, camera: str, totals: Mapping[Rule, int]) -> bool:
        """Carry the lifecycle's flood-control totals (they only grow) into the counter; True if they grew."""
        grew = False
        for rule, total in totals.items():
            grew |= self._advance(self.suppressed, "suppressed", (camera, rule.value), total)
        return grew

    def carry_ppe(
        self, camera: str, now: Mapping[tuple[str, Verdict], int], ended: Mapping[tuple[str, Verdict], int]
    ) -> None:
        """Publish the PPE evidence counts: persons by verdict now, and ended tracks (they only grow)."""
        for item in PPE_ITEMS:
            for verdict in Verdict:
                self.ppe_persons.labels(camera, item, verdict.value).set(now.get((item, verdict), 0))
        for (item, verdict), total in ended.items():
            self._advance(self.ppe_tracks, "ppe_tracks", (camera, item, verdict.value), total)

    def _advance(self, counter: Counter, name: str, labels: tuple[str, ...], total: int) -> bool:
        """Raise a counter to a stage's running total (the stage owns the count); True if it grew."""
        key = (name, *labels)
        grew = total - self._carried.get(key, 0)
        if grew > 0:
            counter.labels(*labels).inc(grew)
            self._carried[key] = total
        return grew > 0
