"""A bounded on-disk queue of frames worth labelling: uncertain detections, violations, false alarms.

Each item is three files sharing one name: the clean frame (JPEG), the model's predictions as a YOLO
label file (a head start for the labeller), and a JSON sidecar (camera, time, reason, event id) written
last, so an item without its sidecar is incomplete. `sitesentry dataset export-queue` turns the queue
into a labelling batch. Names are `<camera>-<YYYYmmddTHH>_frame_<MMSSmmm>`: the training splitter keeps
one camera-hour together, so near-identical frames never straddle train and validation.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from contract.enums import StrEnum
from edge.dataflow import Detections, Frame
from edge.labels import CLASS_NAMES

log = logging.getLogger(__name__)

SIDECAR_VERSION = 1


class Reason(StrEnum):
    """Why a frame was queued."""

    LOW_CONFIDENCE = "low_confidence"
    VIOLATION = "violation"
    FALSE_ALARM = "false_alarm"


@dataclass(frozen=True)
class QueuedExample:
    """One complete queue item, as read back from its sidecar."""

    image: Path
    labels: Path
    sidecar: Path
    camera_id: str
    captured_at: float
    reason: str
    event_id: str | None
    false_alarm: bool
    width: int
    height: int


def yolo_rows(detections: Detections, width: int, height: int) -> list[str]:
    """Render detections as YOLO label rows (canonical class ids, normalised centre boxes)."""
    rows = []
    for (x1, y1, x2, y2), label in zip(detections.xyxy.tolist(), detections.labels(), strict=True):
        if label not in CLASS_NAMES or x2 <= x1 or y2 <= y1:
            continue
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        rows.append(f"{CLASS_NAMES.index(label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return rows


def has_uncertain(detections: Detections, low: float, high: float) -> bool:
    """True when any box scores in [low, high): the model was unsure, so the frame is worth labelling."""
    conf = detections.confidence
    return bool(np.any((conf >= low) & (conf < high)))


def read_item(sidecar: Path) -> QueuedExample:
    """Read one item's sidecar; raise ValueError naming the file when it is not a queue sidecar."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        return QueuedExample(
            image=sidecar.with_name(data["image"]),
            labels=sidecar.with_name(data["labels"]),
            sidecar=sidecar,
            camera_id=str(data["camera_id"]),
            captured_at=float(data["captured_at_epoch"]),
            reason=str(data["reason"]),
            event_id=data.get("event_id"),
            false_alarm=bool(data.get("false_alarm", False)),
            width=int(data["width"]),
            height=int(data["height"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{sidecar}: not a hard-example sidecar ({exc})") from None


def read_queue(folder: Path) -> list[QueuedExample]:
    """Return the complete items of a queue folder, oldest first; unreadable sidecars are logged, skipped."""
    items = []
    for sidecar in sorted(Path(folder).glob("*.json")):
        try:
            item = read_item(sidecar)
        except ValueError as exc:
            log.warning("%s", exc)
            continue
        if item.image.is_file():
            items.append(item)
    return sorted(items, key=lambda item: (item.captured_at, item.sidecar.name))


class HardExampleQueue:
    """Saves frames worth labelling, bounded to max_items (oldest evicted first, false alarms last).

    add() never raises into the pipeline: failures are logged and counted. Per camera and reason, at
    most one frame per `min_interval_s` is kept, since consecutive frames are near-duplicates.
    """

    def __init__(
        self,
        folder: Path,
        max_items: int,
        registry: CollectorRegistry | None = None,
        min_interval_s: float = 10.0,
        jpeg_quality: int = 95,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1:
            raise ValueError(f"hard-example queue: max_items must be at least 1, got {max_items}")
        self.folder = Path(folder)
        self.max_items = max_items
        self.min_interval_s = min_interval_s
        self.jpeg_quality = jpeg_quality
        self._clock = clock
        self._lock = threading.Lock()
        self._last_saved: dict[tuple[str, str], float] = {}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._items = read_queue(self.folder)
        self.saved = Counter(
            "sitesentry_hard_examples_saved", "Frames saved for labelling", ["reason"], registry=registry
        )
        self.skipped = Counter(
            "sitesentry_hard_examples_skipped",
            "Frames not saved for labelling: rate_limited, error or evicted (dropped to stay bounded)",
            ["cause"],
            registry=registry,
        )
        self.queued = Gauge(
            "sitesentry_hard_examples_queued", "Frames waiting to be labelled", registry=registry
        )
        self.queued.set(len(self._items))

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(
        self, frame: Frame, detections: Detections, reason: str, event_id: uuid.UUID | str | None = None
    ) -> Path | None:
        """Save the frame, its predictions and a sidecar; return the image path, or None if not saved."""
        try:
            reason = Reason(reason).value
            key = (frame.camera_id, reason)
            now = self._clock()
            with self._lock:
                last = self._last_saved.get(key)
                if last is not None and now - last < self.min_interval_s and reason != Reason.FALSE_ALARM:
                    self.skipped.labels("rate_limited").inc()
                    return None
                self._last_saved[key] = now
            item = self._write(frame, detections, reason, None if event_id is None else str(event_id))
            with self._lock:
                self._items.append(item)
                self._evict()
                self.queued.set(len(self._items))
            self.saved.labels(reason).inc()
            return item.image
        except Exception:  # a full disk or a bad frame must never stop the camera pipeline
            log.exception("could not save a hard example for camera %s", getattr(frame, "camera_id", "?"))
            self.skipped.labels("error").inc()
            return None

    def mark_false_alarm(self, event_id: uuid.UUID | str, note: str | None = None) -> int:
        """Mark the frames queued for an event as a false alarm (kept longest); return how many were marked.

        Queue a frame with reason "violation" and the event id when an event starts, so a manager's
        "false alarm" on the dashboard finds a clean frame here.
        """
        wanted = str(event_id)
        marked = 0
        with self._lock:
            for i, item in enumerate(self._items):
                if item.event_id != wanted:
                    continue
                try:
                    data = json.loads(item.sidecar.read_text(encoding="utf-8"))
                    data.update(reason=Reason.FALSE_ALARM.value, false_alarm=True, note=note)
                    _write_atomic(item.sidecar, json.dumps(data, indent=2).encode())
                    self._items[i] = read_item(item.sidecar)
                except (OSError, ValueError) as exc:  # exported or removed meanwhile
                    log.warning("could not mark %s as a false alarm: %s", item.sidecar, exc)
                    continue
                marked += 1
        if not marked:
            log.info("false alarm %s: no queued frame for this event", wanted)
        return marked

    def _write(
        self, frame: Frame, detections: Detections, reason: str, event_id: str | None
    ) -> QueuedExample:
        captured = datetime.fromtimestamp(frame.captured_at, timezone.utc)
        stem = (
            f"{frame.camera_id}-{captured:%Y%m%dT%H}_frame_{captured:%M%S}{captured.microsecond // 1000:03d}"
        )
        sidecar = self.folder / f"{stem}.json"
        if sidecar.exists():
            raise FileExistsError(f"{sidecar} already exists (two frames in one millisecond?)")
        height, width = frame.image.shape[:2]
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise ValueError(f"camera {frame.camera_id}: frame {frame.seq} could not be JPEG-encoded")
        image, labels = sidecar.with_suffix(".jpg"), sidecar.with_suffix(".txt")
        _write_atomic(image, jpeg.tobytes())
        rows = yolo_rows(detections, width, height)
        _write_atomic(labels, ("\n".join(rows) + "\n" if rows else "").encode())
        record = {
            "version": SIDECAR_VERSION,
            "image": image.name,
            "labels": labels.name,
            "camera_id": frame.camera_id,
            "frame_seq": frame.seq,
            "captured_at": captured.isoformat(),
            "captured_at_epoch": frame.captured_at,
            "reason": reason,
            "event_id": event_id,
            "false_alarm": reason == Reason.FALSE_ALARM,
            "note": None,
            "width": width,
            "height": height,
            "class_names": list(CLASS_NAMES),
            "detections": [
                {"label": label, "confidence": round(float(conf), 4), "xyxy": [round(v, 1) for v in box]}
                for box, conf, label in zip(
                    detections.xyxy.tolist(), detections.confidence.tolist(), detections.labels(), strict=True
                )
            ],
        }
        _write_atomic(sidecar, json.dumps(record, indent=2).encode())
        return read_item(sidecar)

    def _evict(self) -> None:
        if len(self._items) > self.max_items:  # items exported by `sitesentry dataset export-queue` are gone
            self._items = [item for item in self._items if item.sidecar.exists()]
        while len(self._items) > self.max_items:
            victim = next((item for item in self._items if not item.false_alarm), self._items[0])
            self._items.remove(victim)
            for path in (victim.sidecar, victim.image, victim.labels):  # sidecar first: item is gone at once
                path.unlink(missing_ok=True)
            self.skipped.labels("evicted").inc()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
