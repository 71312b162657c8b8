"""Build MQTT payloads from the edge's records; the models themselves live in `contract.payloads`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from contract.payloads import (
    SCHEMA_VERSION,
    AlarmMessage,
    Box,
    EventMessage,
    Evidence,
    ModelRef,
)
from edge.dataflow import EvidenceRef, Phase, Rule, SafetyEvent


class ModelLike(Protocol):
    """Anything naming a model and its version, such as the detector's ModelInfo."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Name and version of the detector that produced an event (when no detector object is at hand)."""

    name: str
    version: str


def _unit(value: float) -> float:
    # Detector boxes may poke a hair outside the frame; the schema promises 0..1.
    return min(1.0, max(0.0, float(value)))


def _box(xyxy: tuple[float, float, float, float]) -> Box:
    x1, y1, x2, y2 = (_unit(v) for v in xyxy)
    return Box(x1=x1, y1=y1, x2=x2, y2=y2)


def _evidence(ref: EvidenceRef) -> Evidence:
    return Evidence.model_validate(
        {"kind": ref.kind, "path": ref.path, "sha256": ref.sha256, "offset_s": ref.offset_s}
    )


def event_message(
    event: SafetyEvent, *, edge: str, model: ModelLike, emitted_at: datetime, message_id: uuid.UUID
) -> EventMessage:
    """Build the wire message of a SafetyEvent."""
    return EventMessage(
        schema_version=SCHEMA_VERSION,
        message_id=message_id,
        event_id=event.event_id,
        type=event.phase,
        rule=event.rule,
        site=event.site_id,
        edge=edge,
        camera=event.camera_id,
        zone=event.zone,
        track_id=event.track_id,
        started_at=event.started_at,
        ended_at=event.ended_at,
        confidence=_unit(event.peak_confidence),
        person_box=_box(event.boxes[0]) if event.boxes else None,
        evidence_boxes=[_box(b) for b in event.boxes[1:]],
        evidence=[_evidence(ref) for ref in event.evidence],
        model=ModelRef(name=model.name, version=model.version),
        frame_seq=event.frame_seq,
        emitted_at=emitted_at,
        end_reason=(event.end_reason or "cleared") if event.phase is Phase.END else None,
    )


def alarm_message(event: SafetyEvent, *, at: datetime) -> AlarmMessage:
    """Build the alarm command for an event: `on` while it lasts, `off` when it ends."""
    where = f"zone {event.zone} (camera {event.camera_id})" if event.zone else f"camera {event.camera_id}"
    what = {
        Rule.NO_HELMET: "worker without helmet",
        Rule.NO_VEST: "worker without vest",
        Rule.ZONE_ENTRY: "person in danger zone",
    }.get(event.rule, str(event.rule))
    ended = event.phase is Phase.END
    return AlarmMessage(
        schema_version=SCHEMA_VERSION,
        alarm_id=event.event_id,
        action="off" if ended else "on",
        rule=event.rule,
        site=event.site_id,
        camera=event.camera_id,
        zone=event.zone,
        message=f"{'Cleared: ' if ended else ''}{what} at {where}",
        at=at,
    )
