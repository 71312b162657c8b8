"""Event messages into the outbox, with the journal of open events changed in the same transaction, and
the closing of what a crash left open (see journal.py for the journal's rules).

Guarantees:
- `write` returns once the message and its journal change are committed (never waits for the network).
- When the outbox cannot be written (a full disk) the event is published straight from memory (counted in
  `sitesentry_mqtt_outbox_write_failures_total`; lost only if the edge restarts first) and its journal
  change is kept back and saved as soon as the outbox takes it again (`flush_journal`), so a restart does
  not end the event a second time.
- `close_left_open` runs once per process, before anything new is written.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from contract.payloads import EventMessage
from contract.topics import Topics
from edge.dataflow import Phase, SafetyEvent
from edge.mqtt.journal import KEY_PREFIX as JOURNAL_PREFIX
from edge.mqtt.journal import ClipLookup, clip_lookup, event_of, journal_change, recovery_message
from edge.mqtt.link import BrokerLink
from edge.mqtt.metrics import PublisherMetrics, Tally
from edge.mqtt.outbox import Outbox, OutboxError

# The facade's logger: the split into modules leaves operators' log filters as they were.
log = logging.getLogger("edge.mqtt.publisher")


class EventWriter:
    """Commits event messages and journal changes to the outbox; see the module doc."""

    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        clock: Callable[[], datetime],
        link: BrokerLink,
        *,
        on_added: Callable[[int], None],
        metrics: PublisherMetrics,
        tally: Tally,
    ) -> None:
        self._outbox = outbox
        self._topics = topics
        self._clock = clock
        self._link = link
        self._on_added = on_added
        self._metrics = metrics
        self._tally = tally
        self._recovered = False
        # Journal changes the outbox could not take (full disk), saved as soon as it can; see write.
        self._journal_lock = threading.Lock()
        self._journal_backlog: dict[str, bytes | None] = {}

    def close_left_open(self, clips: ClipLookup | None, alarm_off: Callable[[SafetyEvent], None]) -> int:
        """Close every journal entry (see journal.py), calling `alarm_off` for each event that was open;
        return how many were open. Runs once; later calls return 0."""
        if self._recovered:
            return 0
        self._recovered = True
        lookup = clips or clip_lookup(None)
        closed = 0
        for key, stored in self._outbox.state_items(JOURNAL_PREFIX):
            try:
                message = recovery_message(
                    stored, message_id=uuid.uuid4(), emitted_at=self._clock(), clips=lookup
                )
            except ValidationError:
                log.warning("journal entry %s is unreadable; dropped", key)
                self._outbox.put_state({key: None})
                continue
            self.write(message)
            if message.end_reason == "edge_restarted":  # it was open: its alarm was on
                alarm_off(event_of(message))
                closed += 1
        if closed:
            log.warning("closed %d event(s) left open when the edge last stopped without ending them", closed)
        return closed

    def write(self, message: EventMessage) -> None:
        """Commit an event message and its journal change to the outbox and wake the pump."""
        topic = self._topics.events(message.camera)
        payload = message.model_dump_json().encode()
        change = journal_change(message)
        with self._journal_lock:
            try:
                row_id = self._outbox.add(
                    topic,
                    payload,
                    qos=1,
                    kind=f"event:{message.type}",
                    key=message.camera,
                    droppable=message.type == Phase.UPDATE,
                    state=change,
                )
            except OutboxError as exc:
                # Else a restart would find the event open and end it a second time.
                self._journal_backlog.update(change)
                failed: OutboxError | None = exc
            else:
                for key in change:
                    self._journal_backlog.pop(key, None)
                failed = None
        if failed is not None:
            self._publish_unbuffered(topic, payload, message, failed)
            return
        self._metrics.written.labels(str(message.type)).inc()
        self._on_added(row_id)

    def flush_journal(self) -> None:
        """Save journal changes a full disk held back; they stay queued while it still refuses."""
        with self._journal_lock:
            if not self._journal_backlog:
                return
            try:
                self._outbox.put_state(self._journal_backlog)
            except OutboxError:
                return
            self._journal_backlog.clear()

    def _publish_unbuffered(
        self, topic: str, payload: bytes, message: EventMessage, exc: OutboxError
    ) -> None:
        self._metrics.unbuffered.inc()
        self._tally.count("outbox_write_failures")
        self._tally.error(
            "unbuffered",
            f"{exc}; event {message.event_id} is sent without the outbox and is lost if the edge restarts "
            "first",
        )
        _, client = self._link.current()
        client.publish(topic, payload, qos=1)  # paho keeps it until acknowledged, in memory only
