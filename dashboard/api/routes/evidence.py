"""Evidence files, by database id only (no user-given paths), to users allowed that camera."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

from dashboard.auth.deps import Ctx, Db, Viewer
from dashboard.storage.files import evidence_file, media_type

router = APIRouter(prefix="/evidence", tags=["evidence"])


@router.get(
    "/{evidence_id}", summary="An evidence file (snapshot JPEG or MP4 clip)", response_class=FileResponse
)
def evidence(evidence_id: int, user: Viewer, ctx: Ctx, db: Db) -> FileResponse:
    """Serve one evidence file; 404 when unknown, not yet received, or outside the user's scope."""
    found = evidence_file(db, user.scope, evidence_id, ctx.settings.evidence_dir)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    row, path = found
    headers = {"Cache-Control": "private, max-age=3600"}
    if row.sha256:
        headers["ETag"] = f'"{row.sha256}"'
    return FileResponse(path, media_type=media_type(path), headers=headers)
