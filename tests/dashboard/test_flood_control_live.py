"""Flood control is never silent: when an edge holds alerts back, the live page says so per camera, with
the count, in English and 繁體中文, and takes it down when the edge says it stopped.

Heartbeats travel the real way: an edge-like publisher (contract messages) or the real edge runtime on the
sample video, through Mosquitto, into the dashboard served by uvicorn; pages are read over HTTP and in
Debian's Chromium (Playwright)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser import (
    LAPTOP,
    PHONE,
    Dashboard,
    EdgeFeed,
    add_user,
    chromium,  # noqa: F401 (a fixture)
    login,
    needs_browser_stack,
    screenshot_dir,
    start_dashboard,
    wait_until,
)
from mqtt_fixtures import Mosquitto

REPO = Path(__file__).resolve().parents[2]
SITE = "kt-tower-b"
ADMIN, ADMIN_PW = "wong", "site-admin-pw-1"
CRANE_ONLY, CRANE_ONLY_PW = "chan", "crane-only-pw-3"
FLOOD = {"gate": {"events_suppressed": {"no_helmet": 30, "no_vest": 12}, "events_suppressed_last_min": 42}}
CALM = {"gate": {"events_suppressed": {"no_helmet": 30, "no_vest": 12}, "events_suppressed_last_min": 0}}
EN = "Flood control: 42 alerts held back on camera gate in the last minute"
ZH = "警報限流：攝影機 gate 在過去一分鐘內暫緩了 42 個警報"


@dataclass
class Stack:
    broker: Mosquitto
    dashboard: Dashboard
    feed: EdgeFeed
    shots: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    needs_browser_stack()
    root = tmp_path_factory.mktemp("flood")
    broker = Mosquitto(root / "mosquitto").start()
    dashboard = start_dashboard(root / "dashboard", broker)
    add_user(dashboard, ADMIN, ADMIN_PW, "admin", sites=["*"])
    add_user(dashboard, CRANE_ONLY, CRANE_ONLY_PW, "viewer", cameras=[f"{SITE}/crane"])
    feed = EdgeFeed(broker.port, site=SITE)
    feed.edge_online()
    for camera in ("gate", "crane"):
        feed.camera_status(camera, "online")
    yield Stack(broker, dashboard, feed, screenshot_dir(tmp_path_factory))
    feed.stop()
    dashboard.stop()
    broker.stop()


def signed_in(stack: Stack, user: str, password: str, language: str = "en") -> httpx.Client:
    client = httpx.Client(base_url=stack.dashboard.url, timeout=10, headers={"Accept-Language": language})
    reply = client.post("/api/auth/login", json={"username": user, "password": password})
    assert reply.status_code == 200, reply.text
    return client


def notices(html: str) -> list[str]:
    """The flood-control lines of a live page, as text."""
    found = re.findall(r'<p class="notice warn"[^>]*data-testid="flood-notice">(.*?)</p>', html, re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", f)).split()) for f in found]


def beat(stack: Stack, figures: dict[str, dict[str, Any]]) -> None:
    stack.feed.heartbeat({"gate": 4.9, "crane": 5.0}, figures)


def test_the_live_page_shows_the_held_back_count_from_a_heartbeat_over_http(stack: Stack) -> None:
    beat(stack, CALM)
    admin = signed_in(stack, ADMIN, ADMIN_PW)
    wait_until(lambda: "data-testid=\"edge\"" in admin.get("/live").text, 10, "the edge on the live page")
    assert notices(admin.get("/live").text) == []

    beat(stack, FLOOD)
    wait_until(lambda: bool(notices(admin.get("/live").text)), 10, "the flood-control notice")
    (line,) = notices(admin.get("/live").text)
    assert line.startswith(EN), line
    assert "42 held back since it started" in line  # 30 + 12 over the rules, since the edge started
    assert "rules.max_new_events_per_min" in line and "danger zone entries are never held back" in line

    chinese = signed_in(stack, ADMIN, ADMIN_PW, "zh-HK")
    (line,) = notices(chinese.get("/live").text)
    assert line.startswith(ZH), line

    # Only users who may see the camera hear about it.
    crane_only = signed_in(stack, CRANE_ONLY, CRANE_ONLY_PW)
    assert notices(crane_only.get("/live").text) == []

    beat(stack, CALM)  # the edge's last minute is quiet again: the notice goes
    wait_until(lambda: notices(admin.get("/live").text) == [], 10, "the notice to go")


def test_the_notice_appears_and_goes_live_in_the_browser_in_both_languages(
    stack: Stack,
    chromium: Any,  # noqa: F811
) -> None:
    beat(stack, CALM)
    errors: list[str] = []
    for language, viewport, text in (("en", LAPTOP, EN), ("zh_Hant", PHONE, ZH)):
        context = chromium.new_context(viewport=viewport)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        login(page, stack.dashboard.url, ADMIN, ADMIN_PW)
        if language != "en":
            page.click(f"[data-testid=lang-{language}]")
            page.wait_for_selector("html[lang=zh-Hant-HK]")
        page.wait_for_selector("#conn[data-state=live]", timeout=10_000)
        assert page.query_selector_all("[data-testid=flood-notice]") == []

        beat(stack, FLOOD)  # no reload: the page hears the heartbeat over its event stream
        notice = page.wait_for_selector("[data-testid=flood-notice][data-camera=gate]", timeout=10_000)
        assert notice.get_attribute("data-held-back") == "42"
        assert text in " ".join(notice.inner_text().split())
        assert notice.is_visible()
        page.screenshot(path=str(stack.shots / f"live-flood-control-{language}.png"), full_page=True)

        beat(stack, CALM)
        page.wait_for_selector("[data-testid=flood-notice]", state="detached", timeout=10_000)
        if language != "en":
            page.click("[data-testid=lang-en]")
            page.wait_for_selector("html[lang=en]")
        context.close()
    assert errors == []


@pytest.mark.slow
def test_the_real_edge_holding_alerts_back_shows_on_the_live_page(
    stack: Stack, tmp_path: Path
) -> None:
    from edge.config import load_config
    from edge.runtime import Runtime

    site = load_config(REPO / "samples" / "site.yaml")
    # Every passer-by counts (PPE required in the whole view), at most one new PPE alert a minute.
    gate = site.cameras[0].model_copy(
        update={"id": "yard", "fps": 3, "rules": site.cameras[0].rules.model_copy(update={"require": None})}
    )
    config = site.model_copy(
        update={
            "site": site.site.model_copy(update={"id": "flood-site"}),
            "cameras": [gate],
            "rules": site.rules.model_copy(
                update={"require": ["helmet", "vest"], "max_new_events_per_min": 1, "debounce_s": 0.4}
            ),
            "evidence": site.evidence.model_copy(update={"folder": tmp_path / "evidence"}),
            "mqtt": stack.broker.config(outbox=tmp_path / "outbox.sqlite3", heartbeat_s=60),
            "metrics": site.metrics.model_copy(update={"enabled": False}),
        }
    )
    admin = signed_in(stack, ADMIN, ADMIN_PW)
    runtime = Runtime.build(config)
    runtime.start()
    try:
        # Regular heartbeats come once a minute here: the notice comes from the early one flood control sends.
        started = time.monotonic()
        wait_until(
            lambda: any("on camera yard" in n for n in notices(admin.get("/live?site=flood-site").text)),
            90,
            "the real edge's flood-control notice",
        )
        print(f"flood-control notice on the live page {time.monotonic() - started:.1f} s after the start")
        (line,) = notices(admin.get("/live?site=flood-site").text)
        held = int(re.match(r"Flood control: (\d+) alerts? held back", line)[1])  # type: ignore[index]
        assert held >= 1
        figures = runtime.app.heartbeat_stats()["cameras"]["yard"]
        assert figures["events_suppressed_last_min"] >= held
        assert sum(figures["events_suppressed"].values()) >= held
    finally:
        runtime.stop()
