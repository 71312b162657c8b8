"""The live page: new alerts within a second (server-sent events), the camera wall and the edge boxes."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse

from dashboard.context import AppContext
from dashboard.web import queries
from dashboard.web.deps import Setup
from dashboard.web.links import Links
from dashboard.web.templating import Page, render, render_string

log = logging.getLogger(__name__)
router = APIRouter()

#: A comment line this often keeps proxies from closing an idle stream and finds closed tabs.
KEEPALIVE_S = 15.0


@router.get("/", name="web_home")
def home(request: Request) -> RedirectResponse:
    """Start on the live page."""
    return RedirectResponse(request.url_for("web_live").path, status_code=303)


@router.get("/live", name="web_live", response_class=HTMLResponse)
def live_page(request: Request, setup: Setup) -> HTMLResponse:
    """Show the live alert feed, the camera wall and the edge boxes of the chosen site (or all)."""
    page, db, user = setup.page, setup.db, setup.user
    page.active = "live"
    now = datetime.now(UTC)
    links = Links(request)
    feed = queries.latest_alerts(db, user.scope, page.site)
    links.attach(feed)
    cams = queries.cameras(db, user.scope, page.site, now)
    boxes = queries.edges(db, user.scope, page.site, now)
    counts = queries.live_counts(db, user.scope, page.site, page.zone, now)
    flood = queries.flood_notices(db, user.scope, page.site, now)
    return render(
        request,
        "live.html",
        page,
        {
            "feed": feed,
            "cameras": cams,
            "edges": boxes,
            "counts": counts,
            "flood": flood,
            "links": links,
        },
    )


def _card_html(request: Request, ctx: AppContext, page: Page, event_pk: int) -> str | None:
    """Render one alert card in the page's language (runs in a worker thread: it queries)."""
    with ctx.db.session() as db:
        row = queries.alert_row(db, event_pk)
    if row is None:
        return None
    Links(request).attach([row])
    return render_string(request, "_card.html", page, {"ev": row, "fresh": True})


def _events_of_evidence(ctx: AppContext, item: dict[str, Any]) -> list[int]:
    """Return the events (newest first, at most a few) that show the evidence file of a hub item."""
    with ctx.db.session() as db:
        return queries.events_of_evidence(db, str(item.get("site")), str(item.get("path")))


def _visible(item: dict[str, Any], setup_scope: Any, site: str | None) -> bool:
    """Tell whether a hub item concerns what this page shows (the user's scope and the chosen site)."""
    item_site = item.get("site")
    if item_site is None:
        return False
    if site and item_site != site:
        return False
    return bool(setup_scope.allows(item_site, item.get("camera")))


def _sse(event: str, data: dict[str, Any]) -> str:
    """Format one server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


@router.get("/live/stream", name="web_live_stream")
async def live_stream(request: Request, setup: Setup) -> StreamingResponse:
    """Stream changes as server-sent events: `alert` (a card rendered in the page's language), `snapshot`,
    `camera`, `edge`, `heartbeat`, `zones`; only what the user's scope and the chosen site cover."""
    ctx, page, scope = setup.ctx, setup.page, setup.user.scope
    hub_items = ctx.hub.subscribe(idle_s=KEEPALIVE_S)

    async def events() -> AsyncIterator[str]:
        # Tell the browser to reconnect quickly after a restart of the dashboard.
        yield "retry: 2000\n\n"
        try:
            # `async for` ends the stream cleanly when the subscription ends (shutdown); the hub times out
            # its own wait, so a quiet spell never cancels the subscription.
            async for item in hub_items:
                if item is None:
                    if await request.is_disconnected():
                        return
                    yield ": keepalive\n\n"
                    continue
                if not _visible(item, scope, page.site):
                    continue
                kind = item.get("type")
                if kind in ("event", "workflow") and isinstance(item.get("id"), int):
                    html = await asyncio.to_thread(_card_html, request, ctx, page, item["id"])
                    if html is not None:
                        phase = item.get("phase") if kind == "event" else "workflow"
                        yield _sse("alert", {"id": item["id"], "phase": phase, "html": html})
                elif kind == "evidence":
                    # A snapshot often lands after its event: refresh the cards that show it.
                    pks = await asyncio.to_thread(_events_of_evidence, ctx, item)
                    for pk in pks:
                        html = await asyncio.to_thread(_card_html, request, ctx, page, pk)
                        if html is not None:
                            yield _sse("alert", {"id": pk, "phase": "evidence", "html": html})
                elif kind == "snapshot":
                    url = Links(request).snapshot(item["site"], item["camera"])
                    yield _sse("snapshot", {"site": item["site"], "camera": item["camera"], "url": url})
                elif kind in ("camera", "edge", "heartbeat", "zones"):
                    yield _sse(str(kind), {k: v for k, v in item.items() if isinstance(v, str | int | float)})
        finally:
            await hub_items.aclose()  # type: ignore[attr-defined]

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
