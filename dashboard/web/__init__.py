"""Page routes, templates and static assets of the dashboard (placeholder until the pages land).

`dashboard.app.create_app` includes `router` and, if defined, calls `setup(app)` (static files,
exception handlers such as a redirect to the login page on `dashboard.auth.deps.NotAuthenticated`).
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
