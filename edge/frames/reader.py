"""One reader thread per camera: freshest frame only, reconnects with backoff, a frozen-stream watchdog."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry

from edge.dataflow import Frame
from edge.frames.health import CameraHealth, CameraStatus, StatusListener, camera_metrics
from edge.frames.sources import FrameSource, SourceError, open_source
from edge.telemetry import redact

log = logging.getLogger(__name__)

# Frames sampled on this grid for the frozen-stream check: cheap, yet any live sensor noise changes it.
_DIGEST_GRID = (36, 64)


def frame_digest(image: np.ndarray) -> int:
    """Return a cheap fingerprint of a frame from a strided sample of its pixels."""
    rows, cols = _DIGEST_GRID
    step_y = max(1, image.shape[0] // rows)
    step_x = max(1, image.shape[1] // cols)
    return hash(image[::step_y, ::step_x].tobytes())


class Backoff:
    """Capped exponential reconnect delays; jitter keeps many cameras from retrying in step."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"backoff needs 0 < initial ({initial_s}) <= max ({max_s})")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Return the wait before retry `attempt` (1-based): half to all of the capped delay."""
        ceiling = min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1))
        return float(ceiling * self._rng.uniform(0.5, 1.0))


class RateCap:
    """Lets through at most `fps` frames per second of a timeline, evenly; the rest are skipped."""

    def __init__(self, fps: float) -> None:
        self._interval = 1.0 / fps if fps > 0 else 0.0
        self._next: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        """Start a new timeline (after a reconnect)."""
        self._next = self._last = None

    def admit(self, t: float) -> bool:
        """Return True when a frame at time `t` (seconds) is due."""
        if self._interval == 0.0:
            return True
        if self._next is None or self._last is None or t < self._last:  # first frame, or a looped file
            self._next = t
        self._last = t
        if t < self._next - 0.01 * self._interval:
            return False
        self._next += self._interval
        if self._next <= t:  # fell behind: do not burst to catch up
            self._next = t + self._interval
        return True


