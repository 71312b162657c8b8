"""The dashboard's tables. One row per event (upserted on event_id) plus a timeline row per distinct MQTT
message; latest state per camera and edge; evidence files; users, sessions, tokens, an append-only
audit log."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from dashboard.storage.types import UtcDateTime

# Named constraints: Alembic can then drop and alter them on every database.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class Role(enum.StrEnum):
    """What a user may do: viewer < safety_officer < admin."""

    VIEWER = "viewer"
    SAFETY_OFFICER = "safety_officer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Return the order of the role (higher may do more)."""
        return list(Role).index(self)


class EventStatus(enum.StrEnum):
    """Where an alert is in the site office's follow-up."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    ASSIGNED = "assigned"
    RESOLVED = "resolved"
    FALSE_ALARM = "false_alarm"


class Event(Base):
    """One violation, upserted on event_id from its start, updates and end messages."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    site: Mapped[str] = mapped_column(String(64))
    edge: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    track_id: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(8), doc="The newest phase seen: start, update or end.")
    started_at: Mapped[datetime] = mapped_column(UtcDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    end_reason: Mapped[str | None] = mapped_column(String(64))
    confidence: Mapped[float] = mapped_column(Float)
    person_box: Mapped[dict[str, float] | None] = mapped_column(JSON)
    evidence_boxes: Mapped[list[dict[str, float]]] = mapped_column(JSON, default=list)
    # Bottom centre of the person box in thousandths of the frame: integer grid cells for the heat map
    # come out of plain integer division on SQLite and PostgreSQL alike.
    anchor_x: Mapped[int | None] = mapped_column(Integer)
    anchor_y: Mapped[int | None] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(100))
    frame_seq: Mapped[int] = mapped_column(Integer)
    last_emitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.NEW.value)
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    messages: Mapped[list[EventMessageRow]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="EventMessageRow.id"
    )
    evidence_links: Mapped[list[EventEvidence]] = relationship(
        back_populates="event", cascade="all, delete-orphan"
    )
    actions: Mapped[list[EventAction]] = relationship(
        back_populates="event", cascade="all, delete-orphan", order_by="EventAction.id"
    )

    # Keyset pagination walks (started_at, id) newest first; filtered lists use the composite indexes.
    __table_args__ = (
        Index("ix_events_started_id", "started_at", "id"),
        Index("ix_events_site_started", "site", "started_at", "id"),
        Index("ix_events_site_camera_started", "site", "camera", "started_at", "id"),
        Index("ix_events_rule_started", "rule", "started_at", "id"),
        Index("ix_events_status_started", "status", "started_at", "id"),
        Index("ix_events_zone_started", "zone", "started_at", "id"),
    )


class EventMessageRow(Base):
    """One distinct MQTT message of an event: its timeline."""

    __tablename__ = "event_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(8))
    emitted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)

    event: Mapped[Event] = relationship(back_populates="messages")


class ProcessedMessage(Base):
    """Message ids already handled: a redelivered message is acknowledged and otherwise ignored."""

    __tablename__ = "processed_messages"

    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class EvidenceFile(Base):
    """A snapshot or clip an event names; `stored_path` is set once its chunks arrived and matched sha256."""

    __tablename__ = "evidence_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    edge: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(255), doc="Relative to the edge's evidence folder.")
    sha256: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int | None] = mapped_column(Integer)
    stored_path: Mapped[str | None] = mapped_column(String(400), doc="Relative to evidence_dir.")
    stored_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    links: Mapped[list[EventEvidence]] = relationship(back_populates="evidence", cascade="all, delete-orphan")

    __table_args__ = (UniqueConstraint("site", "edge", "path", name="uq_evidence_files_site_edge_path"),)


class EventEvidence(Base):
    """Which event shows in which file (events that start while a clip records share that clip)."""

    __tablename__ = "event_evidence"

    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    evidence_id: Mapped[int] = mapped_column(
        ForeignKey("evidence_files.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    offset_s: Mapped[float | None] = mapped_column(Float)

    event: Mapped[Event] = relationship(back_populates="evidence_links")
    evidence: Mapped[EvidenceFile] = relationship(back_populates="links")


class Camera(Base):
    """Latest known state of one camera: status, figures from the heartbeat, snapshot, zones."""

    __tablename__ = "cameras"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    camera: Mapped[str] = mapped_column(String(64))
    edge: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    state_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    fps: Mapped[float | None] = mapped_column(Float)
    latency_ms_p95: Mapped[float | None] = mapped_column(Float)
    figures_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    snapshot_path: Mapped[str | None] = mapped_column(String(400), doc="Relative to evidence_dir.")
    snapshot_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    zones: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    zones_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("site", "camera", name="uq_cameras_site_camera"),)


class Edge(Base):
    """Latest known state of one edge box: online/offline and its last heartbeat."""

    __tablename__ = "edges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    edge: Mapped[str] = mapped_column(String(64))
    state: Mapped[str | None] = mapped_column(String(16))
    state_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[dict[str, Any] | None] = mapped_column(JSON, doc="The newest status message as sent.")
    heartbeat_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), doc="The heartbeat's own `at`.")
    heartbeat_received_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    heartbeat: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    heartbeat_s: Mapped[float | None] = mapped_column(
        Float, doc="The edge's heartbeat interval (from its status or heartbeat), for the staleness rule."
    )
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (UniqueConstraint("site", "edge", name="uq_edges_site_edge"),)


class ControlReplyRow(Base):
    """A reply of an edge to a control command (ours or another console's)."""

    __tablename__ = "control_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(64), index=True)
    site: Mapped[str] = mapped_column(String(64))
    edge: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(8))
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    received_at: Mapped[datetime] = mapped_column(UtcDateTime())


class User(Base):
    """A person who logs in. Scope: whole sites (`*` for all) plus single cameras as `site/camera`."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    sites: Mapped[list[str]] = mapped_column(JSON, default=list)
    cameras: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class UserSession(Base):
    """A server-side login session; the cookie holds a random token, the table only its SHA-256."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """A bearer token for scripts, acting as its user; only the SHA-256 of the token is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    user: Mapped[User] = relationship()


class LoginAttempt(Base):
    """One login try, for throttling per user name and per client address."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (
        Index("ix_login_attempts_username_at", "username", "at"),
        Index("ix_login_attempts_ip_at", "ip", "at"),
    )


class EventAction(Base):
    """A workflow step on an event (acknowledge, assign, resolve, false alarm) with its note."""

    __tablename__ = "event_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_pk: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    username: Mapped[str] = mapped_column(String(64))
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UtcDateTime())

    event: Mapped[Event] = relationship(back_populates="actions")


class AuditEntry(Base):
    """Who did what, when, from where. Append-only: the ORM refuses updates and deletes, and so do
    triggers in the database (see the first migration)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # No foreign key: the entry must outlive the user it names.
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(100))
    site: Mapped[str | None] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _audit_is_append_only(mapper: Any, connection: Any, target: AuditEntry) -> None:
    """Refuse to change or delete an audit entry through the ORM."""
    raise PermissionError("the audit log is append-only")
