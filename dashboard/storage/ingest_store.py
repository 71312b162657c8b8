"""Writes of the ingest: one function per message kind, each given a DB session and a validated message.

Upserts are idempotent, so a message that arrives twice (at-least-once delivery) changes nothing the
second time; events are deduplicated on message_id and kept as one row per event_id.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.evidence import EvidenceChunk
from contract.payloads import (
    CameraStatusMessage,
    CameraZonesMessage,
    ControlReply,
    EdgeStatusMessage,
    EventMessage,
    HeartbeatMessage,
)
from dashboard.storage.models import (
    Camera,
    ControlReplyRow,
    Edge,
    Event,
    EventEvidence,
    EventMessageRow,
    EventStatus,
    EvidenceFile,
    ProcessedMessage,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _anchor(box: dict[str, float] | None) -> tuple[int | None, int | None]:
    """Return the bottom centre of a person box in thousandths (where the feet are: the heat-map point)."""
    if box is None:
        return None, None
    x = (box["x1"] + box["x2"]) / 2
    return min(999, int(x * 1000)), min(999, int(box["y2"] * 1000))


def camera_row(db: Session, site: str, camera: str, edge: str | None = None) -> Camera:
    """Return the camera's row, creating it when first heard of."""
    row = db.scalar(select(Camera).where(Camera.site == site, Camera.camera == camera))
    if row is None:
        row = Camera(site=site, camera=camera, edge=edge, updated_at=_now())
        db.add(row)
    elif edge is not None and row.edge != edge:
        row.edge = edge
    return row


def edge_row(db: Session, site: str, edge: str) -> Edge:
    """Return the edge's row, creating it when first heard of."""
    row = db.scalar(select(Edge).where(Edge.site == site, Edge.edge == edge))
    if row is None:
        row = Edge(site=site, edge=edge, updated_at=_now())
        db.add(row)
    return row


def evidence_row(db: Session, site: str, edge: str, camera: str, kind: str, path: str) -> EvidenceFile:
    """Return the evidence file row of (site, edge, path), creating it when first named."""
    row = db.scalar(
        select(EvidenceFile).where(
            EvidenceFile.site == site, EvidenceFile.edge == edge, EvidenceFile.path == path
        )
    )
    if row is None:
        row = EvidenceFile(site=site, edge=edge, camera=camera, kind=kind, path=path, created_at=_now())
        db.add(row)
        db.flush()
    return row


def store_event(db: Session, message: EventMessage) -> Event | None:
    """Upsert the event of `message` and add its timeline row; None when the message was seen before."""
    message_id = str(message.message_id)
    if db.get(ProcessedMessage, message_id) is not None:
        return None
    now = _now()
    payload: dict[str, Any] = message.model_dump(mode="json")
    event = db.scalar(select(Event).where(Event.event_id == str(message.event_id)))
    box = payload["person_box"]
    newest = event is None or message.emitted_at >= event.last_emitted_at
    if event is None:
        anchor_x, anchor_y = _anchor(box)
        event = Event(
            event_id=str(message.event_id),
            site=message.site,
            edge=message.edge,
            camera=message.camera,
            zone=message.zone,
            rule=message.rule.value,
            track_id=message.track_id,
            phase=message.type.value,
            started_at=message.started_at,
            ended_at=message.ended_at,
            end_reason=getattr(message, "end_reason", None),
            confidence=message.confidence,
            person_box=box,
            evidence_boxes=payload["evidence_boxes"],
            anchor_x=anchor_x,
            anchor_y=anchor_y,
            model_name=message.model.name,
            model_version=message.model.version,
            frame_seq=message.frame_seq,
            last_emitted_at=message.emitted_at,
            status=EventStatus.NEW.value,
            created_at=now,
            updated_at=now,
        )
        db.add(event)
        db.flush()
    else:
        _merge(event, message, payload)
        event.updated_at = now
    if newest:
        _replace_evidence(db, event, message)
    return _add_timeline(db, event, message, payload, message_id, now)


def _replace_evidence(db: Session, event: Event, message: EventMessage) -> None:
    """Make the event's evidence the newest message's list: a clip left out is retracted (docs/mqtt.md)."""
    named: set[int] = set()
    for item in message.evidence:
        file = evidence_row(db, message.site, message.edge, message.camera, item.kind, item.path)
        named.add(file.id)
        if item.sha256 is not None and file.stored_path is None:
            file.sha256 = item.sha256  # a late clip: its digest comes with an update or a repeated end
        link = db.get(EventEvidence, (event.id, file.id))
        if link is None:
            db.add(EventEvidence(event_pk=event.id, evidence_id=file.id, offset_s=item.offset_s))
        elif item.offset_s is not None:
            link.offset_s = item.offset_s
    for link in list(event.evidence_links):
        if link.evidence_id not in named:
            event.evidence_links.remove(link)


