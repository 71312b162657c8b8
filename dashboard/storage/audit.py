"""The append-only audit log: who did what, when, from where."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard.storage.models import AuditEntry


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: a user (with the client address) or the system (user None)."""

    user_id: int | None
    username: str | None
    ip: str | None


def record(
    db: Session,
    actor: Actor,
    action: str,
    *,
    target_type: str | None = None,
    target_id: str | None = None,
    site: str | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an audit entry to the session (committed with the change it records)."""
    entry = AuditEntry(
        at=datetime.now(UTC),
        user_id=actor.user_id,
        username=actor.username,
        action=action,
        target_type=target_type,
        target_id=target_id,
        site=site,
        ip=actor.ip,
        detail=detail,
    )
    db.add(entry)
    return entry


def entries(
    db: Session,
    *,
    sites: list[str] | None = None,
    action: str | None = None,
    username: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Return audit entries newest first; `sites` None means all, else entries of those sites only."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if sites is not None:
        query = query.where(AuditEntry.site.in_(sites))
    if action:
        query = query.where(AuditEntry.action == action)
    if username:
        query = query.where(AuditEntry.username == username)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(db.scalars(query))
