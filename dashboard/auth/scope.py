"""Who is asking, and which sites and cameras they may see: checked here, never in templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from dashboard.storage.models import Role

ALL_SITES = "*"


@dataclass(frozen=True, slots=True)
class Scope:
    """Whole sites (`*` for every site) plus single cameras given as `site/camera`."""

    sites: frozenset[str] = frozenset()
    cameras: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def of(cls, sites: list[str], cameras: list[str]) -> Scope:
        """Build a scope from a user's stored lists."""
        pairs = {tuple(c.split("/", 1)) for c in cameras if "/" in c}
        return cls(frozenset(sites), frozenset((s, c) for s, c in pairs))

    @property
    def everything(self) -> bool:
        """Tell whether every site is allowed."""
        return ALL_SITES in self.sites

    def allows_site(self, site: str) -> bool:
        """Tell whether anything of `site` may be seen (the whole site or one of its cameras)."""
        return self.everything or site in self.sites or any(s == site for s, _ in self.cameras)

    def allows(self, site: str, camera: str | None) -> bool:
        """Tell whether `camera` of `site` may be seen; camera None means site-wide data."""
        if self.everything or site in self.sites:
            return True
        return camera is not None and (site, camera) in self.cameras

    def filter(self, site_col: Any, camera_col: Any) -> ColumnElement[bool]:
        """Return a SQL condition restricting rows to this scope."""
        if self.everything:
            return true()
        terms: list[ColumnElement[bool]] = []
        if self.sites:
            terms.append(site_col.in_(sorted(self.sites)))
        terms += [and_(site_col == s, camera_col == c) for s, c in sorted(self.cameras)]
        return or_(*terms) if terms else false()

    def site_filter(self, site_col: Any) -> ColumnElement[bool]:
        """Return a SQL condition for site-level rows (edges): sites in scope, also through one camera."""
        if self.everything:
            return true()
        sites = sorted(self.sites | {s for s, _ in self.cameras})
        return site_col.in_(sites) if sites else false()


@dataclass(frozen=True, slots=True)
class Principal:
    """The user behind a request, and how they authenticated."""

    user_id: int
    username: str
    role: Role
    scope: Scope
    session_id: int | None = None
    token_id: int | None = None
    csrf_token: str | None = field(default=None, repr=False)

    def has_role(self, role: Role) -> bool:
        """Tell whether this user's role is `role` or above."""
        return self.role.rank >= role.rank
