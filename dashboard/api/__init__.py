"""The REST API under /api (OpenAPI docs at /api/docs): one router per resource in `routes/`."""

from __future__ import annotations

from fastapi import APIRouter


def api_router() -> APIRouter:
    """Return a router holding every API route, to be included under /api."""
    from dashboard.api.routes import (
        audit,
        auth,
        cameras,
        edges,
        events,
        evidence,
        exports,
        health,
        retention,
        stats,
        users,
        zones,
    )

    router = APIRouter()
    modules = (health, auth, events, cameras, zones, edges, stats, exports, evidence, audit, users, retention)
    for module in modules:
        router.include_router(module.router)
    return router
