"""Zone editor: draw and edit a camera's danger zones on its latest snapshot, sent to the edge via the API."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from dashboard.auth.deps import ensure_allowed
from dashboard.storage import status as status_service
from dashboard.web import queries, workflow
from dashboard.web.deps import Setup
from dashboard.web.links import Links
from dashboard.web.templating import render

router = APIRouter()


@router.get("/zones", name="web_zones", response_class=HTMLResponse)
def zones_index(request: Request, setup: Setup) -> HTMLResponse:
    """List the cameras with their danger zones; each opens the editor."""
    page, db, user = setup.page, setup.db, setup.user
    page.active = "zones"

    cams = queries.cameras(db, user.scope, page.site, datetime.now(UTC))
    return render(request, "zones.html", page, {"cameras": cams, "links": Links(request)})


@router.get("/zones/{site}/{camera}", name="web_zone_editor", response_class=HTMLResponse)
def zone_editor(request: Request, site: str, camera: str, setup: Setup) -> HTMLResponse:
    """Edit one camera's danger zones over its latest snapshot."""
    page, db, user, settings = setup.page, setup.db, setup.user, setup.ctx.settings
    page.active = "zones"
    ensure_allowed(user, site, camera)
    row = status_service.camera_in_scope(db, user.scope, site, camera)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return render(
        request,
        "zone_editor.html",
        page,
        {
            "camera": row,
            "snapshot": Links(request).snapshot(site, camera) if row.snapshot_path else None,
            "save_url": workflow.zones_url(request, site, camera),
            "timeout_s": settings.mqtt.control_timeout_s,
        },
    )
