"""The publisher's figures: its Prometheus metrics, the plain counters `AlertPublisher.stats()` reports, and
its rate-limited log lines.

Guarantees: metric names, help texts and labels are those the dashboards and docs/mqtt.md name; with no
registry the metrics exist but are registered nowhere (several publishers per process in tests and the
benchmark). `Tally` is thread-safe; an error or warning of one key is logged at most once per 10 s, an
error with how many like it were not logged in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter

WARN_EVERY_S = 10.0


class PublisherMetrics:
    """The publisher's Prometheus metrics; left unregistered when no registry is given."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.connected = Gauge(
            "sitesentry_mqtt_connected", "1 while the broker connection is up.", registry=r
        )
        self.outbox_pending = Gauge(
            "sitesentry_mqtt_outbox_pending", "Alert messages waiting in the outbox.", registry=r
        )
        self.written = MetricCounter(
            "sitesentry_mqtt_events_written", "Event messages written to the outbox.", ["phase"], registry=r
        )
        self.delivered = MetricCounter(
            "sitesentry_mqtt_messages_delivered", "Outbox messages acknowledged by the broker.", registry=r
        )
        self.refused = MetricCounter(
            "sitesentry_mqtt_messages_refused",
            "Outbox messages the broker refused in its PUBACK.",
            registry=r,
        )
        self.dropped = MetricCounter(
            "sitesentry_mqtt_outbox_dropped",
            "Messages dropped because the outbox was full.",
            ["kind"],
            registry=r,
        )
        self.unbuffered = MetricCounter(
            "sitesentry_mqtt_outbox_write_failures",
            "Events that could not be written to the outbox.",
            registry=r,
        )
        self.reconnects = MetricCounter(
            "sitesentry_mqtt_reconnects", "Connections to the broker after the first one.", registry=r
        )
        self.alarms = MetricCounter(
            "sitesentry_mqtt_alarms", "Alarm commands by outcome.", ["result"], registry=r
        )
        self.snapshots = MetricCounter(
            "sitesentry_mqtt_snapshots",
            "Snapshots sent, or replaced by a newer one before sending.",
            ["result"],
            registry=r,
        )
        self.control = MetricCounter(
            "sitesentry_mqtt_control_commands", "Control messages by outcome.", ["result"], registry=r
        )


class Tally:
    """Named counters for `stats()` and the heartbeat, and error/warning lines limited per key."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._error_counts: Counter[str] = Counter()  # errors not logged yet, by key (see error)
        self._last_error_log: dict[str, float] = {}
        self._last_warning: dict[str, float] = {}

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to a counter."""
        with self._lock:
            self._counts[name] += n

    def get(self, name: str) -> int:
        """Return one counter (0 if never counted)."""
        return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """Return a copy of every counter."""
        with self._lock:
            return dict(self._counts)

    def error(self, key: str, message: str, *, exc_info: bool = False) -> None:
        """Log an error at most once per interval per key, with how many were not logged in between."""
        now = time.monotonic()
        with self._lock:
            self._error_counts[key] += 1
            if now - self._last_error_log.get(key, -WARN_EVERY_S) < WARN_EVERY_S:
                return
            self._last_error_log[key] = now
            repeats = self._error_counts.pop(key) - 1
        more = f" ({repeats} more like it since the last report)" if repeats else ""
        self._log.error("%s%s", message, more, exc_info=exc_info)

    def warn(self, key: str, message: str) -> None:
        """Log a warning at most once per interval per key."""
        now = time.monotonic()
        if now - self._last_warning.get(key, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._last_warning[key] = now
            self._log.warning(message)
