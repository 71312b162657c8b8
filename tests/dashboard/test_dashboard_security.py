"""Security of the API: no route without login, roles, site scope, CSRF, throttling, API tokens,
evidence only by id and only in scope; workflow transitions with their audit trail."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

from dashboard_fixtures import PASSWORD, REPO, Running, event_payload
from sqlalchemy import select

from contract.evidence import file_chunks
from contract.payloads import EventMessage
from dashboard.ingest.handlers import Dispatcher
from dashboard.storage import ingest_store
from dashboard.storage.models import ApiToken, AuditEntry, Role

# Public on purpose: the health check, the login itself, and the API's own documentation.
PUBLIC = {"/api/health", "/api/auth/login", "/api/docs", "/api/docs/oauth2-redirect", "/api/openapi.json"}


def _add_event(running: Running, site: str = "site-a", camera: str = "gate") -> int:
    with running.ctx.db.session() as db:
        event = ingest_store.store_event(
            db, EventMessage.model_validate(event_payload(site=site, camera=camera))
        )
        assert event is not None
        db.flush()
        return event.id


def test_every_api_route_refuses_a_stranger(dashboard: Running) -> None:
    # The OpenAPI document lists every API route with its methods, however routers are nested.
    checked = 0
    for route_path, methods in dashboard.app.openapi()["paths"].items():
        if route_path in PUBLIC:
            continue
        path = route_path.replace("events.{fmt}", "events.csv")
        path = re.sub(r"\{[^}]+\}", "1", path)
        for method in methods:
            response = dashboard.new_client().request(method.upper(), path, json={})
            assert response.status_code == 401, (method, route_path, response.status_code)
            checked += 1
    assert checked >= 20


def test_a_viewer_can_read_but_not_act(dashboard: Running) -> None:
    dashboard.add_user("vera", Role.VIEWER, sites=["site-a"])
    pk = _add_event(dashboard)
    csrf = dashboard.login("vera")
    assert dashboard.client.get(f"/api/events/{pk}").status_code == 200
    for action in ("acknowledge", "resolve", "false_alarm"):
        assert dashboard.client.post(f"/api/events/{pk}/{action}", json={}, headers=csrf).status_code == 403
    assert (
        dashboard.client.put("/api/cameras/site-a/gate/zones", json={"zones": []}, headers=csrf).status_code
        == 403
    )
    assert dashboard.client.get("/api/users").status_code == 403


def test_a_user_of_site_a_never_sees_site_b(dashboard: Running) -> None:
    dashboard.add_user("anna", Role.SAFETY_OFFICER, sites=["site-a"])
    mine, theirs = _add_event(dashboard, "site-a"), _add_event(dashboard, "site-b")
    dispatcher = Dispatcher(dashboard.ctx)
    for site in ("site-a", "site-b"):
        jpeg = b"\xff\xd8\xffjpeg"
        path = "gate/snap.jpg"
        chunks = file_chunks(jpeg, site=site, edge="edge-1", camera="gate", kind="snapshot", path=path)
        for chunk in chunks:
            assert dispatcher.handle(f"sitesentry/{site}/edges/edge-1/evidence", chunk).result == "stored"
    csrf = dashboard.login("anna")
    listed = dashboard.client.get("/api/events").json()["items"]
    assert [e["id"] for e in listed] == [mine]
    assert dashboard.client.get(f"/api/events/{theirs}").status_code == 404
    assert (
        dashboard.client.post(f"/api/events/{theirs}/acknowledge", json={}, headers=csrf).status_code == 404
    )
    assert dashboard.client.get("/api/events", params={"site": "site-b"}).json()["items"] == []
    evidence = {e["id"]: e for e in dashboard.client.get(f"/api/events/{mine}").json()["evidence"]}
    (own_id,) = evidence
    assert dashboard.client.get(f"/api/evidence/{own_id}").content == b"\xff\xd8\xffjpeg"
    assert dashboard.client.get(f"/api/evidence/{own_id + 1}").status_code == 404  # site-b's file
    exported = dashboard.client.get("/api/exports/events.json").json()
    assert [row["site"] for row in exported] == ["site-a"]
    assert exported[0]["snapshot_url"].endswith(f"/api/evidence/{own_id}")


def test_evidence_is_served_by_id_only(dashboard: Running) -> None:
    dashboard.add_user("root", Role.ADMIN, sites=["*"])
    (dashboard.settings.data_dir / "secret.txt").write_text("secret")
    dashboard.login("root")
    for path in (
        "/api/evidence/..%2F..%2Fsecret.txt",
        "/api/evidence/../../secret.txt",
        "/api/evidence/1%2F..%2F..",
    ):
        response = dashboard.client.get(path)
        assert response.status_code in (404, 422) and b"secret" not in response.content


def test_a_forged_or_missing_csrf_token_is_refused(dashboard: Running) -> None:
    dashboard.add_user("olga", Role.SAFETY_OFFICER, sites=["site-a"])
    pk = _add_event(dashboard)
    csrf = dashboard.login("olga")
    assert dashboard.client.post(f"/api/events/{pk}/acknowledge", json={}).status_code == 403
    forged = {"X-CSRF-Token": "A" * len(csrf["X-CSRF-Token"])}
    assert dashboard.client.post(f"/api/events/{pk}/acknowledge", json={}, headers=forged).status_code == 403
    other = dashboard.new_client()
    dashboard.login("olga", other)  # another session's token is no good either
    assert other.post(f"/api/events/{pk}/acknowledge", json={}, headers=csrf).status_code == 403
    assert dashboard.client.post(f"/api/events/{pk}/acknowledge", json={}, headers=csrf).status_code == 200


def test_wrong_passwords_are_throttled_and_logout_revokes(dashboard: Running) -> None:
    dashboard.add_user("tom", Role.VIEWER, sites=["site-a"])
    for _ in range(dashboard.settings.login_max_failures):
        response = dashboard.client.post(
            "/api/auth/login", json={"username": "tom", "password": "wrong-password"}
        )
        assert response.status_code == 401
    refused = dashboard.client.post("/api/auth/login", json={"username": "tom", "password": PASSWORD})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    dashboard.add_user("uma", Role.VIEWER, sites=["site-a"])
    csrf = dashboard.login("uma")
    cookie = dashboard.client.cookies.get("sitesentry_session")
    assert dashboard.client.post("/api/auth/logout", headers=csrf).status_code == 200
    replay = dashboard.new_client()
    replay.cookies.set("sitesentry_session", cookie or "")
    assert replay.get("/api/auth/me").status_code == 401


def test_api_tokens_act_as_their_user_and_are_hashed_at_rest(dashboard: Running) -> None:
    dashboard.add_user("root", Role.ADMIN, sites=["*"])
    bot = dashboard.add_user("bot", Role.SAFETY_OFFICER, sites=["site-a"])
    pk = _add_event(dashboard)
    csrf = dashboard.login("root")
    token = dashboard.client.post(f"/api/users/{bot}/tokens", json={"name": "ci"}, headers=csrf).json()
    script = dashboard.new_client()
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert script.get("/api/events", headers=bearer).json()["items"][0]["id"] == pk
    assert script.post(f"/api/events/{pk}/acknowledge", json={}, headers=bearer).status_code == 200  # no CSRF
    assert script.get("/api/users", headers=bearer).status_code == 403
    with dashboard.ctx.db.session() as db:
        stored = db.scalars(select(ApiToken)).one()
        assert token["token"] not in (stored.token_hash, stored.name)
    assert dashboard.client.delete(f"/api/users/{bot}/tokens/{token['id']}", headers=csrf).status_code == 200
    assert script.get("/api/events", headers=bearer).status_code == 401
    assert script.get("/api/events", headers={"Authorization": "Bearer sst_forged"}).status_code == 401


def test_workflow_steps_follow_the_states_and_are_audited(dashboard: Running) -> None:
    dashboard.add_user("olga", Role.SAFETY_OFFICER, sites=["site-a"])
    fixer = dashboard.add_user("fred", Role.SAFETY_OFFICER, sites=["site-a"])
    outsider = dashboard.add_user("bert", Role.SAFETY_OFFICER, sites=["site-b"])
    pk = _add_event(dashboard)
    csrf = dashboard.login("olga")

    def act(action: str, **body: object) -> int:
        return dashboard.client.post(f"/api/events/{pk}/{action}", json=body, headers=csrf).status_code

    assert act("acknowledge", note="on my way") == 200
    assert act("acknowledge") == 409
    assert act("assign", assignee_id=outsider) == 409
    assert act("assign", assignee_id=fixer, note="fred has the key") == 200
    assert act("resolve", note="worker given a helmet") == 200
    assert act("false_alarm") == 409
    detail = dashboard.client.get(f"/api/events/{pk}").json()
    assert [a["action"] for a in detail["actions"]] == ["acknowledge", "assign", "resolve"]
    assert detail["status"] == "resolved" and detail["assignee_id"] == fixer
    assert act("reopen") == 200
    assert act("false_alarm", note="a shadow") == 200
    entries = dashboard.client.get("/api/audit").json()
    assert (
        entries[0]["action"] == "event.false_alarm"
        and entries[0]["detail"]["edge_command"] == "not_connected"
    )
    assert {e["action"] for e in entries} >= {"event.acknowledge", "event.assign", "event.resolve"}
    assert all(e["ip"] == "testclient" and e["username"] == "olga" for e in entries)
    with dashboard.ctx.db.session() as db:
        entry = db.scalars(select(AuditEntry)).first()
        assert entry is not None
        entry.action = "tampered"
        try:
            db.flush()
            raise AssertionError("the audit log accepted an update")
        except PermissionError:
            db.rollback()


def test_importing_the_dashboard_loads_no_edge_runtime() -> None:
    code = (
        "import sys, dashboard.app, dashboard.cli, dashboard.ingest.subscriber, dashboard.retention\n"
        "from dashboard.app import create_app\n"
        "from dashboard.settings import DashboardSettings\n"
        "create_app(DashboardSettings(ingest_enabled=False))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'edge', 'cv2', 'onnxruntime', 'numpy'})\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_unknown_ids_and_bad_cursors_are_client_errors(dashboard: Running) -> None:
    dashboard.add_user("root", Role.ADMIN, sites=["*"])
    dashboard.login("root")
    assert dashboard.client.get(f"/api/events/{uuid.uuid4().int % 10**6}").status_code == 404
    assert dashboard.client.get("/api/events", params={"cursor": "nonsense"}).status_code == 400
    assert dashboard.client.get("/api/events", params={"since": "2025-06-02T00:00:00"}).status_code == 422
