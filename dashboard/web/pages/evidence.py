"""Evidence files and camera snapshots for <img> and <video>, checked against the user's scope."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from dashboard.auth.deps import Ctx, Db, ensure_allowed
from dashboard.storage.models import EvidenceFile
from dashboard.web import queries
from dashboard.web.deps import PagePrincipal

router = APIRouter()

_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


def _file(root: Path, relative: str) -> Path:
    """Resolve a stored path under the evidence folder; 404 if it escapes the folder or is gone."""
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return path


@router.get("/evidence/{evidence_id}", name="web_evidence")
def evidence_file(evidence_id: int, user: PagePrincipal, ctx: Ctx, db: Db) -> FileResponse:
    """Serve a snapshot or clip (with range requests, so a <video> can seek to the event's offset)."""
    row = db.get(EvidenceFile, evidence_id)
    if row is None or row.stored_path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    ensure_allowed(user, row.site, row.camera)
    path = _file(ctx.settings.evidence_dir, row.stored_path)
    media = _TYPES.get(path.suffix.lower(), "application/octet-stream")
    # Evidence never changes once stored (its sha256 is checked): the browser may keep it.
    return FileResponse(path, media_type=media, headers={"Cache-Control": "private, max-age=86400"})


@router.get("/cameras/{site}/{camera}/snapshot.jpg", name="web_camera_snapshot")
def camera_snapshot(site: str, camera: str, user: PagePrincipal, ctx: Ctx, db: Db) -> FileResponse:
    """Serve a camera's latest snapshot (never cached: it is replaced as the edge sends new ones)."""
    ensure_allowed(user, site, camera)
    row = queries.camera(db, site, camera)
    if row is None or row.snapshot_path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    path = _file(ctx.settings.evidence_dir, row.snapshot_path)
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})
