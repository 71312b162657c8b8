"""The alert list's one keyset implementation (`dashboard.storage.events.list_events`, behind the API, the
exports and the alert pages) on SQLite and PostgreSQL: every row once, in order, forwards and back, within
the user's scope and filters, and a page costs milliseconds at a million rows (the real migrations)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from dashboard.auth.scope import Scope
from dashboard.storage.db import Database
from dashboard.storage.events import EventFilters, EventPage, list_events
from dashboard.storage.migrate import upgrade
from dashboard.storage.models import Event
from dashboard.web import queries

HONG_KONG = ZoneInfo("Asia/Hong_Kong")
EVERYTHING = Scope.of(["*"], [])

# Both fills write the same rows: site, camera, zone, rule and status cycle with the row number, and every
# `ties` consecutive rows share a start time, so the id has to break ties.
SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1)
INSERT INTO events (event_id, site, edge, camera, zone, rule, track_id, phase, started_at, confidence,
  evidence_boxes, model_name, model_version, frame_seq, last_emitted_at, status, created_at, updated_at)
SELECT printf('%08d-0000-4000-8000-000000000000', i),
  CASE i % 5 WHEN 0 THEN 'site-b' ELSE 'site-a' END, 'edge-1', 'cam-' || (i % 7),
  CASE i % 3 WHEN 0 THEN 'pit' ELSE NULL END,
  CASE i % 3 WHEN 0 THEN 'zone_entry' WHEN 1 THEN 'no_helmet' ELSE 'no_vest' END, i % 50, 'end',
  strftime('%Y-%m-%d %H:%M:%S', 1700000000 + (i / :ties) * :apart, 'unixepoch') || '.000000',
  0.8, '[]', 'ppe-yolo', '0.4.0', i,
  strftime('%Y-%m-%d %H:%M:%S', 1700000000 + i * :apart, 'unixepoch') || '.000000',
  CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'resolved' WHEN 2 THEN 'acknowledged' ELSE 'false_alarm' END,
  '2024-01-01 00:00:00.000000', '2024-01-01 00:00:00.000000'
FROM n
"""
POSTGRES_FILL = """
INSERT INTO events (event_id, site, edge, camera, zone, rule, track_id, phase, started_at, confidence,
  evidence_boxes, model_name, model_version, frame_seq, last_emitted_at, status, created_at, updated_at)
SELECT lpad(i::text, 8, '0') || '-0000-4000-8000-000000000000',
  CASE i % 5 WHEN 0 THEN 'site-b' ELSE 'site-a' END, 'edge-1', 'cam-' || (i % 7),
  CASE i % 3 WHEN 0 THEN 'pit' ELSE NULL END,
  CASE i % 3 WHEN 0 THEN 'zone_entry' WHEN 1 THEN 'no_helmet' ELSE 'no_vest' END, i % 50, 'end',
  to_timestamp(1700000000 + (i / :ties) * :apart), 0.8, '[]', 'ppe-yolo', '0.4.0', i,
  to_timestamp(1700000000 + i * :apart),
  CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'resolved' WHEN 2 THEN 'acknowledged' ELSE 'false_alarm' END,
  '2024-01-01 00:00:00+00', '2024-01-01 00:00:00+00'
FROM generate_series(0, :count - 1) AS i
"""


def fill(db: Database, count: int, seconds_apart: int = 30, ties: int = 1) -> None:
    """Insert `count` events in one statement (a million rows in seconds), then refresh the statistics."""
    sql = SQLITE_FILL if db.dialect == "sqlite" else POSTGRES_FILL
    with db.engine.begin() as connection:
        connection.execute(text(sql), {"count": count, "ties": ties, "apart": seconds_apart})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def database(url: str) -> Database:
    """A migrated database at `url`."""
    db = Database(url)
    upgrade(db.engine)
    return db


@pytest.fixture
def small(database_url: str) -> Iterator[Database]:
    db = database(database_url)
    fill(db, 437, ties=3)
    yield db
    db.dispose()


def walk(db: Database, scope: Scope, filters: EventFilters, limit: int) -> list[EventPage]:
    """Follow `next_cursor` from the first page to the last."""
    pages: list[EventPage] = []
    cursor: str | None = None
    with db.sessions() as session:
        while True:
            page = list_events(session, scope, filters, after=cursor, limit=limit)
            pages.append(page)
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor


def test_next_visits_every_row_once_newest_first_and_prev_walks_back(small: Database) -> None:
    pages = walk(small, EVERYTHING, EventFilters(), limit=40)
    rows = [e for p in pages for e in p.events]
    assert len(rows) == 437 and len({e.id for e in rows}) == 437
    keys = [(e.started_at, e.id) for e in rows]
    assert keys == sorted(keys, reverse=True)
    assert pages[0].prev_cursor is None and pages[-1].next_cursor is None
    # Back from the last page: the same pages, in reverse.
    with small.sessions() as session:
        cursor = pages[-1].prev_cursor
        for expected in reversed(pages[:-1]):
            back = list_events(session, EVERYTHING, EventFilters(), before=cursor, limit=40)
            assert [e.id for e in back.events] == [e.id for e in expected.events]
            cursor = back.prev_cursor
        assert cursor is None


