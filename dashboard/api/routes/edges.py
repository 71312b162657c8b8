"""Edge boxes: online / stale / offline and their last heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from dashboard.auth.deps import Db, Viewer
from dashboard.storage import status as status_service

router = APIRouter(prefix="/edges", tags=["edges"])


class EdgeOut(BaseModel):
    """An edge box: its judged state (contract.liveness), version and newest heartbeat."""

    id: int
    site: str
    edge: str
    state: str
    reported_state: str | None
    state_at: datetime | None
    reason: str | None
    version: str | None
    heartbeat_at: datetime | None
    heartbeat_s: float | None
    heartbeat: dict[str, Any] | None


@router.get("", summary="Edges in your scope with their state and last heartbeat")
def edges(user: Viewer, db: Db, site: str | None = None) -> list[EdgeOut]:
    """List edges; `stale` means it says online but its heartbeats stopped."""
    out = []
    for view in status_service.edges(db, user.scope, datetime.now(UTC), site):
        edge = view.edge
        out.append(
            EdgeOut(
                id=edge.id,
                site=edge.site,
                edge=edge.edge,
                state=view.state,
                reported_state=edge.state,
                state_at=edge.state_at,
                reason=edge.reason,
                version=edge.version,
                heartbeat_at=edge.heartbeat_at,
                heartbeat_s=edge.heartbeat_s,
                heartbeat=edge.heartbeat,
            )
        )
    return out
