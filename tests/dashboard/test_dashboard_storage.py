"""Storage on SQLite and PostgreSQL: the migrations build exactly the models' schema, the audit log is
append-only in the database itself, and retention deletes old alerts with their evidence files."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from dashboard_fixtures import event_payload, make_settings
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from contract.evidence import file_chunks
from dashboard.app import build_context
from dashboard.ingest.handlers import Dispatcher
from dashboard.retention import sweep
from dashboard.storage.migrate import upgrade
from dashboard.storage.models import Base, Event, EvidenceFile


def test_migrations_match_the_models(database_url: str, tmp_path: Path) -> None:
    ctx = build_context(make_settings(tmp_path, database_url))
    upgrade(ctx.db.engine)
    upgrade(ctx.db.engine)  # idempotent
    with ctx.db.engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []
    with ctx.db.engine.begin() as connection:
        connection.execute(text("INSERT INTO audit_log (at, action) VALUES (CURRENT_TIMESTAMP, 'x')"))
    for statement in ("UPDATE audit_log SET action = 'y'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError), ctx.db.engine.begin() as connection:
            connection.execute(text(statement))
    ctx.db.dispose()


def test_retention_deletes_old_alerts_and_their_files(database_url: str, tmp_path: Path) -> None:
    ctx = build_context(make_settings(tmp_path, database_url, retention_days=30))
    upgrade(ctx.db.engine)
    dispatcher = Dispatcher(ctx)
    now = datetime.now(UTC)
    for age, name in ((40, "old"), (1, "new")):
        path = f"gate/{name}.jpg"
        evidence = [{"kind": "snapshot", "path": path, "sha256": None, "offset_s": None}]
        payload = event_payload(started_at=now - timedelta(days=age), evidence=evidence)
        assert dispatcher.handle("sitesentry/site-a/cameras/gate/events", json.dumps(payload).encode())
        for chunk in file_chunks(b"\xff\xd8\xff" + name.encode(), site="site-a", edge="edge-1", camera="gate",
                                 kind="snapshot", path=path):  # fmt: skip
            dispatcher.handle("sitesentry/site-a/edges/edge-1/evidence", chunk)
    old_file = ctx.settings.evidence_dir / "site-a" / "edge-1" / "gate" / "old.jpg"
    assert old_file.exists()
    # Files no kept alert shows go a day later (their chunks may arrive before the alert that names them).
    result = sweep(ctx, now=now + timedelta(days=2))
    assert result.events == 1
    with ctx.db.session() as db:
        assert db.scalar(select(func.count()).select_from(Event)) == 1
        assert {row.path for row in db.scalars(select(EvidenceFile))} == {"gate/new.jpg"}
    assert not old_file.exists()
    assert (ctx.settings.evidence_dir / "site-a" / "edge-1" / "gate" / "new.jpg").exists()
    ctx.db.dispose()
