"""MQTT payload models: the code that builds messages and the JSON Schemas in docs/schemas come from these."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from edge.config.models import Identifier
from edge.dataflow import EvidenceRef, Phase, Rule, SafetyEvent
from edge.frames.health import CameraStatus

#: Bumped on any change of any payload model (fields added, removed or retyped).
SCHEMA_VERSION: Final = 1

Unit = Annotated[float, Field(ge=0, le=1)]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="Chosen by the sender.")]


class ModelLike(Protocol):
    """Anything naming a model and its version, such as the detector's ModelInfo."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Name and version of the detector that produced an event (when no detector object is at hand)."""

    name: str
    version: str


class Wire(BaseModel):
    """Base of every payload: unknown fields are errors, values never change after construction."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Box(Wire):
    """A box in normalised coordinates (0..1, origin top-left)."""

    x1: Unit
    y1: Unit
    x2: Unit
    y2: Unit


class Evidence(Wire):
    """A stored evidence file; fetch it from the edge or dashboard and check its sha256."""

    kind: Literal["snapshot", "clip"]
    path: str = Field(description="Relative to the edge's evidence folder.")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="Hex digest; null while a clip is still recording."
    )
    offset_s: float | None = Field(
        None,
        ge=0,
        description="Clips only: seconds from the clip's first frame to the frame that started this event "
        "(events that start close together share one clip).",
    )


class ModelRef(Wire):
    """The detector model that saw the violation."""

    name: str
    version: str


class EventMessage(Wire):
    """A violation's start, update or end, on `<prefix>/<site>/cameras/<camera>/events`."""

    schema_version: Literal[1] = Field(description="Payload schema version.")
    message_id: uuid.UUID = Field(
        description="Unique per message and kept across retries: deduplicate on it (or upsert on event_id)."
    )
    event_id: uuid.UUID = Field(description="The same for the start, updates and end of one violation.")
    type: Phase = Field(description="start, update or end.")
    rule: Rule = Field(description="Which rule was broken.")
    site: Identifier
    edge: Identifier
    camera: Identifier
    zone: Identifier | None = Field(description="Zone id for zone rules and PPE zones, else null.")
    track_id: int = Field(ge=0, description="Tracker id of the person within this camera.")
    started_at: AwareDatetime = Field(description="When the violation started (ISO 8601 with offset).")
    ended_at: AwareDatetime | None = Field(description="When it ended; set on `end` only.")
    confidence: Unit = Field(description="Peak confidence of the violation so far.")
    person_box: Box | None = Field(description="The person, in normalised coordinates.")
    evidence_boxes: list[Box] = Field(description="Boxes that show the violation (bare head, no vest).")
    evidence: list[Evidence] = Field(description="Snapshot and clip references.")
    model: ModelRef
    frame_seq: int = Field(ge=0, description="Sequence number of the frame that produced this message.")
    emitted_at: AwareDatetime = Field(description="When the edge wrote the message (before any retry).")


class EdgeStatusMessage(Wire):
    """Retained online/offline of an edge box; `offline` is also its MQTT Last Will."""

    schema_version: Literal[1]
    site: Identifier
    edge: Identifier
    state: Literal["online", "offline"]
    at: AwareDatetime | None = Field(description="When the state changed; null in the Last Will.")
    reason: str | None = Field(None, description="Why the edge went offline.")
    version: str = Field(description="SiteSentry version of the edge.")


class CameraStatusMessage(Wire):
    """Retained stream status of one camera, on `.../cameras/<camera>/status`."""

    schema_version: Literal[1]
    site: Identifier
    edge: Identifier
    camera: Identifier
    state: CameraStatus
    detail: str | None = Field(None, description="Last error or other detail, credentials removed.")
    at: AwareDatetime


class CameraFigures(Wire):
    """One camera's figures since the last heartbeat."""

    fps: float = Field(ge=0, description="Frames analysed per second.")
    latency_ms_p50: float | None = Field(None, ge=0, description="Capture-to-result latency, median.")
    latency_ms_p95: float | None = Field(
        None, ge=0, description="Capture-to-result latency, 95th percentile."
    )
    frames_dropped: int = Field(0, ge=0, description="Frames dropped since start.")


class QueueFigures(Wire):
    """Depth of one internal queue."""

    depth: int = Field(ge=0)
    capacity: int | None = Field(None, ge=0)
    dropped: int = Field(0, ge=0, description="Items dropped since start.")


class HeartbeatStats(Wire):
    """The figures the app hands to `AlertPublisher.heartbeat`; the publisher adds its own."""

    cameras: dict[str, CameraFigures] = Field(default_factory=dict, description="Keyed by camera id.")
    queues: dict[str, QueueFigures] = Field(default_factory=dict, description="Keyed by queue name.")


class OutboxFigures(Wire):
    """The durable outbox of alert messages."""

    pending: int = Field(ge=0, description="Messages written but not yet acknowledged by the broker.")
    delivered_total: int = Field(ge=0, description="Acknowledged since the edge started.")
    dropped_total: int = Field(
        ge=0, description="Dropped because the outbox was full, since the edge started."
    )


