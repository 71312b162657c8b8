"""Alarm state per target (a zone or a camera): which alarms are open there, and the retained message that
says so. Alarms are state, not events: a siren that missed messages during an outage gets the current
state when the edge reconnects, so it always ends in the state the edge holds.

The newest message of each target is kept in the outbox's database, so after a crash the edge still knows
which sirens it switched on and switches them off (their events are closed on start, see journal.py).

An `on` state is published with an MQTT 5 message expiry (`mqtt.alarm_ttl_s`) and sent again every half
of it while it holds: a siren that subscribes after this edge died, lost power or its network, gets no
stale `on` from the broker once that time has passed (an `off` never expires).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from pydantic import ValidationError

from contract.payloads import AlarmMessage
from edge.dataflow import Phase, SafetyEvent
from edge.mqtt.outbox import Outbox, OutboxError
from edge.mqtt.payloads import alarm_message

log = logging.getLogger(__name__)

KEY_PREFIX = "alarm:"

#: Publishes one retained alarm message on a topic, expiring after the given seconds (None: never); called
#: with the board's lock held, so it must not block (paho's publish only queues).
Send = Callable[[str, bytes, "int | None"], None]


class AlarmBoard:
    """The edge's alarm state: open alarm ids per target topic and the newest message of each."""

    def __init__(
        self,
        outbox: Outbox,
        clock: Callable[[], datetime],
        ttl_s: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._open: dict[str, dict[uuid.UUID, None]] = {}
        self._latest: dict[str, bytes] = {}
        self._sent_at: dict[str, float] = {}  # `on` targets: when their state last went to the broker
        self._load()

    def _load(self) -> None:
        """Take over the targets a previous run left: none of their alarms is open any more."""
        for key, payload in self._outbox.state_items(KEY_PREFIX):
            topic = key[len(KEY_PREFIX) :]
            try:
                last = AlarmMessage.model_validate_json(payload)
            except ValidationError:
                log.warning("alarm state of %s is unreadable; ignored", topic)
                continue
            if last.state == "off" or (last.state is None and last.action == "off"):
                self._latest[topic] = payload
                continue
            # Its events are closed on start; switch it off now in case one of them is not in the journal.
            message = last.model_copy(
                update={
                    "action": "off",
                    "state": "off",
                    "open_alarms": [],
                    "at": self._clock(),
                    "message": f"Cleared (edge restarted): {last.message.removeprefix('Cleared: ')}",
                }
            )
            self._latest[topic] = message.model_dump_json().encode()
        if self._latest:
            self._persist(dict(self._latest))

    def change(self, topic: str, event: SafetyEvent, send: Send | None) -> AlarmMessage:
        """Record an event's start (alarm on) or end (off) at its target; send the target's new state."""
        with self._lock:
            open_ids = self._open.setdefault(topic, {})
            if event.phase is Phase.END:
                open_ids.pop(event.event_id, None)
            else:
                open_ids[event.event_id] = None
            base = alarm_message(event, at=self._clock())
            message = base.model_copy(
                update={"state": "on" if open_ids else "off", "open_alarms": list(open_ids)}
            )
            payload = message.model_dump_json().encode()
            self._latest[topic] = payload
            if not open_ids:
                del self._open[topic]
                self._sent_at.pop(topic, None)
            if send is not None:
                self._send(send, topic)
            self._persist({topic: payload})  # under the lock, so the newest state is the one stored
        return message

    def send_all(self, send: Send) -> int:
        """Send the current state of every target (after a reconnect); return how many."""
        with self._lock:
            for topic in self._latest:
                self._send(send, topic)
            return len(self._latest)

    def refresh(self, send: Send) -> int:
        """Send again each `on` state sent half its TTL ago or earlier, so the broker's copy outlives its
        expiry only while this edge is alive and connected; return how many."""
        if self._ttl_s is None:
            return 0
        with self._lock:
            now = self._monotonic()
            due = [t for t in self._open if now - self._sent_at.get(t, -math.inf) >= self._ttl_s / 2]
            for topic in due:
                self._send(send, topic)
            return len(due)

    def _send(self, send: Send, topic: str) -> None:
        on = topic in self._open
        send(topic, self._latest[topic], self._ttl_s if on else None)
        if on:
            self._sent_at[topic] = self._monotonic()

    def state(self, topic: str) -> AlarmMessage | None:
        """Return the newest message of a target, if any."""
        with self._lock:
            payload = self._latest.get(topic)
        return None if payload is None else AlarmMessage.model_validate_json(payload)

    def _persist(self, changes: dict[str, bytes]) -> None:
        try:
            self._outbox.put_state({KEY_PREFIX + topic: payload for topic, payload in changes.items()})
        except OutboxError as exc:
            # Only a crash during the outage would miss it: the state still goes out from memory.
            log.debug("alarm state not saved: %s", exc)
