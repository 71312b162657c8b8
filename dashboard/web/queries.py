"""Read queries the pages need beyond the backend's services: alert lists with keyset paging, the live
wall, statistics buckets, the heat map and report figures. Reads only, always within the user's scope.

Counts per time bucket come from the backend's statistics service (`dashboard.storage.stats`), which
groups in SQL and buckets in the site's time zone; this module only shapes them for the pages.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.orm import Session

from contract.liveness import DEFAULT_HEARTBEAT_S, MISSED_HEARTBEATS
from dashboard.auth.scope import Scope
from dashboard.storage import stats as stats_service
from dashboard.storage import status as status_service
from dashboard.storage.models import (
    Camera,
    Event,
    EventAction,
    EventEvidence,
    EventMessageRow,
    EvidenceFile,
    User,
)

PAGE_SIZE: Final = 50
#: The heat map's grid over a camera view (16:9 cells).
HEAT_COLS: Final = 32
HEAT_ROWS: Final = 18


# ---------------------------------------------------------------------------------------------------
# Alert rows and filters


@dataclass
class AlertRow:
    """One alert as lists and cards show it."""

    id: int
    event_id: str
    site: str
    camera: str
    zone: str | None
    rule: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    confidence: float
    assignee: str | None = None
    snapshot_id: int | None = None
    snapshot_url: str | None = None


@dataclass(frozen=True)
class AlertFilters:
    """The filters of the alert list; every field optional."""

    site: str | None = None
    camera: str | None = None
    zone: str | None = None
    rule: str | None = None
    status: str | None = None
    since: date | None = None
    until: date | None = None

    def as_query(self) -> dict[str, str]:
        """Return the filters as URL query parameters."""
        out = {k: v for k, v in self.__dict__.items() if v not in (None, "") and not isinstance(v, date)}
        if self.since:
            out["since"] = self.since.isoformat()
        if self.until:
            out["until"] = self.until.isoformat()
        return out


@dataclass
class AlertPage:
    """A page of alerts and the cursors to the next (older) and previous (newer) pages."""

    rows: list[AlertRow]
    next_cursor: str | None
    prev_cursor: str | None


def encode_cursor(started_at: datetime, pk: int) -> str:
    """Encode a keyset position (started_at, id) as an opaque URL-safe string."""
    raw = f"{started_at.astimezone(UTC).isoformat()}|{pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    """Decode a cursor; None when absent or not one of ours (a tampered URL starts from the top)."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|")
        moment = datetime.fromisoformat(stamp)
        if moment.tzinfo is None:
            return None
        return moment, int(pk)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """Return the start and end (exclusive) of a calendar day in the site's zone, as UTC moments."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _conditions(filters: AlertFilters, zone: tzinfo) -> list[ColumnElement[bool]]:
    """Return the WHERE terms of the filters (the scope is applied by the caller)."""
    terms: list[ColumnElement[bool]] = []
    if filters.site:
        terms.append(Event.site == filters.site)
    if filters.camera:
        terms.append(Event.camera == filters.camera)
    if filters.zone:
        terms.append(Event.zone == filters.zone)
    if filters.rule:
        terms.append(Event.rule == filters.rule)
    if filters.status:
        terms.append(Event.status == filters.status)
    if filters.since:
        terms.append(Event.started_at >= day_bounds(filters.since, zone)[0])
    if filters.until:
        terms.append(Event.started_at < day_bounds(filters.until, zone)[1])
    return terms


def _rows(db: Session, query: Select[Any]) -> list[AlertRow]:
    """Run an Event query and attach each row's snapshot and assignee."""
    events = list(db.scalars(query))
    if not events:
        return []
    pks = [e.id for e in events]
    snapshots: dict[int, int] = {}
    snaps = db.execute(
        select(EventEvidence.event_pk, EvidenceFile.id)
        .join(EvidenceFile, EvidenceFile.id == EventEvidence.evidence_id)
        .where(
            EventEvidence.event_pk.in_(pks),
            EvidenceFile.kind == "snapshot",
            EvidenceFile.stored_path.is_not(None),
        )
    )
    for event_pk, evidence_id in snaps:
        snapshots.setdefault(event_pk, evidence_id)
    assignee_ids = {e.assignee_id for e in events if e.assignee_id is not None}
    names: dict[int, str] = {}
    if assignee_ids:
        for uid, username, display in db.execute(
            select(User.id, User.username, User.display_name).where(User.id.in_(assignee_ids))
        ):
            names[uid] = display or username
    return [
        AlertRow(
            id=e.id,
            event_id=e.event_id,
            site=e.site,
            camera=e.camera,
            zone=e.zone,
            rule=e.rule,
            status=e.status,
            started_at=e.started_at,
            ended_at=e.ended_at,
            confidence=e.confidence,
            assignee=names.get(e.assignee_id) if e.assignee_id is not None else None,
            snapshot_id=snapshots.get(e.id),
        )
        for e in events
    ]