def test_a_scoped_user_pages_through_their_sites_and_cameras_only(small: Database) -> None:
    scope = Scope.of(["site-b"], ["site-a/cam-3", "site-b/cam-1"])  # the second camera is already in site-b
    rows = [e for p in walk(small, scope, EventFilters(), limit=25) for e in p.events]
    with small.sessions() as session:
        expected = session.scalar(
            select(func.count()).select_from(Event).where(scope.filter(Event.site, Event.camera))
        )
    assert len(rows) == expected == len({e.id for e in rows})
    assert {(e.site, e.camera) for e in rows if e.site == "site-a"} == {("site-a", "cam-3")}
    keys = [(e.started_at, e.id) for e in rows]
    assert keys == sorted(keys, reverse=True)
    assert not [e for p in walk(small, Scope.of([], []), EventFilters(), 25) for e in p.events]
    # A site filter outside the scope finds nothing rather than everything.
    assert not [
        e for p in walk(small, Scope.of(["site-b"], []), EventFilters(site="site-a"), 25) for e in p.events
    ]


def test_filters_combine(small: Database) -> None:
    filters = EventFilters(site="site-a", rule="zone_entry", status="new", zone="pit")
    rows = [e for p in walk(small, EVERYTHING, filters, limit=10) for e in p.events]
    assert rows and all(
        (e.site, e.rule, e.status, e.zone) == ("site-a", "zone_entry", "new", "pit") for e in rows
    )
    scoped = [
        e
        for p in walk(small, Scope.of(["site-b"], ["site-a/cam-3"]), EventFilters(camera="cam-3"), 7)
        for e in p.events
    ]
    assert (
        scoped
        and {e.camera for e in scoped} == {"cam-3"}
        and {e.site for e in scoped} == {"site-a", "site-b"}
    )
    since, until = rows[len(rows) // 2].started_at, rows[0].started_at
    window = [
        e for p in walk(small, EVERYTHING, EventFilters(since=since, until=until), 50) for e in p.events
    ]
    assert window and all(since <= e.started_at < until for e in window)


def test_a_cursor_not_made_here_is_refused_and_the_pages_start_from_the_top(small: Database) -> None:
    with small.sessions() as session:
        with pytest.raises(ValueError):
            list_events(session, EVERYTHING, EventFilters(), after="%%not-ours")
        first = queries.alert_page(session, EVERYTHING, queries.AlertFilters(), HONG_KONG, limit=5)
        odd = queries.alert_page(
            session, EVERYTHING, queries.AlertFilters(), HONG_KONG, after="%%not-ours", limit=5
        )
    assert [r.id for r in odd.rows] == [r.id for r in first.rows] and len(first.rows) == 5


def test_the_pages_filter_by_days_of_the_site(small: Database) -> None:
    with small.sessions() as session:
        newest = list_events(session, EVERYTHING, EventFilters(), limit=1).events[0]
        day = newest.started_at.astimezone(HONG_KONG).date()
        page = queries.alert_page(
            session, EVERYTHING, queries.AlertFilters(since=day, until=day), HONG_KONG, limit=500
        )
    assert page.rows and all(r.started_at.astimezone(HONG_KONG).date() == day for r in page.rows)


@pytest.mark.slow
def test_pages_stay_fast_at_a_million_rows(database_url: str) -> None:
    db = database(database_url)
    fill(db, 1_000_000)
    march = (datetime(2024, 3, 1, tzinfo=HONG_KONG), datetime(2024, 3, 4, tzinfo=HONG_KONG))
    cases = [
        (EVERYTHING, EventFilters()),
        (EVERYTHING, EventFilters(site="site-a", camera="cam-3")),
        (EVERYTHING, EventFilters(rule="no_vest", status="new")),
        (EVERYTHING, EventFilters(zone="pit")),
        (EVERYTHING, EventFilters(since=march[0], until=march[1])),
        (Scope.of(["site-b"], ["site-a/cam-3"]), EventFilters()),
        (Scope.of(["site-b"], []), EventFilters(camera="cam-2", rule="zone_entry", status="false_alarm")),
    ]
    with db.sessions() as session:
        list_events(session, EVERYTHING, EventFilters())  # warm the page cache
        for scope, filters in cases:
            timings = []
            cursor = None
            for _ in range(30):  # 30 pages deep, then one back
                start = time.perf_counter()
                page = list_events(session, scope, filters, after=cursor)
                timings.append(time.perf_counter() - start)
                assert len(page.events) == 50
                cursor = page.next_cursor
            start = time.perf_counter()
            back = list_events(session, scope, filters, before=page.prev_cursor)
            timings.append(time.perf_counter() - start)
            assert len(back.events) == 50
            # Milliseconds in practice; the bound leaves room for a busy shared CI machine.
            assert max(timings) < 0.25, (filters, scope, [round(t * 1000, 1) for t in timings])
    db.dispose()
