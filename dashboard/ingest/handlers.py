"""One handler per message kind, in two steps: `prepare` parses and checks the payload (and writes files),
`store` writes a batch of prepared messages to the database in one transaction and, once it committed,
tells live pages.

Neither raises for bad input: a malformed, unknown-version, oversized or misaddressed payload is rejected
by `prepare` before any transaction, logged (rate-limited) and counted by kind and reason, so it never
fails a batch. Only storage failures raise, so the subscriber can leave the messages unacknowledged and
have the broker deliver them again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from contract.evidence import CHUNK_BYTES, EvidenceChunk, decode_chunk
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
from dashboard.ingest.evidence import AssemblyResult, ChunkAssembler
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
class Prepared:
    """A message that passed its checks: its kind and what its handler's write step takes."""

    kind: TopicKind
    content: Any


#: What a write step returns: the result, and what to do once the transaction committed (or None).
Written = tuple[str, Callable[[], None] | None]


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
    """Routes a message by topic kind to its handler: checks first, then writes a batch in one transaction.

    Over 250 lines because it holds a check and a write for each of the nine topic kinds, a few lines
    each, routed through the two tables built in __init__.
    """

    def __init__(self, ctx: AppContext, on_reply: Callable[[ControlReply], None] | None = None) -> None:
        self.ctx = ctx
        self.assembler = ChunkAssembler(ctx.settings.scratch_dir, ctx.settings.evidence_dir)
        self.on_reply = on_reply
        self._warn = RateLimitedLog(log)
        self._checks: dict[TopicKind, Callable[[ParsedTopic, bytes], Any]] = {
            TopicKind.EVENTS: self._check_event,
            TopicKind.CAMERA_STATUS: self._check_camera_status,
            TopicKind.EDGE_STATUS: self._check_edge_status,
            TopicKind.HEARTBEAT: self._check_heartbeat,
            TopicKind.SNAPSHOT: self._check_snapshot,
            TopicKind.ZONES: self._check_zones,
            TopicKind.EVIDENCE: self._check_evidence,
            TopicKind.CONTROL_REPLY: self._check_control_reply,
            TopicKind.ALARM: self._check_alarm,
        }
        self._writes: dict[TopicKind, Callable[[Session, Any], Written]] = {
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
        """Handle one message alone; bad input is refused and counted, storage errors raise."""
        prepared = self.prepare(topic, payload)
        if isinstance(prepared, Outcome):
            return prepared
        return self.store([prepared])[0]

    def prepare(self, topic: str, payload: bytes) -> Prepared | Outcome:
        """Check one message outside any transaction: a Prepared to store, or the counted Outcome of a
        message refused or not ours to store."""
        parsed = parse_topic(self.ctx.settings.mqtt.prefix, topic)
        if parsed is None:
            return self._count(Outcome("unknown", "ignored"))
        kind = parsed.kind
        check = self._checks.get(kind)
        if check is None:  # control commands (ours and other consoles'): not ours to store
            return self._count(Outcome(kind.value, "ignored"))
        if len(payload) > MAX_BYTES[kind]:
            return self._reject(kind.value, topic, Rejected("oversized", f"{len(payload)} bytes"))
        try:
            return Prepared(kind, check(parsed, payload))
        except Rejected as exc:
            return self._reject(kind.value, topic, exc)

    def store(self, items: Sequence[Prepared]) -> list[Outcome]:
        """Write `items` in their order in one transaction; after the commit, notify and count each.

        Raises (and nothing of the batch is kept) when storage fails."""
        with self.ctx.db.session() as db:
            written = self._write(db, items)
        outcomes = []
        for item, (result, after) in zip(items, written, strict=True):
            if after is not None:
                try:
                    after()
                except Exception:  # stored and committed: a failing notification must not undo that
                    log.exception("notifying about a stored %s message failed", item.kind.value)
            outcomes.append(self._count(Outcome(item.kind.value, result)))
        return outcomes

    def _write(self, db: Session, items: Sequence[Prepared]) -> list[Written]:
        """Run the write step of each item; consecutive events are stored together (one query per table)."""
        written: list[Written] = []
        run: list[EventMessage] = []
        for item in items:
            if item.kind is TopicKind.EVENTS:
                run.append(item.content)
                continue
            written.extend(self._events(db, run))
            run = []
            written.append(self._writes[item.kind](db, item.content))
        written.extend(self._events(db, run))
        return written

    def _count(self, outcome: Outcome) -> Outcome:
        self.ctx.metrics.messages.labels(outcome.kind, outcome.result).inc()
        return outcome

    def _reject(self, kind: str, topic: str, exc: Rejected) -> Outcome:
        self.ctx.metrics.rejected.labels(kind, exc.reason).inc()
        self._warn.warning(
            f"{kind}:{exc.reason}", "rejected %s message on %s (%s): %s", kind, topic, exc.reason, exc
        )
        return self._count(Outcome(kind, "rejected", exc.reason))

    def _publish(self, item: dict[str, Any]) -> Callable[[], None]:
        """Return the notification of live pages to send once the transaction committed."""
        return lambda: self.ctx.hub.publish(item)

    # --- checks: (topic, payload) -> what the write step takes; raise Rejected -----------------------

    def _check_event(self, parsed: ParsedTopic, payload: bytes) -> EventMessage:
        message = parse_json(payload, EventMessage)
        _same_place(parsed, message.site, camera=message.camera)
        return message

    def _check_camera_status(self, parsed: ParsedTopic, payload: bytes) -> CameraStatusMessage:
        message = parse_json(payload, CameraStatusMessage)
        _same_place(parsed, message.site, camera=message.camera)
        return message

    def _check_edge_status(self, parsed: ParsedTopic, payload: bytes) -> EdgeStatusMessage:
        message = parse_json(payload, EdgeStatusMessage)
        _same_place(parsed, message.site, edge=message.edge)
        return message

    def _check_heartbeat(self, parsed: ParsedTopic, payload: bytes) -> HeartbeatMessage:
        message = parse_json(payload, HeartbeatMessage)
        _same_place(parsed, message.site, edge=message.edge)
        return message

    def _check_snapshot(self, parsed: ParsedTopic, payload: bytes) -> tuple[str, str, str]:
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
        return parsed.site, parsed.camera, relative

    def _check_zones(self, parsed: ParsedTopic, payload: bytes) -> CameraZonesMessage:
        message = parse_json(payload, CameraZonesMessage)
        _same_place(parsed, message.site, camera=message.camera)
        return message

    def _check_evidence(self, parsed: ParsedTopic, payload: bytes) -> tuple[EvidenceChunk, AssemblyResult]:
        """Decode a chunk and add it to its file (on disk, before any transaction: a batch that is written
        again after a failure then only repeats the row, not the reassembly)."""
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
        return header, result

    def _check_control_reply(self, parsed: ParsedTopic, payload: bytes) -> ControlReply:
        message = parse_json(payload, ControlReply)
        _same_place(parsed, message.site, edge=message.edge)
        return message

    def _check_alarm(self, parsed: ParsedTopic, payload: bytes) -> AlarmMessage:
        message = parse_json(payload, AlarmMessage)
        _same_place(parsed, message.site)
        return message

    # --- writes: (session, checked content) -> (result, after the commit); never commit ------------

    def _events(self, db: Session, messages: list[EventMessage]) -> list[Written]:
        if not messages:
            return []
        written: list[Written] = []
        for message, event in zip(messages, store.store_events(db, messages), strict=True):
            if event is None:
                written.append(("duplicate", None))
                continue
            written.append(
                (
                    "stored",
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
                    ),
                )
            )
        return written

    def _camera_status(self, db: Session, message: CameraStatusMessage) -> Written:
        row = store.store_camera_status(db, message)
        if row is None:
            return "stale", None
        return "stored", self._publish(
            {"type": "camera", "site": row.site, "camera": row.camera, "state": row.state}
        )

    def _edge_status(self, db: Session, message: EdgeStatusMessage) -> Written:
        row = store.store_edge_status(db, message)
        if row is None:
            return "stale", None
        return "stored", self._publish(
            {"type": "edge", "site": row.site, "edge": row.edge, "state": row.state}
        )

    def _heartbeat(self, db: Session, message: HeartbeatMessage) -> Written:
        row = store.store_heartbeat(db, message)
        if row is None:
            return "stale", None
        return "stored", self._publish({"type": "heartbeat", "site": row.site, "edge": row.edge})

    def _snapshot(self, db: Session, content: tuple[str, str, str]) -> Written:
        site, camera, relative = content
        store.store_snapshot(db, site, camera, relative)
        return "stored", self._publish({"type": "snapshot", "site": site, "camera": camera})

    def _zones(self, db: Session, message: CameraZonesMessage) -> Written:
        row = store.store_zones(db, message)
        if row is None:
            return "stale", None
        return "stored", self._publish({"type": "zones", "site": row.site, "camera": row.camera})

    def _evidence(self, db: Session, content: tuple[EvidenceChunk, AssemblyResult]) -> Written:
        header, result = content
        if result.result == "partial":
            return "partial", None
        assert result.relative is not None
        store.store_evidence_file(db, header, result.relative)
        notify = self._publish(
            {"type": "evidence", "site": header.site, "camera": header.camera, "path": header.path}
        )
        return ("stored" if result.result == "complete" else "duplicate"), notify

    def _control_reply(self, db: Session, message: ControlReply) -> Written:
        store.store_control_reply(db, message)
        on_reply = self.on_reply
        return "stored", (None if on_reply is None else lambda: on_reply(message))

    def _alarm(self, db: Session, message: AlarmMessage) -> Written:
        # Alarms are not stored (the event is); live pages show the siren state.
        item = message.model_dump(mode="json")
        item["type"] = "alarm"
        return "ignored", self._publish(item)
