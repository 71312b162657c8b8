"""Whether an edge's retained `online` can be believed: the rule dashboards and tools apply.

The retained status says `online` until the edge says otherwise or the broker publishes its Last Will. When
the edge and the broker die together the Will is never sent, and a broker restored from its persistence
file keeps saying `online`. Heartbeats settle it: an edge that is up sends one every `heartbeat_s`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final, Literal

from contract.payloads import EdgeStatusMessage, HeartbeatMessage

#: Heartbeats an edge may miss before its `online` is stale (one late, one lost, and some slack).
MISSED_HEARTBEATS: Final = 3
#: Interval assumed when neither the status nor a heartbeat names one (the config default).
DEFAULT_HEARTBEAT_S: Final = 30.0

Liveness = Literal["online", "stale", "offline", "unknown"]


def stale_after_s(status: EdgeStatusMessage | None, heartbeat: HeartbeatMessage | None) -> float:
    """Return the seconds of silence after which an edge saying `online` is stale: MISSED_HEARTBEATS of the
    interval its newest heartbeat (else its status, else the default) promised."""
    interval = (
        (heartbeat.interval_s if heartbeat is not None else None)
        or (status.heartbeat_s if status is not None else None)
        or DEFAULT_HEARTBEAT_S
    )
    return MISSED_HEARTBEATS * interval


def last_seen(status: EdgeStatusMessage | None, heartbeat: HeartbeatMessage | None) -> datetime | None:
    """Return the newest sign of life: the heartbeat's `at`, or the status's when it is newer (None: none)."""
    seen = [
        t
        for t in (status.at if status is not None else None, heartbeat.at if heartbeat is not None else None)
        if t is not None
    ]
    return max(seen) if seen else None


def liveness(status: EdgeStatusMessage | None, heartbeat: HeartbeatMessage | None, now: datetime) -> Liveness:
    """Judge an edge from its newest retained status and newest heartbeat at `now` (timezone-aware).

    `offline` when the status says so; `stale` when it says `online` but the newest sign of life
    (`last_seen`) is older than `stale_after_s`; `online` otherwise; `unknown` without a status.
    """
    if status is None:
        return "unknown"
    if status.state == "offline":
        return "offline"
    seen = last_seen(status, heartbeat)
    if seen is None:
        return "stale"
    return "stale" if now - seen > timedelta(seconds=stale_after_s(status, heartbeat)) else "online"
