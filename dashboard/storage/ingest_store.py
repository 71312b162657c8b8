"""Writes of the ingest: one function per message kind, each given a DB session and a validated message.

Upserts are idempotent, so a message that arrives twice (at-least-once delivery) changes nothing the
second time; events are deduplicated on message_id and kept as one row per event_id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, tuple_
from sqlalchemy.orm import Session, selectinload

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
    return store_events(db, [message])[0]


def store_events(db: Session, messages: Sequence[EventMessage]) -> list[Event | None]:
    """Upsert the events of `messages` in their order (a START before its END) and add their timeline rows;
    None for each message seen before, in an earlier batch or earlier in this one.

    The rows every message needs are read with one query per table for the whole batch and the new ones
    written with one INSERT per table at the flush, instead of a dozen statements per message."""
    rows = _BatchRows.load(db, messages)
    now = _now()
    results: list[Event | None] = []
    timeline: list[tuple[Event, EventMessage, str, dict[str, Any]]] = []
    for message in messages:
        message_id = str(message.message_id)
        if message_id in rows.seen:
            results.append(None)
            continue
        rows.seen.add(message_id)
        payload: dict[str, Any] = message.model_dump(mode="json")
        event = rows.events.get(str(message.event_id))
        newest = event is None or message.emitted_at >= event.last_emitted_at
        if event is None:
            event = _new_event(message, payload, now)
            db.add(event)
            rows.events[event.event_id] = event
        else:
            _merge(event, message, payload)
            event.updated_at = now
        if newest:
            _replace_evidence(db, rows, event, message)
        timeline.append((event, message, message_id, payload))
        results.append(event)
    # The events, evidence files and links first (the timeline rows need the events' ids); then the
    # timeline and the processed ids as plain multi-row INSERTs: thousands of ORM objects cost more than
    # the statements themselves.
    db.flush()
    if timeline:
        db.execute(
            insert(EventMessageRow),
            [
                {
                    "event_pk": event.id,
                    "message_id": message_id,
                    "type": message.type.value,
                    "emitted_at": message.emitted_at,
                    "received_at": now,
                    "payload": payload,
                }
                for event, message, message_id, payload in timeline
            ],
        )
        db.execute(
            insert(ProcessedMessage),
            [
                {"message_id": message_id, "kind": "event", "received_at": now}
                for _, _, message_id, _ in timeline
            ],
        )
        for event in {id(event): event for event, *_ in timeline}.values():
            db.expire(event, ["messages"])  # a timeline read later in this session sees the new rows
    return results


EvidenceKey = tuple[str, str, str]


@dataclass
class _BatchRows:
    """What a batch of event messages reads before writing: processed message ids, their events with the
    evidence links, and the evidence files they name; kept up to date as the batch adds rows."""

    seen: set[str]
    events: dict[str, Event]
    files: dict[EvidenceKey, EvidenceFile]

    @classmethod
    def load(cls, db: Session, messages: Sequence[EventMessage]) -> _BatchRows:
        """Read the rows `messages` touch: three queries whatever the batch size (plus one for links)."""
        message_ids = {str(m.message_id) for m in messages}
        seen = (
            set(
                db.scalars(
                    select(ProcessedMessage.message_id).where(ProcessedMessage.message_id.in_(message_ids))
                )
            )
            if message_ids
            else set()
        )
        fresh = [m for m in messages if str(m.message_id) not in seen]  # redeliveries need nothing more
        event_ids = {str(m.event_id) for m in fresh}
        keys = {(m.site, m.edge, item.path) for m in fresh for item in m.evidence}
        events = (
            {
                event.event_id: event
                for event in db.scalars(
                    select(Event)
                    .where(Event.event_id.in_(event_ids))
                    .options(selectinload(Event.evidence_links).joinedload(EventEvidence.evidence))
                )
            }
            if event_ids
            else {}
        )
        files = (
            {
                (file.site, file.edge, file.path): file
                for file in db.scalars(
                    select(EvidenceFile).where(
                        tuple_(EvidenceFile.site, EvidenceFile.edge, EvidenceFile.path).in_(sorted(keys))
                    )
                )
            }
            if keys
            else {}
        )
        return cls(seen, events, files)


def _new_event(message: EventMessage, payload: dict[str, Any], now: datetime) -> Event:
    """Return the row of an event first heard of through `message`."""
    box = payload["person_box"]
    anchor_x, anchor_y = _anchor(box)
    return Event(
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
        evidence_links=[],
    )


def _replace_evidence(db: Session, rows: _BatchRows, event: Event, message: EventMessage) -> None:
    """Make the event's evidence the newest message's list: a clip left out is retracted (docs/mqtt.md)."""
    links = {
        (link.evidence.site, link.evidence.edge, link.evidence.path): link for link in event.evidence_links
    }
    named: set[EvidenceKey] = set()
    for item in message.evidence:
        key = (message.site, message.edge, item.path)
        named.add(key)
        file = rows.files.get(key)
        if file is None:
            file = EvidenceFile(
                site=message.site,
                edge=message.edge,
                camera=message.camera,
                kind=item.kind,
                path=item.path,
                created_at=_now(),
            )
            db.add(file)
            rows.files[key] = file
        if item.sha256 is not None and file.stored_path is None:
            file.sha256 = item.sha256  # a late clip: its digest comes with an update or a repeated end
        link = links.get(key)
        if link is None:
            link = EventEvidence(evidence=file, offset_s=item.offset_s)
            event.evidence_links.append(link)
            links[key] = link
        elif item.offset_s is not None:
            link.offset_s = item.offset_s
    for key, link in links.items():
        if key not in named:
            event.evidence_links.remove(link)
            # Off the file's side too: a link made earlier in this batch would be saved through it again.
            if link in link.evidence.links:
                link.evidence.links.remove(link)


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