def _scope_parts(scope: Scope) -> list[ColumnElement[bool]]:
    """Split a scope into terms that each match one index prefix (a site, or a site and camera)."""
    if scope.everything:
        return [true()]
    parts: list[ColumnElement[bool]] = [Event.site == site for site in sorted(scope.sites)]
    parts += [and_(Event.site == site, Event.camera == cam) for site, cam in sorted(scope.cameras)]
    return parts or [false()]


def _position(cursor: tuple[datetime, int], newer: bool) -> ColumnElement[bool]:
    """Rows after (older) or before (newer) a keyset position, written so the index range is on started_at."""
    moment, pk = cursor
    if newer:
        return and_(Event.started_at >= moment, or_(Event.started_at > moment, Event.id > pk))
    return and_(Event.started_at <= moment, or_(Event.started_at < moment, Event.id < pk))


def _keys(
    db: Session,
    terms: list[ColumnElement[bool]],
    scope: Scope,
    cursor: tuple[datetime, int] | None,
    newer: bool,
    limit: int,
) -> list[tuple[datetime, int]]:
    """Return the (started_at, id) of the next `limit` rows in walking order.

    A scoped user's OR of sites and cameras would make the database sort every matching row; one query
    per scope term walks its own index instead, and the short lists are merged here.
    """
    keys: set[tuple[datetime, int]] = set()
    order = (Event.started_at.asc(), Event.id.asc()) if newer else (Event.started_at.desc(), Event.id.desc())
    for part in _scope_parts(scope):
        query = select(Event.started_at, Event.id).where(part, *terms)
        if cursor is not None:
            query = query.where(_position(cursor, newer))
        keys |= {(row[0], row[1]) for row in db.execute(query.order_by(*order).limit(limit))}
    return sorted(keys, reverse=not newer)[:limit]


def alert_page(
    db: Session,
    scope: Scope,
    filters: AlertFilters,
    zone: tzinfo,
    *,
    after: str | None = None,
    before: str | None = None,
    limit: int = PAGE_SIZE,
) -> AlertPage:
    """Return one page of alerts, newest first, by keyset: `after` walks to older rows, `before` to newer.

    The position is (started_at, id), which the composite indexes of `events` cover, so a page costs the
    same at row one million as at row one (no OFFSET).
    """
    terms = _conditions(filters, zone)
    newer = decode_cursor(before)
    older = None if newer is not None else decode_cursor(after)
    keys = _keys(db, terms, scope, newer if newer is not None else older, newer is not None, limit + 1)
    more = len(keys) > limit
    keys = keys[:limit]
    if newer is not None:
        keys.reverse()
    by_id = {row.id: row for row in _rows(db, select(Event).where(Event.id.in_([pk for _, pk in keys])))}
    rows = [by_id[pk] for _, pk in keys if pk in by_id]
    if not rows:
        return AlertPage(rows=[], next_cursor=None, prev_cursor=None)
    first, last = (
        encode_cursor(rows[0].started_at, rows[0].id),
        encode_cursor(rows[-1].started_at, rows[-1].id),
    )
    if newer is not None:
        return AlertPage(rows=rows, next_cursor=last, prev_cursor=first if more else None)
    return AlertPage(rows=rows, next_cursor=last if more else None, prev_cursor=first if older else None)


def latest_alerts(db: Session, scope: Scope, site: str | None, limit: int = 30) -> list[AlertRow]:
    """Return the newest alerts of the user's scope (one site, or all), for the live feed."""
    return alert_page(db, scope, AlertFilters(site=site), UTC, limit=limit).rows


def alert_row(db: Session, event_pk: int) -> AlertRow | None:
    """Return one alert as a row (for a live card), or None."""
    rows = _rows(db, select(Event).where(Event.id == event_pk))
    return rows[0] if rows else None


