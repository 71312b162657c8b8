"""The immutable records passed between stages: frame -> detections -> tracks -> violations -> events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from contract.enums import Phase, Rule
from edge.labels import CLASS_NAMES


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded camera frame; seq and captured_at let every stage measure latency."""

    camera_id: str
    seq: int
    # Epoch seconds of the moment the frame shows, the clock every rule, event and clip runs on: when the
    # reader got it (cameras, paced files), or for a file analysed unpaced its place on the file's own
    # timeline counted from when the file was opened, so results never depend on the machine's speed.
    captured_at: float
    image: np.ndarray  # BGR, HxWx3, uint8
    read_at: float | None = None  # wall-clock seconds when the reader got it, where not captured_at

    @property
    def received_at(self) -> float:
        """Return the wall-clock time the reader got the frame (for latency figures)."""
        return self.captured_at if self.read_at is None else self.read_at

    @property
    def size(self) -> tuple[int, int]:
        """Return (width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes from the detector for one frame, in pixel xyxy, with canonical class names."""

    xyxy: np.ndarray  # (N, 4) float32, pixels
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32, index into names
    names: tuple[str, ...] = CLASS_NAMES

    @classmethod
    def empty(cls, names: tuple[str, ...] = CLASS_NAMES) -> Detections:
        """Return a record with no boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), names)

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def of(self, label: str) -> Detections:
        """Return only the boxes of one class, looked up by name."""
        if label not in self.names:
            return Detections.empty(self.names)
        keep = self.class_id == self.names.index(label)
        return Detections(self.xyxy[keep], self.confidence[keep], self.class_id[keep], self.names)

    def labels(self) -> list[str]:
        """Return the class name of every box."""
        return [self.names[int(i)] for i in self.class_id]


@dataclass(frozen=True, slots=True)
class Track:
    """A tracked person: a stable id across frames, and its current box in pixels."""

    track_id: int
    xyxy: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True, slots=True)
class Violation:
    """One rule broken by one tracked person in one frame (before debouncing)."""

    camera_id: str
    track_id: int
    rule: Rule
    zone: str | None
    confidence: float
    person_xyxy: tuple[float, float, float, float]  # pixels
    evidence_xyxy: tuple[tuple[float, float, float, float], ...] = ()  # the head / no_vest boxes, pixels

    @property
    def key(self) -> tuple[int, Rule, str | None]:
        """Identify the ongoing violation this frame's observation belongs to."""
        return (self.track_id, self.rule, self.zone)


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """A stored evidence file and its checksum, so a consumer can verify what it fetched."""

    kind: str  # "snapshot" or "clip"
    path: str  # relative to the evidence folder
    sha256: str | None = None  # None while a clip is still being recorded
    offset_s: float | None = None  # clips: where in the clip the event starts (clips can be shared)


@dataclass(frozen=True, slots=True)
class SafetyEvent:
    """A debounced violation: one id from start to end, published over MQTT and shown on the dashboard."""

    event_id: uuid.UUID
    phase: Phase
    site_id: str
    camera_id: str
    rule: Rule
    zone: str | None
    track_id: int
    started_at: datetime  # timezone-aware
    ended_at: datetime | None
    peak_confidence: float
    boxes: tuple[tuple[float, float, float, float], ...]  # normalised xyxy: the person, then evidence boxes
    frame_seq: int
    evidence: tuple[EvidenceRef, ...] = field(default_factory=tuple)
    end_reason: str | None = None  # END only: "cleared", "stopped" or "edge_restarted" (contract.EndReason)

    @property
    def duration_s(self) -> float | None:
        """Return how long the violation lasted, once it has ended."""
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def with_evidence(self, *refs: EvidenceRef) -> SafetyEvent:
        """Return a copy carrying these evidence references as well."""
        return replace(self, evidence=self.evidence + tuple(refs))


@dataclass(frozen=True, slots=True)
class FrameResult:
    """Everything one camera step produced for a frame: what evidence, snapshots and the UI draw from."""

    frame: Frame
    detections: Detections
    tracks: tuple[Track, ...]
    violations: tuple[Violation, ...]
    events: tuple[SafetyEvent, ...]
    stage_ms: dict[str, float] = field(default_factory=dict)  # per-stage latency of this frame
