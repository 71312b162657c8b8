"""The alert list (filters, keyset paging) and the alert page (evidence, timeline, follow-up workflow)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contract.enums import Rule
from dashboard.auth.deps import Ctx, CurrentActor, Db, Officer
from dashboard.storage.models import EventStatus
from dashboard.storage.workflow import allowed_actions, can_act
from dashboard.web import queries, workflow
from dashboard.web.deps import Setup
from dashboard.web.links import Links
from dashboard.web.templating import render

router = APIRouter()


def _day(value: str | None) -> date | None:
    """Parse a yyyy-mm-dd filter value; anything else is ignored rather than an error page."""
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/alerts", name="web_alerts", response_class=HTMLResponse)
def alert_list(
    request: Request,
    setup: Setup,
    camera: str | None = None,
    zone: str | None = None,
    rule: str | None = None,
    status_: Annotated[str | None, Query(alias="status")] = None,
    since: str | None = None,
    until: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> HTMLResponse:
    """List alerts newest first with filters; `after`/`before` are keyset cursors to older/newer pages."""
    page, db, user = setup.page, setup.db, setup.user
    page.active = "alerts"
    filters = queries.AlertFilters(
        site=page.site,
        camera=camera or None,
        zone=zone or None,
        rule=rule or None,
        status=status_ or None,
        since=_day(since),
        until=_day(until),
    )
    alerts = queries.alert_page(db, user.scope, filters, page.zone, after=after, before=before)
    Links(request).attach(alerts.rows)
    export_csv, export_json = workflow.export_links(request, filters, page.zone)
    return render(
        request,
        "alerts.html",
        page,
        {
            "alerts": alerts,
            "filters": filters,
            "choices": queries.filter_choices(db, user.scope, page.site),
            "rules": [r.value for r in Rule],
            "statuses": [s.value for s in EventStatus],
            "export_csv": export_csv,
            "export_json": export_json,
        },
    )


@router.get("/alerts/{event_pk}", name="web_alert", response_class=HTMLResponse)
def alert_page(request: Request, event_pk: int, setup: Setup, msg: str | None = None) -> HTMLResponse:
    """Show one alert: snapshot with the subject boxed, the clip at its offset, timeline and follow-up."""
    page, db, user = setup.page, setup.db, setup.user
    page.active = "alerts"
    detail = queries.alert_detail(db, user.scope, event_pk)
    if detail is None:  # unknown or outside the user's scope: no hint which
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    links = Links(request)
    snapshot = next((e for e in detail.evidence if e.kind == "snapshot" and e.stored), None)
    clip = next((e for e in detail.evidence if e.kind == "clip" and e.stored), None)
    names = queries.user_names(db, {a.assignee_id for a in detail.actions if a.assignee_id is not None})
    flash, flash_error = workflow.flash_message(msg, page.locale)
    return render(
        request,
        "alert.html",
        page,
        {
            "detail": detail,
            "snapshot": {"url": links.evidence(snapshot.id)} if snapshot else None,
            "clip": {"url": links.evidence(clip.id), "offset_s": clip.offset_s} if clip else None,
            "allowed": allowed_actions(detail.event) if can_act(user) else [],
            "assignees": queries.assignable_users(db, detail.event.site, detail.event.camera),
            "names": names,
            "flash": flash,
            "flash_error": flash_error,
            "back_url": request.url_for("web_alerts").path,
        },
    )


@router.post("/alerts/{event_pk}/action", name="web_alert_action")
def alert_action(
    request: Request,
    event_pk: int,
    user: Officer,
    actor: CurrentActor,
    ctx: Ctx,
    db: Db,
    action: Annotated[str, Form(max_length=32)],
    note: Annotated[str, Form(max_length=2000)] = "",
    assignee_id: Annotated[int | None, Form()] = None,
) -> Response:
    """Apply a follow-up step (CSRF-checked, officers and admins only), then show the alert again."""
    outcome = workflow.apply(ctx, db, user, actor, event_pk, action, note.strip() or None, assignee_id)
    target = request.url_for("web_alert", event_pk=event_pk).path
    return RedirectResponse(f"{target}?msg={outcome}", status_code=303)
