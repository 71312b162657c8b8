"""Every user-facing string of the pages is translated: Babel extracts the templates and the Python code
(as dashboard/i18n/babel.cfg says) and both catalogs must hold every string, Traditional Chinese with a
translation; codes (rules, states, roles) have a display name in both languages."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from contract.enums import CameraStatus, Rule
from dashboard import i18n
from dashboard.i18n import catalogs, labels
from dashboard.storage.models import EventStatus, Role


@pytest.fixture(scope="module")
def extracted():  # type: ignore[no-untyped-def]
    return catalogs.extract()


def test_extraction_finds_the_templates_and_the_code(extracted) -> None:  # type: ignore[no-untyped-def]
    ids = {m.id for m in extracted if m.id}
    assert "Acknowledge" in ids  # a template
    assert "No hard hat" in ids  # labels.py, marked with N_
    assert "Alert resolved." in ids  # web/workflow.py
    assert len(ids) > 150


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_string_is_in_the_catalog(extracted, locale: str) -> None:  # type: ignore[no-untyped-def]
    assert catalogs.problems(extracted, locale) == []


def test_placeholders_survive_translation() -> None:
    # A translation that drops or renames %(days)s would crash the page (or show the wrong figure).
    import re

    catalog = catalogs.read("zh_Hant")
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = set(re.findall(r"%\(\w+\)s", ids[-1]))
        for text in strings:
            assert set(re.findall(r"%\(\w+\)s", text)) == wanted, message.id


@pytest.mark.parametrize(
    ("kind", "codes"),
    [
        ("rule", [r.value for r in Rule]),
        ("camera_state", [s.value for s in CameraStatus]),
        ("alert_state", [s.value for s in EventStatus]),
        ("role", [r.value for r in Role]),
    ],
)
def test_every_code_has_a_translated_name(kind: str, codes: list[str]) -> None:
    chinese = i18n.translations("zh_Hant").gettext
    for code in codes:
        english = labels.label(kind, code, i18n.translations("en").gettext)
        assert english != code, f"{kind} {code!r} has no display name"
        assert labels.label(kind, code, chinese) != english, f"{kind} {code!r} is not translated"


def test_rules_and_times_read_naturally_in_chinese() -> None:
    gettext = i18n.translations("zh_Hant").gettext
    assert labels.label("rule", "no_helmet", gettext) == "未戴安全帽"
    moment = datetime(2025, 6, 2, 1, 30, 12, tzinfo=UTC)
    hong_kong = ZoneInfo("Asia/Hong_Kong")
    assert i18n.fmt_datetime(moment, "zh_Hant", hong_kong) == "2025年6月2日 09:30:12"
    assert i18n.fmt_datetime(moment, "en", hong_kong) == "2 Jun 2025, 09:30:12"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("zh-HK,zh;q=0.9,en;q=0.8", "zh_Hant"),
        ("zh-CN", "zh_Hant"),
        ("en-GB,en", "en"),
        ("fr-FR", "en"),
        (None, "en"),
    ],
)
def test_the_browser_language_picks_the_first_supported(header: str | None, expected: str) -> None:
    assert i18n.negotiate(header) == expected
