"""The dashboard's languages: gettext catalogs (English, Traditional Chinese) and locale-aware formatting.

Catalogs live in `dashboard/i18n/<locale>/LC_MESSAGES/messages.po` and are compiled in memory when the app
starts, so there is no committed binary that can go stale. `tests/dashboard/test_i18n_catalogs.py`
extracts every string from the templates and the Python code with Babel and fails when a catalog misses
one (see `babel.cfg` for what is extracted).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, tzinfo
from functools import cache
from pathlib import Path
from typing import Final

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

I18N_DIR: Final = Path(__file__).resolve().parent
#: Supported UI languages, in the order the language switch shows them; the first is the default.
LOCALES: Final = ("en", "zh_Hant")
DEFAULT_LOCALE: Final = LOCALES[0]
#: Each language's own name, shown in the language switch whatever the current language is.
LOCALE_NAMES: Final = {"en": "EN", "zh_Hant": "繁體中文"}
#: The HTML `lang` attribute of each language.
HTML_LANG: Final = {"en": "en", "zh_Hant": "zh-Hant-HK"}
#: Babel locale for dates and numbers: Hong Kong conventions (day before month, 24 h clock in Chinese).
_FORMAT_LOCALE: Final = {"en": "en_HK", "zh_Hant": "zh_Hant_HK"}


def normalize_locale(value: str | None) -> str | None:
    """Map a stored or requested language tag (zh-Hant, zh_TW, zh-HK, en-GB) onto a supported locale."""
    if not value:
        return None
    tag = value.strip().replace("-", "_").lower()
    if tag.startswith("zh"):
        # Simplified Chinese readers get Traditional rather than English: closer, and the site's script.
        return "zh_Hant"
    if tag.startswith("en"):
        return "en"
    return None


def negotiate(accept_language: str | None) -> str:
    """Pick a supported locale from an Accept-Language header (first supported match wins)."""
    for part in (accept_language or "").split(","):
        locale = normalize_locale(part.split(";")[0])
        if locale:
            return locale
    return DEFAULT_LOCALE


@cache
def translations(locale: str) -> Translations:
    """Return the compiled catalog of `locale` (compiled from its .po once per process)."""
    if locale not in LOCALES:
        raise ValueError(f"unsupported locale {locale!r}; supported: {', '.join(LOCALES)}")
    po = I18N_DIR / locale / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=locale)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


def format_locale(locale: str) -> Locale:
    """Return the Babel locale used for dates and numbers in `locale`."""
    return Locale.parse(_FORMAT_LOCALE.get(locale, "en_HK"))


#: Date-time patterns per language: 24-hour clock everywhere (a site log is read against shift times).
_PATTERNS: Final = {
    "en": {"medium": "d MMM y, HH:mm:ss", "short": "d MMM, HH:mm", "time": "HH:mm:ss", "day": "EEE d MMM"},
    "zh_Hant": {
        "medium": "y年M月d日 HH:mm:ss",
        "short": "M月d日 HH:mm",
        "time": "HH:mm:ss",
        "day": "M月d日 (EEE)",
    },
}


def _aware(value: datetime) -> datetime:
    """Take naive datetimes as UTC, as the database stores them."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def fmt_datetime(value: datetime | None, locale: str, zone: tzinfo, fmt: str = "medium") -> str:
    """Format a moment in the site's time zone with one of the named patterns (medium, short, time, day)."""
    if value is None:
        return ""
    pattern = _PATTERNS.get(locale, _PATTERNS["en"])[fmt]
    return format_datetime(_aware(value), pattern, tzinfo=zone, locale=format_locale(locale))


def fmt_date(value: datetime | object, locale: str, fmt: str = "long") -> str:
    """Format a calendar date (a date, or a datetime already in the site's zone)."""
    return format_date(value, fmt, locale=format_locale(locale))  # type: ignore[arg-type]


def fmt_number(value: float | int, locale: str) -> str:
    """Format a number with the locale's grouping."""
    return format_decimal(value, locale=format_locale(locale))
