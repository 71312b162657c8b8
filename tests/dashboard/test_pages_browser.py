"""The pages in a real browser: Debian's Chromium (Playwright) against the dashboard served by uvicorn, fed
over a real Mosquitto by an edge-like publisher (contract messages, a real JPEG and H.264 clip) and, for
the zone editor, by the real edge runtime on the sample video.

Screenshots of every main page, in both languages, at laptop and phone sizes, go to
$SITESENTRY_SCREENSHOTS (or a temporary folder named in the test output)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser import (
    LAPTOP,
    PHONE,
    Dashboard,
    EdgeFeed,
    add_user,
    chromium,  # noqa: F401 (a fixture)
    jpeg,
    login,
    mp4,
    needs_browser_stack,
    recent,
    sample_frames,
    screenshot_dir,
    start_dashboard,
    wait_until,
)
from mqtt_fixtures import Mosquitto

REPO = Path(__file__).resolve().parents[2]
ADMIN, ADMIN_PW = "wong", "site-admin-pw-1"
OFFICER, OFFICER_PW = "lee", "officer-pw-2"
SITE = "kt-tower-b"

# Count <audio>.play() calls: headless Chromium plays nothing audible, but the call is the cue.
COUNT_PLAYS = """
window.__plays = 0;
const play = HTMLMediaElement.prototype.play;
HTMLMediaElement.prototype.play = function () {
  if (this.id === 'chime' && !this.muted) window.__plays += 1;
  return play.call(this);
};
"""


@dataclass
class Stack:
    """Broker, dashboard and feed shared by the tests of this module."""

    broker: Mosquitto
    dashboard: Dashboard
    feed: EdgeFeed
    shots: Path
    clip: bytes
    frames: list[Any]

    @property
    def url(self) -> str:
        return self.dashboard.url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    needs_browser_stack()
    root = tmp_path_factory.mktemp("pages")
    broker = Mosquitto(root / "mosquitto").start()
    dashboard = start_dashboard(
        root / "dashboard", broker, operator_name="KT Tower B JV", privacy_contact="2345 6789"
    )
    add_user(dashboard, ADMIN, ADMIN_PW, "admin", sites=["*"], display_name="Wong Ka Ming")
    add_user(dashboard, OFFICER, OFFICER_PW, "safety_officer", sites=[SITE], display_name="Lee Siu Fung")
    feed = EdgeFeed(broker.port, site=SITE)
    frames = sample_frames(36, start=60, step=2)
    clip = mp4(frames, fps=10)
    feed.edge_online()
    views = {
        "gate": frames[0],
        "crane": sample_frames(1, start=250)[0],
        "hoist": sample_frames(1, start=350)[0],
    }
    for camera, frame in views.items():
        feed.camera_status(camera, "online")
        feed.snapshot(camera, jpeg(frame))
    feed.camera_status("hoist", "reconnecting", "RTSP read timed out")
    feed.heartbeat({"gate": 9.8, "crane": 10.1, "hoist": 0.0})
    shots = screenshot_dir(tmp_path_factory)
    print(f"\nscreenshots: {shots}")
    yield Stack(broker, dashboard, feed, shots, clip, frames)
    feed.stop()
    dashboard.stop()
    broker.stop()


def history(stack: Stack, count: int = 24) -> None:
    """Publish earlier violations (some with evidence) so lists, charts and heat maps have something."""
    rules = [("no_helmet", None, "gate"), ("zone_entry", "crane-swing", "crane"), ("no_vest", None, "gate")]
    for i in range(count):
        rule, zone, camera = rules[i % 3]
        x = 0.15 + (i * 0.137) % 0.7
        stack.feed.violation(
            camera=camera,
            rule=rule,
            zone=zone,
            started_at=recent(40 + i * 53),
            ended_at=recent(39 + i * 53),
            phase="end",
            snapshot=jpeg(stack.frames[(i * 5) % len(stack.frames)]) if i < 8 else None,
            person_box={"x1": x, "y1": 0.35, "x2": x + 0.08, "y2": 0.75},
        )


def new_page(browser: Any, viewport: dict[str, int], errors: list[str]) -> Any:
    """A page in a fresh context that records console errors and failed requests."""
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.add_init_script(COUNT_PLAYS)
    page = context.new_page()
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    return page


def test_a_violation_appears_live_and_is_followed_up(stack: Stack, chromium: Any) -> None:  # noqa: F811
    errors: list[str] = []
    page = new_page(chromium, LAPTOP, errors)
    login(page, stack.url, ADMIN, ADMIN_PW)
    page.wait_for_selector("#conn[data-state=live]", timeout=10_000)
    page.click("[data-testid=sound-toggle]")  # the user gesture browsers need before any sound

    # An edge publishes a violation: evidence chunks first, then the event.
    started = time.monotonic()
    event_id = stack.feed.violation(
        camera="gate",
        rule="no_helmet",
        started_at=recent(0.05),
        snapshot=jpeg(stack.frames[12]),
        clip=stack.clip,
        offset_s=1.5,
        person_box={"x1": 0.42, "y1": 0.30, "x2": 0.52, "y2": 0.80},
        evidence_boxes=[{"x1": 0.45, "y1": 0.30, "x2": 0.49, "y2": 0.37}],
    )
    published = time.monotonic()
    card = page.wait_for_selector(f"[data-testid=alert-card][data-event='{event_id}']", timeout=5_000)
    seen = time.monotonic()
    assert seen - published < 1.0, f"the alert took {seen - published:.2f} s to appear"
    print(
        f"alert on screen {seen - published:.3f} s after the event message"
        f" ({published - started:.2f} s to push its evidence first)"
    )
    assert "No hard hat" in card.inner_text()
    wait_until(lambda: page.evaluate("window.__plays") >= 1, 3, "the chime")
    wait_until(
        lambda: page.evaluate(
            f"""() => {{ const i = document.querySelector("[data-event='{event_id}'] img");
                       return !!i && i.complete && i.naturalWidth > 0; }}"""
        ),
        5,
        "the snapshot on the card",
    )
    page.screenshot(path=str(stack.shots / "live-new-alert-en-laptop.png"))

    # The alert page: snapshot with the subject boxed, the clip from the event's offset.
    card.click()
    page.wait_for_selector("[data-testid=alert-title]")
    rects = page.eval_on_selector_all(
        "[data-testid=overlay] rect", "els => els.map(e => [e.getAttribute('class'), +e.getAttribute('x')])"
    )
    assert rects == [["person", 0.42], ["evid", 0.45]]
    page.eval_on_selector("video[data-testid=clip]", "v => { v.muted = true; return v.play(); }")
    wait_until(
        lambda: page.eval_on_selector("video", "v => v.readyState >= 2 && v.currentTime >= 1.5 && !v.error"),
        10,
        "the clip playing from its offset",
    )
    assert page.eval_on_selector("video", "v => v.duration") > 3

    # Follow-up: acknowledge, assign, resolve, each with a note; the audit trail shows them.
    page.fill("#note", "Foreman told; worker sent for a helmet")
    page.click("[data-testid=do-acknowledge]")
    page.wait_for_selector("[data-status=acknowledged]")
    page.select_option("#assignee", label="Lee Siu Fung")
    page.fill("#note", "Lee to check gate B at 14:00")
    page.click("[data-testid=do-assign]")
    page.wait_for_selector("[data-testid=assignee]:has-text('Lee Siu Fung')")
    page.fill("#note", "Checked: helmets on, briefing done")
    page.click("[data-testid=do-resolve]")
    page.wait_for_selector(".page-head [data-status=resolved]")
    audit = page.inner_text("[data-testid=audit]")
    for note in ("Foreman told", "Lee to check gate B", "Checked: helmets on"):
        assert note in audit
    page.screenshot(path=str(stack.shots / "alert-resolved-en-laptop.png"), full_page=True)

    # 繁體中文: stored in the profile, so it stays after signing in again.
    page.click("[data-testid=lang-zh_Hant]")
    page.wait_for_selector("html[lang=zh-Hant-HK]")
    assert "未戴安全帽" in page.inner_text("[data-testid=alert-title]")
    assert "已解決" in page.inner_text(".page-head")
    page.click(".user-menu summary")
    page.click("[data-testid=logout]")
    page.wait_for_url("**/login")
    login(page, stack.url, ADMIN, ADMIN_PW)
    assert page.get_attribute("html", "lang") == "zh-Hant-HK"
    page.click("[data-testid=lang-en]")
    page.wait_for_selector("html[lang=en]")

    # The day's alert log as CSV, with the evidence linked.
    today = time.strftime("%Y-%m-%d", time.localtime())
    page.goto(f"{stack.url}/alerts?since={today}&until={today}")
    with page.expect_download() as download:
        page.click("[data-testid=export-csv]")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    mine = [r for r in rows if event_id in r.values()]
    assert mine, f"event {event_id} not in the CSV export: {text[:300]}"
    assert errors == []


def test_every_main_page_in_both_languages_on_laptop_and_phone(stack: Stack, chromium: Any) -> None:  # noqa: F811
    history(stack)
    wait_until(lambda: _events(stack) >= 24, 20, "the history to be ingested")
    errors: list[str] = []
    pages = [
        ("live", "/live"),
        ("alerts", "/alerts"),
        ("alert", None),
        ("statistics", "/stats?by=day"),
        ("statistics-hourly", "/stats?by=hour&split=camera"),
        ("reports", "/reports"),
        ("report-daily", "/reports/daily"),
        ("zones", "/zones"),
        ("zone-editor", f"/zones/{SITE}/crane"),
        ("cameras", "/cameras"),
        ("admin", "/admin"),
        ("privacy", "/privacy"),
        ("cctv-notice", "/notice"),
    ]
    for locale in ("en", "zh_Hant"):
        for size, viewport in (("laptop", LAPTOP), ("phone", PHONE)):
            page = new_page(chromium, viewport, errors)
            page.goto(f"{stack.url}/login")
            page.click(f"[data-testid=lang-{locale}]")
            page.wait_for_load_state()
            page.screenshot(path=str(stack.shots / f"login-{locale}-{size}.png"))
            login(page, stack.url, ADMIN, ADMIN_PW)
            page.click(f"[data-testid=lang-{locale}]")
            page.wait_for_load_state()
            for name, path in pages:
                if path is None:
                    page.goto(f"{stack.url}/alerts")
                    page.click("[data-testid=alert-row] a >> nth=0")
                else:
                    page.goto(stack.url + path)
                page.wait_for_load_state("networkidle") if name != "live" else page.wait_for_timeout(600)
                page.screenshot(path=str(stack.shots / f"{name}-{locale}-{size}.png"), full_page=True)
                overflow = page.evaluate("document.scrollingElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"{name} ({locale}, {size}) scrolls sideways by {overflow}px"
            # The language chosen on the login page holds on every page after it.
            assert page.get_attribute("html", "lang") == {"en": "en", "zh_Hant": "zh-Hant-HK"}[locale]
            page.context.close()
    assert errors == []
    assert len(list(stack.shots.glob("*.png"))) >= 4 * (len(pages) + 1)


def _events(stack: Stack) -> int:
    """Count the events in the dashboard's database."""
    from sqlalchemy import func, select

    from dashboard.storage.models import Event

    with stack.dashboard.ctx.db.session() as db:
        return int(db.scalar(select(func.count()).select_from(Event)) or 0)


