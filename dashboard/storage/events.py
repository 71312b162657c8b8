"""Event queries for the API: filtered lists with keyset pagination, and one event with its details."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import Session, selectinload

from dashboard.auth.scope import Scope
from dashboard.storage.models import Event, EventEvidence


@dataclass(frozen=True, slots=True)
class EventFilters:
    """What an event list is narrowed to; None means any."""

    site: str | None = None
    camera: str | None = None
    zone: str | None = None
    rule: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(started_at: datetime, pk: int) -> str:
    """Return an opaque cursor for the position after (started_at, pk)."""
    return base64.urlsafe_b64encode(f"{started_at.isoformat()}|{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Read a cursor back; ValueError when it was not made by encode_cursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, pk = text.split("|")
        at = datetime.fromisoformat(moment)
        if at.tzinfo is None:
            raise ValueError("naive")
        return at, int(pk)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ValueError("invalid cursor") from exc


def filtered(scope: Scope, filters: EventFilters) -> Select[Event]:
    """Return the select of events in `scope` matching `filters` (unordered)."""
    query = select(Event).where(scope.filter(Event.site, Event.camera))
    if filters.site:
        query = query.where(Event.site == filters.site)
    if filters.camera:
        query = query.where(Event.camera == filters.camera)
    if filters.zone:
        query = query.where(Event.zone == filters.zone)
    if filters.rule:
        query = query.where(Event.rule == filters.rule)
    if filters.status:
        query = query.where(Event.status == filters.status)
    if filters.since:
        query = query.where(Event.started_at >= filters.since)
    if filters.until:
        query = query.where(Event.started_at < filters.until)
    return query


def list_events(
    db: Session,
    scope: Scope,
    filters: EventFilters,
    *,
    cursor: str | None = None,
    limit: int = 50,
    with_evidence: bool = False,
) -> tuple[list[Event], str | None]:
    """Return a page of events newest first and the cursor of the next page (None at the end).

    Keyset pagination on (started_at, id): each page is an index range scan, as fast at the millionth row
    as at the first, where OFFSET would read and skip every earlier row."""
    query = filtered(scope, filters)
    if cursor:
        at, pk = decode_cursor(cursor)
        query = query.where(tuple_(Event.started_at, Event.id) < tuple_(at, pk))
    query = query.order_by(Event.started_at.desc(), Event.id.desc()).limit(limit + 1)
    if with_evidence:
        query = query.options(selectinload(Event.evidence_links).selectinload(EventEvidence.evidence))
    rows = list(db.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].started_at, rows[-1].id) if more and rows else None


def get_event(db: Session, scope: Scope, pk: int) -> Event | None:
    """Return one event with its timeline, evidence and workflow steps; None if unknown or out of scope."""
    event = db.scalar(
        select(Event)
        .where(Event.id == pk)
        .options(
            selectinload(Event.messages),
            selectinload(Event.evidence_links).selectinload(EventEvidence.evidence),
            selectinload(Event.actions),
        )
    )
    if event is None or not scope.allows(event.site, event.camera):
        return None
    return event


def event_summary(event: Event) -> dict[str, Any]:
    """Return the list fields of an event as JSON-ready values."""
    return {
        "id": event.id,
        "event_id": event.event_id,
        "site": event.site,
        "edge": event.edge,
        "camera": event.camera,
        "zone": event.zone,
        "rule": event.rule,
        "phase": event.phase,
        "status": event.status,
        "started_at": event.started_at.isoformat(),
        "ended_at": event.ended_at.isoformat() if event.ended_at else None,
        "end_reason": event.end_reason,
        "confidence": event.confidence,
        "track_id": event.track_id,
        "assignee_id": event.assignee_id,
    }
