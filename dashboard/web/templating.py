"""The Jinja2 environment of the pages: gettext per request, site-time formatting, and the layout context.

One environment per app (built by `templates_for`, kept on `app.state`), never a module singleton. The
translation functions read the request's catalog from the template context, so one environment serves
every language at once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from babel.support import Translations
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup

from dashboard import i18n
from dashboard.i18n.labels import label

WEB_DIR: Final = Path(__file__).resolve().parent
TEMPLATES_DIR: Final = WEB_DIR / "templates"
STATIC_DIR: Final = WEB_DIR / "static"


@dataclass(frozen=True)
class NavItem:
    """One entry of the main navigation."""

    key: str
    href: str
    title: str


@dataclass
class Page:
    """What the layout needs on every page: who, where, in which language and time zone."""

    locale: str
    zone: tzinfo
    retention_days: int
    username: str | None = None
    display_name: str | None = None
    role: str | None = None
    is_admin: bool = False
    can_act: bool = False
    csrf_token: str | None = None
    sites: list[str] = field(default_factory=list)
    site: str | None = None
    active: str = ""


@pass_context
def _gettext(ctx: Context, message: str) -> str:
    """Translate through the catalog the page was rendered with."""
    translations: Translations = ctx.get("translations") or i18n.translations(i18n.DEFAULT_LOCALE)
    return translations.gettext(message)


@pass_context
def _ngettext(ctx: Context, singular: str, plural: str, n: int) -> str:
    """Translate a plural form through the page's catalog."""
    translations: Translations = ctx.get("translations") or i18n.translations(i18n.DEFAULT_LOCALE)
    return translations.ngettext(singular, plural, n)


@pass_context
def _dt(ctx: Context, value: datetime | None, fmt: str = "medium") -> str:
    """Format a moment in the site's time zone and the page's language."""
    page: Page = ctx["page"]
    return i18n.fmt_datetime(value, page.locale, page.zone, fmt)


@pass_context
def _date(ctx: Context, value: Any, fmt: str = "long") -> str:
    """Format a calendar date in the page's language."""
    return i18n.fmt_date(value, ctx["page"].locale, fmt)


@pass_context
def _num(ctx: Context, value: float | int) -> str:
    """Format a number with the page language's grouping."""
    return i18n.fmt_number(value, ctx["page"].locale)


@pass_context
def _label(ctx: Context, code: str | None, kind: str) -> str:
    """Translate a code (rule, state, role, action) into its display name."""
    translations: Translations = ctx.get("translations") or i18n.translations(i18n.DEFAULT_LOCALE)
    return label(kind, code, translations.gettext)


@pass_context
def _span(ctx: Context, seconds: float | None) -> str:
    """Format a number of seconds compactly (45 s, 3 min 20 s, 2 h 5 min)."""
    if seconds is None:
        return ""
    translations: Translations = ctx.get("translations") or i18n.translations(i18n.DEFAULT_LOCALE)
    gettext = translations.gettext
    whole = max(0, int(seconds))
    if whole < 60:
        return gettext("%(s)s s") % {"s": whole}
    if whole < 3600:
        return gettext("%(m)s min %(s)s s") % {"m": whole // 60, "s": whole % 60}
    return gettext("%(h)s h %(m)s min") % {"h": whole // 3600, "m": whole % 3600 // 60}


@pass_context
def _duration(ctx: Context, start: datetime, end: datetime | None) -> str:
    """Format how long something lasted, from its start to its end."""
    if end is None:
        return ""
    return _span(ctx, (end - start).total_seconds())


def _tojson_attr(value: Any) -> Markup:
    """JSON for an HTML attribute or a <script type=application/json> block (escapes <, >, &, ')."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = (
        text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").replace("'", "\\u0027")
    )
    return Markup(text)


def _query(base: dict[str, Any], **changes: Any) -> str:
    """Return `?a=1&b=2` from `base` with `changes` applied; None and empty values are left out."""
    merged = {**base, **changes}
    pairs = [(k, v) for k, v in merged.items() if v not in (None, "")]
    return "?" + urlencode(pairs) if pairs else "?"


def asset_version() -> str:
    """Return a short hash of the static files, appended to their URLs so a new release is re-fetched."""
    digest = hashlib.sha256()
    for path in sorted(STATIC_DIR.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(STATIC_DIR).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def build_environment() -> Environment:
    """Create the pages' Jinja2 environment: autoescaping, i18n extension, filters."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "xml", "svg"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(dt=_dt, date=_date, num=_num, label=_label, tojson_attr=_tojson_attr)
    env.globals.update(
        query=_query,
        duration=_duration,
        span=_span,
        locales=i18n.LOCALES,
        locale_names=i18n.LOCALE_NAMES,
        asset_version=asset_version(),
    )
    return env


def templates_for(request: Request) -> Jinja2Templates:
    """Return the app's templates, building them on first use (one environment per app)."""
    state = request.app.state
    templates: Jinja2Templates | None = getattr(state, "web_templates", None)
    if templates is None:
        templates = Jinja2Templates(env=build_environment())
        state.web_templates = templates
    return templates


def render(
    request: Request, name: str, page: Page, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render template `name` for `page` in the page's language."""
    values = {
        "page": page,
        "translations": i18n.translations(page.locale),
        "html_lang": i18n.HTML_LANG[page.locale],
        **(context or {}),
    }
    return templates_for(request).TemplateResponse(request, name, values, status_code=status_code)


def render_string(request: Request, name: str, page: Page, context: dict[str, Any] | None = None) -> str:
    """Render template `name` to a string (SSE fragments, PDF input)."""
    template = templates_for(request).env.get_template(name)
    values = {
        "request": request,
        "page": page,
        "translations": i18n.translations(page.locale),
        "html_lang": i18n.HTML_LANG[page.locale],
        **(context or {}),
    }
    return template.render(values)
