"""The stale-`online` rule: a retained `online` without a recent heartbeat is stale."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from contract.liveness import liveness
from contract.payloads import EdgeStatusMessage, HeartbeatMessage, OutboxFigures

T0 = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc)


def status(state: str = "online", at: datetime | None = T0) -> EdgeStatusMessage:
    return EdgeStatusMessage(
        schema_version=1,
        site="s1",
        edge="e1",
        state=state,
        at=at,
        version="1",
        heartbeat_s=10,  # type: ignore[arg-type]
    )


def beat(at: datetime) -> HeartbeatMessage:
    return HeartbeatMessage(
        schema_version=1,
        site="s1",
        edge="e1",
        at=at,
        uptime_s=1,
        cameras={},
        queues={},
        outbox=OutboxFigures(pending=0, delivered_total=0, dropped_total=0),
        reconnects=0,
        interval_s=10,
    )


def test_online_is_believed_while_heartbeats_are_recent_and_stale_after_three_missed() -> None:
    assert liveness(status(), beat(T0 + timedelta(seconds=100)), T0 + timedelta(seconds=125)) == "online"
    assert liveness(status(), beat(T0 + timedelta(seconds=100)), T0 + timedelta(seconds=131)) == "stale"


def test_without_a_heartbeat_the_status_time_counts_and_offline_and_missing_are_plain() -> None:
    assert liveness(status(), None, T0 + timedelta(seconds=29)) == "online"
    assert liveness(status(), None, T0 + timedelta(seconds=31)) == "stale"
    assert liveness(status("offline", None), beat(T0), T0) == "offline"
    assert liveness(None, beat(T0), T0) == "unknown"