@dataclass
class LiveCounts:
    """The figures at the top of the live page."""

    new: int
    ongoing: int
    today: int


def live_counts(db: Session, scope: Scope, site: str | None, zone: tzinfo, now: datetime) -> LiveCounts:
    """Count alerts not yet looked at, violations still going on, and today's alerts (site time)."""
    base: list[ColumnElement[bool]] = [scope.filter(Event.site, Event.camera)]
    if site:
        base.append(Event.site == site)
    start = day_bounds(now.astimezone(zone).date(), zone)[0]
    # Ongoing and new are bounded to recent days: an end lost with an edge must not stay "ongoing" forever.
    recent = now - timedelta(days=2)

    def count(*terms: ColumnElement[bool]) -> int:
        return int(db.scalar(select(func.count()).select_from(Event).where(*base, *terms)) or 0)

    return LiveCounts(
        new=count(Event.status == "new", Event.started_at >= recent),
        ongoing=count(Event.ended_at.is_(None), Event.started_at >= recent),
        today=count(Event.started_at >= start),
    )


def events_of_evidence(db: Session, site: str, path: str, limit: int = 5) -> list[int]:
    """Return the newest events linked to the evidence file `path` of `site` (snapshots are per event)."""
    query = (
        select(EventEvidence.event_pk)
        .join(EvidenceFile, EvidenceFile.id == EventEvidence.evidence_id)
        .where(EvidenceFile.site == site, EvidenceFile.path == path, EvidenceFile.kind == "snapshot")
        .order_by(EventEvidence.event_pk.desc())
        .limit(limit)
    )
    return list(db.scalars(query))


@dataclass
class FilterChoices:
    """Values offered in the alert filters: cameras and zones seen in the user's scope."""

    cameras: list[str]
    zones: list[str]


def filter_choices(db: Session, scope: Scope, site: str | None) -> FilterChoices:
    """Return the cameras and zones the filters offer (from the camera table, cheap at any event count)."""
    query = select(Camera).where(scope.filter(Camera.site, Camera.camera))
    if site:
        query = query.where(Camera.site == site)
    cameras = list(db.scalars(query))
    zones = sorted({str(z["id"]) for c in cameras for z in (c.zones or []) if z.get("id")})
    return FilterChoices(cameras=sorted({c.camera for c in cameras}), zones=zones)


# ---------------------------------------------------------------------------------------------------
# One alert


@dataclass
class EvidenceItem:
    """A snapshot or clip of one alert."""

    id: int
    kind: str
    path: str
    stored: bool
    offset_s: float | None
    sha256: str | None


@dataclass
class TimelineItem:
    """One message of an alert's life (start, update, end)."""

    type: str
    emitted_at: datetime
    received_at: datetime
    confidence: float | None


@dataclass
class AlertDetail:
    """Everything the alert page shows."""

    event: Event
    row: AlertRow
    evidence: list[EvidenceItem]
    timeline: list[TimelineItem]
    actions: list[EventAction]
    assignee: str | None


def alert_detail(db: Session, event_pk: int) -> AlertDetail | None:
    """Return one alert with its evidence, timeline and workflow history; None when unknown."""
    event = db.get(Event, event_pk)
    if event is None:
        return None
    row = _rows(db, select(Event).where(Event.id == event_pk))[0]
    evidence = [
        EvidenceItem(
            id=link.evidence.id,
            kind=link.evidence.kind,
            path=link.evidence.path,
            stored=link.evidence.stored_path is not None,
            offset_s=link.offset_s,
            sha256=link.evidence.sha256,
        )
        for link in db.scalars(select(EventEvidence).where(EventEvidence.event_pk == event_pk))
    ]
    timeline = [
        TimelineItem(
            type=m.type,
            emitted_at=m.emitted_at,
            received_at=m.received_at,
            confidence=(m.payload or {}).get("confidence"),
        )
        for m in db.scalars(
            select(EventMessageRow).where(EventMessageRow.event_pk == event_pk).order_by(EventMessageRow.id)
        )
    ]
    actions = list(
        db.scalars(select(EventAction).where(EventAction.event_pk == event_pk).order_by(EventAction.id))
    )
    return AlertDetail(
        event=event, row=row, evidence=evidence, timeline=timeline, actions=actions, assignee=row.assignee
    )


