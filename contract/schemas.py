"""JSON Schemas of the MQTT payloads, generated from the pydantic models (docs/schemas/*.json)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from contract.evidence import EvidenceChunk
from contract.payloads import (
    AlarmMessage,
    CameraStatusMessage,
    CameraZonesMessage,
    ControlCommand,
    ControlReply,
    EdgeStatusMessage,
    EventMessage,
    HeartbeatMessage,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True, slots=True)
class SchemaSpec:
    """One payload type: its model, where it is published, and whether the edge writes or reads it."""

    model: type[BaseModel]
    topic: str
    retained: bool
    mode: Literal["serialization", "validation"]  # what the edge sends vs what it accepts


SCHEMAS: dict[str, SchemaSpec] = {
    "event": SchemaSpec(EventMessage, "<prefix>/<site>/cameras/<camera>/events", False, "serialization"),
    "camera-status": SchemaSpec(
        CameraStatusMessage, "<prefix>/<site>/cameras/<camera>/status", True, "serialization"
    ),
    "edge-status": SchemaSpec(
        EdgeStatusMessage, "<prefix>/<site>/edges/<edge>/status", True, "serialization"
    ),
    "heartbeat": SchemaSpec(
        HeartbeatMessage, "<prefix>/<site>/edges/<edge>/heartbeat", False, "serialization"
    ),
    "alarm": SchemaSpec(
        AlarmMessage,
        "<prefix>/<site>/alarms/zones/<zone> | <prefix>/<site>/alarms/cameras/<camera>",
        False,
        "serialization",
    ),
    "camera-zones": SchemaSpec(
        CameraZonesMessage, "<prefix>/<site>/cameras/<camera>/zones", True, "serialization"
    ),
    "evidence-chunk": SchemaSpec(
        EvidenceChunk,
        "<prefix>/<site>/edges/<edge>/evidence (JSON header, a newline, then the chunk's bytes)",
        False,
        "serialization",
    ),
    "control-command": SchemaSpec(
        ControlCommand, "<prefix>/<site>/edges/<edge>/control", False, "validation"
    ),
    "control-reply": SchemaSpec(
        ControlReply,
        "MQTT 5 response topic, else <prefix>/<site>/edges/<edge>/control/reply",
        False,
        "serialization",
    ),
}


def schema_of(name: str) -> dict[str, Any]:
    """Return the JSON Schema document of one payload type."""
    spec = SCHEMAS[name]
    body = spec.model.model_json_schema(mode=spec.mode)
    return {"$schema": DRAFT, **body, "x-mqtt-topic": spec.topic, "x-mqtt-retained": spec.retained}


def render(name: str) -> str:
    """Return the schema file text exactly as committed (stable key order, trailing newline)."""
    return json.dumps(schema_of(name), indent=2, ensure_ascii=False) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema to `folder/<name>.json`; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SCHEMAS:
        path = folder / f"{name}.json"
        path.write_text(render(name), encoding="utf-8")
        paths.append(path)
    return paths


def stale_schemas(folder: Path) -> list[str]:
    """Return the names whose file in `folder` is missing or differs from what the models generate."""
    stale = []
    for name in SCHEMAS:
        path = folder / f"{name}.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name):
            stale.append(name)
    return stale
