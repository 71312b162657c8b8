"""Statistics: alert counts by rule, zone or camera per hour, day or week, the trend against the previous
period, and heat maps of where people stood (the bottom centre of their box) per camera."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from dashboard.auth.scope import Scope
from dashboard.storage.models import Event

Granularity = Literal["hour", "day", "week"]
Dimension = Literal["rule", "zone", "camera"]


@dataclass(frozen=True, slots=True)
class Series:
    """Counts per bucket start (site-local time) for each value of the dimension."""

    buckets: list[datetime]
    counts: dict[str, list[int]]
    total: int
    previous_total: int

    @property
    def trend(self) -> float | None:
        """Return the change against the previous period as a fraction (None when that had none)."""
        if self.previous_total == 0:
            return None
        return (self.total - self.previous_total) / self.previous_total


def _hour_bucket(dialect: str) -> ColumnElement[Any]:
    """SQL for the UTC hour an event started in (grouped in SQL, regrouped by local day/week in Python)."""
    if dialect == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", Event.started_at))
    return func.strftime("%Y-%m-%d %H:00:00", Event.started_at)


def _as_utc(value: Any) -> datetime:
    """Read an hour bucket back as an aware UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def bucket_start(moment: datetime, granularity: Granularity, zone: tzinfo) -> datetime:
    """Return the local start of the hour, day or (Monday) week holding `moment`."""
    local = moment.astimezone(zone)
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if granularity == "day":
        return day
    return day - timedelta(days=day.weekday())


def _buckets(start: datetime, end: datetime, granularity: Granularity, zone: tzinfo) -> list[datetime]:
    """Every bucket start from `start` to `end` (local), so empty buckets show as zero."""
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}[granularity]
    out: list[datetime] = []
    current = bucket_start(start, granularity, zone)
    while current < end:
        out.append(current)
        # Days and weeks: overshoot by 2 h and snap back to the bucket start, so a 23 h or 25 h day across
        # a DST change still lands on the next local midnight. Hours are fixed-length: no overshoot.
        slack = timedelta(0) if granularity == "hour" else timedelta(hours=2)
        current = bucket_start((current + step + slack).astimezone(zone), granularity, zone)
    return out


def counts(
    db: Session,
    scope: Scope,
    *,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    by: Dimension,
    zone: tzinfo,
    site: str | None = None,
    camera: str | None = None,
) -> Series:
    """Count alerts that started in [start, end) per bucket and value of `by`, within `scope`."""
    dialect = db.get_bind().dialect.name
    hour = _hour_bucket(dialect).label("hour")
    column = {"rule": Event.rule, "zone": Event.zone, "camera": Event.camera}[by]
    where = [scope.filter(Event.site, Event.camera), Event.started_at >= start, Event.started_at < end]
    if site:
        where.append(Event.site == site)
    if camera:
        where.append(Event.camera == camera)
    rows = db.execute(select(hour, column, func.count()).where(*where).group_by(hour, column)).all()
    buckets = _buckets(start, end, granularity, zone)
    index = {b: i for i, b in enumerate(buckets)}
    series: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
    total = 0
    for hour_value, value, count in rows:
        position = index.get(bucket_start(_as_utc(hour_value), granularity, zone))
        if position is not None:
            series[value if value is not None else "-"][position] += count
        total += count
    previous = [
        scope.filter(Event.site, Event.camera),
        Event.started_at >= start - (end - start),
        Event.started_at < start,
    ]
    if site:
        previous.append(Event.site == site)
    if camera:
        previous.append(Event.camera == camera)
    previous_total = db.scalar(select(func.count()).select_from(Event).where(*previous)) or 0
    return Series(buckets, dict(series), total, previous_total)


def heat_map(
    db: Session, site: str, camera: str, *, start: datetime, end: datetime, grid: int = 20
) -> list[list[int]]:
    """Return a grid[y][x] of how many alerts had the person's feet in each cell of the camera view.

    Anchors are stored in thousandths, so the cell is plain integer division on either database."""
    cell_x = (Event.anchor_x * grid // 1000).label("cx")
    cell_y = (Event.anchor_y * grid // 1000).label("cy")
    rows = db.execute(
        select(cell_x, cell_y, func.count())
        .where(
            Event.site == site,
            Event.camera == camera,
            Event.started_at >= start,
            Event.started_at < end,
            Event.anchor_x.is_not(None),
        )
        .group_by(cell_x, cell_y)
    ).all()
    out = [[0] * grid for _ in range(grid)]
    for x, y, count in rows:
        if x is not None and y is not None:
            out[min(grid - 1, int(y))][min(grid - 1, int(x))] += count
    return out
