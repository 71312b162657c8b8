"""The alert log as CSV or JSON, with links to the evidence, streamed so a year of alerts fits."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from dashboard.api.routes.events import event_filters
from dashboard.auth.deps import Ctx, CurrentActor, Db, Viewer
from dashboard.auth.scope import Scope
from dashboard.storage import audit
from dashboard.storage.db import Database
from dashboard.storage.events import EventFilters, list_events
from dashboard.storage.models import Event

router = APIRouter(prefix="/exports", tags=["exports"])

COLUMNS = [
    "id", "event_id", "site", "edge", "camera", "zone", "rule", "status", "phase", "started_at", "ended_at",
    "end_reason", "confidence", "snapshot_url", "clip_url",
]  # fmt: skip
_PAGE = 1000


def _rows(
    database: Database, scope: Scope, filters: EventFilters, base_url: str, limit: int
) -> Iterator[dict[str, object]]:
    """Yield export rows page by page (keyset), newest first, at most `limit`.

    Runs while the response streams, after the request's session is gone: it opens its own."""
    cursor: str | None = None
    sent = 0
    with database.sessions() as db:
        while sent < limit:
            page = list_events(
                db, scope, filters, after=cursor, limit=min(_PAGE, limit - sent), with_evidence=True
            )
            for event in page.events:
                yield _row(event, base_url)
            sent += len(page.events)
            cursor = page.next_cursor
            if cursor is None:
                return


def _row(event: Event, base_url: str) -> dict[str, object]:
    """One alert as an export row with absolute evidence links (files that arrived only)."""
    links: dict[str, str | None] = {"snapshot": None, "clip": None}
    for link in event.evidence_links:
        if link.evidence.stored_path and links.get(link.evidence.kind) is None:
            links[link.evidence.kind] = f"{base_url}api/evidence/{link.evidence.id}"
    return {
        "id": event.id,
        "event_id": event.event_id,
        "site": event.site,
        "edge": event.edge,
        "camera": event.camera,
        "zone": event.zone,
        "rule": event.rule,
        "status": event.status,
        "phase": event.phase,
        "started_at": event.started_at.isoformat(),
        "ended_at": event.ended_at.isoformat() if event.ended_at else None,
        "end_reason": event.end_reason,
        "confidence": round(event.confidence, 4),
        "snapshot_url": links["snapshot"],
        "clip_url": links["clip"],
    }


def _csv(rows: Iterator[dict[str, object]]) -> Iterator[str]:
    """Stream rows as CSV (header first)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _json(rows: Iterator[dict[str, object]]) -> Iterator[str]:
    """Stream rows as one JSON array."""
    yield "["
    for i, row in enumerate(rows):
        yield ("," if i else "") + json.dumps(row, ensure_ascii=False)
    yield "]\n"


@router.get("/events.{fmt}", summary="The alert log as CSV or JSON (same filters as /api/events)")
def export_events(
    fmt: Literal["csv", "json"],
    request: Request,
    user: Viewer,
    actor: CurrentActor,
    ctx: Ctx,
    db: Db,
    filters: Annotated[EventFilters, Depends(event_filters)],
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 100_000,
) -> StreamingResponse:
    """Stream the alerts in scope matching the filters; the export itself is audited (personal data)."""
    audit.record(
        db,
        actor,
        "events.export",
        target_type="events",
        site=filters.site,
        detail={"format": fmt, "filters": {k: str(v) for k, v in asdict(filters).items() if v is not None}},
    )
    db.commit()
    rows = _rows(ctx.db, user.scope, filters, str(request.base_url), limit)
    stamp = datetime.now(ctx.settings.zone).strftime("%Y%m%d-%H%M")
    headers = {"Content-Disposition": f'attachment; filename="sitesentry-alerts-{stamp}.{fmt}"'}
    if fmt == "csv":
        return StreamingResponse(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(_json(rows), media_type="application/json", headers=headers)
