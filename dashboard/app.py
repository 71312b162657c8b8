"""The composition root: `create_app(settings)` builds one dashboard (a factory, no module singletons)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from dashboard.api import api_router
from dashboard.context import AppContext
from dashboard.ingest.metrics import IngestMetrics
from dashboard.live import LiveHub
from dashboard.settings import DashboardSettings
from dashboard.storage.db import Database
from dashboard.storage.migrate import upgrade

log = logging.getLogger(__name__)


def build_context(settings: DashboardSettings) -> AppContext:
    """Create the database, hub and metrics of one dashboard (no connections are opened yet)."""
    registry = CollectorRegistry()
    return AppContext(
        settings=settings,
        db=Database(settings.database_url),
        hub=LiveHub(),
        metrics=IngestMetrics(registry),
        registry=registry,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Migrate the database, bind the live hub, start ingest and retention; stop them in reverse order."""
    ctx: AppContext = app.state.ctx
    start_ingest: bool = app.state.start_ingest
    await asyncio.to_thread(upgrade, ctx.db.engine)
    ctx.settings.evidence_dir.mkdir(parents=True, exist_ok=True)
    ctx.hub.bind(asyncio.get_running_loop())
    if start_ingest:
        from dashboard.ingest.subscriber import Ingest

        ctx.ingest = Ingest(ctx)
        ctx.ingest.start()
    retention = asyncio.create_task(_retention_loop(ctx)) if app.state.run_retention else None
    try:
        yield
    finally:
        if retention is not None:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention
        if ctx.ingest is not None:
            await asyncio.to_thread(ctx.ingest.stop)
            ctx.ingest = None
        ctx.hub.unbind()
        ctx.db.dispose()


async def _retention_loop(ctx: AppContext) -> None:
    """Run the retention sweep now and then every `retention_interval_s`, off the event loop."""
    from dashboard.retention import sweep

    while True:
        try:
            await asyncio.to_thread(sweep, ctx)
        except Exception:  # a failed sweep is retried next interval; it must not stop the dashboard
            log.exception("retention sweep failed")
        await asyncio.sleep(ctx.settings.retention_interval_s)


#: On shutdown, uvicorn waits for open requests: a request still running after this many seconds is
#: cancelled (live pages' streams are ended at once by DashboardServer; this is the backstop).
SHUTDOWN_GRACE_S = 5


class DashboardServer(uvicorn.Server):
    """uvicorn's server for a dashboard app: ends the live pages' event streams as soon as shutdown begins.

    uvicorn waits for open requests before the app's own shutdown runs, and a live page's stream never ends
    by itself: without this, Ctrl-C would wait for every open browser tab.
    """

    def __init__(self, app: FastAPI, **config: Any) -> None:
        config.setdefault("timeout_graceful_shutdown", SHUTDOWN_GRACE_S)
        super().__init__(uvicorn.Config(app, **config))
        self._hub: LiveHub = app.state.ctx.hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Ctrl-C or SIGTERM: end the live streams, then shut down as uvicorn does."""
        self._hub.close()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Ask a server running on another thread to finish (the demo), live streams first."""
        self._hub.close()
        self.should_exit = True


def add_api_docs(app: FastAPI) -> None:
    """Serve the OpenAPI docs at /api/docs with Swagger UI's files vendored in dashboard/web/static/vendor
    (MANIFEST.json): a site server often has no internet, and a CDN would see who opens the docs."""
    from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
    from fastapi.responses import HTMLResponse

    @app.get("/api/docs", include_in_schema=False)
    def api_docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="SiteSentry dashboard API",
            swagger_js_url="/static/vendor/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/img/logo.svg",
            oauth2_redirect_url="/api/docs/oauth2-redirect",
        )

    @app.get("/api/docs/oauth2-redirect", include_in_schema=False)
    def api_docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def create_app(
    settings: DashboardSettings, *, start_ingest: bool | None = None, run_retention: bool = True
) -> FastAPI:
    """Build a dashboard app: API under /api, pages from dashboard.web; ingest starts with the app
    (unless `start_ingest` is False or settings.ingest_enabled is off, e.g. in tests without a broker)."""
    app = FastAPI(
        title="SiteSentry dashboard",
        lifespan=lifespan,
        docs_url=None,  # add_api_docs: from vendored files, not FastAPI's CDN links
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    add_api_docs(app)
    app.state.ctx = build_context(settings)
    app.state.start_ingest = settings.ingest_enabled if start_ingest is None else start_ingest
    app.state.run_retention = run_retention
    app.include_router(api_router(), prefix="/api")
    # Page routes, templates and static files belong to dashboard.web; it exports an APIRouter `router`
    # and may add `setup(app)` to mount static files and exception handlers.
    from dashboard import web

    setup = getattr(web, "setup", None)
    if setup is not None:
        setup(app)
    app.include_router(web.router)
    return app
