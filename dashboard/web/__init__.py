"""Page routes, templates and static assets of the dashboard: what a safety manager sees in a browser.

`dashboard.app.create_app` includes `router` and calls `setup(app)`, which mounts the static files and
turns "login required" on a page into a redirect to the login page (the API keeps its 401).
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from dashboard.auth.deps import NotAuthenticated
from dashboard.web.pages.admin import router as admin_router
from dashboard.web.pages.alerts import router as alerts_router
from dashboard.web.pages.auth_pages import router as auth_router
from dashboard.web.pages.cameras import router as cameras_router
from dashboard.web.pages.info import router as info_router
from dashboard.web.pages.live import router as live_router
from dashboard.web.pages.reports import router as reports_router
from dashboard.web.pages.stats import router as stats_router
from dashboard.web.pages.zones import router as zones_router
from dashboard.web.templating import STATIC_DIR

router = APIRouter(include_in_schema=False)
for _pages in (
    auth_router,
    live_router,
    alerts_router,
    stats_router,
    reports_router,
    zones_router,
    cameras_router,
    admin_router,
    info_router,
):
    router.include_router(_pages)


def _is_page(request: Request) -> bool:
    """Tell whether a request is a browser page (not the API, not a script fetching JSON)."""
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


async def _login_redirect(request: Request, exc: Exception) -> Response:
    """Send a browser without a session to the login page; the API and scripts keep the 401."""
    if isinstance(exc, NotAuthenticated) and _is_page(request):
        return RedirectResponse(request.url_for("web_login").path, status_code=303)
    assert isinstance(exc, StarletteHTTPException)
    return await http_exception_handler(request, exc)


def setup(app: FastAPI) -> None:
    """Mount the static assets and the login redirect on `app` (called by create_app)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="web_static")
    app.add_exception_handler(NotAuthenticated, _login_redirect)