def edge_config(broker: Mosquitto, folder: Path) -> Any:
    """The sample site (camera gate on samples/vtest.mp4) at 2 frames/s, on the test broker, taking
    control commands from the dashboard's client id."""
    from dashboard.settings import MqttSettings
    from edge.config import load_config

    site = load_config(REPO / "samples" / "site.yaml")
    gate = site.cameras[0].model_copy(update={"fps": 2})
    return site.model_copy(
        update={
            "cameras": [gate],
            "evidence": site.evidence.model_copy(update={"folder": folder / "evidence"}),
            "mqtt": broker.config(
                outbox=folder / "outbox.sqlite3", control_clients=[MqttSettings().client_id], heartbeat_s=5
            ),
            "metrics": site.metrics.model_copy(update={"enabled": False}),
        }
    )


@pytest.mark.slow
def test_a_zone_drawn_in_the_editor_is_applied_by_the_real_edge(
    stack: Stack,
    chromium: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    from edge.runtime import Runtime

    config = edge_config(stack.broker, tmp_path)
    site_id = config.site.id
    runtime = Runtime.build(config)
    runtime.start()
    try:
        wait_until(lambda: _camera_zones(stack, site_id, "gate") is not None, 60, "the edge's zones")
        wait_until(lambda: _has_snapshot(stack, site_id, "gate"), 60, "the edge's first snapshot")
        errors: list[str] = []
        page = new_page(chromium, LAPTOP, errors)
        login(page, stack.url, ADMIN, ADMIN_PW)
        page.goto(f"{stack.url}/zones/{site_id}/gate")
        page.wait_for_selector("#editor-svg polygon[data-zone=crane-swing]")
        page.wait_for_function("document.getElementById('editor-img').naturalWidth > 0")

        # Draw a four-corner zone: click to add corners, click the first corner to close it.
        page.click("[data-testid=zone-new]")
        box = page.locator("#editor-svg").bounding_box()
        assert box is not None
        corners = [(0.08, 0.55), (0.32, 0.55), (0.32, 0.92), (0.08, 0.92)]
        for x, y in corners:
            page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
        page.mouse.click(box["x"] + corners[0][0] * box["width"], box["y"] + corners[0][1] * box["height"])
        page.wait_for_selector("#editor-svg polygon >> nth=1")
        new_id = page.locator("[data-testid=zone-id]").nth(1)
        new_id.fill("loading-bay")
        page.screenshot(path=str(stack.shots / "zone-editor-drawn-en-laptop.png"))
        page.click("[data-testid=zone-save]")
        reply = page.wait_for_selector("#zone-reply [data-result]", timeout=30_000)
        text = reply.inner_text()
        assert reply.get_attribute("data-result") == "ok", text
        assert "applied 2 zones to camera gate" in text
        page.screenshot(path=str(stack.shots / "zone-editor-applied-en-laptop.png"))

        # The edge publishes what it applies; the dashboard shows that, not what was sent.
        wait_until(lambda: "loading-bay" in (_camera_zones(stack, site_id, "gate") or {}), 15, "stored zones")
        polygon = _camera_zones(stack, site_id, "gate")["loading-bay"]  # type: ignore[index]
        assert [p for point in polygon for p in point] == pytest.approx(
            [p for c in corners for p in c], abs=0.01
        )
        engine = runtime.app.cameras["gate"].pipeline.engine
        assert "loading-bay" in {z.config.id for z in engine.zones}
        page.reload()
        page.wait_for_selector("#editor-svg polygon[data-zone=loading-bay]")
        assert errors == []
    finally:
        runtime.stop()


def _camera_zones(stack: Stack, site: str, camera: str) -> dict[str, Any] | None:
    """Return the zones the dashboard stored for a camera (as its edge published them), by id."""
    from dashboard.auth.scope import Scope
    from dashboard.storage.status import camera_in_scope

    with stack.dashboard.ctx.db.session() as db:
        row = camera_in_scope(db, Scope.of(["*"], []), site, camera)
        if row is None or row.zones_at is None:
            return None
        return {z["id"]: z["polygon"] for z in row.zones or []}


def _has_snapshot(stack: Stack, site: str, camera: str) -> bool:
    """Tell whether the dashboard holds a snapshot of the camera."""
    from dashboard.auth.scope import Scope
    from dashboard.storage.status import camera_in_scope

    with stack.dashboard.ctx.db.session() as db:
        row = camera_in_scope(db, Scope.of(["*"], []), site, camera)
        return row is not None and row.snapshot_path is not None


def test_the_api_docs_load_in_a_browser_with_nothing_from_outside(stack: Stack, chromium: Any) -> None:  # noqa: F811
    """Swagger UI's files come from this machine: a site server often has no internet."""
    errors: list[str] = []
    page = new_page(chromium, LAPTOP, errors)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{stack.url}/api/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=15000)
    assert "SiteSentry dashboard" in page.inner_text(".swagger-ui .info .title")
    assert page.locator(".opblock").count() >= 20, "every API operation is listed"
    page.screenshot(path=str(stack.shots / "api-docs.png"))
    page.context.close()
    assert errors == []
    outside = [url for url in requested if not url.startswith(stack.url) and not url.startswith("data:")]
    assert outside == [], outside
