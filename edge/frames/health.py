"""Camera stream health: one small state machine per camera, its listeners and its Prometheus metrics."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from contract.enums import CameraStatus
from edge.telemetry import redact

log = logging.getLogger(__name__)



StatusListener = Callable[[str, CameraStatus, str | None], None]

_S = CameraStatus
# Which changes are legal; anything else is a bug in the caller. DISABLED and ENDED are final.
_ALLOWED: dict[CameraStatus, frozenset[CameraStatus]] = {
    _S.STARTING: frozenset({_S.ONLINE, _S.RECONNECTING, _S.OFFLINE, _S.DISABLED, _S.ENDED}),
    _S.ONLINE: frozenset({_S.RECONNECTING, _S.OFFLINE, _S.DISABLED, _S.ENDED}),
    _S.RECONNECTING: frozenset({_S.ONLINE, _S.OFFLINE, _S.DISABLED, _S.ENDED}),
    _S.OFFLINE: frozenset({_S.ONLINE, _S.RECONNECTING, _S.DISABLED, _S.ENDED}),
    _S.DISABLED: frozenset(),
    _S.ENDED: frozenset({_S.DISABLED}),
}


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A consistent copy of one camera's health, for status messages and the dashboard."""

    camera_id: str
    status: CameraStatus
    since: float  # clock time of the last status change
    last_error: str | None  # redacted
    attempts: int  # consecutive failed connection attempts (0 while healthy)
    reconnects: int
    frames_read: int
    frames_dropped: int
    frames_skipped: int
    last_frame_at: float | None
    frames_grabbed_only: int = 0  # of frames_skipped: taken from the stream but never converted to an image


class CameraHealth:
    """Status, counters and last error of one camera; status changes are pushed to listeners."""

    def __init__(
        self,
        camera_id: str,
        *,
        clock: Callable[[], float] = time.time,
        listeners: Iterable[StatusListener] = (),
        status: CameraStatus = CameraStatus.STARTING,
    ) -> None:
        self.camera_id = camera_id
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[StatusListener] = list(listeners)
        self._status = status
        self._since = clock()
        self._last_error: str | None = None
        self._attempts = 0
        self._reconnects = 0
        self._frames_read = 0
        self._frames_dropped = 0
        self._frames_skipped = 0
        self._frames_grabbed_only = 0
        self._last_frame_at: float | None = None

    def add_listener(self, listener: StatusListener) -> None:
        """Call `listener(camera_id, status, detail)` on every later status change."""
        with self._lock:
            self._listeners.append(listener)

    @property
    def status(self) -> CameraStatus:
        """Return the current status."""
        return self._status

    @property
    def last_error(self) -> str | None:
        """Return the last error, credentials redacted."""
        return self._last_error

    @property
    def attempts(self) -> int:
        """Return the number of consecutive failed connection attempts."""
        return self._attempts

    def set_status(self, status: CameraStatus, detail: str | None = None) -> bool:
        """Move to `status`; return False when already there. Raises ValueError on an illegal change."""
        detail = redact(detail) if detail is not None else None
        with self._lock:
            if status == self._status:
                return False
            if status not in _ALLOWED[self._status]:
                raise ValueError(f"camera {self.camera_id}: illegal status change {self._status} -> {status}")
            self._status = status
            self._since = self._clock()
            listeners = list(self._listeners)
        log.info("camera %s: %s%s", self.camera_id, status, f" ({detail})" if detail else "")
        for listener in listeners:
            try:
                listener(self.camera_id, status, detail)
            except Exception:  # one broken subscriber must not stop the camera or the others
                log.exception("camera %s: status listener %r failed", self.camera_id, listener)
        return True

    def record_failure(self, error: str) -> int:
        """Remember a failed attempt and its (redacted) reason; return the consecutive failure count."""
        with self._lock:
            self._attempts += 1
            self._last_error = redact(error)
            return self._attempts

    def record_reconnect(self) -> None:
        """Count one reconnection attempt after a lost or failed stream."""
        with self._lock:
            self._reconnects += 1

    def reset_attempts(self) -> None:
        """Forget past failures after a healthy period, so backoff starts small again."""
        with self._lock:
            self._attempts = 0

    def record_read(self) -> None:
        """Count a frame read from the source."""
        with self._lock:
            self._frames_read += 1
            self._last_frame_at = self._clock()

    def record_dropped(self, count: int = 1) -> None:
        """Count frames replaced before any consumer took them."""
        with self._lock:
            self._frames_dropped += count

    def record_skipped(self, *, retrieved: bool = True) -> None:
        """Count a frame left out to respect the fps cap; `retrieved` False: it was never converted to an
        image (grabbed only, the cheap path)."""
        with self._lock:
            self._frames_skipped += 1
            if not retrieved:
                self._frames_grabbed_only += 1

    def snapshot(self) -> HealthSnapshot:
        """Return a consistent copy of every field."""
        with self._lock:
            return HealthSnapshot(
                camera_id=self.camera_id,
                status=self._status,
                since=self._since,
                last_error=self._last_error,
                attempts=self._attempts,
                reconnects=self._reconnects,
                frames_read=self._frames_read,
                frames_dropped=self._frames_dropped,
                frames_skipped=self._frames_skipped,
                last_frame_at=self._last_frame_at,
                frames_grabbed_only=self._frames_grabbed_only,
            )


