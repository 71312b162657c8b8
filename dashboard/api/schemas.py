"""Response and request bodies of the API (pydantic), built from storage rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from dashboard.storage.models import AuditEntry, Event, EventAction, EventEvidence


class EventOut(BaseModel):
    """An alert as listed."""

    id: int
    event_id: str
    site: str
    edge: str
    camera: str
    zone: str | None
    rule: str
    phase: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    confidence: float
    track_id: int
    assignee_id: int | None

    @classmethod
    def of(cls, event: Event) -> EventOut:
        """Build from a row."""
        return cls.model_validate(event, from_attributes=True)


class EventPage(BaseModel):
    """A page of alerts and the cursor of the next page (null at the end)."""

    items: list[EventOut]
    next_cursor: str | None


class EvidenceOut(BaseModel):
    """An evidence file of an alert; `url` is null until the file has arrived from the edge."""

    id: int
    kind: str
    path: str
    sha256: str | None
    size: int | None
    offset_s: float | None
    url: str | None

    @classmethod
    def of(cls, link: EventEvidence) -> EvidenceOut:
        """Build from an event-evidence link."""
        file = link.evidence
        return cls(
            id=file.id,
            kind=file.kind,
            path=file.path,
            sha256=file.sha256,
            size=file.size,
            offset_s=link.offset_s,
            url=f"/api/evidence/{file.id}" if file.stored_path else None,
        )


class TimelineOut(BaseModel):
    """One MQTT message of the alert."""

    message_id: str
    type: str
    emitted_at: datetime
    received_at: datetime


class ActionOut(BaseModel):
    """One workflow step."""

    id: int
    action: str
    from_status: str
    to_status: str
    username: str
    assignee_id: int | None
    note: str | None
    at: datetime

    @classmethod
    def of(cls, action: EventAction) -> ActionOut:
        """Build from a row."""
        return cls.model_validate(action, from_attributes=True)


class EventDetail(EventOut):
    """An alert with boxes, evidence, timeline, workflow history and the actions possible now."""

    person_box: dict[str, float] | None
    evidence_boxes: list[dict[str, float]]
    model_name: str
    model_version: str
    evidence: list[EvidenceOut]
    timeline: list[TimelineOut]
    actions: list[ActionOut]
    allowed_actions: list[str]


class ActionIn(BaseModel):
    """A workflow step: a note, and for `assign` the user who takes the alert."""

    note: str | None = Field(None, max_length=500)
    assignee_id: int | None = None


class ActionResult(BaseModel):
    """The alert after the step; for a false alarm, whether the edge was told."""

    event: EventOut
    edge_command: Literal["sent", "not_connected", "timeout", "applied", "refused"] | None = None


class AuditOut(BaseModel):
    """An audit entry."""

    id: int
    at: datetime
    username: str | None
    action: str
    target_type: str | None
    target_id: str | None
    site: str | None
    ip: str | None
    detail: dict[str, Any] | None

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditOut:
        """Build from a row."""
        return cls.model_validate(entry, from_attributes=True)
