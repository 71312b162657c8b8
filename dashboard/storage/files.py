"""Stored files (evidence, snapshots) are found by database row, never by a path a user typed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from dashboard.auth.scope import Scope
from dashboard.storage.models import EvidenceFile


def resolve_stored(root: Path, relative: str | None) -> Path | None:
    """Return the file `relative` (as stored by ingest) under `root`, or None when missing or outside it."""
    if not relative:
        return None
    base = root.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        return None
    return path


def evidence_file(
    db: Session, scope: Scope, evidence_id: int, root: Path
) -> tuple[EvidenceFile, Path] | None:
    """Return an evidence row and its file when the user may see that camera and the file is here."""
    row = db.get(EvidenceFile, evidence_id)
    if row is None or not scope.allows(row.site, row.camera):
        return None
    path = resolve_stored(root, row.stored_path)
    return (row, path) if path is not None else None


MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4"}


def media_type(path: Path) -> str:
    """Return the content type to serve an evidence file with."""
    return MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
