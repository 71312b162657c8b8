"""Login, logout and the language switch."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard import i18n
from dashboard.api.routes.auth import set_session_cookie
from dashboard.auth import service
from dashboard.auth.deps import SESSION_COOKIE, Ctx, CurrentActor, CurrentUser, Db, client_ip
from dashboard.auth.scope import Principal
from dashboard.storage import audit
from dashboard.storage.models import User
from dashboard.web.deps import LANG_COOKIE, optional_principal, request_locale
from dashboard.web.templating import Page, render

router = APIRouter()

_YEAR_S = 365 * 86400


def safe_next(target: str | None, default: str = "/live") -> str:
    """Return `target` if it is a path on this site, else `default` (no open redirects)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _login_page(request: Request, ctx: Ctx, **context: object) -> HTMLResponse:
    """Render the login form in the visitor's language."""
    page = Page(
        locale=request_locale(request),
        zone=ctx.settings.zone,
        retention_days=ctx.settings.retention_days,
    )
    status_code = int(context.pop("status_code", 200))  # type: ignore[call-overload]
    return render(request, "login.html", page, dict(context), status_code=status_code)


@router.get("/login", name="web_login", response_class=HTMLResponse)
def login_form(request: Request, ctx: Ctx, next: str | None = None) -> Response:
    """Show the login form (or go straight on when already signed in)."""
    if optional_principal(request, ctx) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, ctx, next=safe_next(next))


@router.post("/login", name="web_login_submit")
def login_submit(
    request: Request,
    ctx: Ctx,
    db: Db,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Check the password (throttled by the auth service), open a session, and go where the user was going."""
    settings = ctx.settings
    ip = client_ip(request, ctx)
    result = service.login(
        db,
        username,
        password,
        ip,
        per_user=settings.login_max_failures,
        per_ip=settings.login_max_failures_per_ip,
        window_s=settings.login_window_s,
    )
    if result.user is None:
        db.commit()  # the failed attempt counts towards the throttle
        error = "throttled" if result.throttled else "wrong"
        return _login_page(
            request,
            ctx,
            next=safe_next(next),
            error=error,
            username=username,
            retry_after_min=max(1, (result.retry_after_s + 59) // 60),
            status_code=401,
        )
    token, _row = service.start_session(
        db, result.user, hours=settings.session_hours, ip=ip, user_agent=request.headers.get("user-agent")
    )
    # The language picked on the login page becomes the profile's, unless the profile already has one.
    if result.user.locale is None and (chosen := i18n.normalize_locale(request.cookies.get(LANG_COOKIE))):
        result.user.locale = chosen
    audit.record(db, audit.Actor(result.user.id, result.user.username, ip), "login", target_type="user")
    db.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, token, settings)
    return response


@router.post("/logout", name="web_logout")
def logout(request: Request, user: CurrentUser, actor: CurrentActor, db: Db) -> Response:
    """Revoke the session on the server and clear its cookie (CSRF-checked by CurrentUser)."""
    if cookie := request.cookies.get(SESSION_COOKIE):
        service.end_session(db, cookie)
    audit.record(db, actor, "logout", target_type="user", target_id=str(user.user_id))
    db.commit()
    response = RedirectResponse(request.url_for("web_login").path, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/language", name="web_set_language")
def set_language(
    request: Request,
    ctx: Ctx,
    db: Db,
    locale: Annotated[str, Form()],
    next: Annotated[str | None, Form()] = None,
    csrf_token: Annotated[str | None, Form()] = None,
) -> Response:
    """Switch the language: into the user's profile when signed in, and into a cookie for the login page."""
    chosen = i18n.normalize_locale(locale)
    if chosen is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "unsupported language")
    principal: Principal | None = optional_principal(request, ctx)
    if principal is not None:
        # A profile change is a state change: the session's CSRF token must come with it.
        if (
            not csrf_token
            or not principal.csrf_token
            or not secrets.compare_digest(csrf_token, principal.csrf_token)
        ):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
        row = db.get(User, principal.user_id)
        if row is not None:
            row.locale = chosen
            db.commit()
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        LANG_COOKIE, chosen, max_age=_YEAR_S, samesite="lax", secure=ctx.settings.secure_cookies, path="/"
    )
    return response
