"""Cameras and edges as a page shows them: online / reconnecting / offline, judged by heartbeat age with
the rule of `contract.liveness` (the one owner of that rule)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from contract.liveness import Liveness, last_seen, liveness, stale_after_s
from contract.payloads import EdgeStatusMessage, HeartbeatMessage
from dashboard.auth.scope import Scope
from dashboard.storage.models import Camera, Edge

CameraState = Literal["online", "reconnecting", "offline"]


def _messages(edge: Edge) -> tuple[EdgeStatusMessage | None, HeartbeatMessage | None]:
    """Read an edge's stored status and heartbeat back as contract messages; ValidationError when they were
    stored by an older version of the contract."""
    status = EdgeStatusMessage.model_validate(edge.status) if edge.status is not None else None
    heartbeat = HeartbeatMessage.model_validate(edge.heartbeat) if edge.heartbeat else None
    return status, heartbeat


def edge_liveness(edge: Edge | None, now: datetime) -> Liveness:
    """Judge an edge from its stored status and heartbeat (stale: `online` but silent too long)."""
    if edge is None or edge.status is None:
        return "unknown"
    try:
        status, heartbeat = _messages(edge)
    except ValidationError:  # stored by an older version of the contract: judge on what is there
        return "stale" if edge.state == "online" else "offline"
    return liveness(status, heartbeat, now)


def camera_state(camera: Camera, edge: Edge | None, now: datetime) -> CameraState:
    """Return how a camera is doing: its own stream state, but offline when its edge is offline or stale."""
    if edge_liveness(edge, now) in ("offline", "stale"):
        return "offline"
    if camera.state == "online":
        return "online"
    if camera.state in ("reconnecting", "starting"):
        return "reconnecting"
    return "offline"


@dataclass(frozen=True, slots=True)
class CameraView:
    """A camera with its judged state."""

    camera: Camera
    state: CameraState
    edge_state: Liveness


@dataclass(frozen=True, slots=True)
class EdgeView:
    """An edge with its judged state, its newest sign of life and the silence after which it turns stale
    (both from `contract.liveness`, so a page can tell when to ask again)."""

    edge: Edge
    state: Liveness
    last_seen: datetime | None
    stale_after_s: float


def _edges(db: Session, scope: Scope, site: str | None) -> dict[tuple[str, str], Edge]:
    """Return the edges in scope keyed by (site, edge)."""
    query = select(Edge).where(scope.site_filter(Edge.site))
    if site:
        query = query.where(Edge.site == site)
    return {(e.site, e.edge): e for e in db.scalars(query)}


def cameras(db: Session, scope: Scope, now: datetime, site: str | None = None) -> list[CameraView]:
    """Return the cameras in scope with their states, by site and camera id."""
    edges = _edges(db, scope, site)
    query = (
        select(Camera).where(scope.filter(Camera.site, Camera.camera)).order_by(Camera.site, Camera.camera)
    )
    if site:
        query = query.where(Camera.site == site)
    out = []
    for camera in db.scalars(query):
        edge = edges.get((camera.site, camera.edge)) if camera.edge else None
        out.append(CameraView(camera, camera_state(camera, edge, now), edge_liveness(edge, now)))
    return out


def edges(db: Session, scope: Scope, now: datetime, site: str | None = None) -> list[EdgeView]:
    """Return the edges in scope with their liveness."""
    return [_edge_view(e, now) for _, e in sorted(_edges(db, scope, site).items())]


def _edge_view(edge: Edge, now: datetime) -> EdgeView:
    """Judge one edge and keep the figures the judgement used."""
    try:
        status, heartbeat = _messages(edge)
    except ValidationError:
        status, heartbeat = None, None
    state = edge_liveness(edge, now)
    return EdgeView(edge, state, last_seen(status, heartbeat), stale_after_s(status, heartbeat))


def camera_by_id(db: Session, scope: Scope, pk: int) -> Camera | None:
    """Return one camera row if it is in scope."""
    camera = db.get(Camera, pk)
    if camera is None or not scope.allows(camera.site, camera.camera):
        return None
    return camera


def camera_in_scope(db: Session, scope: Scope, site: str, camera: str) -> Camera | None:
    """Return the camera of (site, camera id) if it exists and is in scope."""
    if not scope.allows(site, camera):
        return None
    return db.scalar(select(Camera).where(Camera.site == site, Camera.camera == camera))
