"""Alerts: filtered lists (keyset pages), one alert in detail, and the workflow actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from sqlalchemy import select

from dashboard.actions import take_action
from dashboard.api.schemas import (
    ActionIn,
    ActionOut,
    ActionResult,
    EventDetail,
    EventOut,
    EventPage,
    EvidenceOut,
    TimelineOut,
)
from dashboard.auth.deps import Ctx, CurrentActor, Db, Officer, Viewer
from dashboard.storage import workflow
from dashboard.storage.events import EventFilters, get_event, list_events
from dashboard.storage.models import EventStatus, User

router = APIRouter(prefix="/events", tags=["events"])


def event_filters(
    site: str | None = None,
    camera: str | None = None,
    zone: str | None = None,
    rule: str | None = None,
    status_: Annotated[EventStatus | None, Query(alias="status")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> EventFilters:
    """Read the filter parameters of alert lists and exports (times need an offset); a dependency."""
    for moment in (since, until):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "times need an offset, e.g. +08:00")
    return EventFilters(site, camera, zone, rule, status_.value if status_ else None, since, until)


@router.get("", summary="Alerts, newest first, filtered; follow next_cursor for the next page")
def events(
    user: Viewer,
    db: Db,
    filters: Annotated[EventFilters, Depends(event_filters)],
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EventPage:
    """List alerts in the user's scope."""
    try:
        page = list_events(db, user.scope, filters, after=cursor, limit=limit)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid cursor") from None
    return EventPage(items=[EventOut.of(row) for row in page.events], next_cursor=page.next_cursor)


@router.get("/{event_pk}", summary="One alert with evidence, timeline and workflow history")
def event_detail(event_pk: int, user: Viewer, db: Db) -> EventDetail:
    """Return one alert (404 when unknown or outside the user's scope)."""
    event = get_event(db, user.scope, event_pk)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    return EventDetail(
        **EventOut.of(event).model_dump(),
        person_box=event.person_box,
        evidence_boxes=event.evidence_boxes,
        model_name=event.model_name,
        model_version=event.model_version,
        evidence=[EvidenceOut.of(link) for link in event.evidence_links],
        timeline=[TimelineOut.model_validate(m, from_attributes=True) for m in event.messages],
        actions=[ActionOut.of(a) for a in event.actions],
        allowed_actions=workflow.allowed_actions(event) if workflow.can_act(user) else [],
    )


@router.post(
    "/{event_pk}/{action}",
    summary="Acknowledge, assign, resolve, mark as false alarm (the edge is told) or reopen",
)
def event_action(
    event_pk: int,
    action: Literal["acknowledge", "assign", "resolve", "false_alarm", "reopen"],
    body: ActionIn,
    user: Officer,
    actor: CurrentActor,
    ctx: Ctx,
    db: Db,
) -> ActionResult:
    """Take a workflow step on an alert in the user's scope; 409 when it does not fit its status."""
    event = get_event(db, user.scope, event_pk)
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    assignee = None
    if action == "assign":
        if body.assignee_id is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "assign needs assignee_id")
        assignee = db.scalar(select(User).where(User.id == body.assignee_id))
        if assignee is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no such user")
    try:
        outcome = take_action(ctx, db, event, action, actor, note=body.note, assignee=assignee)
    except workflow.WorkflowError as exc:
        db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return ActionResult(
        event=EventOut.of(outcome.step.event),
        edge_command=outcome.command.status if outcome.command else None,
    )
