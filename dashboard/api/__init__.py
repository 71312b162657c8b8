"""The REST API under /api (OpenAPI docs at /api/docs): one router per resource in `routes/`."""

from __future__ import annotations

from fastapi import APIRouter


def api_router() -> APIRouter:
    """Return a router holding every API route, to be included under /api."""
    from dashboard.api.routes import auth, health

    router = APIRouter()
    for module in (health, auth):
        router.include_router(module.router)
    return router
