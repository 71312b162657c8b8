"""Page route dependencies: the signed-in user (or a redirect to the login page) and the layout context.

Authentication itself is `dashboard.auth`'s: pages read the same session cookie through its service and
post forms through its `CurrentUser` (which checks the CSRF token). What is added here is only what a
browser needs: a redirect instead of a 401, and the language, site and time zone of the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from dashboard import i18n
from dashboard.auth import service
from dashboard.auth.deps import SESSION_COOKIE, Db, get_ctx
from dashboard.auth.scope import ALL_SITES, Principal
from dashboard.context import AppContext
from dashboard.storage.models import Camera, Edge, Role, User
from dashboard.web.templating import Page

#: Cookie holding the language chosen before login (the login page) or by a signed-out visitor.
LANG_COOKIE = "sitesentry_lang"
#: Cookie remembering the site picked in the header's site switcher.
SITE_COOKIE = "sitesentry_site"


class LoginRedirect(HTTPException):
    """303 to the login page, remembering where the user wanted to go."""

    def __init__(self, request: Request) -> None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"{request.url_for('web_login').path}?next={quote(target, safe='')}"
        super().__init__(status.HTTP_303_SEE_OTHER, "login required", {"Location": location})


def request_locale(request: Request, user_locale: str | None = None) -> str:
    """Pick the page language: the user's profile, else the language cookie, else the browser's."""
    return (
        i18n.normalize_locale(user_locale)
        or i18n.normalize_locale(request.cookies.get(LANG_COOKIE))
        or i18n.negotiate(request.headers.get("accept-language"))
    )


def _principal(request: Request, ctx: AppContext) -> Principal | None:
    """Return the principal of the session cookie, or None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    with ctx.db.session() as db:
        return service.session_principal(db, cookie)


def optional_principal(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> Principal | None:
    """Return the signed-in user of a page request, or None (login page, language switch)."""
    return _principal(request, ctx)


def page_principal(request: Request, ctx: Annotated[AppContext, Depends(get_ctx)]) -> Principal:
    """Return the signed-in user of a page request; redirect to the login page otherwise."""
    principal = _principal(request, ctx)
    if principal is None:
        raise LoginRedirect(request)
    return principal


PagePrincipal = Annotated[Principal, Depends(page_principal)]


def visible_sites(db: Session, user: Principal) -> list[str]:
    """Return the sites the user may see: those whose edges or cameras have reported, and those named in
    the user's scope (the event table is not scanned: a million rows would make every page slow)."""
    known: set[str] = set(db.scalars(select(Edge.site).distinct()))
    known |= set(db.scalars(select(Camera.site).distinct()))
    known |= {site for site in user.scope.sites if site != ALL_SITES}
    known |= {site for site, _ in user.scope.cameras}
    return sorted(s for s in known if user.scope.allows_site(s))


@dataclass
class PageSetup:
    """The signed-in user, the layout context, and the database session of one page request."""

    user: Principal
    page: Page
    db: Session
    ctx: AppContext


def page_setup(
    request: Request, user: PagePrincipal, db: Db, ctx: Annotated[AppContext, Depends(get_ctx)]
) -> PageSetup:
    """Build the layout context of a page: language, site list and pick, role flags, CSRF token."""
    row = db.get(User, user.user_id)
    sites = visible_sites(db, user)
    wanted = request.query_params.get("site")
    if wanted is None:
        wanted = request.cookies.get(SITE_COOKIE)
    site = wanted if wanted in sites else (sites[0] if len(sites) == 1 else None)
    page = Page(
        locale=request_locale(request, row.locale if row else None),
        zone=ctx.settings.zone,
        retention_days=ctx.settings.retention_days,
        username=user.username,
        display_name=(row.display_name if row else None) or user.username,
        role=user.role.value,
        is_admin=user.has_role(Role.ADMIN),
        can_act=user.has_role(Role.SAFETY_OFFICER),
        csrf_token=user.csrf_token,
        sites=sites,
        site=site,
    )
    return PageSetup(user=user, page=page, db=db, ctx=ctx)


Setup = Annotated[PageSetup, Depends(page_setup)]
