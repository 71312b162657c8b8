"""The audit log: who did what, when, from where (admins: everything; others: their sites)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dashboard.api.schemas import AuditOut
from dashboard.auth.deps import Db, Officer
from dashboard.auth.scope import Scope
from dashboard.storage import audit
from dashboard.storage.models import Role

router = APIRouter(prefix="/audit", tags=["audit"])


def _sites(scope: Scope) -> list[str] | None:
    """The sites whose entries a user may read (None: all)."""
    if scope.everything:
        return None
    return sorted(scope.sites | {site for site, _ in scope.cameras})


@router.get("", summary="Audit log entries, newest first; page with before_id")
def audit_log(
    user: Officer,
    db: Db,
    action: str | None = None,
    username: str | None = None,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditOut]:
    """Return audit entries; safety officers see their sites' entries, admins see all."""
    sites = None if user.has_role(Role.ADMIN) else _sites(user.scope)
    rows = audit.entries(db, sites=sites, action=action, username=username, before_id=before_id, limit=limit)
    return [AuditOut.of(row) for row in rows]
