"""Danger zones of a camera: read what the edge applies; replace them (sent to the edge, which answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from contract.payloads import ZonePolygon
from dashboard.actions import set_zones
from dashboard.auth.deps import Ctx, CurrentActor, Db, Officer, Viewer
from dashboard.storage import status as status_service

router = APIRouter(prefix="/cameras/{site}/{camera}/zones", tags=["zones"])


class ZonesOut(BaseModel):
    """The zones the edge reported it applies, and when."""

    site: str
    camera: str
    zones: list[dict[str, Any]]
    at: datetime | None


class ZonesIn(BaseModel):
    """The camera's complete list of danger zones after the change (`[]` removes them all)."""

    zones: list[ZonePolygon] = Field(max_length=32)


class ZonesResult(BaseModel):
    """What the edge answered: applied, refused (with why), timeout or not_connected."""

    status: str
    request_id: str
    message: str


@router.get("", summary="The danger zones the camera's edge applies now")
def get_zones(site: str, camera: str, user: Viewer, db: Db) -> ZonesOut:
    """Return the zones of a camera in scope (as last published by its edge)."""
    row = status_service.camera_in_scope(db, user.scope, site, camera)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return ZonesOut(site=row.site, camera=row.camera, zones=row.zones or [], at=row.zones_at)


@router.put("", summary="Replace the camera's danger zones; waits for the edge's reply")
def put_zones(
    site: str, camera: str, body: ZonesIn, user: Officer, actor: CurrentActor, ctx: Ctx, db: Db
) -> ZonesResult:
    """Send `set_zones` to the camera's edge and report its answer (502 refused, 504 timeout, 503 offline)."""
    row = status_service.camera_in_scope(db, user.scope, site, camera)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    if len({z.id for z in body.zones}) != len(body.zones):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "zone ids must be unique within the camera"
        )
    result = set_zones(ctx, db, row, body.zones, actor)
    code = {"applied": 200, "refused": 422, "timeout": 504, "not_connected": 503}.get(result.status, 200)
    if code != 200:
        raise HTTPException(
            code, {"status": result.status, "request_id": result.request_id, "message": result.message}
        )
    return ZonesResult(status=result.status, request_id=result.request_id, message=result.message)
