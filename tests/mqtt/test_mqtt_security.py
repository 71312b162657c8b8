"""Credentials and TLS: what works, what is refused with one clear line, and that secrets never leak."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mqtt_fixtures import (
    EDGE_PASSWORD,
    EDGE_USER,
    Certs,
    Collector,
    Mosquitto,
    control_properties,
    make_event,
    site,
)
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from edge.config.models import TlsConfig
from edge.dataflow import Rule
from edge.mqtt import AlertPublisher, ControlCommand, ControlResult, ModelInfo
from edge.mqtt.connection import MqttConfigError, MqttConnectError, open_client

MODEL = ModelInfo("ppe", "1")


def wait_error(pub: AlertPublisher, timeout: float = 10.0) -> str:
    """Wait for the publisher to report why it cannot connect."""
    deadline = time.monotonic() + timeout
    while pub.last_error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pub.last_error is not None
    return pub.last_error


def test_tls_with_password_delivers_events(mosquitto: Mosquitto, certs: Certs, tmp_path: Path) -> None:
    sub = Collector("127.0.0.1", mosquitto.port, ["sitesentry/+/cameras/+/events"]).start()
    pub = AlertPublisher(mosquitto.config(tls=True, outbox=tmp_path / "o.sqlite3"), site(), MODEL)
    pub.start()
    pub.publish_event(make_event())
    assert pub.wait_delivered(10), pub.last_error
    assert sub.wait_for(lambda ms: len(ms) == 1)
    pub.stop()
    sub.stop()


def test_tls_with_a_client_certificate_connects(mosquitto: Mosquitto, certs: Certs, tmp_path: Path) -> None:
    tls = TlsConfig(ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key)
    pub = AlertPublisher(
        mosquitto.config(tls=True, outbox=tmp_path / "o.sqlite3").model_copy(update={"tls": tls}),
        site(),
        MODEL,
    )
    pub.start()
    assert pub.wait_connected(10), pub.last_error
    pub.stop()


def test_a_wrong_password_is_refused_with_one_clear_log_line(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = mosquitto.config(password="not-the-password", outbox=tmp_path / "o.sqlite3")
    pub = AlertPublisher(config, site(), MODEL)
    pub.start()
    expected = (
        f"MQTT broker 127.0.0.1:{mosquitto.port} refused the connection: bad user name or password "
        "(check mqtt.username and mqtt.password)"
    )
    assert wait_error(pub) == expected
    time.sleep(1.8)  # a few reconnection attempts with backoff
    pub.stop(timeout=1)
    assert mosquitto.log().count("not authorised") >= 2, "the publisher should keep retrying"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [expected]
    assert "not-the-password" not in caplog.text


def test_an_unknown_ca_is_refused_with_a_clear_error(
    mosquitto: Mosquitto, certs: Certs, tmp_path: Path
) -> None:
    config = mosquitto.config(tls=True, outbox=tmp_path / "o.sqlite3")
    pub = AlertPublisher(config.model_copy(update={"tls": TlsConfig(ca_file=certs.other_ca)}), site(), MODEL)
    pub.start()
    error = wait_error(pub)
    pub.stop(timeout=1)
    assert error.startswith(f"MQTT broker 127.0.0.1:{mosquitto.tls_port}: its TLS certificate is not trusted")
    assert error.endswith("check mqtt.tls.ca_file")


def test_plain_mqtt_to_a_tls_port_and_tls_to_a_plain_port_say_so(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with pytest.raises(MqttConnectError, match="is this port a TLS listener"):
        open_client(mosquitto.config(tls=True).model_copy(update={"port": mosquitto.port}), "t1", timeout=3)
    with pytest.raises(MqttConnectError, match="did not answer.*a TLS listener"):
        open_client(mosquitto.config().model_copy(update={"port": mosquitto.tls_port}), "t2", timeout=2)


def test_unreadable_tls_files_are_config_errors_naming_the_setting(tmp_path: Path, certs: Certs) -> None:
    from edge.config.models import MqttConfig

    missing = MqttConfig(
        host="h", tls=TlsConfig(ca_file=tmp_path / "nope.pem"), outbox=tmp_path / "o.sqlite3"
    )
    with pytest.raises(MqttConfigError, match=r"mqtt.tls.ca_file .*nope.pem: cannot load the CA bundle"):
        AlertPublisher(missing, site(), MODEL)
    not_a_key = TlsConfig(ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.ca)
    with pytest.raises(MqttConfigError, match="mqtt.tls.cert_file"):
        AlertPublisher(missing.model_copy(update={"tls": not_a_key}), site(), MODEL)


def test_credentials_never_reach_logs_payloads_or_cli_output(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # paho's packet log included
    sub = Collector("127.0.0.1", mosquitto.port, ["sitesentry/#"]).start()
    pub = AlertPublisher(mosquitto.config(outbox=tmp_path / "o.sqlite3"), site(), MODEL)
    pub.start()
    pub.publish_camera_status("gate", "offline", "rtsp://cam:s3cr3t-rtsp@10.0.0.9/h264: 401 Unauthorized")
    pub.publish_event(make_event())
    assert pub.wait_delivered(10)
    assert sub.wait_for(lambda ms: any(m.topic.endswith("/gate/status") for m in ms))
    pub.stop()
    sub.stop()
    assert EDGE_PASSWORD not in caplog.text and "s3cr3t-rtsp" not in caplog.text
    assert all(b"s3cr3t-rtsp" not in m.payload for m in sub.messages)

    import typer

    from edge.mqtt.cli import register

    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(
        app,
        ["alerts", "tail", "--port", str(mosquitto.port), "--username", EDGE_USER, "--seconds", "1"],
        env={"SITESENTRY_MQTT_PASSWORD": "wrong-" + EDGE_PASSWORD},
    )
    assert result.exit_code == 1
    assert "refused the connection: bad user name or password" in result.output
    assert EDGE_PASSWORD not in result.output


def documented_acl() -> str:
    """The Mosquitto ACL shown in docs/mqtt.md, for the test site."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "mqtt.md").read_text(encoding="utf-8")
    block = text.split("<!-- acl -->", 1)[1].split("```conf\n", 1)[1].split("```", 1)[0]
    return block.replace("kt-tower-b", "test-site")


