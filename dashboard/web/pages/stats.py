"""Statistics: violations by rule, zone and camera per hour, day or week, trend, and heat maps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from dashboard import i18n
from dashboard.i18n.labels import label
from dashboard.storage import stats as stats_service
from dashboard.web import queries
from dashboard.web.deps import Setup
from dashboard.web.links import Links
from dashboard.web.templating import render

router = APIRouter()

#: Rule colours match the alert cards (red: danger zone, orange: hard hat, amber: vest).
RULE_COLOURS: Final = {"zone_entry": "#d92d20", "no_helmet": "#e35d0a", "no_vest": "#d89200"}
PALETTE: Final = ["#1d5fd1", "#12805c", "#7c3aed", "#0e7490", "#b45309", "#be185d", "#4b5563", "#65a30d"]


def colour(dimension: str, key: str, index: int) -> str:
    """Return the chart colour of a series: fixed per rule, from the palette otherwise."""
    if dimension == "rule" and key in RULE_COLOURS:
        return RULE_COLOURS[key]
    return PALETTE[index % len(PALETTE)]


@router.get("/stats", name="web_stats", response_class=HTMLResponse)
def stats_page(
    request: Request,
    setup: Setup,
    by: Literal["hour", "day", "week"] = "day",
    split: Literal["rule", "zone", "camera"] = "rule",
) -> HTMLResponse:
    """Show charts of violations over time and per rule, zone and camera, with the trend and heat maps.

    Over 60 lines only because the chart data and the template context are written out as literals; the
    figures come from queries.
    """
    page, db, user = setup.page, setup.db, setup.user
    page.active = "stats"
    gettext = i18n.translations(page.locale).gettext
    no_zone = gettext("no zone")
    now = datetime.now(UTC)
    stats = queries.statistics(db, user.scope, page.site, by, split, page.zone, now, no_zone=no_zone)
    fmt = {"hour": "time", "day": "day", "week": "day"}[by]
    labels = [i18n.fmt_datetime(t, page.locale, page.zone, fmt) for t in stats.series.labels]
    if by == "hour":
        labels = [text[:5] for text in labels]  # HH:mm

    def name(key: str) -> str:
        return label("rule", key, gettext) if split == "rule" else key

    chart: dict[str, Any] = {
        "labels": labels,
        "datasets": [
            {"label": name(key), "data": values, "backgroundColor": colour(split, key, i)}
            for i, (key, values) in enumerate(stats.series.groups.items())
        ],
        "by_rule": {
            "labels": [label("rule", k, gettext) for k in stats.by_rule],
            "data": list(stats.by_rule.values()),
            "colours": [colour("rule", k, i) for i, k in enumerate(stats.by_rule)],
        },
        "by_zone": {"labels": list(stats.by_zone), "data": list(stats.by_zone.values())},
        "by_camera": {"labels": list(stats.by_camera), "data": list(stats.by_camera.values())},
    }
    heat = queries.heat_maps(db, user.scope, page.site, stats.start, stats.end)
    links = Links(request)
    return render(
        request,
        "stats.html",
        page,
        {
            "stats": stats,
            "by": by,
            "split": split,
            "chart": chart,
            "trend": stats_service.trend(stats.total, stats.previous_total),
            "heat": [
                {
                    "site": h.site,
                    "camera": h.camera,
                    "total": h.total,
                    "cells": h.cells,
                    "snapshot": links.snapshot(h.site, h.camera) if h.has_snapshot else None,
                }
                for h in heat
            ],
            "rule_trend": [
                (rule, stats.by_rule.get(rule, 0), stats.previous_by_rule.get(rule, 0))
                for rule in sorted(set(stats.by_rule) | set(stats.previous_by_rule))
            ],
        },
    )