class CameraReader:
    """Reads one camera on a daemon thread and holds its freshest frame in a single slot.

    Status goes ONLINE at the first frame, RECONNECTING after a failure, and OFFLINE once
    `offline_after_attempts` consecutive attempts have failed (it keeps retrying with capped backoff, except
    on a file that is missing or holds no playable video: then it gives up, offline, saying why). The
    failure count resets after `healthy_after_s` of changing frames. A live stream whose frames stay
    identical, or that gives no frame, for `frozen_after_s` (None: off) is reconnected.

    Over 250 lines because the reconnect loop, the frozen-stream watchdog and the single frame slot share
    one thread, one condition and the health record; split apart, they would have to share that state.
    """

    def __init__(
        self,
        camera_id: str,
        source: str,
        *,
        fps_cap: float,
        realtime: bool,
        loop: bool,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        frozen_after_s: float | None = 10.0,
        read_timeout_s: float = 5.0,
        open_timeout_s: float = 10.0,
        decoder: str = "software",
        offline_after_attempts: int = 3,
        healthy_after_s: float = 10.0,
        registry: CollectorRegistry | None = None,
        on_status: StatusListener | None = None,
        on_frame: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if offline_after_attempts < 1:
            raise ValueError("offline_after_attempts must be at least 1")
        self.camera_id = camera_id
        self._source = source
        self._where = redact(source)
        self._realtime = realtime
        self._loop = loop
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._frozen_after_s = frozen_after_s if frozen_after_s and frozen_after_s > 0 else None
        # A stalled stream (no frame at all) must be noticed within the frozen window as well.
        self._read_timeout_s = min(read_timeout_s, self._frozen_after_s or read_timeout_s)
        self._open_timeout_s = open_timeout_s
        self._decoder = decoder
        self._offline_after = offline_after_attempts
        self._healthy_after_s = healthy_after_s
        self._cap = RateCap(fps_cap)
        self._clock = clock
        self._on_frame = on_frame
        self._health = CameraHealth(camera_id, clock=clock, listeners=[on_status] if on_status else [])
        if registry is not None:
            camera_metrics(registry).track(self._health)
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._last_shown_at = 0.0  # an unpaced file's last frame time, so a reopening never goes back
        self._taken_seq = -1
        self._next_seq = 0
        self._done = False
        self._unplayable: str | None = None  # the last open failed on a file with no playable video
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    @property
    def health(self) -> CameraHealth:
        """Return this camera's health record (status, counters, last error)."""
        return self._health

    @property
    def status(self) -> CameraStatus:
        """Return the camera's current status."""
        return self._health.status

    @property
    def unplayable(self) -> str | None:
        """Return why this camera's file is missing or not a playable video once offline for it, else None."""
        reason = self._unplayable
        return reason if reason is not None and self._health.status is CameraStatus.OFFLINE else None

    def start(self) -> None:
        """Start the reader thread."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the thread to stop and wait up to `timeout` s; return True when it has ended."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.ident is None:  # never started
            self._finish()
            return True
        if threading.current_thread() is self._thread:  # asked from a status listener: cannot join itself
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def newest_seq(self) -> int:
        """Return the seq of the frame in the slot (-1 before the first) without taking it."""
        slot = self._slot
        return -1 if slot is None else slot.seq

    def latest(self, after_seq: int = -1) -> Frame | None:
        """Return the freshest frame newer than `after_seq` without blocking, or None."""
        with self._cond:
            return self._take(after_seq)

    def wait_frame(self, after_seq: int = -1, timeout: float | None = None) -> Frame | None:
        """Wait up to `timeout` s for a frame newer than `after_seq` (None: timeout, or reading ended)."""
        with self._cond:
            self._cond.wait_for(
                lambda: (self._slot is not None and self._slot.seq > after_seq) or self._done, timeout
            )
            return self._take(after_seq)

    def _take(self, after_seq: int) -> Frame | None:
        frame = self._slot
        if frame is None or frame.seq <= after_seq:
            return None
        self._taken_seq = max(self._taken_seq, frame.seq)
        self._cond.notify_all()  # an unpaced file reader waits for this before reading on
        return frame

    def _publish(self, image: np.ndarray, shows_at: float | None = None) -> None:
        image.flags.writeable = False  # shared with every consumer: draw on a copy
        read_at = self._clock()
        with self._cond:
            if self._slot is not None and self._slot.seq > self._taken_seq:
                self._health.record_dropped()
            if shows_at is None:
                self._slot = Frame(self.camera_id, self._next_seq, read_at, image)
            else:
                self._slot = Frame(self.camera_id, self._next_seq, shows_at, image, read_at=read_at)
                self._last_shown_at = shows_at
            self._next_seq += 1
            self._cond.notify_all()
        if self._on_frame is not None:  # outside the lock: the consumer may call latest() from it
            self._on_frame()

    def _finish(self) -> None:
        if self._stop.is_set() and self._health.status != CameraStatus.DISABLED:
            self._health.set_status(CameraStatus.DISABLED, "stopped")
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def _run(self) -> None:
        try:
            reconnecting = False
            while not self._stop.is_set():
                if reconnecting:
                    self._health.record_reconnect()
                reconnecting = True
                try:
                    source = open_source(
                        self._source,
                        realtime=self._realtime,
                        loop=self._loop,
                        open_timeout_s=self._open_timeout_s,
                        read_timeout_s=self._read_timeout_s,
                        decoder=self._decoder,
                    )
                except SourceError as exc:
                    self._unplayable = str(exc) if exc.unplayable else None
                    self._failed(str(exc))
                    if self.unplayable is not None:
                        # A missing file or one with no video: retrying forever would only hide it.
                        log.error("camera %s: giving up: %s", self.camera_id, redact(str(exc)))
                        break
                    continue
                except Exception as exc:  # an unexpected backend error must not kill the thread
                    self._unplayable = None
                    log.exception("camera %s: opening %s failed unexpectedly", self.camera_id, self._where)
                    self._failed(f"cannot open {self._where}: {type(exc).__name__}: {exc}")
                    continue
                try:
                    reason = self._pump(source)
                except Exception as exc:
                    log.exception("camera %s: reading %s failed unexpectedly", self.camera_id, self._where)
                    reason = f"error reading {source.describe()}: {type(exc).__name__}: {exc}"
                finally:
                    source.close()
                if reason is None:
                    break
                self._failed(reason)
        finally:
            self._finish()

    def _failed(self, reason: str) -> None:
        """Record a failure, update the status and wait out the backoff (interrupted by stop)."""
        if self._stop.is_set():
            return
        attempts = self._health.record_failure(reason)
        offline = attempts >= self._offline_after or self._health.status == CameraStatus.OFFLINE
        status = CameraStatus.OFFLINE if offline else CameraStatus.RECONNECTING
        delay = self._backoff.delay(attempts)
        log.warning("camera %s: %s; retry %d in %.1f s", self.camera_id, redact(reason), attempts, delay)
        self._health.set_status(status, reason)
        self._stop.wait(delay)

    def _pump(self, source: FrameSource) -> str | None:
        """Read until the stream fails (return why), the file ends or stop is asked (return None)."""
        self._cap.reset()
        connected_at = time.monotonic()
        last_digest: int | None = None
        changed_at = connected_at
        first = True
        frozen_after_s = self._frozen_after_s if source.live else None  # files are exempt
        anchor: float | None = None  # unpaced files: wall-clock time of their media time 0
        while not self._stop.is_set():
            grabbed = source.grab()
            now = time.monotonic()
            if not grabbed:
                if source.ended:
                    self._health.set_status(CameraStatus.ENDED, f"end of {source.describe()}")
                    return None
                return source.lost(self._read_timeout_s)
            self._health.record_read()
            if first:
                first = False
                self._unplayable = None
                self._health.set_status(CameraStatus.ONLINE, source.describe())
            position = source.position_s
            admitted = self._cap.admit(now if position is None else position)
            # A skipped frame is only grabbed, never converted to an image, unless the frozen watchdog is
            # due: then it is looked at, so a frozen stream is caught as soon as without the cap.
            due = frozen_after_s is not None and now - changed_at >= frozen_after_s
            if not admitted and not due:
                self._health.record_skipped(retrieved=False)
                continue
            image = source.retrieve()
            if image is None:
                return source.lost(self._read_timeout_s)
            changed = True
            if frozen_after_s is not None:
                digest = frame_digest(image)
                changed = digest != last_digest
                if changed:
                    last_digest, changed_at = digest, now
                elif now - changed_at >= frozen_after_s:
                    return f"frozen {source.describe()}: identical frames for {frozen_after_s:g} s"
            if changed and self._health.attempts and now - connected_at >= self._healthy_after_s:
                self._health.reset_attempts()
            if not admitted:
                self._health.record_skipped(retrieved=True)
                continue
            shows_at = None
            played = source.played_s
            if not source.live and not self._realtime and played is not None:
                self._wait_until_taken()  # as fast as possible, but every admitted frame is analysed
                if anchor is None:  # a reopened file goes on after the last frame it gave, never back
                    anchor = max(self._clock(), self._last_shown_at) - played
                shows_at = anchor + played
            self._publish(image, shows_at)
        return None

    def _wait_until_taken(self) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: self._slot is None or self._slot.seq <= self._taken_seq or self._stop.is_set()
            )
