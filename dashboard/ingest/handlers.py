"""One handler per message kind: parse and check the payload, write it to storage, tell live pages.

`Dispatcher.handle` never raises for bad input: a malformed, unknown-version, oversized or misaddressed
payload is rejected, logged (rate-limited) and counted by kind and reason. Only storage failures raise,
so the subscriber can leave the message unacknowledged and have the broker deliver it again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from contract.evidence import CHUNK_BYTES, decode_chunk
from contract.payloads import (
    SCHEMA_VERSION,
    AlarmMessage,
    CameraStatusMessage,
    CameraZonesMessage,
    ControlReply,
    EdgeStatusMessage,
    EventMessage,
    HeartbeatMessage,
)
from contract.topics import ParsedTopic, TopicKind, parse_topic
from dashboard.context import AppContext
from dashboard.ingest.evidence import ChunkAssembler
from dashboard.ingest.metrics import RateLimitedLog
from dashboard.storage import ingest_store as store

log = logging.getLogger(__name__)

#: Largest payload accepted per kind; anything bigger is refused before it is parsed.
MAX_BYTES: Final[dict[TopicKind, int]] = {
    TopicKind.EVENTS: 64 * 1024,
    TopicKind.CAMERA_STATUS: 16 * 1024,
    TopicKind.EDGE_STATUS: 16 * 1024,
    TopicKind.HEARTBEAT: 256 * 1024,
    TopicKind.SNAPSHOT: 4 * 1024 * 1024,
    TopicKind.ZONES: 64 * 1024,
    TopicKind.ALARM: 16 * 1024,
    TopicKind.CONTROL: 16 * 1024,
    TopicKind.CONTROL_REPLY: 16 * 1024,
    TopicKind.EVIDENCE: CHUNK_BYTES + 4096,
}
JPEG_MAGIC: Final = b"\xff\xd8\xff"

M = TypeVar("M", bound=BaseModel)


class Rejected(Exception):
    """A payload refused for `reason` (counted under that label)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one message: stored, duplicate, ignored, or rejected (with the reason)."""

    kind: str
    result: str
    reason: str | None = None


def parse_json(payload: bytes, model: type[M]) -> M:
    """Validate a JSON payload: unknown schema versions and invalid fields are told apart."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise Rejected("malformed", f"not JSON: {str(exc)[:100]}") from None
    if not isinstance(data, dict):
        raise Rejected("malformed", "not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise Rejected("unknown_version", f"schema_version {data.get('schema_version')!r}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Rejected("malformed", f"{where}: {first['msg']}") from None


def _same_place(parsed: ParsedTopic, site: str, camera: str | None = None, edge: str | None = None) -> None:
    """Refuse a message whose ids disagree with its topic (an edge writing under another's name)."""
    if site != parsed.site or (parsed.camera and camera and camera != parsed.camera):
        raise Rejected("topic_mismatch", f"payload names {site}/{camera or edge}, topic {parsed}")
    if parsed.edge and edge and edge != parsed.edge:
        raise Rejected("topic_mismatch", f"payload names edge {edge}, topic edge {parsed.edge}")


class Dispatcher:
    """Routes a message by topic kind to its handler; each handler commits its own transaction."""

    def __init__(self, ctx: AppContext, on_reply: Callable[[ControlReply], None] | None = None) -> None:
        self.ctx = ctx
        self.assembler = ChunkAssembler(ctx.settings.scratch_dir, ctx.settings.evidence_dir)
        self.on_reply = on_reply
        self._warn = RateLimitedLog(log)
        self._handlers: dict[TopicKind, Callable[[Session, ParsedTopic, bytes], str]] = {
            TopicKind.EVENTS: self._event,
            TopicKind.CAMERA_STATUS: self._camera_status,
            TopicKind.EDGE_STATUS: self._edge_status,
            TopicKind.HEARTBEAT: self._heartbeat,
            TopicKind.SNAPSHOT: self._snapshot,
            TopicKind.ZONES: self._zones,
            TopicKind.EVIDENCE: self._evidence,
            TopicKind.CONTROL_REPLY: self._control_reply,
            TopicKind.ALARM: self._alarm,
        }

    def handle(self, topic: str, payload: bytes) -> Outcome:
        """Handle one message; bad input is counted and refused, storage errors propagate."""
        parsed = parse_topic(self.ctx.settings.mqtt.prefix, topic)
        if parsed is None:
            return self._count(Outcome("unknown", "ignored"))
        kind = parsed.kind
        handler = self._handlers.get(kind)
        if handler is None:  # control commands (ours and other consoles'): not ours to store
            return self._count(Outcome(kind.value, "ignored"))
        if len(payload) > MAX_BYTES[kind]:
            return self._reject(kind.value, topic, Rejected("oversized", f"{len(payload)} bytes"))
        try:
            with self.ctx.db.session() as db:
                result = handler(db, parsed, payload)
        except Rejected as exc:
            return self._reject(kind.value, topic, exc)
        return self._count(Outcome(kind.value, result))

    def _count(self, outcome: Outcome) -> Outcome:
        self.ctx.metrics.messages.labels(outcome.kind, outcome.result).inc()
        return outcome

    def _reject(self, kind: str, topic: str, exc: Rejected) -> Outcome:
        self.ctx.metrics.rejected.labels(kind, exc.reason).inc()
        self._warn.warning(
            f"{kind}:{exc.reason}", "rejected %s message on %s (%s): %s", kind, topic, exc.reason, exc
        )
        return self._count(Outcome(kind, "rejected", exc.reason))

    def _publish(self, item: dict[str, Any]) -> None:
        self.ctx.hub.publish(item)

    # --- handlers: (session, topic, payload) -> result ---------------------------------------------

    def _event(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, EventMessage)
        _same_place(parsed, message.site, camera=message.camera)
        event = store.store_event(db, message)
        if event is None:
            return "duplicate"
        db.commit()
        self._publish(
            {
                "type": "event",
                "id": event.id,
                "event_id": event.event_id,
                "phase": message.type.value,
                "site": event.site,
                "camera": event.camera,
                "zone": event.zone,
                "rule": event.rule,
                "status": event.status,
                "started_at": event.started_at.isoformat(),
            }
        )
        return "stored"

    def _camera_status(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, CameraStatusMessage)
        _same_place(parsed, message.site, camera=message.camera)
        row = store.store_camera_status(db, message)
        if row is None:
            return "stale"
        db.commit()
        self._publish({"type": "camera", "site": row.site, "camera": row.camera, "state": row.state})
        return "stored"

    def _edge_status(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, EdgeStatusMessage)
        _same_place(parsed, message.site, edge=message.edge)
        row = store.store_edge_status(db, message)
        if row is None:
            return "stale"
        db.commit()
        self._publish({"type": "edge", "site": row.site, "edge": row.edge, "state": row.state})
        return "stored"

    def _heartbeat(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, HeartbeatMessage)
        _same_place(parsed, message.site, edge=message.edge)
        row = store.store_heartbeat(db, message)
        if row is None:
            return "stale"
        db.commit()
        self._publish({"type": "heartbeat", "site": row.site, "edge": row.edge})
        return "stored"

    def _snapshot(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        if not payload.startswith(JPEG_MAGIC):
            raise Rejected("malformed", "snapshot is not a JPEG")
        assert parsed.camera is not None
        # Edge ids start with a letter or digit, so `_snapshots` can never be an edge's folder.
        relative = f"{parsed.site}/_snapshots/{parsed.camera}.jpg"
        target = self.ctx.settings.evidence_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".jpg.tmp")
        tmp.write_bytes(payload)
        os.replace(tmp, target)
        store.store_snapshot(db, parsed.site, parsed.camera, relative)
        db.commit()
        self._publish({"type": "snapshot", "site": parsed.site, "camera": parsed.camera})
        return "stored"

    def _zones(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, CameraZonesMessage)
        _same_place(parsed, message.site, camera=message.camera)
        row = store.store_zones(db, message)
        if row is None:
            return "stale"
        db.commit()
        self._publish({"type": "zones", "site": row.site, "camera": row.camera})
        return "stored"

    def _evidence(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        try:
            header, data = decode_chunk(payload)
        except ValueError as exc:
            reason = "unknown_version" if "schema_version" in str(exc) else "malformed"
            raise Rejected(reason, str(exc)) from None
        _same_place(parsed, header.site, edge=header.edge)
        result = self.assembler.add(header, data)
        if result.result != "partial":
            self.ctx.metrics.evidence_files.labels(result.result).inc()
        if result.result == "sha_mismatch":
            raise Rejected(
                "sha_mismatch", f"{header.path}: the chunks do not add up to sha256 {header.sha256}"
            )
        if result.result == "partial":
            return "partial"
        assert result.relative is not None
        store.store_evidence_file(db, header, result.relative)
        db.commit()
        self._publish({"type": "evidence", "site": header.site, "camera": header.camera, "path": header.path})
        return "stored" if result.result == "complete" else "duplicate"

    def _control_reply(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, ControlReply)
        _same_place(parsed, message.site, edge=message.edge)
        store.store_control_reply(db, message)
        db.commit()
        if self.on_reply is not None:
            self.on_reply(message)
        return "stored"

    def _alarm(self, db: Session, parsed: ParsedTopic, payload: bytes) -> str:
        message = parse_json(payload, AlarmMessage)
        _same_place(parsed, message.site)
        # Alarms are not stored (the event is); live pages show the siren state.
        item = message.model_dump(mode="json")
        item["type"] = "alarm"
        self._publish(item)
        return "ignored"
