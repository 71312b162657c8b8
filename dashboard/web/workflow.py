"""The pages' side of the follow-up workflow: which buttons an alert offers, applying a step through the
backend's service, the message shown afterwards, and the export links of the alert list."""

from __future__ import annotations

from datetime import tzinfo
from typing import Final
from urllib.parse import urlencode

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from dashboard import i18n
from dashboard.actions import take_action
from dashboard.auth.scope import Principal
from dashboard.context import AppContext
from dashboard.i18n.labels import N_
from dashboard.storage import workflow
from dashboard.storage.audit import Actor
from dashboard.storage.events import get_event
from dashboard.storage.models import User
from dashboard.web.queries import AlertFilters

#: The outcome code of each step (the key of its message below).
OUTCOMES: Final = {
    "acknowledge": "acknowledged",
    "assign": "assigned",
    "resolve": "resolved",
    "false_alarm": "false_alarm",
    "reopen": "reopened",
}

#: What the alert page says after a step (keys are the outcome codes put in the redirect URL).
MESSAGES: Final = {
    "acknowledged": (N_("Alert acknowledged."), False),
    "assigned": (N_("Alert assigned."), False),
    "resolved": (N_("Alert resolved."), False),
    "false_alarm": (N_("Marked as a false alarm; the edge box keeps the frame for relabelling."), False),
    "false_alarm_local": (
        N_("Marked as a false alarm. The edge box could not be told (it is offline)."),
        False,
    ),
    "reopened": (N_("Alert reopened."), False),
    "not_allowed": (N_("That step is not possible in the alert's current state."), True),
    "no_assignee": (N_("Choose who the alert is assigned to."), True),
}


def flash_message(code: str | None, locale: str) -> tuple[str | None, bool]:
    """Return the translated message of an outcome code and whether it is an error (None: no message)."""
    if not code or code not in MESSAGES:
        return None, False
    message, is_error = MESSAGES[code]
    return i18n.translations(locale).gettext(message), is_error


def apply(
    ctx: AppContext,
    db: Session,
    user: Principal,
    actor: Actor,
    event_pk: int,
    action: str,
    note: str | None,
    assignee_id: int | None,
) -> str:
    """Apply a workflow step through the backend's service; return the outcome code for the page."""
    event = get_event(db, user.scope, event_pk)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    if action not in workflow.TRANSITIONS:
        return "not_allowed"
    assignee = None
    if action == "assign":
        assignee = db.get(User, assignee_id) if assignee_id is not None else None
        if assignee is None:
            return "no_assignee"
    try:
        outcome = take_action(ctx, db, event, action, actor, note=note, assignee=assignee)  # type: ignore[arg-type]
    except workflow.WorkflowError:
        db.rollback()
        return "not_allowed"
    if action == "false_alarm" and outcome.command is not None and outcome.command.status == "not_connected":
        return "false_alarm_local"
    return OUTCOMES[action]


def export_links(request: Request, filters: AlertFilters, zone: tzinfo) -> tuple[str, str]:
    """Return the CSV and JSON export URLs (the API's) for the list's filters; days become moments in the
    site's time zone, as the API wants."""
    query: dict[str, str] = {k: v for k, v in filters.as_query().items() if k not in ("since", "until")}
    moments = filters.events(zone)
    if moments.since:
        query["since"] = moments.since.astimezone(zone).isoformat()
    if moments.until:
        query["until"] = moments.until.astimezone(zone).isoformat()
    suffix = ("?" + urlencode(query)) if query else ""
    csv_url = request.url_for("export_events", fmt="csv").path + suffix
    json_url = request.url_for("export_events", fmt="json").path + suffix
    return csv_url, json_url


def zones_url(request: Request, site: str, camera: str) -> str:
    """Return the API URL the zone editor PUTs a camera's zones to (the backend sends set_zones)."""
    return request.url_for("put_zones", site=site, camera=camera).path
