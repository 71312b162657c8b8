"""Daily and weekly reports: one template, shown as a printable page or rendered to PDF by WeasyPrint."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from dashboard import i18n
from dashboard.storage import stats as stats_service
from dashboard.web import queries
from dashboard.web.deps import Setup
from dashboard.web.links import Links
from dashboard.web.templating import STATIC_DIR, render, render_string

router = APIRouter()


def _parse_day(value: str | None, default: date) -> date:
    """Parse yyyy-mm-dd; a missing or malformed value falls back to `default`."""
    try:
        return date.fromisoformat(value) if value else default
    except ValueError:
        return default


def _monday(day: date) -> date:
    """Return the Monday of `day`'s ISO week."""
    return day - timedelta(days=day.weekday())


@router.get("/reports", name="web_reports", response_class=HTMLResponse)
def reports_index(request: Request, setup: Setup) -> HTMLResponse:
    """Offer the daily and weekly reports (today, yesterday, this and last week, or any date)."""
    page = setup.page
    page.active = "reports"
    today = datetime.now(UTC).astimezone(page.zone).date()
    return render(
        request,
        "reports.html",
        page,
        {
            "today": today,
            "yesterday": today - timedelta(days=1),
            "this_week": _monday(today),
            "last_week": _monday(today) - timedelta(days=7),
        },
    )


def _pdf(html: str, base_url: str) -> bytes:
    """Render HTML to PDF with WeasyPrint (imported here: it loads Pango, which pages do not need)."""
    from weasyprint import HTML

    return bytes(HTML(string=html, base_url=base_url).write_pdf())


@router.get("/reports/{kind}", name="web_report", response_class=HTMLResponse)
async def report_page(
    request: Request,
    kind: Literal["daily", "weekly"],
    setup: Setup,
    day: str | None = None,
    format: Literal["html", "pdf"] = "html",
) -> Response:
    """Show the report of a day (or the week holding `day`); `format=pdf` returns it as a PDF file."""
    page, db, user = setup.page, setup.db, setup.user
    page.active = "reports"
    today = datetime.now(UTC).astimezone(page.zone).date()
    first = _parse_day(day, today if kind == "daily" else _monday(today))
    if kind == "weekly":
        first = _monday(first)
    no_zone = i18n.translations(page.locale).gettext("no zone")
    data = await asyncio.to_thread(queries.report, db, user.scope, page.site, kind, first, page.zone, no_zone)
    Links(request).attach(data.alerts)
    context = {
        "report": data,
        "trend": stats_service.trend(data.total, data.previous_total),
        "generated_at": datetime.now(UTC),
        "prev_day": first - timedelta(days=1 if kind == "daily" else 7),
        "next_day": first + timedelta(days=1 if kind == "daily" else 7),
        "base": str(request.base_url).rstrip("/"),
    }
    if format == "pdf":
        css = (STATIC_DIR / "css" / "report-pdf.css").read_text(encoding="utf-8")
        html = render_string(request, "report_pdf.html", page, {**context, "css": css})
        pdf = await asyncio.to_thread(_pdf, html, str(request.base_url))
        name = f"sitesentry-{kind}-{page.site or 'all'}-{first.isoformat()}.pdf"
        return Response(
            pdf, media_type="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'}
        )
    return render(request, "report.html", page, context)