def assignable_users(db: Session, site: str, camera: str) -> list[User]:
    """Return active officers and admins who may see `camera` of `site` (those an alert can go to)."""
    users = db.scalars(select(User).where(User.active.is_(True), User.role.in_(("safety_officer", "admin"))))
    return [u for u in users if Scope.of(u.sites or [], u.cameras or []).allows(site, camera)]


def user_names(db: Session, ids: set[int]) -> dict[int, str]:
    """Return display names (or user names) of users by id."""
    if not ids:
        return {}
    return {
        uid: display or name
        for uid, name, display in db.execute(
            select(User.id, User.username, User.display_name).where(User.id.in_(ids))
        )
    }


# ---------------------------------------------------------------------------------------------------
# Cameras and edges (live wall)


@dataclass
class CameraCard:
    """A camera on the live wall."""

    site: str
    camera: str
    edge: str | None
    state: str
    detail: str | None
    state_at: datetime | None
    fps: float | None
    latency_ms_p95: float | None
    snapshot_at: datetime | None
    has_snapshot: bool
    zones: list[dict[str, Any]]
    zones_at: datetime | None


@dataclass
class EdgeCard:
    """An edge box with its last heartbeat."""

    site: str
    edge: str
    state: str
    reason: str | None
    version: str | None
    heartbeat_at: datetime | None
    age_s: float | None
    outbox_pending: int | None
    reconnects: int | None
    stale_after_s: float


def cameras(db: Session, scope: Scope, site: str | None, now: datetime) -> list[CameraCard]:
    """Return the cameras of the scope with their state as the backend judges it (an edge gone quiet
    takes its cameras offline: no green light for a camera nobody hears from)."""
    return [
        CameraCard(
            site=view.camera.site,
            camera=view.camera.camera,
            edge=view.camera.edge,
            state=view.state,
            detail=view.camera.detail,
            state_at=view.camera.state_at,
            fps=view.camera.fps,
            latency_ms_p95=view.camera.latency_ms_p95,
            snapshot_at=view.camera.snapshot_at,
            has_snapshot=view.camera.snapshot_path is not None,
            zones=list(view.camera.zones or []),
            zones_at=view.camera.zones_at,
        )
        for view in status_service.cameras(db, scope, now, site)
    ]


def edges(db: Session, scope: Scope, site: str | None, now: datetime) -> list[EdgeCard]:
    """Return the edge boxes of the scope with their liveness (contract.liveness) and last heartbeat."""
    out = []
    for view in status_service.edges(db, scope, now, site):
        e = view.edge
        beat = e.heartbeat or {}
        outbox = beat.get("outbox") or {}
        seen = e.heartbeat_received_at
        interval = e.heartbeat_s or DEFAULT_HEARTBEAT_S
        out.append(
            EdgeCard(
                site=e.site,
                edge=e.edge,
                state=view.state,
                reason=e.reason,
                version=e.version,
                heartbeat_at=e.heartbeat_at,
                age_s=(now - seen).total_seconds() if seen else None,
                outbox_pending=outbox.get("pending"),
                reconnects=beat.get("reconnects"),
                stale_after_s=MISSED_HEARTBEATS * interval,
            )
        )
    return out


def camera(db: Session, site: str, camera_id: str) -> Camera | None:
    """Return one camera's row, or None."""
    return db.scalar(select(Camera).where(Camera.site == site, Camera.camera == camera_id))


# ---------------------------------------------------------------------------------------------------
# Statistics

Granularity = stats_service.Granularity
Dimension = stats_service.Dimension
#: How far back each granularity looks: a day in hours, two weeks in days, twelve weeks in weeks.
SPAN: Final = {"hour": timedelta(days=1), "day": timedelta(days=14), "week": timedelta(weeks=12)}
DIMENSIONS: Final[tuple[Dimension, ...]] = ("rule", "zone", "camera")
_STEP: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


@dataclass
class Series:
    """Counts per time bucket, split by one dimension (rule, zone or camera)."""

    labels: list[datetime]
    groups: dict[str, list[int]]


@dataclass
class Stats:
    """The statistics page's figures for one period and the period before it."""

    start: datetime
    end: datetime
    total: int
    previous_total: int
    series: Series
    by_rule: dict[str, int]
    by_zone: dict[str, int]
    by_camera: dict[str, int]
    by_status: dict[str, int]
    previous_by_rule: dict[str, int] = field(default_factory=dict)


def _local_shift(moment: datetime, delta: timedelta, zone: tzinfo) -> datetime:
    """Move a local midnight or hour by `delta` of wall time (days stay days across a DST change)."""
    return (moment.astimezone(zone).replace(tzinfo=None) + delta).replace(tzinfo=zone)


