"""Prometheus counters of the ingest, on the app's own registry (no global state)."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    """Messages handled per kind and result, rejections per kind and reason, the broker connection."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.messages = Counter(
            "sitesentry_dashboard_messages_total",
            "MQTT messages handled, by kind and result (stored, duplicate, rejected, ignored, error).",
            ["kind", "result"],
            registry=registry,
        )
        self.rejected = Counter(
            "sitesentry_dashboard_rejected_total",
            "MQTT messages rejected, by kind and reason (malformed, unknown_version, oversized, ...).",
            ["kind", "reason"],
            registry=registry,
        )
        self.connected = Gauge(
            "sitesentry_dashboard_mqtt_connected", "1 while connected to the broker.", registry=registry
        )
        self.evidence_files = Counter(
            "sitesentry_dashboard_evidence_files_total",
            "Evidence files reassembled, by result (stored, sha_mismatch, duplicate).",
            ["result"],
            registry=registry,
        )

    def rejected_count(self, kind: str, reason: str) -> float:
        """Return how many messages of `kind` were rejected for `reason` (tests and the health page)."""
        return self.rejected.labels(kind, reason)._value.get()

    def message_count(self, kind: str, result: str) -> float:
        """Return how many messages of `kind` ended with `result`."""
        return self.messages.labels(kind, result)._value.get()


class RateLimitedLog:
    """Logs a warning per key at most once per `every_s`, with the number suppressed in between: rejected
    messages can be provoked from outside and must not flood the log."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0) -> None:
        self._log = logger
        self._every = every_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        """Log `message` unless `key` was logged within the interval (then count it)."""
        now = time.monotonic()
        if now - self._last.get(key, -self._every) < self._every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        suffix = f" ({skipped} more like it suppressed)" if skipped else ""
        self._log.warning(message + suffix, *args)
