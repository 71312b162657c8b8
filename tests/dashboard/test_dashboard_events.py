"""The alert list pages by keyset: every row once, in order, forwards and back, within the user's scope,
and a page costs milliseconds at a million rows (real SQLite file, the real migrations)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from dashboard.auth.scope import Scope
from dashboard.storage.db import Database
from dashboard.storage.migrate import upgrade
from dashboard.storage.models import Event
from dashboard.web import queries

HONG_KONG = ZoneInfo("Asia/Hong_Kong")
EVERYTHING = Scope.of(["*"], [])


def fill(db: Database, count: int, seconds_apart: int = 30, ties: int = 1) -> None:
    """Insert `count` events in one statement (a recursive CTE: a million rows in seconds).

    Every `ties` consecutive rows share a start time, so the id has to break ties.
    """
    with db.engine.begin() as connection:
        connection.exec_driver_sql(
            f"""
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {count} - 1)
            INSERT INTO events (event_id, site, edge, camera, zone, rule, track_id, phase, started_at,
              confidence, evidence_boxes, model_name, model_version, frame_seq, last_emitted_at, status,
              created_at, updated_at)
            SELECT printf('%08d-0000-4000-8000-000000000000', i),
              CASE i % 5 WHEN 0 THEN 'site-b' ELSE 'site-a' END, 'edge-1', 'cam-' || (i % 7),
              CASE i % 3 WHEN 0 THEN 'pit' ELSE NULL END,
              CASE i % 3 WHEN 0 THEN 'zone_entry' WHEN 1 THEN 'no_helmet' ELSE 'no_vest' END, i % 50, 'end',
              strftime('%Y-%m-%d %H:%M:%S', 1700000000 + (i / {ties}) * {seconds_apart}, 'unixepoch')
                || '.000000',
              0.8, '[]', 'ppe-yolo', '0.4.0', i,
              strftime('%Y-%m-%d %H:%M:%S', 1700000000 + i * {seconds_apart}, 'unixepoch') || '.000000',
              CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'resolved' WHEN 2 THEN 'acknowledged'
                ELSE 'false_alarm' END,
              '2024-01-01 00:00:00.000000', '2024-01-01 00:00:00.000000'
            FROM n
            """
        )


def database(folder: Path) -> Database:
    """A migrated SQLite database in `folder`."""
    db = Database(f"sqlite:///{folder / 'dashboard.db'}")
    upgrade(db.engine)
    return db


@pytest.fixture
def small(tmp_path: Path) -> Iterator[Database]:
    db = database(tmp_path)
    fill(db, 437, ties=3)
    yield db
    db.dispose()


def walk(db: Database, scope: Scope, filters: queries.AlertFilters, limit: int) -> list[queries.AlertPage]:
    """Follow `next` from the first page to the last."""
    pages: list[queries.AlertPage] = []
    cursor: str | None = None
    with db.sessions() as session:
        while True:
            page = queries.alert_page(session, scope, filters, HONG_KONG, after=cursor, limit=limit)
            pages.append(page)
            if page.next_cursor is None:
                return pages
            cursor = page.next_cursor


def test_next_visits_every_row_once_newest_first_and_prev_walks_back(small: Database) -> None:
    pages = walk(small, EVERYTHING, queries.AlertFilters(), limit=40)
    rows = [r for p in pages for r in p.rows]
    assert len(rows) == 437 and len({r.id for r in rows}) == 437
    keys = [(r.started_at, r.id) for r in rows]
    assert keys == sorted(keys, reverse=True)
    assert pages[0].prev_cursor is None and pages[-1].next_cursor is None
    # Back from the last page: the same pages, in reverse.
    with small.sessions() as session:
        cursor = pages[-1].prev_cursor
        for expected in reversed(pages[:-1]):
            back = queries.alert_page(
                session, EVERYTHING, queries.AlertFilters(), HONG_KONG, before=cursor, limit=40
            )
            assert [r.id for r in back.rows] == [r.id for r in expected.rows]
            cursor = back.prev_cursor
        assert cursor is None


def test_a_scoped_user_pages_through_their_sites_and_cameras_only(small: Database) -> None:
    scope = Scope.of(["site-b"], ["site-a/cam-3"])
    rows = [r for p in walk(small, scope, queries.AlertFilters(), limit=25) for r in p.rows]
    with small.sessions() as session:
        expected = session.scalar(
            select(func.count()).select_from(Event).where(scope.filter(Event.site, Event.camera))
        )
    assert len(rows) == expected and {(r.site, r.camera) for r in rows if r.site == "site-a"} == {
        ("site-a", "cam-3")
    }
    keys = [(r.started_at, r.id) for r in rows]
    assert keys == sorted(keys, reverse=True)
    assert rows and not [r for p in walk(small, Scope.of([], []), queries.AlertFilters(), 25) for r in p.rows]


def test_filters_combine(small: Database) -> None:
    filters = queries.AlertFilters(site="site-a", rule="zone_entry", status="new", zone="pit")
    rows = [r for p in walk(small, EVERYTHING, filters, limit=10) for r in p.rows]
    assert rows and all(
        (r.site, r.rule, r.status, r.zone) == ("site-a", "zone_entry", "new", "pit") for r in rows
    )
    day = rows[0].started_at.astimezone(HONG_KONG).date()
    one_day = [
        r for p in walk(small, EVERYTHING, queries.AlertFilters(since=day, until=day), 50) for r in p.rows
    ]
    assert one_day and all(r.started_at.astimezone(HONG_KONG).date() == day for r in one_day)


def test_a_tampered_cursor_starts_from_the_top(small: Database) -> None:
    with small.sessions() as session:
        first = queries.alert_page(session, EVERYTHING, queries.AlertFilters(), HONG_KONG, limit=5)
        odd = queries.alert_page(
            session, EVERYTHING, queries.AlertFilters(), HONG_KONG, after="%%not-ours", limit=5
        )
    assert [r.id for r in odd.rows] == [r.id for r in first.rows]


@pytest.mark.slow
def test_pages_stay_fast_at_a_million_rows(tmp_path: Path) -> None:
    db = database(tmp_path)
    fill(db, 1_000_000)
    cases = [
        (EVERYTHING, queries.AlertFilters()),
        (EVERYTHING, queries.AlertFilters(site="site-a", camera="cam-3")),
        (EVERYTHING, queries.AlertFilters(rule="no_vest", status="new")),
        (EVERYTHING, queries.AlertFilters(zone="pit")),
        (EVERYTHING, queries.AlertFilters(since=date(2024, 3, 1), until=date(2024, 3, 3))),
        (Scope.of(["site-b"], ["site-a/cam-3"]), queries.AlertFilters()),
        (
            Scope.of(["site-b"], []),
            queries.AlertFilters(camera="cam-2", rule="zone_entry", status="false_alarm"),
        ),
    ]
    with db.sessions() as session:
        queries.alert_page(session, EVERYTHING, queries.AlertFilters(), HONG_KONG)  # warm the page cache
        for scope, filters in cases:
            timings = []
            cursor = None
            for _ in range(30):  # 30 pages deep, then one back
                start = time.perf_counter()
                page = queries.alert_page(session, scope, filters, HONG_KONG, after=cursor)
                timings.append(time.perf_counter() - start)
                assert len(page.rows) == queries.PAGE_SIZE
                cursor = page.next_cursor
            start = time.perf_counter()
            back = queries.alert_page(session, scope, filters, HONG_KONG, before=page.prev_cursor)
            timings.append(time.perf_counter() - start)
            assert len(back.rows) == queries.PAGE_SIZE
            # Milliseconds in practice; the bound leaves room for a busy shared CI machine.
            assert max(timings) < 0.25, (filters, scope, [round(t * 1000, 1) for t in timings])
    db.dispose()
