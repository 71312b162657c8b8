"""MQTT payload models (pydantic + stdlib only): the edge builds them, the dashboard validates them, and
the JSON Schemas in docs/schemas are generated from them."""

from __future__ import annotations

import uuid
from typing import Annotated, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contract.enums import CameraStatus, Phase, Rule
from contract.ids import Identifier

#: Bumped on any change of any payload model (fields added, removed or retyped).
SCHEMA_VERSION: Final = 1

Unit = Annotated[float, Field(ge=0, le=1)]
#: Why an event ended: seen no more, the edge stopped with it open, or recovered after a crash.
EndReason = Literal["cleared", "stopped", "edge_restarted"]
PPEVerdict = Literal["worn", "missing", "undetermined"]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="Chosen by the sender.")]


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
    end_reason: EndReason | None = Field(
        None,
        description="`end` only: `cleared` when the violation was last seen `end_after_s` ago, `stopped` "
        "when the edge stopped or the camera was disabled with it open, `edge_restarted` when the edge "
        "died with it open and closed it on its next start (`ended_at` is then the last time it was known "
        "open). Null on start and update.",
    )


class EdgeStatusMessage(Wire):
    """Retained online/offline of an edge box; `offline` is also its MQTT Last Will."""

    schema_version: Literal[1]
    site: Identifier
    edge: Identifier
    state: Literal["online", "offline"]
    at: AwareDatetime | None = Field(description="When the state changed; null in the Last Will.")
    reason: str | None = Field(None, description="Why the edge went offline.")
    version: str = Field(description="SiteSentry version of the edge.")
    heartbeat_s: float | None = Field(
        None,
        gt=0,
        description="Seconds between this edge's heartbeats: `online` is stale when the newest heartbeat "
        "is older than 3 intervals (see contract.liveness).",
    )


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
    detect: str | None = Field(
        None,
        description="Model input the frames are detected at, e.g. `640x352` or `416x256 + 2x2 tiles "
        "(overlap 0.2)` (cameras[].detect); null before the first frame.",
    )
    events_suppressed: dict[Rule, int] = Field(
        default_factory=dict,
        description="New events not started because of flood control (rules.max_new_events_per_min), "
        "by rule, since start; zone_entry is never suppressed.",
    )
    events_suppressed_last_min: int = Field(
        0,
        ge=0,
        description="Of those, how many in the 60 s before `at`: above 0, flood control is holding back "
        "alerts on this camera now (the dashboard's live page says so).",
    )
    ppe_tracks: dict[Literal["helmet", "vest"], dict[PPEVerdict, int]] = Field(
        default_factory=dict,
        description="Ended tracks by PPE item and the strongest verdict their evidence reached, since start; "
        "undetermined: never judged (too small, occluded, turned away), so never alerted.",
    )


class QueueFigures(Wire):
    """Depth of one internal queue."""

    depth: int = Field(ge=0)
    capacity: int | None = Field(None, ge=0)
    dropped: int = Field(0, ge=0, description="Items dropped since start.")


class DetectorFigures(Wire):
    """What the detector really runs on, as the backend reported it after loading the model."""

    model: str = Field(description="Model name and version from its metadata.")
    providers: list[str] = Field(
        description="ONNX Runtime execution providers the session got (a GPU one missing means it fell back),"
        " or the native backend and device, e.g. `TensorRT 10.3.0 fp16 on Orin` or `OpenVINO:CPU`."
    )


class HeartbeatStats(Wire):
    """The figures the app hands to `AlertPublisher.heartbeat`; the publisher adds its own."""

    cameras: dict[str, CameraFigures] = Field(default_factory=dict, description="Keyed by camera id.")
    queues: dict[str, QueueFigures] = Field(default_factory=dict, description="Keyed by queue name.")
    detector: DetectorFigures | None = Field(None, description="The detector's model and providers.")


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
    interval_s: float | None = Field(
        None, gt=0, description="Seconds until the next heartbeat: older than 3 intervals means stale."
    )
    detector: DetectorFigures | None = Field(
        None, description="The detector's model and the providers it really runs on (absent: not reported)."
    )


class AlarmMessage(Wire):
    """Retained alarm state of one target, `.../alarms/zones/<zone>` or `.../alarms/cameras/<cam>`, sent on
    every change and again after every reconnect: a siren follows `state`."""

    schema_version: Literal[1]
    alarm_id: uuid.UUID = Field(
        description="The event whose start or end last changed this target: `off` closes the alarm that "
        "`on` opened."
    )
    action: Literal["on", "off"] = Field(
        description="What that event did: `on` at its start, `off` at its end."
    )
    state: Literal["on", "off"] | None = Field(
        None,
        description="The target's state after the change: `on` while any alarm there is open. Sirens "
        "follow this, not `action` (two people in one zone are two alarms).",
    )
    open_alarms: list[uuid.UUID] = Field(
        default_factory=list, description="Alarm (event) ids still open at this target."
    )
    rule: Rule
    site: Identifier
    camera: Identifier
    zone: Identifier | None
    message: str = Field(description="Short text for a display or text-to-speech.")
    at: AwareDatetime = Field(description="When the state last changed (unchanged when sent again).")


Point = tuple[Unit, Unit]


class ZonePolygon(Wire):
    """A danger zone's outline in one camera view, as the dashboard's zone editor draws it."""

    id: Identifier = Field(description="Zone id, unique within the camera.")
    name: str | None = Field(None, max_length=100, description="Display name; defaults to the id.")
    polygon: list[Point] = Field(
        min_length=3, max_length=64, description="Vertices [[x, y], ...] normalised to the frame size."
    )


class CameraZonesMessage(Wire):
    """Retained danger zones one camera applies now, on `.../cameras/<camera>/zones`."""

    schema_version: Literal[1]
    site: Identifier
    edge: Identifier
    camera: Identifier
    zones: list[ZonePolygon] = Field(description="Zones that forbid entry, as applied by the edge.")
    at: AwareDatetime = Field(description="When the edge applied them (start or last `set_zones`).")


class ControlCommand(Wire):
    """A command to `.../edges/<edge>/control`: enable or disable a rule or a camera at run time,
    mark an event as a false alarm (its frames are kept for relabelling), or replace a camera's danger
    zones (applied without a restart)."""

    schema_version: Literal[1] = 1
    request_id: RequestId
    action: Literal["enable", "disable", "false_alarm", "set_zones"]
    rule: Rule | None = Field(None, description="The rule to switch; with `camera`, only on that camera.")
    camera: Identifier | None = Field(None, description="The camera to switch (or whose rule to switch).")
    event_id: uuid.UUID | None = Field(None, description="false_alarm: the event a manager rejected.")
    note: str | None = Field(
        None, max_length=500, description='false_alarm: why, for the labeller ("shadow, not a person").'
    )
    zones: list[ZonePolygon] | None = Field(
        None, max_length=32, description="set_zones: the camera's danger zones after the change."
    )

    @model_validator(mode="after")
    def _names_a_target(self) -> ControlCommand:
        if self.action == "false_alarm":
            if self.event_id is None:
                raise ValueError("a false_alarm command needs `event_id`")
        elif self.action == "set_zones":
            if self.camera is None or self.zones is None:
                raise ValueError("a set_zones command needs `camera` and `zones`")
            ids = [zone.id for zone in self.zones]
            if len(set(ids)) != len(ids):
                raise ValueError("set_zones: zone ids must be unique within the camera")
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
