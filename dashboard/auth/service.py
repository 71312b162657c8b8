"""Users, logins (with throttling), sessions and API tokens: plain functions on a DB session."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from dashboard.auth.passwords import hash_password, needs_rehash, verify_password
from dashboard.auth.scope import Principal, Scope
from dashboard.storage.models import ApiToken, LoginAttempt, Role, User, UserSession

#: API tokens start with this, so a leaked one is recognisable in logs and secret scanners.
TOKEN_PREFIX = "sst_"
# A session's last_seen_at is written at most this often: a page view should not always be a write.
_TOUCH_EVERY = timedelta(minutes=1)


def _now() -> datetime:
    return datetime.now(UTC)


def digest(token: str) -> str:
    """Return the SHA-256 of a session or API token: only this is stored, so a DB leak holds no tokens."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def principal_of(
    user: User, *, session: UserSession | None = None, token: ApiToken | None = None
) -> Principal:
    """Build the request's principal from a user row."""
    return Principal(
        user_id=user.id,
        username=user.username,
        role=Role(user.role),
        scope=Scope.of(list(user.sites or []), list(user.cameras or [])),
        session_id=session.id if session else None,
        token_id=token.id if token else None,
        csrf_token=session.csrf_token if session else None,
    )


# --- users -------------------------------------------------------------------------------------------


def create_user(
    db: Session,
    username: str,
    password: str,
    role: Role,
    *,
    sites: list[str] | None = None,
    cameras: list[str] | None = None,
    display_name: str | None = None,
) -> User:
    """Add a user; sites `["*"]` means every site, cameras are `site/camera`."""
    if db.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"user {username!r} exists already")
    if len(password) < 8:
        raise ValueError("passwords need at least 8 characters")
    for camera in cameras or []:
        if camera.count("/") != 1:
            raise ValueError(f"camera {camera!r}: write it as site/camera")
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_password(password),
        role=Role(role).value,
        sites=list(sites or []),
        cameras=list(cameras or []),
        active=True,
        created_at=_now(),
    )
    db.add(user)
    db.flush()
    return user


def set_password(db: Session, user: User, password: str) -> None:
    """Change a user's password and end their sessions."""
    if len(password) < 8:
        raise ValueError("passwords need at least 8 characters")
    user.password_hash = hash_password(password)
    revoke_user_sessions(db, user.id)


def list_users(db: Session) -> list[User]:
    """Return every user by name."""
    return list(db.scalars(select(User).order_by(User.username)))


# --- login and throttling ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginResult:
    """A login's outcome: the user, or why not (and when to retry when throttled)."""

    user: User | None
    throttled: bool = False
    retry_after_s: int = 0


def _retry_after(
    db: Session,
    column: InstrumentedAttribute[str],
    value: str,
    since: datetime,
    limit: int,
    window: timedelta,
) -> int:
    """Seconds until fewer than `limit` failures of `column == value` remain within the window; 0: none."""
    failures = list(
        db.scalars(
            select(LoginAttempt.at)
            .where(column == value, LoginAttempt.success.is_(False), LoginAttempt.at > since)
            .order_by(LoginAttempt.at.desc())
            .limit(limit)
        )
    )
    if len(failures) < limit:
        return 0
    # The limit-th newest failure has to leave the window before one more try is allowed.
    return max(1, int((failures[-1] + window - _now()).total_seconds()) + 1)


def login_retry_after(
    db: Session, username: str, ip: str, *, per_user: int, per_ip: int, window_s: int
) -> int:
    """Seconds a login for `username` from `ip` must wait (0: may try now)."""
    window = timedelta(seconds=window_s)
    since = _now() - window
    # A successful login clears the user's earlier failures (not the address's).
    last_ok = db.scalar(
        select(func.max(LoginAttempt.at)).where(
            LoginAttempt.username == username, LoginAttempt.success.is_(True)
        )
    )
    user_since = max(since, last_ok) if last_ok else since
    return max(
        _retry_after(db, LoginAttempt.username, username, user_since, per_user, window),
        _retry_after(db, LoginAttempt.ip, ip, since, per_ip, window),
    )


def login(
    db: Session, username: str, password: str, ip: str, *, per_user: int, per_ip: int, window_s: int
) -> LoginResult:
    """Check a user name and password, throttled per user name and per address; every try is recorded."""
    username = username.strip()[:64]
    wait = login_retry_after(db, username, ip, per_user=per_user, per_ip=per_ip, window_s=window_s)
    if wait:
        return LoginResult(None, throttled=True, retry_after_s=wait)
    user = db.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else None, password) and user is not None and user.active
    db.add(LoginAttempt(username=username, ip=ip[:64], success=ok, at=_now()))
    if not ok or user is None:
        return LoginResult(None)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return LoginResult(user)


# --- sessions ----------------------------------------------------------------------------------------


def start_session(
    db: Session, user: User, *, hours: float, ip: str | None, user_agent: str | None
) -> tuple[str, UserSession]:
    """Open a session; return the cookie token (shown once, stored hashed) and the row."""
    token = secrets.token_urlsafe(32)
    now = _now()
    row = UserSession(
        token_hash=digest(token),
        csrf_token=secrets.token_urlsafe(32),
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(hours=hours),
        last_seen_at=now,
        ip=ip,
        user_agent=(user_agent or "")[:300] or None,
    )
    db.add(row)
    db.flush()
    return token, row


def session_principal(db: Session, token: str) -> Principal | None:
    """Return the principal of a live session token, or None (unknown, expired, revoked, user disabled)."""
    row = db.scalar(select(UserSession).where(UserSession.token_hash == digest(token)))
    now = _now()
    if row is None or row.revoked_at is not None or row.expires_at <= now or not row.user.active:
        return None
    if now - row.last_seen_at > _TOUCH_EVERY:
        row.last_seen_at = now
    return principal_of(row.user, session=row)


def end_session(db: Session, token: str) -> None:
    """Revoke the session of `token` (logout)."""
    db.execute(
        update(UserSession)
        .where(UserSession.token_hash == digest(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


def revoke_user_sessions(db: Session, user_id: int) -> None:
    """Revoke every session of a user (password change, user disabled)."""
    db.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=_now())
    )


# --- API tokens --------------------------------------------------------------------------------------


def create_api_token(db: Session, user: User, name: str, *, days: int | None = None) -> tuple[str, ApiToken]:
    """Issue an API token acting as `user`; return the token (shown once) and its row."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = _now()
    row = ApiToken(
        name=name[:100],
        token_hash=digest(token),
        user_id=user.id,
        created_at=now,
        expires_at=now + timedelta(days=days) if days else None,
    )
    db.add(row)
    db.flush()
    return token, row


def token_principal(db: Session, token: str) -> Principal | None:
    """Return the principal of a valid API token, or None."""
    row = db.scalar(select(ApiToken).where(ApiToken.token_hash == digest(token)))
    now = _now()
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
        row.last_used_at = now
    return principal_of(row.user, token=row)


def revoke_api_token(db: Session, token_id: int) -> bool:
    """Revoke an API token by id; False when there is no such live token."""
    result = db.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    return bool(getattr(result, "rowcount", 0))
