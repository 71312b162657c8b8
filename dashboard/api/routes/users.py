"""Users and API tokens (admins only); each change is audited."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from dashboard.auth import service
from dashboard.auth.deps import Admin, CurrentActor, Db
from dashboard.storage import audit
from dashboard.storage.models import ApiToken, Role, User

router = APIRouter(prefix="/users", tags=["users"])


class UserOut(BaseModel):
    """A user without secrets."""

    id: int
    username: str
    display_name: str | None
    role: str
    sites: list[str]
    cameras: list[str]
    active: bool
    created_at: datetime


class UserIn(BaseModel):
    """A new user; sites `["*"]` means every site, cameras are `site/camera`."""

    username: str = Field(pattern=r"^[A-Za-z0-9._@-]{1,64}$")
    password: str = Field(min_length=8, max_length=1024)
    role: Role
    display_name: str | None = Field(None, max_length=200)
    sites: list[str] = Field(default_factory=list)
    cameras: list[str] = Field(default_factory=list)


class TokenIn(BaseModel):
    """A new API token for a user."""

    name: str = Field(min_length=1, max_length=100)
    days: int | None = Field(None, ge=1, le=3650)


class TokenOut(BaseModel):
    """A new API token: shown once, stored only as a hash."""

    id: int
    name: str
    token: str
    expires_at: datetime | None


@router.get("", summary="All users")
def users(user: Admin, db: Db) -> list[UserOut]:
    """List users."""
    return [UserOut.model_validate(u, from_attributes=True) for u in service.list_users(db)]


@router.post("", summary="Add a user", status_code=201)
def add_user(body: UserIn, user: Admin, actor: CurrentActor, db: Db) -> UserOut:
    """Create a user; 409 when the name is taken."""
    try:
        row = service.create_user(
            db, body.username, body.password, body.role, sites=body.sites, cameras=body.cameras,
            display_name=body.display_name,
        )  # fmt: skip
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    audit.record(
        db, actor, "user.add", target_type="user", target_id=row.username,
        detail={"role": row.role, "sites": row.sites, "cameras": row.cameras},
    )  # fmt: skip
    db.commit()
    return UserOut.model_validate(row, from_attributes=True)


@router.post("/{user_id}/disable", summary="Disable a user and end their sessions")
def disable_user(user_id: int, user: Admin, actor: CurrentActor, db: Db) -> UserOut:
    """Disable a user (kept for the audit trail) and revoke their sessions."""
    row = db.get(User, user_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    row.active = False
    service.revoke_user_sessions(db, row.id)
    audit.record(db, actor, "user.disable", target_type="user", target_id=row.username)
    db.commit()
    return UserOut.model_validate(row, from_attributes=True)


@router.post("/{user_id}/tokens", summary="Issue an API token acting as this user", status_code=201)
def add_token(user_id: int, body: TokenIn, user: Admin, actor: CurrentActor, db: Db) -> TokenOut:
    """Create an API token (`Authorization: Bearer <token>`); the token is in this response only."""
    row = db.get(User, user_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    token, token_row = service.create_api_token(db, row, body.name, days=body.days)
    audit.record(db, actor, "token.add", target_type="api_token", target_id=str(token_row.id),
                 detail={"user": row.username, "name": body.name})  # fmt: skip
    db.commit()
    return TokenOut(id=token_row.id, name=token_row.name, token=token, expires_at=token_row.expires_at)


@router.delete("/{user_id}/tokens/{token_id}", summary="Revoke an API token")
def revoke_token(user_id: int, token_id: int, user: Admin, actor: CurrentActor, db: Db) -> dict[str, str]:
    """Revoke one of a user's API tokens."""
    found = db.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id))
    if found is None or not service.revoke_api_token(db, token_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    audit.record(db, actor, "token.revoke", target_type="api_token", target_id=str(token_id))
    db.commit()
    return {"status": "revoked"}
