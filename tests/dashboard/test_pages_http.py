"""The pages over HTTP without a browser (fast): sign-in redirects, CSRF on every form, roles and scope,
the language switch, and the report as a PDF with Chinese glyphs embedded (WeasyPrint + Noto Sans CJK)."""

from __future__ import annotations

import re
import uuid
import warnings
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx in its test client
    from fastapi.testclient import TestClient

from contract.liveness import stale_after_s
from contract.payloads import CameraStatusMessage, EdgeStatusMessage, EventMessage
from dashboard.app import create_app
from dashboard.auth import service
from dashboard.settings import DashboardSettings
from dashboard.storage import ingest_store
from dashboard.storage.models import Role

PASSWORD = "correct-horse-42"


def event(site: str, camera: str, rule: str, minutes_ago: float) -> EventMessage:
    """An event message as an edge sends it."""
    started = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    return EventMessage.model_validate(
        {
            "schema_version": 1,
            "message_id": str(uuid.uuid4()),
            "event_id": str(uuid.uuid4()),
            "type": "start",
            "rule": rule,
            "site": site,
            "edge": "edge-1",
            "camera": camera,
            "zone": "crane-swing" if rule == "zone_entry" else None,
            "track_id": 3,
            "started_at": started.isoformat(),
            "ended_at": None,
            "confidence": 0.91,
            "person_box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.9},
            "evidence_boxes": [],
            "evidence": [],
            "model": {"name": "ppe-yolo", "version": "0.4.0"},
            "frame_seq": 1,
            "emitted_at": started.isoformat(),
        }
    )


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    settings = DashboardSettings(data_dir=tmp_path, secure_cookies=False, ingest_enabled=False)
    application = create_app(settings, start_ingest=False, run_retention=False)
    with TestClient(application):  # runs the lifespan: migrations
        ctx = application.state.ctx
        with ctx.db.session() as db:
            service.create_user(db, "boss", PASSWORD, Role.ADMIN, sites=["*"])
            service.create_user(db, "officer", PASSWORD, Role.SAFETY_OFFICER, sites=["site-a"])
            service.create_user(db, "guard", PASSWORD, Role.VIEWER, sites=["site-a"])
            for i, rule in enumerate(["no_helmet", "no_vest", "zone_entry", "no_helmet"]):
                ingest_store.store_event(db, event("site-a", "gate", rule, 10 + i))
            ingest_store.store_event(db, event("site-b", "dock", "no_vest", 5))
            for site, camera in (("site-a", "gate"), ("site-b", "dock")):
                status = {"site": site, "edge": "edge-1", "camera": camera, "state": "online"}
                ingest_store.store_camera_status(
                    db, CameraStatusMessage(schema_version=1, at=datetime.now(UTC), **status)
                )
        yield application


def signed_in(app: Any, username: str) -> TestClient:
    """A client with a session of `username` (through the login form)."""
    client = TestClient(app)
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    return client


