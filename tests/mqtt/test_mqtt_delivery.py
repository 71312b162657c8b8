"""At-least-once delivery end to end: broker outages, a killed edge process, and the Last Will."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from edge_child import event_id
from mqtt_fixtures import Collector, Mosquitto, make_event, schema_errors, site

from edge.mqtt import AlertPublisher, ModelInfo

CHILD = Path(__file__).with_name("edge_child.py")
REPO = Path(__file__).resolve().parents[2]


def start_child(*args: str) -> subprocess.Popen[str]:
    """Start the edge child process; its stderr goes to the test's output on failure."""
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(child: subprocess.Popen[str], prefix: str) -> str:
    """Read the child's stdout until a line starting with `prefix`."""
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(
        f"child ended before printing {prefix}: {child.stderr.read() if child.stderr else ''}"
    )


def first_seen_order(sub: Collector, camera: str) -> list[str]:
    """Event ids of one camera in the order they first arrived: what a deduping consumer keeps."""
    seen: dict[str, None] = {}
    for message in sub.on(f"/cameras/{camera}/events"):
        seen.setdefault(message.json()["event_id"], None)
    return list(seen)


@pytest.mark.slow
def test_broker_outage_every_event_arrives_once_and_in_order_per_camera(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sub = Collector(
        "127.0.0.1", mosquitto.port, ["sitesentry/test-site/cameras/+/events"], persistent=True
    ).start()
    pub = AlertPublisher(mosquitto.config(outbox=tmp_path / "outbox.sqlite3"), site(), ModelInfo("ppe", "1"))
    pub.start()
    assert pub.wait_connected(10)
    sent: dict[str, list[str]] = {"gate": [], "yard": []}
    max_pending = 0
    firing = threading.Event()
    firing.set()

    def fire() -> None:
        nonlocal max_pending
        n = 0
        while firing.is_set():
            camera = ("gate", "yard")[n % 2]
            event = make_event(camera=camera, seq=n, event_id=uuid.uuid4())
            pub.publish_event(event)
            sent[camera].append(str(event.event_id))
            max_pending = max(max_pending, pub.pending)
            n += 1
            time.sleep(0.01)

    firer = threading.Thread(target=fire)
    firer.start()
    time.sleep(0.7)
    mosquitto.stop()  # the broker goes away while violations keep firing...
    time.sleep(2.0)  # ...for "minutes", scaled down
    mosquitto.start()
    time.sleep(0.7)
    firing.clear()
    firer.join()

    assert pub.wait_delivered(30), pub.stats()
    total = len(sent["gate"]) + len(sent["yard"])
    assert max_pending > 20, "the outage should have left events waiting in the outbox"
    assert sub.wait_for(lambda ms: len({m.json()["event_id"] for m in ms}) >= total, 30)
    for camera in ("gate", "yard"):
        assert first_seen_order(sub, camera) == sent[camera]
    assert pub.stats()["reconnects"] >= 1
    pub.stop()
    sub.stop()


@pytest.mark.slow
def test_events_in_the_outbox_survive_sigkill_of_the_edge_process(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    outbox = str(tmp_path / "outbox.sqlite3")
    port = str(mosquitto.port)
    mosquitto.stop()  # the site link is down: events can only go to the outbox
    child = start_child("--port", port, "--outbox", outbox, "--events", "30")
    try:
        assert read_line(child, "WRITTEN") == "WRITTEN 30"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    mosquitto.start()
    sub = Collector("127.0.0.1", mosquitto.port, ["sitesentry/test-site/cameras/+/events"]).start()
    restarted = start_child("--port", port, "--outbox", outbox, "--drain")
    # The 30 STARTs, then an END for each: the events were open when the edge died.
    assert read_line(restarted, "WRITTEN") == "WRITTEN 60"
    assert read_line(restarted, "D") == "DRAINED"
    assert restarted.wait(10) == 0
    assert sub.wait_for(lambda ms: len([m for m in ms if m.json()["type"] == "end"]) >= 30)
    ends = [m.json() for m in sub.messages if m.json()["type"] == "end"]
    assert {e["end_reason"] for e in ends} == {"edge_restarted"}
    assert {e["event_id"] for e in ends} == {str(event_id(n)) for n in range(30)}
    assert first_seen_order(sub, "gate") == [str(event_id(n)) for n in range(30) if n % 2 == 0]
    assert first_seen_order(sub, "yard") == [str(event_id(n)) for n in range(30) if n % 2 == 1]
    sub.stop()


def test_the_last_will_marks_the_edge_offline_when_its_process_dies(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sub = Collector("127.0.0.1", mosquitto.port, ["sitesentry/test-site/edges/+/status"]).start()
    child = start_child("--port", str(mosquitto.port), "--outbox", str(tmp_path / "o.sqlite3"), "--connect")
    try:
        assert read_line(child, "CONNECTED") == "CONNECTED"
        assert sub.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert sub.wait_for(lambda ms: ms[-1].json()["state"] == "offline")
    will = sub.messages[-1]
    assert will.topic == "sitesentry/test-site/edges/edge-1/status"
    assert schema_errors("edge-status", will.payload) == []
    assert (will.json()["at"], will.json()["reason"]) == (None, "connection lost")
    sub.stop()
