"""The follow-up of an alert: acknowledge, assign, resolve, false alarm; each step noted and audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from sqlalchemy.orm import Session

from dashboard.auth.scope import Principal, Scope
from dashboard.storage import audit
from dashboard.storage.models import Event, EventAction, EventStatus, Role, User

Action = Literal["acknowledge", "assign", "resolve", "false_alarm", "reopen"]

_OPEN = frozenset({EventStatus.NEW, EventStatus.ACKNOWLEDGED, EventStatus.ASSIGNED})
#: Which statuses each action may start from, and where it leads; a closed alert can be reopened.
TRANSITIONS: Final[dict[str, tuple[frozenset[EventStatus], EventStatus]]] = {
    "acknowledge": (frozenset({EventStatus.NEW}), EventStatus.ACKNOWLEDGED),
    "assign": (_OPEN, EventStatus.ASSIGNED),
    "resolve": (_OPEN, EventStatus.RESOLVED),
    "false_alarm": (_OPEN, EventStatus.FALSE_ALARM),
    "reopen": (frozenset({EventStatus.RESOLVED, EventStatus.FALSE_ALARM}), EventStatus.ACKNOWLEDGED),
}


class WorkflowError(ValueError):
    """An action that does not fit the alert's status, or an assignee who cannot take it."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """The recorded step."""

    action: EventAction
    event: Event


def allowed_actions(event: Event) -> list[str]:
    """Return the actions that fit the event's status now (for buttons on a page)."""
    status = EventStatus(event.status)
    return [name for name, (sources, _) in TRANSITIONS.items() if status in sources]


def apply_action(
    db: Session,
    event: Event,
    action: Action,
    actor: audit.Actor,
    *,
    note: str | None = None,
    assignee: User | None = None,
    extra: dict[str, object] | None = None,
) -> StepResult:
    """Move `event` by `action`, keep the step in its history and the audit log (caller commits)."""
    if action not in TRANSITIONS:
        raise WorkflowError(f"unknown action {action!r}")
    sources, target = TRANSITIONS[action]
    current = EventStatus(event.status)
    if current not in sources:
        raise WorkflowError(f"cannot {action.replace('_', ' ')} an alert that is {current.value}")
    if action == "assign":
        if assignee is None:
            raise WorkflowError("assign needs an assignee")
        if not can_take(assignee, event):
            raise WorkflowError(f"{assignee.username} cannot take alerts of {event.site}/{event.camera}")
        event.assignee_id = assignee.id
    now = datetime.now(UTC)
    step = EventAction(
        event_pk=event.id,
        action=action,
        from_status=current.value,
        to_status=target.value,
        user_id=actor.user_id,
        username=actor.username or "system",
        assignee_id=assignee.id if assignee else None,
        note=(note or None),
        at=now,
    )
    db.add(step)
    event.status = target.value
    event.updated_at = now
    detail: dict[str, object] = {"from": current.value, "to": target.value, "note": note}
    if assignee is not None:
        detail["assignee"] = assignee.username
    detail.update(extra or {})
    audit.record(
        db,
        actor,
        f"event.{action}",
        target_type="event",
        target_id=event.event_id,
        site=event.site,
        detail=detail,
    )
    return StepResult(step, event)


def can_take(user: User, event: Event) -> bool:
    """Tell whether `user` may be assigned `event`: active, safety officer or above, camera in scope."""
    if not user.active or Role(user.role).rank < Role.SAFETY_OFFICER.rank:
        return False
    return Scope.of(list(user.sites), list(user.cameras)).allows(event.site, event.camera)


def can_act(user: Principal) -> bool:
    """Tell whether `user` may take workflow actions at all."""
    return user.has_role(Role.SAFETY_OFFICER)
