"""Evidence for each event: an annotated snapshot at once, and a short clip from a per-camera ring buffer."""

from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import queue
import shutil
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from edge.annotate import Focus, blur_regions, draw, draw_view, head_boxes
from edge.config.models import EvidenceConfig, ZoneConfig
from edge.dataflow import EvidenceRef, FrameResult, Phase, SafetyEvent
from edge.events.video import EncoderError, VideoEncoder, count_frames, usable_codec

log = logging.getLogger(__name__)

MAX_CAMERA_FPS = 60  # CameraConfig.fps upper bound; caps a ring buffer if timestamps misbehave
LOG_EVERY_S = 60.0  # a repeated failure of one kind and reason is logged at most this often
QUIET_GRACE_S = 2.0  # a camera silent this long past a clip's end gets its clip written with what arrived
DEFAULT_CLIP_FPS = 5.0  # used only when a clip has a single frame, so no rate can be observed

ClipCallback = Callable[[SafetyEvent, EvidenceRef], None]
#: Told, per event, the path of a clip that was announced in its START but could not be written.
ClipFailedCallback = Callable[[SafetyEvent, str], None]
#: Told the evidence disk is full, so space can be freed at once (the retention sweeper's `poke`).
DiskFullCallback = Callable[[], None]

# errno -> the `reason` label of the failure counter; anything else is "os_error".
_REASONS = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EACCES: "permission",
    errno.EPERM: "permission",
    errno.EROFS: "read_only",
    errno.ENOTDIR: "bad_path",
    errno.ENOENT: "bad_path",
    errno.EEXIST: "bad_path",
}


class ClipBacklogFull(Exception):
    """Too many clips wait for the encoder: a new one is skipped rather than held in memory."""