def csrf(html: str) -> str:
    """Return the CSRF token a page put in its forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def first_alert(client: TestClient, site: str = "site-a") -> int:
    """Return the id of the newest alert of `site` on the alert list."""
    html = client.get(f"/alerts?site={site}").text
    return int(re.findall(r'/alerts/(\d+)"', html)[0])


def test_pages_send_a_signed_out_browser_to_the_login_page(app: Any) -> None:
    client = TestClient(app)
    for path in ("/live", "/alerts", "/stats", "/reports/daily", "/zones", "/cameras", "/admin", "/notice"):
        response = client.get(path, headers={"Accept": "text/html"}, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next=")
    assert client.get("/privacy").status_code == 200  # the privacy page is public
    wrong = client.post("/login", data={"username": "boss", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text


def test_after_login_the_user_lands_where_they_wanted_but_never_off_site(app: Any) -> None:
    client = TestClient(app)
    form = {"username": "boss", "password": PASSWORD, "next": "/stats?by=hour"}
    assert client.post("/login", data=form, follow_redirects=False).headers["location"] == "/stats?by=hour"
    form["next"] = "//evil.example/phish"
    assert client.post("/login", data=form, follow_redirects=False).headers["location"] == "/live"


def test_every_state_change_needs_the_csrf_token(app: Any) -> None:
    client = signed_in(app, "officer")
    pk = first_alert(client)
    refused = client.post(f"/alerts/{pk}/action", data={"action": "acknowledge"})
    assert refused.status_code == 403
    assert client.post("/language", data={"locale": "zh_Hant"}).status_code == 403
    assert client.post("/logout").status_code == 403
    token = csrf(client.get(f"/alerts/{pk}").text)
    done = client.post(
        f"/alerts/{pk}/action", data={"action": "acknowledge", "csrf_token": token, "note": "seen"}
    )
    assert done.status_code == 200 and 'data-status="acknowledged"' in done.text


def test_a_viewer_sees_alerts_but_cannot_act_and_nobody_sees_another_sites_alerts(app: Any) -> None:
    guard = signed_in(app, "guard")
    pk = first_alert(guard)
    page = guard.get(f"/alerts/{pk}").text
    assert 'data-testid="workflow-form"' not in page and "can view alerts but not act" in page
    token = csrf(page)
    assert (
        guard.post(f"/alerts/{pk}/action", data={"action": "resolve", "csrf_token": token}).status_code == 403
    )
    assert "site-b" not in guard.get("/alerts").text
    boss = signed_in(app, "boss")
    other = first_alert(boss, "site-b")
    assert guard.get(f"/alerts/{other}").status_code == 404
    assert guard.get("/admin").status_code == 404  # admins only, and no hint that it exists


def test_a_step_that_does_not_fit_the_status_is_refused_with_a_message(app: Any) -> None:
    client = signed_in(app, "officer")
    pk = first_alert(client)
    token = csrf(client.get(f"/alerts/{pk}").text)
    client.post(f"/alerts/{pk}/action", data={"action": "resolve", "csrf_token": token})
    again = client.post(f"/alerts/{pk}/action", data={"action": "acknowledge", "csrf_token": token})
    assert "not possible in the alert&#39;s current state" in again.text


def test_the_language_is_kept_in_the_profile_and_the_cookie(app: Any) -> None:
    client = signed_in(app, "boss")
    token = csrf(client.get("/live").text)
    response = client.post("/language", data={"locale": "zh_Hant", "next": "/alerts", "csrf_token": token})
    assert response.status_code == 200 and '<html lang="zh-Hant-HK">' in response.text
    assert "未戴安全帽" in response.text and "警報" in response.text
    fresh = signed_in(app, "boss")  # a new session (another device) starts in the profile's language
    assert "即時" in fresh.get("/live").text
    login_page = TestClient(app)
    login_page.cookies.set("sitesentry_lang", "zh_Hant")
    assert "登入" in login_page.get("/login").text


def test_an_edge_that_stopped_sending_heartbeats_is_shown_as_stale(app: Any) -> None:
    with app.state.ctx.db.session() as db:
        long_ago = datetime.now(UTC) - timedelta(minutes=30)
        status = {
            "schema_version": 1,
            "site": "site-a",
            "edge": "edge-1",
            "state": "online",
            "version": "0.1.0",
        }
        ingest_store.store_edge_status(db, EdgeStatusMessage.model_validate({**status, "at": long_ago}))
    client = signed_in(app, "boss")
    page = client.get("/live?site=site-a").text
    edge = page[page.index('data-testid="edge"') :]
    assert 'data-state="stale"' in edge[:1500] and "No heartbeat" in edge[:1500]
    # Its cameras are not shown as online either.
    assert 'data-state="online"' not in page[page.index('id="wall"') : page.index('data-testid="edge"')]
    # The API judges it the same way, and the page's own re-check uses contract.liveness's figures.
    assert [e["state"] for e in client.get("/api/edges?site=site-a").json()] == ["stale"]
    assert [c["state"] for c in client.get("/api/cameras?site=site-a").json()] == ["offline"]
    tag = page[page.rindex("<div", 0, page.index('data-testid="edge"')) : page.index('data-testid="edge"')]
    assert f'data-stale-after="{stale_after_s(None, None)}"' in tag
    assert f'data-seen="{long_ago.isoformat()[:19]}' in tag


def test_the_notice_and_the_privacy_page_name_the_operator_and_contact_of_the_settings(
    tmp_path: Path,
) -> None:
    operator, contact = "Wing Shing Construction & Co.", "privacy@wingshing.example / 2345 6789"
    settings = DashboardSettings(
        data_dir=tmp_path,
        secure_cookies=False,
        ingest_enabled=False,
        operator_name=operator,
        privacy_contact=contact,
    )
    application = create_app(settings, start_ingest=False, run_retention=False)
    with TestClient(application):
        with application.state.ctx.db.session() as db:
            service.create_user(db, "boss", PASSWORD, Role.ADMIN, sites=["*"])
        notice = signed_in(application, "boss").get("/notice").text
        privacy = TestClient(application).get("/privacy").text  # public
    for html, where in ((notice, "notice"), (privacy, "privacy")):
        for testid, value in (("operator", operator), ("contact", contact)):
            assert f'data-testid="{where}-{testid}">{escape(value)}<' in html, (where, testid)


@pytest.mark.parametrize("by", ["hour", "day", "week"])
def test_every_alert_of_the_period_is_in_a_bucket(app: Any, by: str) -> None:
    from zoneinfo import ZoneInfo

    from dashboard.web import queries

    with app.state.ctx.db.session() as db:
        for hours_ago in (1, 2, 3, 4, 5, 6, 7):
            ingest_store.store_event(db, event("site-a", "gate", "no_vest", 60 * hours_ago))
        everything = service.principal_of(service.list_users(db)[0]).scope
        stats = queries.statistics(
            db,
            everything,
            None,
            by,
            "rule",
            ZoneInfo("Asia/Hong_Kong"),
            datetime.now(UTC),  # type: ignore[arg-type]
        )
    assert sum(sum(values) for values in stats.series.groups.values()) == stats.total == 12


def test_the_report_renders_as_a_page_and_as_a_pdf_with_chinese_glyphs(app: Any) -> None:
    client = signed_in(app, "boss")
    token = csrf(client.get("/live").text)
    client.post("/language", data={"locale": "zh_Hant", "csrf_token": token})
    html = client.get("/reports/daily?site=site-a").text
    assert "每日安全報告" in html and 'data-testid="report-total">4<' in html
    pdf = client.get("/reports/daily?site=site-a&format=pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    # The CJK font is embedded (a subset), so the report prints the same on any PC.
    assert any(b"NotoSansCJK" in part for part in pdf_parts(pdf.content))


def pdf_parts(data: bytes) -> list[bytes]:
    """Return the PDF's bytes and its inflated streams (font names sit in compressed object streams)."""
    parts = [data]
    for match in re.finditer(rb"stream\r?\n", data):
        try:
            parts.append(zlib.decompressobj().decompress(data[match.end() : match.end() + 2_000_000]))
        except zlib.error:
            continue
    return parts


def test_the_api_and_the_statistics_page_draw_the_same_heat_map(app: Any) -> None:
    import html
    import json

    client = signed_in(app, "boss")
    api = client.get("/api/stats/heatmap/site-a/gate").json()
    # Four alerts with the feet at (0.2, 0.9) of the frame: column 6 of 32, row 16 of 18.
    assert (api["cols"], api["rows"], api["total"]) == (32, 18, 4) and api["grid"][16][6] == 4
    page = client.get("/stats?site=site-a").text
    drawn = [json.loads(html.unescape(c)) for c in re.findall(r'<canvas data-cells="([^"]+)"', page)]
    assert api["grid"] in drawn
    guard = signed_in(app, "guard")  # site-a only
    assert guard.get("/api/stats/heatmap/site-b/dock").status_code == 404
