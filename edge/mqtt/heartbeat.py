"""The edge's heartbeat: its figures (cameras and queues from the app, outbox and reconnects of its own)
assembled into one retained message, and the timer that sends it.

Guarantees: QoS 0, retained on `.../edges/<edge>/heartbeat`, only while connected (it is sent at once on
each reconnect by the retained state); every `mqtt.heartbeat_s` otherwise, counted from the last one
however it was sent. Figures that do not validate are ignored with a warning and the last good ones kept;
a failing stats source never stops the timer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from contract.payloads import SCHEMA_VERSION, HeartbeatMessage, HeartbeatStats, OutboxFigures, QueueFigures
from edge.mqtt.link import BrokerLink
from edge.mqtt.metrics import Tally
from edge.mqtt.outbox import Outbox

# The facade's logger: the split into modules leaves operators' log filters as they were.
log = logging.getLogger("edge.mqtt.publisher")


class Heartbeat:
    """Builds and publishes heartbeats; `run` is the timer thread's body."""

    def __init__(
        self,
        *,
        topic: str,
        site: str,
        edge: str,
        interval_s: float,
        clock: Callable[[], datetime],
        outbox: Outbox,
        link: BrokerLink,
        tally: Tally,
        stats_source: Callable[[], Mapping[str, Any]] | None,
        own_queues: Callable[[], dict[str, QueueFigures]],
    ) -> None:
        self._topic = topic
        self._site = site
        self._edge = edge
        self._interval_s = interval_s
        self._clock = clock
        self._outbox = outbox
        self._link = link
        self._tally = tally
        self._stats_source = stats_source
        self._own_queues = own_queues
        self._stats = HeartbeatStats()
        self._started_at = time.monotonic()
        self._last = time.monotonic()

    def restart_clock(self) -> None:
        """Count uptime and the next interval from now (the publisher's start)."""
        self._started_at = self._last = time.monotonic()

    def publish(self, stats: Mapping[str, Any] | HeartbeatStats | None = None) -> None:
        """Publish a heartbeat now with these camera and queue figures (see HeartbeatStats) plus our own."""
        if stats is not None:
            try:
                self._stats = (
                    stats if isinstance(stats, HeartbeatStats) else HeartbeatStats.model_validate(stats)
                )
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in err["loc"])
                self._tally.warn("heartbeat", f"heartbeat figures ignored: {where}: {err['msg']}")
        self._last = time.monotonic()
        message = HeartbeatMessage(
            schema_version=SCHEMA_VERSION,
            site=self._site,
            edge=self._edge,
            at=self._clock(),
            uptime_s=round(time.monotonic() - self._started_at, 3),
            cameras=self._stats.cameras,
            queues={**self._stats.queues, **self._own_queues()},
            outbox=OutboxFigures(
                pending=len(self._outbox),
                delivered_total=self._outbox.delivered_total,
                dropped_total=self._outbox.dropped_total,
            ),
            reconnects=self._tally.get("reconnects"),
            interval_s=self._interval_s,
            detector=self._stats.detector,
        )
        connected, client = self._link.current()
        if connected:
            # Retained, so a consumer that subscribes later can tell at once how old the edge's news is.
            client.publish(self._topic, message.model_dump_json().encode(), qos=0, retain=True)

    def run(self, stopping: threading.Event) -> None:
        """Publish every interval with the stats source's figures until `stopping` is set."""
        interval = self._interval_s
        while not stopping.wait(max(0.05, self._last + interval - time.monotonic())):
            if time.monotonic() - self._last < interval:
                continue  # the app published one itself in the meantime
            stats: Mapping[str, Any] | None = None
            if self._stats_source is not None:
                try:
                    stats = self._stats_source()
                except Exception:
                    log.exception("heartbeat: the stats source failed; publishing the edge's own figures")
            self.publish(stats)