def failure_reason(exc: BaseException) -> str:
    """Map an error to the short `reason` label used in metrics and logs."""
    if isinstance(exc, ClipBacklogFull):
        return "backlog"
    if isinstance(exc, EncoderError):
        return "encoder"
    if isinstance(exc, OSError) and exc.errno is not None:
        return _REASONS.get(exc.errno, "os_error")
    return "error"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.part{path.suffix}")
    try:
        with partial.open("wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _same_frame(a: FrameResult, b: FrameResult) -> bool:
    return a is b or (a.frame.seq == b.frame.seq and a.frame.captured_at == b.frame.captured_at)


#: A frame is kept for a clip when at least this share of the clip_fps interval has passed since the last
#: kept one: a camera delivering just over clip_fps keeps every frame, one at twice it every other frame.
KEEP_SHARE = 0.75


def thin_to_rate(results: Sequence[FrameResult], max_fps: float) -> list[FrameResult]:
    """Keep at most about max_fps frames per second of frame time, always keeping the first."""
    kept: list[FrameResult] = []
    for result in results:
        if not kept or result.frame.captured_at - kept[-1].frame.captured_at >= KEEP_SHARE / max_fps:
            kept.append(result)
    return kept


def observed_fps(results: Sequence[FrameResult]) -> float:
    """Return the frame rate the camera actually delivered over these frames."""
    if len(results) < 2:
        return DEFAULT_CLIP_FPS
    span = results[-1].frame.captured_at - results[0].frame.captured_at
    if span <= 0:
        return DEFAULT_CLIP_FPS
    return min(float(MAX_CAMERA_FPS), max(0.5, (len(results) - 1) / span))


@dataclass
class _ClipJob:
    """A clip being collected: frames up to `end_at` (frame time), encoded by the writer thread as they come.

    Every event that starts on the camera while the clip is still collecting shares it, so a crowd
    breaking several rules at once costs one encode, not one per person and rule.
    """

    events: list[SafetyEvent]
    offsets: list[float]  # per event: seconds from the clip's first frame to its trigger frame
    camera_id: str
    path: Path
    relpath: str
    starts_at: float  # frame time of the clip's first frame
    fps: float  # the rate the camera delivered over the pre-roll: the clip's frame rate
    end_at: float
    deadline: float  # clock time: write what arrived if the camera goes quiet
    last: FrameResult  # the newest frame seen, kept or not
    kept_at: float  # frame time of the newest frame kept for the clip (clip_fps spacing)
    frames: list[FrameResult] = field(default_factory=list)  # arrived, not yet encoded
    held_bytes: int = 0  # image bytes of those frames
    complete: bool = False  # no more frames will come: finish the file once `frames` is encoded
    done: bool = False  # written or failed: nothing more to do
    encoder: VideoEncoder | None = None  # open from the first encoded frame; writer thread only

    @property
    def partial(self) -> Path:
        """Where the clip is encoded before it is checked and renamed into place."""
        return self.path.with_name(f"{self.path.stem}.part.mp4")


_STOP = object()


class EvidenceRecorder:
    """Writes a snapshot per START event on the caller's thread and its clip on a writer thread.

    Over 250 lines because the pre-roll buffers, the clips being collected and the writer thread share one
    lock and the pending clip and byte counts that bound the backlog; each method is short.
    """

    def __init__(
        self,
        config: EvidenceConfig,
        *,
        zones: Mapping[str, Sequence[ZoneConfig]],
        tz: tzinfo,
        registry: CollectorRegistry | None = None,
        on_clip_ready: ClipCallback | None = None,
        clock: Callable[[], float] = time.time,
        on_clip_failed: ClipFailedCallback | None = None,
        on_disk_full: DiskFullCallback | None = None,
    ) -> None:
        self._config = config
        self._folder = Path(config.folder)
        self._zones = zones
        self._tz = tz
        self._on_clip_ready = on_clip_ready
        self._on_clip_failed = on_clip_failed
        self._on_disk_full = on_disk_full
        self._clock = clock
        self._lock = threading.Lock()
        self._buffers: dict[str, deque[FrameResult]] = {}
        self._buffer_cap = max(2, math.ceil(config.pre_s * MAX_CAMERA_FPS) + 2)
        self._collecting: dict[str, list[_ClipJob]] = {}
        self._ready: queue.Queue[object] = queue.Queue()
        self._pending = 0
        self._held_bytes = 0  # over pending clips; a frame shared by two clips counts twice (a safe bound)
        # The frame whose snapshots were made last (caller's thread only): its blurred copy, made once, and
        # its JPEG per event (None: no event highlighted), so the evidence file and MQTT share one encoding.
        self._last_frame: FrameResult | None = None
        self._last_blurred: np.ndarray | None = None
        self._last_jpegs: dict[uuid.UUID | None, bytes] = {}
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self._last_logged: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        registry = registry if registry is not None else CollectorRegistry()
        self._written = Counter(
            "sitesentry_evidence_written", "Evidence files written.", ["kind"], registry=registry
        )
        self._bytes = Counter(
            "sitesentry_evidence_bytes", "Bytes of evidence written.", ["kind"], registry=registry
        )
        self._failures = Counter(
            "sitesentry_evidence_failures",
            "Evidence files that could not be written, by kind and reason (disk_full, permission, ...).",
            ["kind", "reason"],
            registry=registry,
        )
        pending = Gauge("sitesentry_evidence_pending_clips", "Clips not yet written.", registry=registry)
        pending.set_function(lambda: self.pending_clips)
        held = Gauge(
            "sitesentry_evidence_pending_clip_bytes",
            "Image bytes held in memory by clips not yet written.",
            registry=registry,
        )
        held.set_function(lambda: self._held_bytes)

    # -- caller side -------------------------------------------------------------------------------------

    def observe(self, result: FrameResult) -> None:
        """Remember a processed frame for clips; cheap: no copy, no encoding, amortised O(1)."""
        if not self._config.clip:
            return
        camera = result.frame.camera_id
        now = result.frame.captured_at
        with self._lock:
            buffer = self._buffers.get(camera)
            if buffer is None:
                buffer = self._buffers[camera] = deque(maxlen=self._buffer_cap)
            buffer.append(result)
            while buffer and buffer[0].frame.captured_at < now - self._config.pre_s:
                buffer.popleft()
            jobs = self._collecting.get(camera)
            if not jobs:
                return
            min_gap = KEEP_SHARE / self._config.clip_fps
            for job in list(jobs):
                new = not _same_frame(job.last, result)
                if new:
                    job.last = result
                arrived = new and now - job.kept_at >= min_gap  # over clip_fps: seen, not kept
                if arrived:
                    job.frames.append(result)
                    job.kept_at = now
                    job.held_bytes += result.frame.image.nbytes
                    self._held_bytes += result.frame.image.nbytes
                if now >= job.end_at:
                    jobs.remove(job)
                    job.complete = True
                if arrived or job.complete:
                    self._ready.put(job)  # the writer encodes what arrived, so frames are not held

    def buffered(self, camera_id: str) -> int:
        """Return how many frames of a camera the ring buffer holds now."""
        with self._lock:
            return len(self._buffers.get(camera_id, ()))

    @property
    def pending_clips(self) -> int:
        """Clips started but not yet written (collecting, queued or being encoded)."""
        with self._lock:
            return self._pending

    def record(self, event: SafetyEvent, result: FrameResult) -> SafetyEvent:
        """For a START event write the snapshot now, schedule the clip; return the event with both refs."""
        if event.phase is not Phase.START:
            return event
        day = event.started_at.astimezone(self._tz).date().isoformat()
        stem = f"{event.camera_id}/{day}/{event.event_id}"
        refs: list[EvidenceRef] = []
        if self._config.snapshot:
            snapshot = self._write_snapshot(f"{stem}.jpg", result, event)
            if snapshot is not None:
                refs.append(snapshot)
        if self._config.clip:
            try:
                relpath, offset_s = self._begin_clip(event, result, f"{stem}.mp4")
            except ClipBacklogFull as exc:
                self._failed("clip", exc)
            else:
                refs.append(EvidenceRef("clip", relpath, None, offset_s))
        return event.with_evidence(*refs)

    def snapshot_jpeg(self, result: FrameResult, event: SafetyEvent | None = None) -> bytes:
        """Return the annotated (and, if configured, blurred) frame as JPEG bytes, highlighting the event's
        person when an event is given; each event starting on a frame gets its own snapshot."""
        if self._last_frame is not result:
            self._last_frame, self._last_blurred, self._last_jpegs = result, None, {}
        key = event.event_id if event is not None else None
        cached = self._last_jpegs.get(key)
        if cached is not None:
            return cached
        if self._config.blur_heads and self._last_blurred is None:
            self._last_blurred = blur_regions(result.frame.image, head_boxes(result))
        focus = Focus.of_event(event, result) if event is not None else None
        ok, encoded = cv2.imencode(
            ".jpg",
            self._render(result, focus, self._last_blurred),
            [cv2.IMWRITE_JPEG_QUALITY, self._config.jpeg_quality],
        )
        if not ok:
            raise EncoderError(f"JPEG encoding failed for camera {result.frame.camera_id}")
        data = encoded.tobytes()
        self._last_jpegs[key] = data
        return data

    def view_jpeg(self, result: FrameResult) -> bytes:
        """Return the camera's view as JPEG bytes: heads blurred if configured, only the caption drawn (the
        periodic MQTT snapshot behind the dashboard's camera tiles and zone editor)."""
        image = result.frame.image
        if self._config.blur_heads:
            image = blur_regions(image, head_boxes(result))
        canvas = draw_view(image, result.frame.camera_id, result.frame.captured_at, self._tz)
        ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, self._config.jpeg_quality])
        if not ok:
            raise EncoderError(f"JPEG encoding failed for camera {result.frame.camera_id}")
        return encoded.tobytes()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the clip writer thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._config.clip:  # say once, at start, which encoder the clips will get
            log.info("evidence clips are encoded as %s", usable_codec(self._config.clip_codec))
        self._thread = threading.Thread(target=self._writer_loop, name="evidence-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write every pending clip with the frames it has so far, then stop the writer thread."""
        with self._lock:
            for jobs in self._collecting.values():
                for job in jobs:
                    job.complete = True
                    self._ready.put(job)
                jobs.clear()
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._ready.put(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "evidence writer still busy after %.1f s; %d clip(s) pending", timeout, self.pending_clips
                )
            return
        self._drain()  # never started: flush on the caller's thread

    # -- internals ---------------------------------------------------------------------------------------

    def _render(
        self, result: FrameResult, focus: Focus | None = None, blurred: np.ndarray | None = None
    ) -> np.ndarray:
        """Blur (unless `blurred` is the frame already blurred) and annotate a frame, highlighting `focus`."""
        if self._config.blur_heads:
            # Blur first, then draw, so boxes and labels stay crisp on top of the hidden faces.
            image = blurred if blurred is not None else blur_regions(result.frame.image, head_boxes(result))
            result = replace(result, frame=replace(result.frame, image=image))
        return draw(result, self._zones.get(result.frame.camera_id, ()), self._tz, focus=focus)

    def _write_snapshot(self, relpath: str, result: FrameResult, event: SafetyEvent) -> EvidenceRef | None:
        try:
            data = self.snapshot_jpeg(result, event)
            _write_atomically(self._folder / relpath, data)
        except OSError as exc:
            self._failed("snapshot", exc)
            return None
        self._written.labels("snapshot").inc()
        self._bytes.labels("snapshot").inc(len(data))
        return EvidenceRef("snapshot", relpath, _sha256(data))

    def _begin_clip(self, event: SafetyEvent, result: FrameResult, relpath: str) -> tuple[str, float]:
        """Schedule the clip of a START event, or join the camera's clip still recording.

        Return the clip's path and the event's offset in it, in seconds. One function on purpose: joining,
        the backlog checks and scheduling happen under one hold of the lock, so no clip is scheduled or
        finished between them.
        """
        trigger_at = result.frame.captured_at
        camera = result.frame.camera_id
        with self._lock:
            for job in self._collecting.get(camera, ()):
                # Joining keeps this event's pre-roll (the clip began earlier) and extends the post-roll.
                if job.starts_at <= trigger_at <= job.end_at and (
                    trigger_at + self._config.post_s - job.starts_at <= self._config.clip_max_s
                ):
                    offset_s = round(trigger_at - job.starts_at, 3)
                    job.events.append(event)
                    job.offsets.append(offset_s)
                    job.end_at = max(job.end_at, trigger_at + self._config.post_s)
                    job.deadline = max(
                        job.deadline,
                        self._clock() + self._config.post_s + max(QUIET_GRACE_S, self._config.post_s),
                    )
                    return job.relpath, offset_s
            if self._pending >= self._config.max_pending_clips:
                raise ClipBacklogFull(
                    f"{self._pending} clips wait for the encoder (evidence.max_pending_clips); "
                    f"event {event.event_id} on camera {camera} gets its snapshot only"
                )
            if self._held_bytes >= self._config.max_pending_mb * 1e6:
                raise ClipBacklogFull(
                    f"clips waiting for the encoder hold {self._held_bytes / 1e6:.0f} MB of frames "
                    f"(evidence.max_pending_mb); event {event.event_id} on camera {camera} gets its "
                    "snapshot only"
                )
            window = [
                r
                for r in self._buffers.get(camera, ())
                if r.frame.captured_at >= trigger_at - self._config.pre_s
            ]
            if not any(_same_frame(r, result) for r in window):
                window.append(result)
                window.sort(key=lambda r: r.frame.captured_at)
            window = thin_to_rate(window, self._config.clip_fps)
            offset_s = round(trigger_at - window[0].frame.captured_at, 3)
            job = _ClipJob(
                events=[event],
                offsets=[offset_s],
                camera_id=camera,
                path=self._folder / relpath,
                relpath=relpath,
                starts_at=window[0].frame.captured_at,
                fps=observed_fps(window),
                end_at=trigger_at + self._config.post_s,
                deadline=self._clock() + self._config.post_s + max(QUIET_GRACE_S, self._config.post_s),
                last=window[-1],
                kept_at=window[-1].frame.captured_at,
                frames=window,
                held_bytes=sum(r.frame.image.nbytes for r in window),
            )
            self._pending += 1
            self._held_bytes += job.held_bytes
            if window[-1].frame.captured_at >= job.end_at:
                job.complete = True
            else:
                self._collecting.setdefault(job.camera_id, []).append(job)
            self._ready.put(job)
        return relpath, offset_s

    def _writer_loop(self) -> None:
        if self._config.writer_nice:
            try:  # Linux schedules threads separately: only this one yields to detection
                tid = threading.get_native_id()
                nice = min(19, os.getpriority(os.PRIO_PROCESS, tid) + self._config.writer_nice)
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            except (AttributeError, OSError) as exc:
                log.info("clip encoder keeps normal priority (%s)", exc)
        while True:
            try:
                item = self._ready.get(timeout=0.25)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._drain()
                return
            if isinstance(item, _ClipJob):
                self._service(item)
            self._release_overdue()

    def _drain(self) -> None:
        while True:
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _ClipJob):
                self._service(item)

    def _release_overdue(self) -> None:
        """Queue clips whose camera stopped delivering frames, so they are written with what arrived."""
        now = self._clock()
        with self._lock:
            for jobs in self._collecting.values():
                for job in [j for j in jobs if now >= j.deadline]:
                    jobs.remove(job)
                    job.complete = True
                    self._ready.put(job)

    def _service(self, job: _ClipJob) -> None:
        """Encode the frames that arrived for a clip; finish the clip once it is complete."""
        with self._lock:
            if job.done:
                return  # queued again after it was written or failed
            batch, job.frames = job.frames, []
            complete = job.complete
        try:
            try:
                self._encode(job, batch)
            finally:
                released = sum(r.frame.image.nbytes for r in batch)
                with self._lock:
                    job.held_bytes -= released
                    self._held_bytes -= released
            if not complete:
                return
            sha256, size = self._close(job)
        except Exception as exc:  # the writer thread must survive anything one clip throws
            self._give_up(job)
            if isinstance(exc, EncoderError):
                exc = self._blame_disk(job.partial, exc)
            if not isinstance(exc, OSError):
                log.exception("unexpected error writing clip %s", job.relpath)
            self._failed("clip", exc)
            if self._on_clip_failed is not None:
                for event in job.events:  # each named the clip in its START: each gets it retracted
                    try:
                        self._on_clip_failed(event, job.relpath)
                    except Exception:
                        log.exception("on_clip_failed failed for %s (event %s)", job.relpath, event.event_id)
            return
        with self._lock:
            job.done = True
            self._pending -= 1
        self._written.labels("clip").inc()
        self._bytes.labels("clip").inc(size)
        if self._on_clip_ready is not None:
            for event, offset_s in zip(job.events, job.offsets, strict=True):
                try:
                    self._on_clip_ready(event, EvidenceRef("clip", job.relpath, sha256, offset_s))
                except Exception:
                    log.exception("on_clip_ready failed for %s (event %s)", job.relpath, event.event_id)

    def _encode(self, job: _ClipJob, batch: list[FrameResult]) -> None:
        if not batch:
            return
        if job.encoder is None:
            job.path.parent.mkdir(parents=True, exist_ok=True)
            height, width = batch[0].frame.image.shape[:2]
            job.encoder = VideoEncoder(
                job.partial, job.fps, (width, height), self._config.clip_codec, self._config.clip_crf
            )
        for result in batch:
            job.encoder.write(self._render(result))

    def _close(self, job: _ClipJob) -> tuple[str, int]:
        """Finish the clip's file, check it reads back, rename it into place; return (sha256, bytes)."""
        if job.encoder is None:
            raise EncoderError(f"{job.partial}: no frame arrived for the clip")
        written = job.encoder.close()
        # Encoders report few write errors; reading the container back catches a truncated file.
        frames = count_frames(job.partial)
        if frames != written:
            raise EncoderError(f"{job.partial}: read back {frames} of {written} frames")
        sha256, size = _file_sha256(job.partial), job.partial.stat().st_size
        os.replace(job.partial, job.path)
        return sha256, size

    def _give_up(self, job: _ClipJob) -> None:
        """Drop a failed clip: stop collecting it, free its frames, remove its partial file."""
        with self._lock:
            job.done = True
            self._pending -= 1
            self._held_bytes -= job.held_bytes
            job.held_bytes = 0
            job.frames = []
            jobs = self._collecting.get(job.camera_id, [])
            if job in jobs:
                jobs.remove(job)
        if job.encoder is not None:
            job.encoder.abort()
        try:
            job.partial.unlink(missing_ok=True)
        except OSError:  # the folder itself is what failed (gone, or a file in its place)
            pass

    def _blame_disk(self, path: Path, exc: EncoderError) -> OSError:
        """Blame the disk when it is (nearly) full, since OpenCV hides ENOSPC; else keep the encoder error."""
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        if free is not None and free < 16 * 1024 * 1024:
            message = str(exc).removeprefix(f"{path}: ")
            return OSError(errno.ENOSPC, f"{message}; {free} bytes free", str(path))
        return exc

    def _failed(self, kind: str, exc: BaseException) -> None:
        reason = failure_reason(exc)
        self._failures.labels(kind, reason).inc()
        if reason == "disk_full" and self._on_disk_full is not None:
            self._on_disk_full()
        key = (kind, reason)
        now = self._clock()
        with self._log_lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < LOG_EVERY_S:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last_logged[key] = now
            repeats = self._suppressed.pop(key, 0)
        more = f" ({repeats} more since the last report)" if repeats else ""
        log.warning("could not write %s evidence (%s): %s%s", kind, reason, exc, more)