class HeartbeatMessage(Wire):
    """Periodic figures of an edge box, on `.../edges/<edge>/heartbeat` (not retained)."""

    schema_version: Literal[1]
    site: Identifier
    edge: Identifier
    at: AwareDatetime
    uptime_s: float = Field(ge=0)
    cameras: dict[str, CameraFigures]
    queues: dict[str, QueueFigures]
    outbox: OutboxFigures
    reconnects: int = Field(ge=0, description="Broker reconnections since the edge started.")


class AlarmMessage(Wire):
    """A command for sirens, beacons or speakers: `.../alarms/zones/<zone>` or `.../alarms/cameras/<cam>`."""

    schema_version: Literal[1]
    alarm_id: uuid.UUID = Field(description="The event id: `off` closes the alarm that `on` opened.")
    action: Literal["on", "off"]
    rule: Rule
    site: Identifier
    camera: Identifier
    zone: Identifier | None
    message: str = Field(description="Short text for a display or text-to-speech.")
    at: AwareDatetime


class ControlCommand(Wire):
    """A command to `.../edges/<edge>/control`: enable or disable a rule or a camera at run time, or
    mark an event as a false alarm (its frames are kept for relabelling)."""

    schema_version: Literal[1] = 1
    request_id: RequestId
    action: Literal["enable", "disable", "false_alarm"]
    rule: Rule | None = Field(None, description="The rule to switch; with `camera`, only on that camera.")
    camera: Identifier | None = Field(None, description="The camera to switch (or whose rule to switch).")
    event_id: uuid.UUID | None = Field(None, description="false_alarm: the event a manager rejected.")
    note: str | None = Field(
        None, max_length=500, description='false_alarm: why, for the labeller ("shadow, not a person").'
    )

    @model_validator(mode="after")
    def _names_a_target(self) -> ControlCommand:
        if self.action == "false_alarm":
            if self.event_id is None:
                raise ValueError("a false_alarm command needs `event_id`")
        elif self.rule is None and self.camera is None:
            raise ValueError("a command needs `rule`, `camera` or both")
        return self


class ControlReply(Wire):
    """The answer to a control command, on its MQTT 5 response topic or `.../edges/<edge>/control/reply`."""

    schema_version: Literal[1]
    request_id: str | None = Field(
        description="The command's request_id; null if the command was unreadable."
    )
    site: Identifier
    edge: Identifier
    status: Literal["ok", "error"]
    message: str
    at: AwareDatetime


def _unit(value: float) -> float:
    # Detector boxes may poke a hair outside the frame; the schema promises 0..1.
    return min(1.0, max(0.0, float(value)))


def _box(xyxy: tuple[float, float, float, float]) -> Box:
    x1, y1, x2, y2 = (_unit(v) for v in xyxy)
    return Box(x1=x1, y1=y1, x2=x2, y2=y2)


def _evidence(ref: EvidenceRef) -> Evidence:
    return Evidence.model_validate(
        {"kind": ref.kind, "path": ref.path, "sha256": ref.sha256, "offset_s": ref.offset_s}
    )


def event_message(
    event: SafetyEvent, *, edge: str, model: ModelLike, emitted_at: datetime, message_id: uuid.UUID
) -> EventMessage:
    """Build the wire message of a SafetyEvent."""
    return EventMessage(
        schema_version=SCHEMA_VERSION,
        message_id=message_id,
        event_id=event.event_id,
        type=event.phase,
        rule=event.rule,
        site=event.site_id,
        edge=edge,
        camera=event.camera_id,
        zone=event.zone,
        track_id=event.track_id,
        started_at=event.started_at,
        ended_at=event.ended_at,
        confidence=_unit(event.peak_confidence),
        person_box=_box(event.boxes[0]) if event.boxes else None,
        evidence_boxes=[_box(b) for b in event.boxes[1:]],
        evidence=[_evidence(ref) for ref in event.evidence],
        model=ModelRef(name=model.name, version=model.version),
        frame_seq=event.frame_seq,
        emitted_at=emitted_at,
    )


def alarm_message(event: SafetyEvent, *, at: datetime) -> AlarmMessage:
    """Build the alarm command for an event: `on` while it lasts, `off` when it ends."""
    where = f"zone {event.zone} (camera {event.camera_id})" if event.zone else f"camera {event.camera_id}"
    what = {
        Rule.NO_HELMET: "worker without helmet",
        Rule.NO_VEST: "worker without vest",
        Rule.ZONE_ENTRY: "person in danger zone",
    }.get(event.rule, str(event.rule))
    ended = event.phase is Phase.END
    return AlarmMessage(
        schema_version=SCHEMA_VERSION,
        alarm_id=event.event_id,
        action="off" if ended else "on",
        rule=event.rule,
        site=event.site_id,
        camera=event.camera_id,
        zone=event.zone,
        message=f"{'Cleared: ' if ended else ''}{what} at {where}",
        at=at,
    )
