"""Statistics on SQLite and PostgreSQL (`dashboard.storage.stats`, behind the API and the statistics page):
heat maps (every camera of the scope in one query, a 16:9 grid split evenly by the person's feet) and
counts per local hour and day in a site time zone that is not a whole number of hours from UTC."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from dashboard.auth.scope import Scope
from dashboard.storage.db import Database
from dashboard.storage.migrate import upgrade
from dashboard.storage.models import Event
from dashboard.storage.stats import HEAT_COLS, HEAT_ROWS, counts, heat_maps

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


def add(db: Session, site: str, camera: str, anchor: tuple[int, int] | None, minutes_ago: float = 5) -> None:
    """Store one alert whose person stood at `anchor` (thousandths of the frame)."""
    started = NOW - timedelta(minutes=minutes_ago)
    db.add(
        Event(
            event_id=str(uuid.uuid4()), site=site, edge="edge-1", camera=camera, zone=None, rule="no_helmet",
            track_id=1, phase="start", started_at=started, confidence=0.9, evidence_boxes=[],
            anchor_x=anchor[0] if anchor else None, anchor_y=anchor[1] if anchor else None,
            model_name="ppe-yolo", model_version="0.4.0", frame_seq=1, last_emitted_at=started,
            status="new", created_at=started, updated_at=started,
        )
    )  # fmt: skip


def test_heat_maps_split_each_camera_view_evenly_within_the_scope(database_url: str) -> None:
    database = Database(database_url)
    upgrade(database.engine)
    with database.session() as db:
        for anchor in [(0, 0), (999, 999), (500, 500), (500, 500), (40, 0)]:
            add(db, "site-a", "gate", anchor)
        add(db, "site-a", "gate", None)  # no person box: nowhere on the map
        add(db, "site-a", "gate", (0, 0), minutes_ago=3 * 60)  # before the period
        add(db, "site-a", "crane", (250, 750))
        add(db, "site-b", "dock", (100, 100))
    window = {"start": NOW - timedelta(hours=1), "end": NOW}
    with database.sessions() as db:
        maps = heat_maps(db, Scope.of(["*"], []), **window)
        scoped = heat_maps(db, Scope.of(["site-b"], ["site-a/crane"]), **window)
        coarse = heat_maps(db, Scope.of(["*"], []), camera="gate", cols=4, rows=4, **window)
    database.dispose()
    assert [(h.site, h.camera, h.total) for h in maps] == [
        ("site-a", "gate", 5), ("site-a", "crane", 1), ("site-b", "dock", 1)
    ]  # fmt: skip
    gate = maps[0].cells
    assert len(gate) == HEAT_ROWS and {len(row) for row in gate} == {HEAT_COLS}
    # The middle of the frame is the first cell right of and below the centre lines: cells are even.
    assert gate[0][0] == gate[0][1] == gate[17][31] == 1 and gate[9][16] == 2
    assert gate[0][0] + gate[0][1] + gate[17][31] + gate[9][16] == 5
    assert [(h.site, h.camera) for h in scoped] == [("site-a", "crane"), ("site-b", "dock")]
    assert scoped[0].cells[13][8] == 1
    assert [h.camera for h in coarse] == ["gate"] and coarse[0].cells[0][0] == coarse[0].cells[2][2] == 2


def test_hours_and_days_are_local_in_a_half_hour_time_zone(database_url: str) -> None:
    """Kolkata is UTC+05:30: a UTC hour holds the end of one local hour and the start of the next."""
    db = Database(database_url)
    upgrade(db.engine)
    kolkata = ZoneInfo("Asia/Kolkata")
    # Local 15:50 and 16:10 (both in UTC hour 10), and local 23:50 / 00:10 across midnight (UTC hour 18).
    local = [datetime(2025, 6, 2, 15, 50), datetime(2025, 6, 2, 16, 10), datetime(2025, 6, 2, 23, 50)]
    local.append(datetime(2025, 6, 3, 0, 10))
    with db.session() as session:
        for moment in local:
            started = moment.replace(tzinfo=kolkata).astimezone(UTC)
            add(session, "site-a", "gate", None, minutes_ago=(NOW - started).total_seconds() / 60)
    start = datetime(2025, 6, 2, tzinfo=kolkata)
    end = start + timedelta(days=2)
    with db.session() as session:
        hours = counts(
            session, Scope.of(["*"], []), start=start, end=end, granularity="hour", by="rule", zone=kolkata
        )
        days = counts(
            session, Scope.of(["*"], []), start=start, end=end, granularity="day", by="rule", zone=kolkata
        )
    by_hour = {
        b.strftime("%d %H:%M"): n for b, n in zip(hours.buckets, hours.counts["no_helmet"], strict=True) if n
    }
    assert by_hour == {"02 15:00": 1, "02 16:00": 1, "02 23:00": 1, "03 00:00": 1}
    assert days.counts["no_helmet"] == [3, 1]
    db.dispose()
