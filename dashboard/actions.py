"""Things a person does that reach beyond the database: workflow steps (a false alarm tells the edge) and
zone edits (sent to the edge, which answers applied or why not). API routes and pages both call these."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from contract.payloads import ControlCommand, ZonePolygon
from dashboard.context import AppContext
from dashboard.ingest.control import SendResult, new_request_id
from dashboard.storage import audit, workflow
from dashboard.storage.models import Camera, Event, User


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The workflow step taken, and for a false alarm what became of the command to the edge."""

    step: workflow.StepResult
    command: SendResult | None


def take_action(
    ctx: AppContext,
    db: Session,
    event: Event,
    action: workflow.Action,
    actor: audit.Actor,
    *,
    note: str | None = None,
    assignee: User | None = None,
) -> ActionOutcome:
    """Apply a workflow step and commit it; a false alarm also sends the edge's `false_alarm` command so
    the frame is kept for relabelling. Raises workflow.WorkflowError when the step does not fit."""
    command_result: SendResult | None = None
    extra: dict[str, object] = {}
    if action == "false_alarm":
        # Checked first, so an impossible step sends nothing to the edge.
        if event.status not in {s.value for s in workflow.TRANSITIONS["false_alarm"][0]}:
            raise workflow.WorkflowError(f"cannot mark an alert that is {event.status} as a false alarm")
        command = ControlCommand(
            request_id=new_request_id(),
            action="false_alarm",
            event_id=event.event_id,  # type: ignore[arg-type]  # pydantic parses the UUID string
            note=note[:500] if note else None,
        )
        command_result = _send(ctx, event.site, event.edge, command, wait=False)
        extra = {"edge_command": command_result.status, "request_id": command.request_id}
    step = workflow.apply_action(db, event, action, actor, note=note, assignee=assignee, extra=extra)
    db.commit()
    ctx.hub.publish(
        {
            "type": "workflow",
            "id": event.id,
            "site": event.site,
            "camera": event.camera,
            "status": event.status,
        }
    )
    return ActionOutcome(step, command_result)


def _send(ctx: AppContext, site: str, edge: str, command: ControlCommand, *, wait: bool) -> SendResult:
    """Send through the ingest's MQTT client; without ingest the command cannot go out."""
    channel = ctx.control
    if channel is None:
        return SendResult("not_connected", command.request_id, "MQTT ingest is off")
    return channel.send(site, edge, command, wait=wait)


def set_zones(
    ctx: AppContext, db: Session, camera: Camera, zones: list[ZonePolygon], actor: audit.Actor
) -> SendResult:
    """Ask the camera's edge to apply `zones` and wait for its reply; the attempt and outcome are audited.

    The stored zones change only when the edge publishes the zones it applied (retained), so the editor
    always shows what the edge really does."""
    command = ControlCommand(
        request_id=new_request_id(), action="set_zones", camera=camera.camera, zones=zones
    )
    if camera.edge is None:
        result = SendResult("not_connected", command.request_id, "no edge has reported this camera yet")
    else:
        result = _send(ctx, camera.site, camera.edge, command, wait=True)
    audit.record(
        db,
        actor,
        "zones.set",
        target_type="camera",
        target_id=f"{camera.site}/{camera.camera}",
        site=camera.site,
        detail={
            "request_id": command.request_id,
            "result": result.status,
            "message": result.message,
            "zones": [zone.model_dump(mode="json") for zone in zones],
        },
    )
    db.commit()
    return result
