"""`sitesentry alerts tail`, `sitesentry mqtt schemas` and `sitesentry broker` (the embedded broker)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import typer
from mqtt_fixtures import OPS_PASSWORD, OPS_USER, Mosquitto, make_event, site, wait_port
from rich.console import Console
from typer.testing import CliRunner

from edge.dataflow import Phase, Rule
from edge.mqtt import AlertPublisher, ModelInfo
from edge.mqtt.broker import EmbeddedBroker, EmbeddedBrokerError, free_port
from edge.mqtt.cli import register
from edge.mqtt.tail import tail

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def app() -> typer.Typer:
    """A `sitesentry`-like app with only the MQTT commands registered."""
    application = typer.Typer()
    register(application)
    return application


def test_tail_prints_one_line_per_event_status_and_alarm(mosquitto: Mosquitto, tmp_path: Path) -> None:
    pub = AlertPublisher(mosquitto.config(outbox=tmp_path / "o.sqlite3"), site(), ModelInfo("ppe", "1"))
    pub.start()
    assert pub.wait_connected(10)
    subscribed = threading.Event()
    out = io.StringIO()
    reader_config = mosquitto.config(username=OPS_USER, password=OPS_PASSWORD)
    reader = threading.Thread(
        target=tail,
        args=(reader_config, "test-site", Console(file=out, width=200, color_system=None)),
        kwargs={"count": 6, "seconds": 20, "connected": subscribed.set},
    )
    reader.start()
    assert subscribed.wait(10)
    pub.publish_event(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    pub.publish_event(make_event(phase=Phase.END))
    pub.publish_camera_status("gate", "offline", "no frames for 10 s")
    pub.publish_alarm(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    reader.join(20)
    pub.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) == 6, lines  # the retained `online` and heartbeat plus the four messages above
    text = out.getvalue()
    assert "EDGE   test-site/edge-1 online" in text
    assert "START  zone_entry test-site/gate zone=crane track=7 conf=0.87" in text
    assert "END    no_helmet test-site/gate track=7 conf=0.87 4s" in text
    assert "CAMERA test-site/gate offline (no frames for 10 s)" in text
    assert "ALARM ON zones/crane: person in danger zone at zone crane (camera gate)" in text


def test_tail_json_lines_and_the_retained_state(
    mosquitto: Mosquitto, tmp_path: Path, app: typer.Typer
) -> None:
    pub = AlertPublisher(mosquitto.config(outbox=tmp_path / "o.sqlite3"), site(), ModelInfo("ppe", "1"))
    pub.start()
    pub.publish_snapshot("gate", b"\xff\xd8" + bytes(2046))
    pub.publish_camera_status("gate", "online")
    pub.publish_event(make_event())
    assert pub.wait_delivered(10)
    pub.stop()  # leaves `offline`, the status, the snapshot and the last heartbeat retained
    args = ["alerts", "tail", "--port", str(mosquitto.port), "--username", OPS_USER, "--json", "--count", "4"]
    result = CliRunner().invoke(app, args, env={"SITESENTRY_MQTT_PASSWORD": OPS_PASSWORD})
    assert result.exit_code == 0, result.output
    records = sorted((json.loads(line) for line in result.output.splitlines()), key=lambda r: r["kind"])
    assert [(r["kind"], r["retained"]) for r in records] == [
        ("camera_status", True),
        ("edge_status", True),
        ("heartbeat", True),
        ("snapshot", True),
    ]
    assert records[3]["payload"] == {"jpeg_bytes": 2048}
    assert records[1]["payload"]["state"] == "offline"


def test_tail_with_a_site_config_and_bad_input(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["alerts", "tail", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 1 and "missing.yaml: cannot read" in result.output
    port = free_port()
    result = CliRunner().invoke(app, ["alerts", "tail", "--port", str(port), "--seconds", "1"])
    assert result.exit_code == 1
    assert f"MQTT broker 127.0.0.1:{port} is not reachable: connection refused" in result.output
    result = CliRunner().invoke(app, ["alerts", "tail", "--prefix", "a/#", "--seconds", "1"])
    assert result.exit_code == 1 and "prefix" in result.output


def test_mqtt_schemas_writes_and_checks(app: typer.Typer, tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["mqtt", "schemas", "--out", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(app, ["mqtt", "schemas", "--check", "--out", str(tmp_path)]).exit_code == 0
    (tmp_path / "event.json").write_text("{}")
    result = CliRunner().invoke(app, ["mqtt", "schemas", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "out of date: event" in result.output


def test_embedded_broker_restarts_on_its_port_and_refuses_a_taken_one() -> None:
    first = EmbeddedBroker("127.0.0.1", 0).start()
    port = first.port
    with pytest.raises(
        EmbeddedBrokerError, match=f"cannot start the embedded MQTT broker on 127.0.0.1:{port}"
    ):
        EmbeddedBroker("127.0.0.1", port).start()
    first.stop()
    again = EmbeddedBroker("127.0.0.1", port).start()
    assert wait_port("127.0.0.1", port)
    again.stop()


def test_embedded_broker_sends_retained_messages_once_and_only_for_the_clients_own_filters() -> None:
    import time

    import paho.mqtt.client as mqtt
    from mqtt_fixtures import Collector
    from paho.mqtt.enums import CallbackAPIVersion

    with EmbeddedBroker("127.0.0.1", 0) as broker:
        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        publisher.connect("127.0.0.1", broker.port)
        publisher.loop_start()
        for topic in ("site/gate/status", "site/crane/status", "site/edge/status"):
            publisher.publish(topic, b"online", qos=1, retain=True).wait_for_publish(5)
        publisher.disconnect()
        publisher.loop_stop()

        def collect(topics: list[str]) -> Collector:
            return Collector("127.0.0.1", broker.port, topics, protocol="3.1.1", username=None).start()

        everything = collect(["site/#"])
        gate_only = collect(["site/gate/status"])
        late = collect(["site/#"])
        assert late.wait_for(lambda ms: len(ms) >= 3) and gate_only.wait_for(lambda ms: len(ms) >= 1)
        time.sleep(0.5)  # room for duplicates to arrive, if any were sent
        for client in (everything, gate_only, late):
            client.stop()
        assert sorted(m.topic for m in late.messages) == sorted(m.topic for m in everything.messages)
        assert sorted(m.topic for m in late.messages) == [
            "site/crane/status",
            "site/edge/status",
            "site/gate/status",
        ]
        assert [m.topic for m in gate_only.messages] == ["site/gate/status"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_broker_command_serves_until_interrupted(signum: signal.Signals) -> None:
    port = free_port()
    code = "import typer; from edge.mqtt.cli import register; app = typer.Typer(); register(app); app()"
    process = subprocess.Popen(
        [sys.executable, "-c", code, "broker", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"listening on 127.0.0.1:{port}" in banner, process.stderr.read() if process.stderr else ""
        assert wait_port("127.0.0.1", port)
    finally:
        process.send_signal(signum)
        process.communicate(timeout=20)
    assert process.returncode == 0


def test_tail_waits_for_a_broker_that_is_not_up_yet_then_prints_what_it_sends(tmp_path: Path) -> None:
    from mqtt_fixtures import MOSQUITTO

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    broker = Mosquitto(tmp_path / "mosquitto")  # its port is chosen; it is not started yet
    args = ["--port", str(broker.port), "--username", OPS_USER, "--count", "1", "--timeout", "90"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "alerts", "tail", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "SITESENTRY_MQTT_PASSWORD": OPS_PASSWORD, "COLUMNS": "200"},
    )
    pub = None
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # it says so and keeps trying, instead of exiting at once
        assert line.startswith(f"waiting for broker 127.0.0.1:{broker.port}… (MQTT broker 127.0.0.1:"), line
        assert "connection refused" in line and proc.poll() is None
        broker.start()
        pub = AlertPublisher(broker.config(outbox=tmp_path / "o.sqlite3"), site(), ModelInfo("ppe", "1"))
        pub.start()
        out, err = proc.communicate(timeout=60)
    finally:
        if pub is not None:
            pub.stop()
        if proc.poll() is None:
            proc.kill()
        broker.stop()
    assert proc.returncode == 0, err
    assert "EDGE   test-site/edge-1 online" in out


def test_tail_gives_up_waiting_after_its_timeout(app: typer.Typer) -> None:
    port = free_port()
    result = CliRunner().invoke(app, ["alerts", "tail", "--port", str(port), "--timeout", "2"])
    assert result.exit_code == 1
    assert f"waiting for broker 127.0.0.1:{port}…" in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"error: MQTT broker 127.0.0.1:{port} is not reachable: connection refused (is the broker "
        "running?); gave up after waiting 2 s"
    )
