"""Retention: events, their evidence files and working data past `retention_days` are deleted.

Runs at start and every `retention_interval_s` (the app's lifespan). The audit log is kept: it records
who saw and exported personal data, which outlives the data itself."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from dashboard.context import AppContext
from dashboard.settings import DashboardSettings
from dashboard.storage import audit
from dashboard.storage.files import resolve_stored
from dashboard.storage.models import (
    ControlReplyRow,
    Event,
    EventEvidence,
    EvidenceFile,
    LoginAttempt,
    ProcessedMessage,
    UserSession,
)

log = logging.getLogger(__name__)

_BATCH = 1000
#: Partial uploads older than this are abandoned (the edge gave up on the file or dropped it).
SCRATCH_MAX_AGE = timedelta(days=1)
#: An evidence file no alert shows is kept this long: its chunks may arrive before the alert naming it.
ORPHAN_GRACE = timedelta(days=1)
LOGIN_ATTEMPTS_KEPT = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Policy:
    """What the retention deletes and when, for the privacy page."""

    retention_days: int
    interval_s: int
    deletes: tuple[str, ...] = (
        "alerts that started more than retention_days ago, with their timeline and workflow history",
        "evidence files (snapshots, clips) no longer shown by any kept alert, a day after that",
        "message ids kept for de-duplication, control replies",
        "expired sessions; login attempts after 30 days; unfinished evidence uploads after 1 day",
    )
    keeps: tuple[str, ...] = ("the audit log (who did what), users, cameras and edges",)


@dataclass
class SweepResult:
    """How much one sweep deleted."""

    events: int = 0
    evidence_files: int = 0
    processed_messages: int = 0
    sessions: int = 0
    login_attempts: int = 0
    control_replies: int = 0
    scratch_folders: int = 0

    @property
    def anything(self) -> bool:
        """Tell whether the sweep deleted anything."""
        return any(asdict(self).values())


def policy(settings: DashboardSettings) -> Policy:
    """Return the retention policy in force."""
    return Policy(settings.retention_days, settings.retention_interval_s)


def _delete_events(db: Session, cutoff: datetime) -> int:
    """Delete events that started before `cutoff`, in batches (timeline, links, steps cascade)."""
    total = 0
    while True:
        ids = list(db.scalars(select(Event.id).where(Event.started_at < cutoff).limit(_BATCH)))
        if not ids:
            return total
        db.execute(delete(Event).where(Event.id.in_(ids)))
        db.commit()
        total += len(ids)


def _delete_orphan_evidence(db: Session, evidence_dir: Path, cutoff: datetime) -> int:
    """Delete evidence rows and files that no kept event shows (deleted or retracted) older than `cutoff`."""
    total = 0
    while True:
        orphan = ~exists().where(EventEvidence.evidence_id == EvidenceFile.id)
        rows = list(
            db.scalars(select(EvidenceFile).where(orphan, EvidenceFile.created_at < cutoff).limit(_BATCH))
        )
        if not rows:
            return total
        for row in rows:
            path = resolve_stored(evidence_dir, row.stored_path)
            if path is not None:
                path.unlink(missing_ok=True)
        db.execute(delete(EvidenceFile).where(EvidenceFile.id.in_([r.id for r in rows])))
        db.commit()
        total += len(rows)


def _delete_scratch(scratch_dir: Path, now: float) -> int:
    """Remove partial uploads nobody finished."""
    if not scratch_dir.is_dir():
        return 0
    removed = 0
    for folder in scratch_dir.iterdir():
        if folder.is_dir() and now - folder.stat().st_mtime > SCRATCH_MAX_AGE.total_seconds():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def sweep(ctx: AppContext, now: datetime | None = None) -> SweepResult:
    """Delete everything past retention now; returns the counts (also audited when anything went)."""
    now = now or datetime.now(UTC)
    settings = ctx.settings
    cutoff = now - timedelta(days=settings.retention_days)
    result = SweepResult()
    with ctx.db.sessions() as db:
        result.events = _delete_events(db, cutoff)
        result.evidence_files = _delete_orphan_evidence(db, settings.evidence_dir, now - ORPHAN_GRACE)
        result.processed_messages = _rowcount(
            db.execute(delete(ProcessedMessage).where(ProcessedMessage.received_at < cutoff))
        )
        result.control_replies = _rowcount(
            db.execute(delete(ControlReplyRow).where(ControlReplyRow.received_at < cutoff))
        )
        result.sessions = _rowcount(
            db.execute(delete(UserSession).where(UserSession.expires_at < now - timedelta(days=1)))
        )
        result.login_attempts = _rowcount(
            db.execute(delete(LoginAttempt).where(LoginAttempt.at < now - LOGIN_ATTEMPTS_KEPT))
        )
        result.scratch_folders = _delete_scratch(settings.scratch_dir, time.time())
        if result.events or result.evidence_files:
            audit.record(
                db,
                audit.Actor(None, None, None),
                "retention.sweep",
                detail={"cutoff": cutoff.isoformat(), **asdict(result)},
            )
        db.commit()
    if result.anything:
        log.info("retention: deleted %s", asdict(result))
    return result


def _rowcount(result: object) -> int:
    """Return the rows a DELETE touched (0 when the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)
