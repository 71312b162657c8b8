"""The journal of open events: each event the edge announced and has not closed, kept in the outbox's
database and changed in the same transaction as the message that changes it.

An event stays in the journal while it is open, and after its END while a clip it names is not written
yet. On the next start after a crash, each entry is closed with one more message: an END with
`end_reason: "edge_restarted"` for an open event, or a repeated END for a closed one; either way its
`evidence` names only files that exist, which retracts a clip that was announced but never written.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from contract.payloads import EventMessage
from edge.dataflow import Phase, Rule, SafetyEvent

KEY_PREFIX = "event:"

#: A clip's path (relative to the evidence folder) -> its sha256 if the file exists, else None.
ClipLookup = Callable[[str], str | None]


def journal_key(event_id: uuid.UUID) -> str:
    """Return the outbox state key of an event's journal entry."""
    return f"{KEY_PREFIX}{event_id}"


def journal_change(message: EventMessage) -> dict[str, bytes | None]:
    """Return the journal change a message makes: its entry while open or owed a clip, else removed."""
    owes_clip = any(e.kind == "clip" and e.sha256 is None for e in message.evidence)
    keep = message.type != "end" or owes_clip
    return {journal_key(message.event_id): message.model_dump_json().encode() if keep else None}


def clip_lookup(folder: Path | None) -> ClipLookup:
    """Return a lookup of written clips in the evidence folder; without a folder no clip counts as written."""

    def lookup(relpath: str) -> str | None:
        if folder is None:
            return None
        path = Path(folder) / relpath
        try:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return None
        return digest.hexdigest()

    return lookup


def recovery_message(
    stored: bytes, *, message_id: uuid.UUID, emitted_at: datetime, clips: ClipLookup
) -> EventMessage:
    """Close a journal entry left by a crash: an END (edge_restarted) for an open event, or a repeated END
    for an ended one, naming only evidence that exists (a clip never written is dropped: retracted)."""
    last = EventMessage.model_validate_json(stored)
    evidence = []
    for ref in last.evidence:
        if ref.kind == "clip" and ref.sha256 is None:
            sha256 = clips(ref.path)
            if sha256 is None:
                continue
            ref = ref.model_copy(update={"sha256": sha256})
        evidence.append(ref.model_dump())
    data = last.model_dump() | {"message_id": message_id, "emitted_at": emitted_at, "evidence": evidence}
    if last.type != "end":
        # The edge cannot know when it died: the last message it wrote is the last time it knew the event
        # open, so that is when the event is said to end.
        ended_at = max(last.emitted_at, last.started_at)
        data |= {"type": "end", "ended_at": ended_at, "end_reason": "edge_restarted"}
    return EventMessage.model_validate(data)


def event_of(message: EventMessage) -> SafetyEvent:
    """Return the SafetyEvent a wire message describes (boxes left out), to switch its alarm off."""
    return SafetyEvent(
        event_id=message.event_id,
        phase=Phase(message.type),
        site_id=message.site,
        camera_id=message.camera,
        rule=Rule(message.rule),
        zone=message.zone,
        track_id=message.track_id,
        started_at=message.started_at,
        ended_at=message.ended_at,
        peak_confidence=message.confidence,
        boxes=(),
        frame_seq=message.frame_seq,
        end_reason=message.end_reason,
    )
