"""Which evidence each event carries over its phases: the snapshot and clip named at its start ride on every
later phase, a clip that finishes late is announced, and one that failed is retracted, without a closed
event ever reopening."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from uuid import UUID

from edge.dataflow import EvidenceRef, Phase, SafetyEvent

#: Events whose evidence references are remembered for their later phases (oldest forgotten first).
EVIDENCE_REFS_KEPT = 5000


class EvidenceLedger:
    """Evidence references per event, and the last END of each, for the phases and updates that follow.

    Thread-safe: the inference thread records phases, the clip writer announces finished and failed clips.
    """

    def __init__(self, kept: int = EVIDENCE_REFS_KEPT) -> None:
        self._kept = kept
        self._lock = threading.Lock()
        self._refs: OrderedDict[UUID, tuple[EvidenceRef, ...]] = OrderedDict()
        self._ended: OrderedDict[UUID, SafetyEvent] = OrderedDict()  # for clips that finish after the end

    def carry(self, event: SafetyEvent) -> SafetyEvent:
        """Return the event with the evidence named at its start (remembering an END for late clips)."""
        event = self._remember(event)
        if event.phase is Phase.END:
            with self._lock:
                self._ended[event.event_id] = event
                while len(self._ended) > self._kept:
                    self._ended.popitem(last=False)
        return event

    def with_clip(self, event: SafetyEvent, clip: EvidenceRef) -> SafetyEvent:
        """The message announcing a finished clip: an UPDATE, or the END repeated if the event has ended,
        so a consumer that upserts by event id never sees a closed event reopen."""
        with self._lock:
            known = self._refs.get(event.event_id, event.evidence)
            ended = self._ended.get(event.event_id)
        refs = tuple(r for r in known if r.kind != "clip") + (clip,)
        latest = replace(ended, evidence=refs) if ended is not None else replace(event, phase=Phase.UPDATE)
        return self._remember(replace(latest, evidence=refs))

    def without_clip(self, event: SafetyEvent, relpath: str) -> SafetyEvent:
        """The message retracting a clip that could not be written (full disk, encoder): an UPDATE, or the
        END repeated, whose evidence no longer names it."""
        with self._lock:
            known = self._refs.get(event.event_id, event.evidence)
            ended = self._ended.get(event.event_id)
            refs = tuple(r for r in known if not (r.kind == "clip" and r.path == relpath))
            # Later phases carry the evidence remembered here: never the retracted clip again.
            self._refs[event.event_id] = refs
        latest = ended if ended is not None else replace(event, phase=Phase.UPDATE)
        return replace(latest, evidence=refs)

    def _remember(self, event: SafetyEvent) -> SafetyEvent:
        """Keep an event's evidence references, or give it those kept (later phases name none)."""
        with self._lock:
            if event.evidence:
                self._refs[event.event_id] = event.evidence
                self._refs.move_to_end(event.event_id)
                while len(self._refs) > self._kept:
                    self._refs.popitem(last=False)
                return event
            refs = self._refs.get(event.event_id, ())
        return replace(event, evidence=refs) if refs else event