def _add_timeline(
    db: Session, event: Event, message: EventMessage, payload: dict[str, Any], message_id: str, now: datetime
) -> Event:
    """Add the message's timeline row and mark it processed."""
    db.add(
        EventMessageRow(
            event_pk=event.id,
            message_id=message_id,
            type=message.type.value,
            emitted_at=message.emitted_at,
            received_at=now,
            payload=payload,
        )
    )
    db.add(ProcessedMessage(message_id=message_id, kind="event", received_at=now))
    return event


def _merge(event: Event, message: EventMessage, payload: dict[str, Any]) -> None:
    """Fold a later message of the same event into its row; a closed event is never reopened."""
    newer = message.emitted_at >= event.last_emitted_at
    event.confidence = max(event.confidence, message.confidence)
    if message.type.value == "end":
        event.phase = "end"
        event.ended_at = message.ended_at or event.ended_at
        event.end_reason = getattr(message, "end_reason", None) or event.end_reason
    elif event.phase != "end" and newer:
        event.phase = message.type.value
    if newer:
        event.last_emitted_at = message.emitted_at
        event.frame_seq = max(event.frame_seq, message.frame_seq)
        if payload["person_box"] is not None:
            event.person_box = payload["person_box"]
            event.anchor_x, event.anchor_y = _anchor(payload["person_box"])
        if payload["evidence_boxes"]:
            event.evidence_boxes = payload["evidence_boxes"]
        if message.zone is not None:
            event.zone = message.zone


def store_camera_status(db: Session, message: CameraStatusMessage) -> Camera | None:
    """Update a camera's stream state; an older retained message (replayed on reconnect) changes nothing."""
    row = camera_row(db, message.site, message.camera, message.edge)
    if row.state_at is not None and message.at < row.state_at:
        return None
    row.state = message.state.value
    row.detail = message.detail
    row.state_at = message.at
    row.updated_at = _now()
    return row


def store_edge_status(db: Session, message: EdgeStatusMessage) -> Edge | None:
    """Update an edge's online/offline; the Last Will (no `at`) is dated when it arrives."""
    row = edge_row(db, message.site, message.edge)
    at = message.at or _now()
    if row.state_at is not None and message.at is not None and at < row.state_at:
        return None
    row.state = message.state
    row.state_at = at
    row.reason = message.reason
    row.version = message.version
    row.status = message.model_dump(mode="json")
    interval = getattr(message, "heartbeat_s", None)
    if interval:
        row.heartbeat_s = interval
    row.updated_at = _now()
    return row


def store_heartbeat(db: Session, message: HeartbeatMessage) -> Edge | None:
    """Keep an edge's newest heartbeat and copy each camera's fps and latency onto the camera rows."""
    row = edge_row(db, message.site, message.edge)
    if row.heartbeat_at is not None and message.at < row.heartbeat_at:
        return None
    now = _now()
    row.heartbeat_at = message.at
    row.heartbeat_received_at = now
    row.heartbeat = message.model_dump(mode="json")
    interval = getattr(message, "interval_s", None)
    if interval:
        row.heartbeat_s = interval
    row.updated_at = now
    for camera_id, figures in message.cameras.items():
        camera = camera_row(db, message.site, camera_id, message.edge)
        camera.fps = figures.fps
        camera.latency_ms_p95 = figures.latency_ms_p95
        camera.figures_at = message.at
        camera.updated_at = now
    return row


def store_snapshot(db: Session, site: str, camera: str, relative_path: str) -> Camera:
    """Record that the camera's latest snapshot is now at `relative_path` (under evidence_dir)."""
    row = camera_row(db, site, camera)
    now = _now()
    row.snapshot_path = relative_path
    row.snapshot_at = now
    row.updated_at = now
    return row


def store_zones(db: Session, message: CameraZonesMessage) -> Camera | None:
    """Keep the danger zones a camera applies now; an older retained message changes nothing."""
    row = camera_row(db, message.site, message.camera, message.edge)
    if row.zones_at is not None and message.at < row.zones_at:
        return None
    row.zones = [zone.model_dump(mode="json") for zone in message.zones]
    row.zones_at = message.at
    row.updated_at = _now()
    return row


def store_evidence_file(db: Session, header: EvidenceChunk, relative_path: str) -> EvidenceFile:
    """Record a verified evidence file (the events that name its path are linked through the same row)."""
    row = evidence_row(db, header.site, header.edge, header.camera, header.kind, header.path)
    row.sha256 = header.sha256
    row.size = header.size
    row.stored_path = relative_path
    row.stored_at = _now()
    return row


def store_control_reply(db: Session, message: ControlReply) -> ControlReplyRow:
    """Keep an edge's reply to a control command."""
    row = ControlReplyRow(
        request_id=message.request_id,
        site=message.site,
        edge=message.edge,
        status=message.status,
        message=message.message,
        at=message.at,
        received_at=_now(),
    )
    db.add(row)
    return row