def period(granularity: Granularity, zone: tzinfo, now: datetime) -> tuple[datetime, datetime]:
    """Return the statistics window ending with the current bucket: [start, end)."""
    end = _local_shift(stats_service.bucket_start(now, granularity, zone), _STEP[granularity], zone)
    return _local_shift(end, -SPAN[granularity], zone), end


def _totals(series: stats_service.Series, rename: dict[str, str] | None = None) -> dict[str, int]:
    """Sum a series per key, largest first (the key "-" of events without a value may be renamed)."""
    totals = {(rename or {}).get(k, k): sum(v) for k, v in series.counts.items()}
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))


def _by_status(db: Session, scope: Scope, site: str | None, start: datetime, end: datetime) -> dict[str, int]:
    """Count the alerts of [start, end) per workflow status."""
    query = (
        select(Event.status, func.count())
        .where(scope.filter(Event.site, Event.camera), Event.started_at >= start, Event.started_at < end)
        .group_by(Event.status)
    )
    if site:
        query = query.where(Event.site == site)
    return {status: int(n) for status, n in db.execute(query)}


def _count(
    db: Session,
    scope: Scope,
    by: Dimension,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    zone: tzinfo,
    site: str | None,
) -> stats_service.Series:
    """Count alerts of [start, end) per bucket and value of `by` with the backend's statistics service."""
    return stats_service.counts(
        db, scope, start=start, end=end, granularity=granularity, by=by, zone=zone, site=site
    )


def statistics(
    db: Session,
    scope: Scope,
    site: str | None,
    granularity: Granularity,
    dimension: Dimension,
    zone: tzinfo,
    now: datetime,
    no_zone: str = "-",
) -> Stats:
    """Return the counts of the window ending now, split by `dimension`, and of the window before
    (counted by the backend's statistics service, which groups in SQL)."""
    start, end = period(granularity, zone, now)
    split = _count(db, scope, dimension, start, end, granularity, zone, site)
    by = {
        d: split if d == dimension else _count(db, scope, d, start, end, granularity, zone, site)
        for d in DIMENSIONS
    }
    before = _count(
        db, scope, "rule", _local_shift(start, -SPAN[granularity], zone), start, granularity, zone, site
    )
    rename = {"-": no_zone} if dimension == "zone" else {}
    return Stats(
        start=start,
        end=end,
        total=split.total,
        previous_total=split.previous_total,
        series=Series(
            labels=split.buckets,
            groups={rename.get(k, k): v for k, v in sorted(split.counts.items())},
        ),
        by_rule=_totals(by["rule"]),
        by_zone=_totals(by["zone"], {"-": no_zone}),
        by_camera=_totals(by["camera"]),
        by_status=_by_status(db, scope, site, start, end),
        previous_by_rule=_totals(before),
    )


@dataclass
class HeatMap:
    """Where in one camera's view violations happened: counts per grid cell (rows x cols)."""

    site: str
    camera: str
    has_snapshot: bool
    cells: list[list[int]]
    total: int


def heat_maps(db: Session, scope: Scope, site: str | None, start: datetime, end: datetime) -> list[HeatMap]:
    """Count violations per grid cell of each camera view, by the person's ground point (anchor)."""
    col_w = 1000 // HEAT_COLS + (1 if 1000 % HEAT_COLS else 0)
    row_h = 1000 // HEAT_ROWS + (1 if 1000 % HEAT_ROWS else 0)
    cx = Event.anchor_x // col_w
    cy = Event.anchor_y // row_h
    query = (
        select(Event.site, Event.camera, cx, cy, func.count())
        .where(
            scope.filter(Event.site, Event.camera),
            Event.started_at >= start,
            Event.started_at < end,
            Event.anchor_x.is_not(None),
            Event.anchor_y.is_not(None),
        )
        .group_by(Event.site, Event.camera, cx, cy)
    )
    if site:
        query = query.where(Event.site == site)
    maps: dict[tuple[str, str], HeatMap] = {}
    snaps = {
        (c.site, c.camera): c.snapshot_path is not None
        for c in db.scalars(select(Camera).where(scope.filter(Camera.site, Camera.camera)))
    }
    for s, cam, x, y, n in db.execute(query):
        heat = maps.setdefault(
            (s, cam),
            HeatMap(s, cam, snaps.get((s, cam), False), [[0] * HEAT_COLS for _ in range(HEAT_ROWS)], 0),
        )
        col = min(HEAT_COLS - 1, max(0, int(x or 0)))
        row = min(HEAT_ROWS - 1, max(0, int(y or 0)))
        heat.cells[row][col] += n
        heat.total += n
    return sorted(maps.values(), key=lambda h: (-h.total, h.site, h.camera))


