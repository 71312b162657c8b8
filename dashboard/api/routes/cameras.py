"""Cameras with their state (online / reconnecting / offline), fps and latest snapshot; edges."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse
from pydantic import BaseModel

from dashboard.auth.deps import Ctx, Db, Viewer
from dashboard.storage import status as status_service
from dashboard.storage.files import resolve_stored

router = APIRouter(prefix="/cameras", tags=["cameras"])


class CameraOut(BaseModel):
    """A camera as the camera page shows it."""

    id: int
    site: str
    camera: str
    edge: str | None
    state: str
    stream_state: str | None
    edge_state: str
    detail: str | None
    fps: float | None
    latency_ms_p95: float | None
    figures_at: datetime | None
    snapshot_url: str | None
    snapshot_at: datetime | None


def camera_out(view: status_service.CameraView) -> CameraOut:
    """Build the response of one camera."""
    camera = view.camera
    return CameraOut(
        id=camera.id,
        site=camera.site,
        camera=camera.camera,
        edge=camera.edge,
        state=view.state,
        stream_state=camera.state,
        edge_state=view.edge_state,
        detail=camera.detail,
        fps=camera.fps,
        latency_ms_p95=camera.latency_ms_p95,
        figures_at=camera.figures_at,
        snapshot_url=f"/api/cameras/{camera.site}/{camera.camera}/snapshot" if camera.snapshot_path else None,
        snapshot_at=camera.snapshot_at,
    )


@router.get("", summary="Cameras in your scope with their state")
def cameras(user: Viewer, db: Db, site: str | None = None) -> list[CameraOut]:
    """List cameras; a camera whose edge is offline or silent too long counts as offline."""
    return [camera_out(v) for v in status_service.cameras(db, user.scope, datetime.now(UTC), site)]


@router.get(
    "/{site}/{camera}/snapshot", summary="The camera's latest snapshot (JPEG)", response_class=FileResponse
)
def snapshot(site: str, camera: str, user: Viewer, ctx: Ctx, db: Db) -> FileResponse:
    """Serve the latest snapshot of a camera in scope."""
    found = status_service.camera_in_scope(db, user.scope, site, camera)
    path = resolve_stored(ctx.settings.evidence_dir, found.snapshot_path if found else None)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
