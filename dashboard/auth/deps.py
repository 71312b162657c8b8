"""The one place where requests are authenticated and authorised, as FastAPI `Annotated` dependencies.

- `CurrentUser`: a logged-in user (session cookie or `Authorization: Bearer <API token>`); for a
  session, every state-changing request must carry the session's CSRF token (header `X-CSRF-Token` or
  form field `csrf_token`). API tokens are exempt: browsers never send them on their own.
- `Officer`, `Admin`: the same, with at least that role.
- `ensure_allowed`: 404 unless the user's scope holds the site/camera (404, not 403: no probing).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from ipaddress import ip_address, ip_network
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.orm import Session

from dashboard.auth import service
from dashboard.auth.scope import Principal
from dashboard.context import AppContext
from dashboard.storage.audit import Actor
from dashboard.storage.models import Role

SESSION_COOKIE = "sitesentry_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotAuthenticated(HTTPException):
    """401: no valid session or token. Page routes may turn it into a redirect to the login page."""

    def __init__(self) -> None:
        super().__init__(status.HTTP_401_UNAUTHORIZED, "login required", {"WWW-Authenticate": "Bearer"})


def get_ctx(request: Request) -> AppContext:
    """Return the running dashboard's context."""
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


def get_db(ctx: Ctx) -> Iterator[Session]:
    """A database session for one request; routes commit their own changes, the rest is rolled back."""
    with ctx.db.sessions() as session:
        yield session


Db = Annotated[Session, Depends(get_db)]


def client_ip(request: Request, ctx: AppContext) -> str:
    """Return the client address; X-Forwarded-For counts only from a trusted reverse proxy."""
    peer = request.client.host if request.client else "unknown"
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded and _trusted(peer, ctx.settings.trusted_proxies):
        return forwarded.split(",")[-1].strip()[:64] or peer
    return peer


def _trusted(peer: str, proxies: list[str]) -> bool:
    """Tell whether `peer` is one of the trusted proxies (addresses or networks)."""
    try:
        address = ip_address(peer)
    except ValueError:
        return False
    return any(address in ip_network(proxy, strict=False) for proxy in proxies)


def _authenticate(request: Request, ctx: Ctx) -> Principal:
    """Find the principal behind a bearer token or session cookie (sync: it queries the database)."""
    header = request.headers.get("authorization", "")
    with ctx.db.session() as db:
        if header.lower().startswith("bearer "):
            principal = service.token_principal(db, header[7:].strip())
        elif cookie := request.cookies.get(SESSION_COOKIE):
            principal = service.session_principal(db, cookie)
        else:
            principal = None
    if principal is None:
        raise NotAuthenticated()
    return principal


async def current_user(
    request: Request, principal: Annotated[Principal, Depends(_authenticate)]
) -> Principal:
    """Return the logged-in user; a cookie session's state-changing request needs its CSRF token."""
    if request.method not in SAFE_METHODS and principal.session_id is not None:
        sent = request.headers.get(CSRF_HEADER)
        content_type = request.headers.get("content-type", "")
        if not sent and content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            value = (await request.form()).get(CSRF_FIELD)  # Starlette caches the form for the route
            sent = value if isinstance(value, str) else None
        if not sent or not principal.csrf_token or not secrets.compare_digest(sent, principal.csrf_token):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def require_role(role: Role) -> Callable[[Principal], Principal]:
    """Return a dependency that lets only users with `role` or above through (403 otherwise)."""

    def dependency(user: CurrentUser) -> Principal:
        if not user.has_role(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the {role.value} role")
        return user

    dependency.__name__ = f"require_{role.value}"
    return dependency


Viewer = CurrentUser
Officer = Annotated[Principal, Depends(require_role(Role.SAFETY_OFFICER))]
Admin = Annotated[Principal, Depends(require_role(Role.ADMIN))]


def ensure_allowed(user: Principal, site: str, camera: str | None) -> None:
    """404 unless `user` may see `camera` of `site` (camera None: site-wide data)."""
    if not user.scope.allows(site, camera):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")


def get_actor(request: Request, ctx: Ctx, user: CurrentUser) -> Actor:
    """Return the audit actor of this request: the user and their address."""
    return Actor(user.user_id, user.username, client_ip(request, ctx))


CurrentActor = Annotated[Actor, Depends(get_actor)]
