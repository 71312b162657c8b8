"""Statistics: counts per hour/day/week by rule, zone or camera with the trend; heat maps per camera."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel

from dashboard.auth.deps import Ctx, Db, Viewer, ensure_allowed
from dashboard.storage import stats as stats_service

router = APIRouter(prefix="/stats", tags=["statistics"])

_DEFAULT_SPAN = {"hour": timedelta(days=1), "day": timedelta(days=7), "week": timedelta(weeks=8)}


class CountsOut(BaseModel):
    """Counts per bucket (local start times) per value, the total and the previous period's total."""

    granularity: stats_service.Granularity
    by: stats_service.Dimension
    start: datetime
    end: datetime
    buckets: list[datetime]
    counts: dict[str, list[int]]
    total: int
    previous_total: int
    trend: float | None


class HeatMapOut(BaseModel):
    """grid[y][x]: alerts with the person's feet in each cell (x left to right, y top to bottom)."""

    site: str
    camera: str
    start: datetime
    end: datetime
    cols: int
    rows: int
    total: int
    grid: list[list[int]]


def _range(start: datetime | None, end: datetime | None, span: timedelta) -> tuple[datetime, datetime]:
    """Default the range to `span` back from now; times need an offset."""
    for moment in (start, end):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "times need an offset, e.g. +08:00")
    end = end or datetime.now(UTC)
    start = start or end - span
    if start >= end:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "start must be before end")
    if end - start > timedelta(days=400):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "at most 400 days at once")
    return start, end


@router.get("/counts", summary="Alert counts per hour, day or week by rule, zone or camera, with the trend")
def counts(
    user: Viewer,
    ctx: Ctx,
    db: Db,
    granularity: stats_service.Granularity = "day",
    by: stats_service.Dimension = "rule",
    start: datetime | None = None,
    end: datetime | None = None,
    site: str | None = None,
    camera: str | None = None,
) -> CountsOut:
    """Count alerts in the user's scope; the trend compares with the period of equal length before."""
    start, end = _range(start, end, _DEFAULT_SPAN[granularity])
    series = stats_service.counts(
        db,
        user.scope,
        start=start,
        end=end,
        granularity=granularity,
        by=by,
        zone=ctx.settings.zone,
        site=site,
        camera=camera,
    )
    return CountsOut(
        granularity=granularity,
        by=by,
        start=start,
        end=end,
        buckets=series.buckets,
        counts=series.counts,
        total=series.total,
        previous_total=series.previous_total,
        trend=series.trend,
    )


@router.get("/heatmap/{site}/{camera}", summary="Where people stood in alerts of one camera")
def heatmap(
    site: str,
    camera: str,
    user: Viewer,
    db: Db,
    start: datetime | None = None,
    end: datetime | None = None,
    cols: Annotated[int, Query(ge=4, le=100)] = stats_service.HEAT_COLS,
    rows: Annotated[int, Query(ge=4, le=100)] = stats_service.HEAT_ROWS,
) -> HeatMapOut:
    """Return a grid of alert counts by the person box's bottom centre (16:9 cells unless asked)."""
    ensure_allowed(user, site, camera)
    start, end = _range(start, end, timedelta(days=7))
    found = stats_service.heat_maps(
        db, user.scope, start=start, end=end, site=site, camera=camera, cols=cols, rows=rows
    )
    cells = found[0].cells if found else [[0] * cols for _ in range(rows)]
    total = found[0].total if found else 0
    return HeatMapOut(
        site=site, camera=camera, start=start, end=end, cols=cols, rows=rows, total=total, grid=cells
    )
