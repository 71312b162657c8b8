"""The retention policy (for the privacy page) and the Prometheus metrics of this dashboard."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dashboard.auth.deps import Admin, Ctx, Viewer
from dashboard.retention import policy

router = APIRouter(tags=["retention"])


@router.get("/retention", summary="What is deleted after how long")
def retention_policy(user: Viewer, ctx: Ctx) -> dict[str, Any]:
    """Return the retention policy in force."""
    return asdict(policy(ctx.settings))


@router.get("/metrics", summary="Prometheus metrics of the ingest (admins; scrape with an API token)")
def metrics(user: Admin, ctx: Ctx) -> Response:
    """Return this dashboard's counters in the Prometheus text format."""
    return Response(generate_latest(ctx.registry), media_type=CONTENT_TYPE_LATEST)