class CameraMetrics(Collector):
    """Prometheus view of every camera's health in one registry, read at scrape time (no double counting)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Weak: the module-level map below keeps this collector alive, and a strong reference here would
        # keep every reader and its app alive with it (a health's listeners point back at the app).
        self._cameras: weakref.WeakValueDictionary[str, CameraHealth] = weakref.WeakValueDictionary()

    def track(self, health: CameraHealth) -> None:
        """Export this camera's health; a later one with the same camera id replaces it."""
        with self._lock:
            self._cameras[health.camera_id] = health

    def describe(self) -> Iterator[Metric]:
        """Announce the metric names, so the registry can reject clashes."""
        yield from self._families([])

    def collect(self) -> Iterator[Metric]:
        """Return the current values of every tracked camera."""
        with self._lock:
            cameras = list(self._cameras.values())
        yield from self._families([health.snapshot() for health in cameras])

    @staticmethod
    def _families(snaps: list[HealthSnapshot]) -> Iterator[Metric]:
        counters = {
            "frames_read": "Frames read from the camera source.",
            "frames_dropped": "Frames replaced by a newer one before any consumer took them.",
            "frames_skipped": "Frames left out to respect the camera's fps cap.",
            "frames_grabbed_only": (
                "Frames skipped for the fps cap without being converted to an image (grab, no retrieve)."
            ),
            "reconnects": "Reconnection attempts after a lost, frozen or failed stream.",
        }
        for name, doc in counters.items():
            family = CounterMetricFamily(f"sitesentry_camera_{name}", doc, labels=["camera"])
            for snap in snaps:
                family.add_metric([snap.camera_id], getattr(snap, name))
            yield family
        status = GaugeMetricFamily(
            "sitesentry_camera_status",
            "1 for the camera's current status, 0 for the others.",
            labels=["camera", "status"],
        )
        last_frame = GaugeMetricFamily(
            "sitesentry_camera_last_frame_timestamp_seconds",
            "Wall-clock time of the last frame read.",
            labels=["camera"],
        )
        for snap in snaps:
            for candidate in CameraStatus:
                status.add_metric([snap.camera_id, candidate.value], 1.0 if candidate == snap.status else 0.0)
            if snap.last_frame_at is not None:
                last_frame.add_metric([snap.camera_id], snap.last_frame_at)
        yield status
        yield last_frame


# A registry accepts each metric name once, so every reader sharing a registry must share its collector.
# Keyed weakly: the registry owns the lifetime; this only remembers what was already registered in it.
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, CameraMetrics] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def camera_metrics(registry: CollectorRegistry) -> CameraMetrics:
    """Return the camera collector registered in `registry`, registering it on first use."""
    with _collectors_lock:
        metrics = _collectors.get(registry)
        if metrics is None:
            metrics = CameraMetrics()
            registry.register(metrics)
            _collectors[registry] = metrics
        return metrics
