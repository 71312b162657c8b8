"""The outbox pump: the one thread that hands stored messages to paho and settles the broker's PUBACKs.

Owns: the send window (at most `inflight_window` unacknowledged, kept under the broker's receive maximum),
the read cursor into the outbox, the rows in flight, and the acknowledgements paho reported.

Guarantees:
- Rows go to paho in outbox (write) order; a row leaves the outbox only when the broker acknowledged it
  (a refusal in the PUBACK is logged and the row removed as well: resending would be refused again).
- After a protocol switch (a new paho client, which holds nothing of the old one's) every stored row is
  sent again from the start; after a reconnect paho itself resends what was unacknowledged.
- On each accepted connection the retained state is sent again (`resync`) before more rows.
- Every 5 s it lets the outbox settle a full disk's deferred deletes and runs `housekeeping`.
- An exception in a round is logged (rate-limited) and the pump goes round again: delivery never ends.
Also the thread that performs a requested protocol switch (paho cannot stop its own loop).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from edge.mqtt.connection import ReportingClient
from edge.mqtt.link import BrokerLink
from edge.mqtt.metrics import PublisherMetrics, Tally
from edge.mqtt.outbox import Outbox, OutboxError, OutboxMessage
from edge.mqtt.retained import SnapshotSlots

# The facade's logger: the split into modules leaves operators' log filters as they were.
log = logging.getLogger("edge.mqtt.publisher")

_OK = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)  # NO_CONN: paho keeps a QoS 1 message and sends it later


class OutboxPump:
    """Moves outbox rows to paho and settles acknowledgements; `run` is the thread's body."""

    def __init__(
        self,
        outbox: Outbox,
        link: BrokerLink,
        snapshots: SnapshotSlots,
        *,
        window: int,
        resync: Callable[[ReportingClient], None],
        housekeeping: Callable[[], None],
        metrics: PublisherMetrics,
        tally: Tally,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._cond = link.cond
        self._snapshots = snapshots
        self._max_window = window
        self._resync = resync
        self._housekeeping = housekeeping
        self._metrics = metrics
        self._tally = tally
        # Guarded by cond.
        self._stop = False
        self._acks: deque[tuple[int, ReasonCode | None]] = deque()
        self._last_id = outbox.last_id()
        self._synced_connects = 0
        # Owned by the pump thread.
        self._generation = 0
        self._in_flight: dict[int, OutboxMessage] = {}
        self._cursor = 0
        self._last_settle = time.monotonic()

    # -- called from other threads ---------------------------------------------------------------------------

    def added(self, row_id: int) -> None:
        """Wake the pump for a row just committed to the outbox."""
        with self._cond:
            self._last_id = max(self._last_id, row_id)
            self._cond.notify_all()

    def acknowledged(self, mid: int, reason: ReasonCode | None) -> None:
        """Record a PUBACK (paho's thread, with its message lock held: only record it, the pump settles)."""
        with self._cond:
            self._acks.append((mid, reason))
            self._cond.notify_all()

    def stop(self) -> None:
        """Ask the thread to settle what was acknowledged and end."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()

    # -- the thread ------------------------------------------------------------------------------------------

    def _window(self) -> int:
        window = self._max_window
        receive_maximum = self._link.receive_maximum
        if receive_maximum:
            # Leave room under the broker's limit for status, alarm and reply messages.
            window = max(1, min(window, receive_maximum - 4))
        return window

    def _has_work(self) -> bool:
        link = self._link
        if self._stop or self._acks or link.switch_requested or link.connects != self._synced_connects:
            return True
        if link.generation != self._generation:
            return True
        if not link.connected:
            return False
        outbox_ready = self._last_id > self._cursor and len(self._in_flight) < self._window()
        return outbox_ready or self._snapshots.has_due()

    def run(self) -> None:
        """Pump until stopped."""
        link = self._link
        while True:
            with self._cond:
                while not self._has_work():
                    self._cond.wait(1.0)
                acks = list(self._acks)
                self._acks.clear()
                stop, switch, connected = self._stop, link.switch_requested, link.connected
                generation, client = link.generation, link.client
                resync = link.connects != self._synced_connects
                self._synced_connects = link.connects
                window, last_id = self._window(), self._last_id
            try:
                if generation != self._generation:
                    self._forget_in_flight(generation)
                self._settle(acks)
                if stop:
                    return
                if switch:
                    link.switch()
                    continue
                if connected:
                    if resync:
                        self._resync(client)
                    self._send_outbox(client, window, last_id)
                    self._snapshots.send(client)
                if time.monotonic() - self._last_settle >= 5.0:
                    self._last_settle = time.monotonic()
                    self._outbox.settle_disk()  # deletes a full disk held back, the reserve file
                    self._housekeeping()
            except Exception as exc:
                # A bug or a full disk here must not end delivery for good: log it and go round again.
                self._tally.error("pump", f"MQTT publisher: error in the outbox pump: {exc!r}", exc_info=True)
                time.sleep(0.5)

    def _settle(self, acks: list[tuple[int, ReasonCode | None]]) -> None:
        delivered: list[int] = []
        for mid, reason in acks:
            if self._snapshots.acked(mid):
                continue
            row = self._in_flight.pop(mid, None)
            if row is None:
                continue
            if reason is not None and reason.is_failure:
                self._metrics.refused.inc()
                self._tally.count("refused")
                log.error(
                    "MQTT broker refused %s on %s (%s); removed from the outbox (check the broker's ACL)",
                    row.kind,
                    row.topic,
                    str(reason).lower(),
                )
            delivered.append(row.id)
        if delivered:
            try:
                removed = self._outbox.mark_delivered(delivered)
            except OutboxError as exc:
                # Kept aside by the outbox, never sent again by this process; deleted once there is room.
                self._tally.error("settle", str(exc))
                removed = 0
            self._metrics.delivered.inc(removed)
            with self._cond:
                self._cond.notify_all()

    def _send_outbox(self, client: ReportingClient, window: int, last_id: int) -> None:
        free = window - len(self._in_flight)
        if free <= 0 or last_id <= self._cursor:
            return
        rows = self._outbox.pending(self._cursor, free)
        for row in rows:
            info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
            if info.rc not in _OK:
                self._tally.warn(
                    "publish", f"paho did not take outbox message {row.id}: {mqtt.error_string(info.rc)}"
                )
                return
            self._in_flight[info.mid] = row
            self._cursor = row.id
        if len(rows) < free:
            # Everything up to last_id was committed before we read it, so nothing below it is left unseen.
            self._cursor = max(self._cursor, last_id)

    def _forget_in_flight(self, generation: int) -> None:
        # A new paho client holds nothing of the old one's: resend every stored message from the start.
        self._in_flight.clear()
        self._snapshots.forget()
        self._cursor = 0
        self._generation = generation
