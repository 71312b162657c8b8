"""Health check for load balancers and monitoring: no login, no details beyond up/down."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from dashboard.auth.deps import Ctx

router = APIRouter(tags=["health"])


@router.get("/health", summary="Is the dashboard up (database reachable, broker connected)?")
def health(ctx: Ctx) -> JSONResponse:
    """Return 200 when the database answers, 503 otherwise; says whether MQTT ingest is connected."""
    try:
        with ctx.db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = True
    except Exception:  # any driver error means "down" here; details belong in the log, not to strangers
        database = False
    mqtt = None if ctx.ingest is None else ctx.ingest.connected
    body = {"status": "ok" if database else "error", "database": database, "mqtt": mqtt}
    return JSONResponse(body, status_code=200 if database else 503)
