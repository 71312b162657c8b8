"""Admin: users with their roles and scope, and the audit log (administrators only)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from dashboard.auth import service
from dashboard.storage import audit
from dashboard.web.deps import Setup
from dashboard.web.templating import render

router = APIRouter()


@router.get("/admin", name="web_admin", response_class=HTMLResponse)
def admin_page(request: Request, setup: Setup) -> HTMLResponse:
    """Show users and the newest audit entries; 404 for anyone but an administrator (no probing)."""
    page, db = setup.page, setup.db
    if not page.is_admin:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    page.active = "admin"
    return render(
        request,
        "admin.html",
        page,
        {"users": service.list_users(db), "entries": audit.entries(db, limit=100)},
    )
