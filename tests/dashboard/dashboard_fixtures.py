"""Helpers and fixtures of the dashboard backend tests: real SQLite files, a real PostgreSQL (from
SITESENTRY_TEST_PG_URL or a throwaway cluster), the app with users, MQTT payloads."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dashboard.app import create_app
from dashboard.auth import service
from dashboard.settings import DashboardSettings
from dashboard.storage.models import Role

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "mqtt"))  # the real-Mosquitto helpers of the MQTT tests

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str | None]:
    """A PostgreSQL server URL: SITESENTRY_TEST_PG_URL, else a throwaway cluster started here, else None."""
    url = os.environ.get("SITESENTRY_TEST_PG_URL")
    if url:
        yield url
        return
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        yield None
        return
    started = subprocess.run(
        ["bash", str(REPO / "scripts" / "test-postgres.sh"), "start"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if started.returncode != 0:
        yield None
        return
    lines = [
        line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines() if "=" in line
    ]
    values = {key: value for key, value in lines}
    try:
        yield values["SITESENTRY_TEST_PG_URL"]
    finally:
        subprocess.run(
            ["bash", str(REPO / "scripts" / "test-postgres.sh"), "stop", values["SITESENTRY_TEST_PG_DIR"]],
            capture_output=True,
            timeout=60,
        )


def _fresh_pg_database(server: str) -> str:
    """Create an empty database on the server; return its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server)
    name = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = f"host={url.host} port={url.port} user={url.username} dbname={url.database}"
    if url.password:
        conninfo += f" password={url.password}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_server: str | None) -> str:
    """A fresh database of each kind: a SQLite file, and a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dashboard.db'}"
    if pg_server is None:
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql) and SITESENTRY_TEST_PG_URL is unset"
        )
    return _fresh_pg_database(pg_server)


def make_settings(tmp_path: Path, database_url: str | None = None, **overrides: Any) -> DashboardSettings:
    """Settings for a test: files under tmp_path, plain-HTTP cookies."""
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "secure_cookies": False, "ingest_enabled": False}
    if database_url:
        values["database_url"] = database_url
    values.update(overrides)
    return DashboardSettings.model_validate(values)


@dataclass
class Running:
    """A started dashboard: the app, a test client, and the settings it runs with."""

    app: FastAPI
    client: TestClient
    settings: DashboardSettings

    @property
    def ctx(self) -> Any:
        """Return the app's context."""
        return self.app.state.ctx

    def add_user(
        self, username: str, role: Role, sites: list[str] | None = None, cameras: list[str] | None = None
    ) -> int:
        """Create a user with PASSWORD; return the id."""
        with self.ctx.db.session() as db:
            return service.create_user(db, username, PASSWORD, role, sites=sites or [], cameras=cameras).id

    def login(self, username: str, client: TestClient | None = None) -> dict[str, str]:
        """Log `username` in on `client` (default: the shared one); return the CSRF header to send."""
        client = client or self.client
        response = client.post("/api/auth/login", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"X-CSRF-Token": response.json()["csrf_token"]}

    def new_client(self) -> TestClient:
        """Return another client (its own cookie jar) on the same app."""
        return TestClient(self.app)


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Running]:
    """A dashboard on a SQLite file without MQTT (HTTP tests)."""
    settings = make_settings(tmp_path)
    app = create_app(settings, run_retention=False)
    with TestClient(app) as client:
        yield Running(app, client, settings)


def event_payload(
    *,
    site: str = "site-a",
    edge: str = "edge-1",
    camera: str = "gate",
    event_id: uuid.UUID | None = None,
    phase: str = "start",
    rule: str = "no_helmet",
    zone: str | None = None,
    started_at: datetime | None = None,
    emitted_at: datetime | None = None,
    evidence: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An EventMessage as JSON-ready dict (a new message_id each time)."""
    started = started_at or datetime(2025, 6, 2, 1, 30, tzinfo=UTC)
    emitted = emitted_at or started + timedelta(seconds=1)
    payload = {
        "schema_version": 1,
        "message_id": str(uuid.uuid4()),
        "event_id": str(event_id or uuid.uuid4()),
        "type": phase,
        "rule": rule,
        "site": site,
        "edge": edge,
        "camera": camera,
        "zone": zone,
        "track_id": 7,
        "started_at": started.isoformat(),
        "ended_at": (started + timedelta(seconds=5)).isoformat() if phase == "end" else None,
        "confidence": 0.8,
        "person_box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.9},
        "evidence_boxes": [{"x1": 0.12, "y1": 0.2, "x2": 0.2, "y2": 0.3}],
        "evidence": evidence
        if evidence is not None
        else [{"kind": "snapshot", "path": f"{camera}/snap.jpg", "sha256": None, "offset_s": None}],
        "model": {"name": "ppe-yolo", "version": "0.4.0"},
        "frame_seq": 1,
        "emitted_at": emitted.isoformat(),
    }
    payload.update(extra)
    return payload