def publish_as(port: int, user: str, password: str, topic: str, payload: bytes) -> str:
    """Publish once with MQTT 5 as `user`; return the broker's PUBACK reason."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=mqtt.MQTTv5)
    client.username_pw_set(user, password)
    reasons: list[str] = []
    acked = threading.Event()

    def on_publish(c: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        reasons.append(str(reason))
        acked.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, properties=control_properties("ops-console", None, None))
    assert acked.wait(10)
    client.disconnect()
    client.loop_stop()
    return reasons[0]


def test_the_documented_acl_keeps_control_to_ops_and_lets_the_edge_publish(tmp_path: Path) -> None:
    users = {"edge-1": "pw-edge-1", "ops": "pw-ops", "siren": "pw-siren"}
    broker = Mosquitto(tmp_path / "acl-broker", acl=documented_acl(), users=users).start()
    received: list[ControlCommand] = []

    def on_control(command: ControlCommand) -> ControlResult:
        received.append(command)
        return ControlResult(True, "done")

    ops = Collector("127.0.0.1", broker.port, ["sitesentry/#"], username="ops", password="pw-ops")
    siren = Collector("127.0.0.1", broker.port, ["sitesentry/#"], username="siren", password="pw-siren")
    config = broker.config(
        username="edge-1",
        password="pw-edge-1",
        outbox=tmp_path / "o.sqlite3",
        control_clients=["ops-console"],
    )
    pub = AlertPublisher(config, site(), MODEL, on_control=on_control)
    try:
        ops.start()
        siren.start()
        pub.start()
        assert pub.wait_connected(10), pub.last_error
        pub.publish_event(make_event())
        pub.publish_alarm(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
        pub.heartbeat()
        assert pub.wait_delivered(10)
        wanted = ("/events", "/alarms/zones/crane", "/heartbeat", "/edges/edge-1/status")
        assert ops.wait_for(lambda ms: all(any(m.topic.endswith(w) for m in ms) for w in wanted))
        assert siren.wait_for(lambda ms: len(ms) >= 1)
        assert [m.topic for m in siren.messages] == ["sitesentry/test-site/alarms/zones/crane"]

        control = "sitesentry/test-site/edges/edge-1/control"
        command = json.dumps({"request_id": "r-1", "action": "disable", "rule": "no_vest"}).encode()
        assert publish_as(broker.port, "edge-1", "pw-edge-1", control, command) == "Not authorized"
        assert publish_as(broker.port, "siren", "pw-siren", control, command) == "Not authorized"
        assert publish_as(
            broker.port, "ops", "pw-ops", "sitesentry/test-site/cameras/gate/events", b"{}"
        ) == ("Not authorized")
        own_reply = f"{control}/reply/ops-console"
        props = control_properties("ops-console", own_reply, None)
        ops.client.publish(control, command, qos=1, properties=props).wait_for_publish(5)
        assert ops.wait_for(lambda ms: any(m.topic == own_reply for m in ms))
        assert [c.request_id for c in received] == ["r-1"]
        assert pub.stats().get("refused", 0) == 0
    finally:
        pub.stop()
        ops.stop()
        siren.stop()
        broker.stop()
