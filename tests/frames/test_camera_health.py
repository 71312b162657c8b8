"""The camera status state machine, its listeners and the Prometheus view of it."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.frames.health import CameraHealth, CameraStatus, camera_metrics


class Recorder:
    """A real listener that keeps every status change it hears."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, CameraStatus, str | None]] = []

    def __call__(self, camera_id: str, status: CameraStatus, detail: str | None) -> None:
        self.calls.append((camera_id, status, detail))


def test_status_changes_reach_listeners_once_with_redacted_detail() -> None:
    heard = Recorder()
    health = CameraHealth("gate", listeners=[heard])
    assert health.status == CameraStatus.STARTING
    assert health.set_status(CameraStatus.ONLINE, "RTSP stream rtsp://admin:hunter2@127.0.0.1:8554/s")
    assert not health.set_status(CameraStatus.ONLINE, "again")
    health.set_status(CameraStatus.RECONNECTING)
    assert heard.calls == [
        ("gate", CameraStatus.ONLINE, "RTSP stream rtsp://admin:***@127.0.0.1:8554/s"),
        ("gate", CameraStatus.RECONNECTING, None),
    ]


def test_failures_are_counted_and_redacted_until_reset() -> None:
    health = CameraHealth("gate")
    assert health.record_failure("cannot open rtsp://u:pw123@127.0.0.1:1/x") == 1
    assert health.record_failure("still down, password=pw123") == 2
    assert health.last_error is not None and "pw123" not in health.last_error
    health.reset_attempts()
    assert health.attempts == 0


def test_illegal_transitions_are_refused_and_final_states_stay_final() -> None:
    health = CameraHealth("gate")
    health.set_status(CameraStatus.ENDED)
    with pytest.raises(ValueError, match="ended -> online"):
        health.set_status(CameraStatus.ONLINE)
    health.set_status(CameraStatus.DISABLED)
    with pytest.raises(ValueError):
        health.set_status(CameraStatus.RECONNECTING)


def test_a_failing_listener_does_not_stop_the_others() -> None:
    def broken(_camera: str, _status: CameraStatus, _detail: str | None) -> None:
        raise RuntimeError("subscriber bug")

    heard = Recorder()
    health = CameraHealth("gate", listeners=[broken, heard])
    health.set_status(CameraStatus.ONLINE)
    assert heard.calls == [("gate", CameraStatus.ONLINE, None)]
    assert health.status == CameraStatus.ONLINE


def test_metrics_show_every_camera_of_a_registry_with_its_counters_and_status() -> None:
    registry = CollectorRegistry()
    gate, crane = CameraHealth("gate"), CameraHealth("crane")
    camera_metrics(registry).track(gate)
    camera_metrics(registry).track(crane)  # the same collector: a registry takes each name once
    for _ in range(3):
        gate.record_read()
    gate.record_dropped(2)
    gate.record_skipped()
    crane.record_reconnect()
    gate.set_status(CameraStatus.ONLINE)
    crane.set_status(CameraStatus.OFFLINE)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("sitesentry_camera_frames_read_total", camera="gate") == 3
    assert value("sitesentry_camera_frames_dropped_total", camera="gate") == 2
    assert value("sitesentry_camera_frames_skipped_total", camera="gate") == 1
    assert value("sitesentry_camera_reconnects_total", camera="crane") == 1
    assert value("sitesentry_camera_status", camera="gate", status="online") == 1
    assert value("sitesentry_camera_status", camera="gate", status="offline") == 0
    assert value("sitesentry_camera_status", camera="crane", status="offline") == 1
    assert value("sitesentry_camera_last_frame_timestamp_seconds", camera="gate") is not None
    assert b"sitesentry_camera_frames_read_total" in generate_latest(registry)


def test_separate_registries_do_not_share_cameras() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    gate = CameraHealth("gate")  # tracked only while something (its reader) keeps it
    camera_metrics(first).track(gate)
    camera_metrics(second)
    assert first.get_sample_value("sitesentry_camera_frames_read_total", {"camera": "gate"}) == 0
    assert second.get_sample_value("sitesentry_camera_frames_read_total", {"camera": "gate"}) is None
