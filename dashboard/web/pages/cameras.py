"""Cameras: every stream's state, figures, snapshot age and zones, with links to its alerts and zones."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dashboard.web import queries
from dashboard.web.deps import Setup
from dashboard.web.links import Links
from dashboard.web.templating import render

router = APIRouter()


@router.get("/cameras", name="web_cameras", response_class=HTMLResponse)
def cameras_page(request: Request, setup: Setup) -> HTMLResponse:
    """List the cameras and edge boxes of the chosen site (or all) with their state."""
    page, db, user = setup.page, setup.db, setup.user
    page.active = "cameras"
    now = datetime.now(UTC)
    return render(
        request,
        "cameras.html",
        page,
        {
            "cameras": queries.cameras(db, user.scope, page.site, now),
            "edges": queries.edges(db, user.scope, page.site, now),
            "links": Links(request),
        },
    )