# ---------------------------------------------------------------------------------------------------
# Reports


@dataclass
class Report:
    """A daily or weekly report's figures."""

    kind: Literal["daily", "weekly"]
    start: datetime
    end: datetime
    first_day: date
    last_day: date
    total: int
    previous_total: int
    by_rule: dict[str, int]
    by_camera: dict[str, int]
    by_zone: dict[str, int]
    by_status: dict[str, int]
    per_bucket: list[tuple[datetime, int]]
    median_ack_s: float | None
    open_count: int
    alerts: list[AlertRow]
    truncated: bool


def report(
    db: Session,
    scope: Scope,
    site: str | None,
    kind: Literal["daily", "weekly"],
    first_day: date,
    zone: tzinfo,
    no_zone: str = "-",
    max_rows: int = 200,
) -> Report:
    """Return the figures of a day, or of the ISO week starting on `first_day` (a Monday)."""
    days = 1 if kind == "daily" else 7
    last_day = first_day + timedelta(days=days - 1)
    start = day_bounds(first_day, zone)[0]
    end = day_bounds(last_day, zone)[1]
    granularity: Granularity = "hour" if kind == "daily" else "day"
    by = {d: _count(db, scope, d, start, end, granularity, zone, site) for d in DIMENSIONS}
    buckets = by["rule"].buckets
    per_bucket = [sum(column) for column in zip(*by["rule"].counts.values(), strict=True)] or [0] * len(
        buckets
    )
    statuses = _by_status(db, scope, site, start, end)
    filters = AlertFilters(site=site, since=first_day, until=last_day)
    listing = _rows(
        db,
        select(Event)
        .where(scope.filter(Event.site, Event.camera), *_conditions(filters, zone))
        .order_by(Event.started_at.asc(), Event.id.asc())
        .limit(max_rows + 1),
    )
    return Report(
        kind=kind,
        start=start,
        end=end,
        first_day=first_day,
        last_day=last_day,
        total=by["rule"].total,
        previous_total=by["rule"].previous_total,
        by_rule=_totals(by["rule"]),
        by_camera=_totals(by["camera"]),
        by_zone=_totals(by["zone"], {"-": no_zone}),
        by_status=dict(sorted(statuses.items(), key=lambda kv: -kv[1])),
        per_bucket=list(zip(buckets, per_bucket, strict=True)),
        median_ack_s=_median_ack(db, scope, site, start, end),
        open_count=sum(n for status, n in statuses.items() if status in ("new", "acknowledged", "assigned")),
        alerts=listing[:max_rows],
        truncated=len(listing) > max_rows,
    )


def _median_ack(db: Session, scope: Scope, site: str | None, start: datetime, end: datetime) -> float | None:
    """Return the median seconds from an alert's start to its first workflow step (None without any)."""
    first_step = (
        select(EventAction.event_pk, func.min(EventAction.at).label("first_at"))
        .group_by(EventAction.event_pk)
        .subquery()
    )
    query = (
        select(Event.started_at, first_step.c.first_at)
        .join(first_step, first_step.c.event_pk == Event.id)
        .where(scope.filter(Event.site, Event.camera), Event.started_at >= start, Event.started_at < end)
    )
    if site:
        query = query.where(Event.site == site)
    delays = sorted(
        (_aware(acted) - started).total_seconds() for started, acted in db.execute(query) if acted is not None
    )
    if not delays:
        return None
    mid = len(delays) // 2
    return delays[mid] if len(delays) % 2 else (delays[mid - 1] + delays[mid]) / 2


def _aware(value: datetime) -> datetime:
    """Aggregates skip the column type on SQLite and come back naive (UTC): make them aware."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def trend(current: int, previous: int) -> float | None:
    """Return the change against the previous period as a fraction (None when there was nothing before)."""
    if previous == 0:
        return None
    return (current - previous) / previous


#: A function turning an evidence id into a URL (the pages pass the backend's evidence route).
EvidenceUrl = Callable[[int], str]
