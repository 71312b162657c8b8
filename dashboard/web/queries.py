"""What the pages show, shaped from the backend's services: alert lists (keyset pages of
`dashboard.storage.events`), the live wall (`dashboard.storage.status`), statistics, heat maps
(`dashboard.storage.stats`) and report figures. Reads only, always within the user's scope.

Queries that only a page needs (snapshots and assignees of listed alerts, live counts, report figures)
live here; a query the API needs too belongs to `dashboard.storage`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from dashboard.auth.scope import Scope
from dashboard.storage import events as event_service
from dashboard.storage import stats as stats_service
from dashboard.storage import status as status_service
from dashboard.storage.models import (
    Camera,
    Event,
    EventAction,
    EventEvidence,
    EvidenceFile,
    User,
)

PAGE_SIZE: Final = 50


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

    def events(self, zone: tzinfo) -> event_service.EventFilters:
        """Return the backend's filters: days become moments in the site's time zone."""
        return event_service.EventFilters(
            site=self.site,
            camera=self.camera,
            zone=self.zone,
            rule=self.rule,
            status=self.status,
            since=day_bounds(self.since, zone)[0] if self.since else None,
            until=day_bounds(self.until, zone)[1] if self.until else None,
        )

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


def day_bounds(day: date, zone: tzinfo) -> tuple[datetime, datetime]:
    """Return the start and end (exclusive) of a calendar day in the site's zone, as UTC moments."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _rows(db: Session, events: list[Event]) -> list[AlertRow]:
    """Shape events as rows with each one's snapshot and assignee."""
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
    names = user_names(db, {e.assignee_id for e in events if e.assignee_id is not None})
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
    """Return one page of alerts, newest first (`dashboard.storage.events.list_events`): `after` walks to
    older rows, `before` to newer."""
    wanted = filters.events(zone)
    try:
        page = event_service.list_events(db, scope, wanted, after=after, before=before, limit=limit)
    except ValueError:  # a cursor that is not ours (a tampered URL) starts from the top
        page = event_service.list_events(db, scope, wanted, limit=limit)
    return AlertPage(_rows(db, page.events), next_cursor=page.next_cursor, prev_cursor=page.prev_cursor)


def latest_alerts(db: Session, scope: Scope, site: str | None, limit: int = 30) -> list[AlertRow]:
    """Return the newest alerts of the user's scope (one site, or all), for the live feed."""
    return alert_page(db, scope, AlertFilters(site=site), UTC, limit=limit).rows


def alert_row(db: Session, event_pk: int) -> AlertRow | None:
    """Return one alert as a row (for a live card), or None."""
    event = db.get(Event, event_pk)
    return _rows(db, [event])[0] if event is not None else None


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


def alert_detail(db: Session, scope: Scope, event_pk: int) -> AlertDetail | None:
    """Return one alert with its evidence, timeline and workflow history (from
    `dashboard.storage.events.get_event`); None when unknown or outside `scope`."""
    event = event_service.get_event(db, scope, event_pk)
    if event is None:
        return None
    row = _rows(db, [event])[0]
    evidence = [
        EvidenceItem(
            id=link.evidence.id,
            kind=link.evidence.kind,
            path=link.evidence.path,
            stored=link.evidence.stored_path is not None,
            offset_s=link.offset_s,
            sha256=link.evidence.sha256,
        )
        for link in event.evidence_links
    ]
    timeline = [
        TimelineItem(
            type=m.type,
            emitted_at=m.emitted_at,
            received_at=m.received_at,
            confidence=(m.payload or {}).get("confidence"),
        )
        for m in event.messages
    ]
    return AlertDetail(
        event=event,
        row=row,
        evidence=evidence,
        timeline=timeline,
        actions=list(event.actions),
        assignee=row.assignee,
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
    """An edge box with its last heartbeat, and when the page should ask the server to judge it again."""

    site: str
    edge: str
    state: str
    reason: str | None
    version: str | None
    heartbeat_at: datetime | None
    last_seen: datetime | None
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
    """Return the edge boxes of the scope as the backend judges them (contract.liveness), last heartbeat."""
    out = []
    for view in status_service.edges(db, scope, now, site):
        e = view.edge
        beat = e.heartbeat or {}
        outbox = beat.get("outbox") or {}
        out.append(
            EdgeCard(
                site=e.site,
                edge=e.edge,
                state=view.state,
                reason=e.reason,
                version=e.version,
                heartbeat_at=e.heartbeat_at,
                last_seen=view.last_seen,
                outbox_pending=outbox.get("pending"),
                reconnects=beat.get("reconnects"),
                stale_after_s=view.stale_after_s,
            )
        )
    return out


@dataclass
class FloodNotice:
    """A camera on which the edge's flood control held alerts back in the minute before its heartbeat."""

    site: str
    edge: str
    camera: str
    held_back: int  # in the last minute, as of `at`
    since_start: int  # since the edge started
    at: datetime | None  # the heartbeat that said so


def flood_notices(db: Session, scope: Scope, site: str | None, now: datetime) -> list[FloodNotice]:
    """Return the cameras whose edge, online now, last said flood control is holding alerts back."""
    out = []
    for view in status_service.edges(db, scope, now, site):
        if view.state != "online":  # an edge gone quiet says nothing about now
            continue
        edge = view.edge
        for camera, figures in sorted(((edge.heartbeat or {}).get("cameras") or {}).items()):
            held_back = int(figures.get("events_suppressed_last_min") or 0)
            if held_back > 0 and scope.allows(edge.site, camera):
                total = sum(int(n) for n in (figures.get("events_suppressed") or {}).values())
                out.append(FloodNotice(edge.site, edge.edge, camera, held_back, total, edge.heartbeat_at))
    return out


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
    """One camera's heat map (`dashboard.storage.stats.heat_maps`) and whether its snapshot can be shown."""

    site: str
    camera: str
    has_snapshot: bool
    cells: list[list[int]]
    total: int


def heat_maps(db: Session, scope: Scope, site: str | None, start: datetime, end: datetime) -> list[HeatMap]:
    """Return the heat map of each camera with alerts in [start, end), busiest first."""
    maps = stats_service.heat_maps(db, scope, start=start, end=end, site=site)
    if not maps:
        return []
    snaps = {
        (c.site, c.camera)
        for c in db.scalars(
            select(Camera).where(scope.filter(Camera.site, Camera.camera), Camera.snapshot_path.is_not(None))
        )
    }
    return [HeatMap(h.site, h.camera, (h.site, h.camera) in snaps, h.cells, h.total) for h in maps]


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
        list(
            db.scalars(
                event_service.filtered(scope, filters.events(zone))
                .order_by(Event.started_at.asc(), Event.id.asc())
                .limit(max_rows + 1)
            )
        ),
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


#: A function turning an evidence id into a URL (the pages pass the backend's evidence route).
EvidenceUrl = Callable[[int], str]
