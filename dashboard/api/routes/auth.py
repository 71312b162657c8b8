"""Login, logout and who-am-I for the API (the login page calls the same service functions)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, Field

from dashboard.auth import service
from dashboard.auth.deps import SESSION_COOKIE, Ctx, CurrentActor, CurrentUser, Db, client_ip
from dashboard.settings import DashboardSettings
from dashboard.storage import audit
from dashboard.storage.models import User

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginBody(BaseModel):
    """User name and password."""

    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class Me(BaseModel):
    """The logged-in user, with the CSRF token a page sends back on every change."""

    id: int
    username: str
    display_name: str | None
    role: str
    sites: list[str]
    cameras: list[str]
    csrf_token: str | None


def set_session_cookie(response: Response, token: str, settings: DashboardSettings) -> None:
    """Put the session token in an HttpOnly, SameSite=Lax cookie (Secure unless turned off)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def me_of(user: User, csrf_token: str | None) -> Me:
    """Describe `user` for the client."""
    return Me(
        id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=user.role,
        sites=list(user.sites),
        cameras=list(user.cameras),
        csrf_token=csrf_token,
    )


@router.post("/login", summary="Log in; sets the session cookie and returns the CSRF token")
def login(body: LoginBody, request: Request, response: Response, ctx: Ctx, db: Db) -> Me:
    """Check the password (throttled), open a session and set its cookie."""
    settings = ctx.settings
    ip = client_ip(request, ctx)
    result = service.login(
        db,
        body.username,
        body.password,
        ip,
        per_user=settings.login_max_failures,
        per_ip=settings.login_max_failures_per_ip,
        window_s=settings.login_window_s,
    )
    if result.throttled:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed logins; try again later",
            {"Retry-After": str(result.retry_after_s)},
        )
    if result.user is None:
        db.commit()  # keep the failed attempt: it counts towards the throttle
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    token, row = service.start_session(
        db, result.user, hours=settings.session_hours, ip=ip, user_agent=request.headers.get("user-agent")
    )
    audit.record(db, audit.Actor(result.user.id, result.user.username, ip), "login", target_type="user")
    db.commit()
    set_session_cookie(response, token, settings)
    return me_of(result.user, row.csrf_token)


@router.post("/logout", summary="Log out: the session is revoked on the server")
def logout(
    request: Request, response: Response, user: CurrentUser, actor: CurrentActor, db: Db
) -> dict[str, str]:
    """Revoke the current session and clear its cookie."""
    if cookie := request.cookies.get(SESSION_COOKIE):
        service.end_session(db, cookie)
    audit.record(db, actor, "logout", target_type="user", target_id=str(user.user_id))
    db.commit()
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "logged out"}


@router.get("/me", summary="The logged-in user")
def me(user: CurrentUser, db: Db) -> Me:
    """Return the current user and the session's CSRF token."""
    row = db.get(User, user.user_id)
    if row is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "login required")
    return me_of(row, user.csrf_token)
