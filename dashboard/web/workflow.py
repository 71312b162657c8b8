"""The pages' side of the follow-up workflow: which buttons an alert offers, applying a step through the
backend's service, the message shown afterwards, and the export links of the alert list."""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from dashboard import i18n
from dashboard.auth.scope import Principal
from dashboard.i18n.labels import N_
from dashboard.storage.audit import Actor
from dashboard.web.queries import AlertFilters

#: Buttons offered per status: open -> acknowledged -> assigned -> resolved, or false alarm at any point
#: before it is resolved; a closed alert can be reopened.
ALLOWED: Final = {
    "new": ("acknowledge", "assign", "resolve", "false_alarm"),
    "acknowledged": ("assign", "resolve", "false_alarm"),
    "assigned": ("assign", "resolve", "false_alarm"),
    "resolved": ("reopen",),
    "false_alarm": ("reopen",),
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


def allowed_actions(current: str) -> tuple[str, ...]:
    """Return the steps offered for an alert in state `current`."""
    return ALLOWED.get(current, ())


def flash_message(code: str | None, locale: str) -> tuple[str | None, bool]:
    """Return the translated message of an outcome code and whether it is an error (None: no message)."""
    if not code or code not in MESSAGES:
        return None, False
    message, is_error = MESSAGES[code]
    return i18n.translations(locale).gettext(message), is_error


def apply(
    request: Request,
    db: Session,
    user: Principal,
    actor: Actor,
    event_pk: int,
    action: str,
    note: str | None,
    assignee_id: int | None,
) -> str:
    """Apply a workflow step through the backend's service; return the outcome code for the page."""
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "workflow service not wired yet")


def export_links(request: Request, filters: AlertFilters) -> tuple[str, str] | None:
    """Return the CSV and JSON export URLs for the current filters (None until the export API exists)."""
    return None


def zones_url(request: Request, site: str, camera: str) -> str:
    """Return the API URL the zone editor PUTs a camera's zones to (the backend sends set_zones)."""
    return f"/api/cameras/{site}/{camera}/zones"
