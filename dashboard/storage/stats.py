"""Statistics: alert counts by rule, zone or camera per hour, day or week, the trend against the previous
period, and heat maps of where people stood (the bottom centre of their box) per camera; the API and the
statistics page both count here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Integer, cast, func, literal_column, select
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
        return trend(self.total, self.previous_total)


def trend(current: int, previous: int) -> float | None:
    """Return the change from `previous` to `current` as a fraction (None when there was nothing before)."""
    if previous == 0:
        return None
    return (current - previous) / previous


def _quarter_bucket(dialect: str) -> ColumnElement[Any]:
    """SQL for the UTC quarter hour an event started in (grouped in SQL, regrouped by local hour, day or
    week in Python). Quarter hours, not hours: every UTC offset in use is a whole number of them, while
    India's +05:30 or Nepal's +05:45 would put half of a UTC hour into the wrong local hour or day."""
    if dialect == "postgresql":
        return func.date_bin(
            literal_column("INTERVAL '15 minutes'"),
            func.timezone("UTC", Event.started_at),
            literal_column("TIMESTAMP '2000-01-01'"),
        )
    minute = (cast(func.strftime("%M", Event.started_at), Integer) / 15) * 15
    return func.strftime("%Y-%m-%d %H:", Event.started_at).op("||")(func.printf("%02d:00", minute))


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
    hour = _quarter_bucket(dialect).label("hour")
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


#: The heat map's default grid over a camera view: 16:9 cells, as the cameras' frames.
HEAT_COLS: Final = 32
HEAT_ROWS: Final = 18


@dataclass(frozen=True, slots=True)
class HeatMap:
    """Where in one camera's view alerts happened: cells[y][x] counts, x left to right, y top to bottom."""

    site: str
    camera: str
    cells: list[list[int]]
    total: int


def heat_maps(
    db: Session,
    scope: Scope,
    *,
    start: datetime,
    end: datetime,
    site: str | None = None,
    camera: str | None = None,
    cols: int = HEAT_COLS,
    rows: int = HEAT_ROWS,
) -> list[HeatMap]:
    """Count alerts of [start, end) per grid cell of each camera view in `scope` by the person's feet (the
    bottom centre of their box), in one query for every camera; busiest camera first.

    Anchors are stored in thousandths, so `anchor * cells // 1000` is an exact, even split on either
    database (a rounded-up cell width would leave the last column narrower)."""
    cell_x = (Event.anchor_x * cols // 1000).label("cx")
    cell_y = (Event.anchor_y * rows // 1000).label("cy")
    where = [
        scope.filter(Event.site, Event.camera),
        Event.started_at >= start,
        Event.started_at < end,
        Event.anchor_x.is_not(None),
        Event.anchor_y.is_not(None),
    ]
    if site:
        where.append(Event.site == site)
    if camera:
        where.append(Event.camera == camera)
    query = (
        select(Event.site, Event.camera, cell_x, cell_y, func.count())
        .where(*where)
        .group_by(Event.site, Event.camera, cell_x, cell_y)
    )
    cells: dict[tuple[str, str], list[list[int]]] = {}
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for found_site, found_camera, x, y, count in db.execute(query):
        grid = cells.setdefault((found_site, found_camera), [[0] * cols for _ in range(rows)])
        # Ingest keeps anchors within 0..999; a row written by anything else still lands on the grid.
        grid[min(rows - 1, max(0, int(y or 0)))][min(cols - 1, max(0, int(x or 0)))] += count
        totals[(found_site, found_camera)] += count
    maps = [HeatMap(key[0], key[1], grid, totals[key]) for key, grid in cells.items()]
    return sorted(maps, key=lambda h: (-h.total, h.site, h.camera))
