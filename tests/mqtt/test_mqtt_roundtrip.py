"""Every message type through a real broker (Mosquitto and the embedded amqtt), checked against its schema."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mqtt_fixtures import OPS_PASSWORD, OPS_USER, Collector, Mosquitto, make_event, schema_errors, site

from edge.alarms import AlarmHook, AlarmHookConfig
from edge.config.models import MqttConfig
from edge.dataflow import Phase, Rule
from edge.mqtt import AlertPublisher, ModelInfo
from edge.mqtt.broker import EmbeddedBroker, ensure_broker, free_port

MODEL = ModelInfo("ppe-yolo", "2025.06")


@dataclass
class Broker:
    """A running broker and how to reach it."""

    config: MqttConfig
    protocol: str
    username: str | None
    password: str | None

    def collector(self, topics: list[str]) -> Collector:
        return Collector(
            "127.0.0.1",
            self.config.port,
            topics,
            protocol=self.protocol,
            username=self.username,
            password=self.password,
        ).start()


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """Mosquitto (MQTT 5, password) or the embedded broker started the way `sitesentry demo` does."""
    outbox = tmp_path / "outbox.sqlite3"
    if request.param == "mosquitto":
        mosquitto: Mosquitto = request.getfixturevalue("mosquitto")
        yield Broker(mosquitto.config(outbox=outbox), "5", OPS_USER, OPS_PASSWORD)
        return
    config, embedded = ensure_broker(MqttConfig(host=None, port=free_port(), outbox=outbox))
    assert embedded is not None and config.host == "127.0.0.1"
    yield Broker(config, "3.1.1", None, None)
    embedded.stop()


def test_every_message_type_round_trips_and_matches_its_schema(broker: Broker) -> None:
    sub = broker.collector(["sitesentry/test-site/#"])
    pub = AlertPublisher(broker.config, site(), MODEL)
    pub.start()
    assert pub.wait_connected(10), pub.last_error
    event_id = uuid.uuid4()
    for seq, phase in enumerate((Phase.START, Phase.UPDATE, Phase.END)):
        pub.publish_event(
            make_event(event_id=event_id, phase=phase, seq=seq, zone="crane", rule=Rule.ZONE_ENTRY)
        )
    pub.publish_camera_status("gate", "reconnecting", "rtsp://admin:hunter2@10.0.0.12/stream1: timeout")
    pub.publish_snapshot("gate", b"\xff\xd8 annotated jpeg \xff\xd9")
    pub.publish_alarm(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    pub.publish_alarm(make_event(camera="gate", phase=Phase.END))
    assert pub.wait_delivered(10)
    pub.heartbeat(
        {
            "cameras": {"gate": {"fps": 4.9, "latency_ms_p50": 40, "latency_ms_p95": 75}},
            "queues": {"frames/gate": {"depth": 1, "capacity": 2}},
            "detector": {
                "model": "ppe-yolo 0.4.0",
                "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            },
        }
    )

    kinds = ["/cameras/gate/events"] * 3 + [
        "/cameras/gate/status",
        "/cameras/gate/snapshot",
        "/alarms/zones/crane",
        "/alarms/cameras/gate",
        "/edges/edge-1/heartbeat",
        "/edges/edge-1/status",
    ]
    assert sub.wait_for(
        lambda ms: all(len([m for m in ms if m.topic.endswith(k)]) >= kinds.count(k) for k in kinds)
    )

    events = [m.json() for m in sub.on("/cameras/gate/events")]
    assert [e["type"] for e in events] == ["start", "update", "end"]
    assert {e["event_id"] for e in events} == {str(event_id)}
    assert len({e["message_id"] for e in events}) == 3
    schema_of = {"events": "event", "status": "camera-status", "heartbeat": "heartbeat"}
    for message in sub.messages:
        if message.topic.endswith("/snapshot"):
            assert message.payload == b"\xff\xd8 annotated jpeg \xff\xd9"
            continue
        name = "alarm" if "/alarms/" in message.topic else schema_of.get(message.topic.rsplit("/", 1)[1], "")
        name = "edge-status" if "/edges/" in message.topic and message.topic.endswith("/status") else name
        assert schema_errors(name, message.payload) == [], message.topic
    [status] = [m.json() for m in sub.on("/cameras/gate/status")]
    assert status["state"] == "reconnecting" and "hunter2" not in status["detail"]
    assert [m.json()["action"] for m in sub.on("/alarms/zones/crane")] == ["on"]
    assert [m.json()["action"] for m in sub.on("/alarms/cameras/gate")] == ["off"]
    # The first heartbeat went out on connect, before the app's figures.
    beats = lambda ms: [m.json() for m in ms if m.topic.endswith("/heartbeat")]  # noqa: E731
    assert sub.wait_for(lambda ms: any("gate" in beat["cameras"] for beat in beats(ms)))
    beat = [m.json() for m in sub.on("/heartbeat")][-1]
    assert beat["cameras"]["gate"]["latency_ms_p95"] == 75 and beat["outbox"]["delivered_total"] >= 3
    assert beat["detector"]["providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert sub.on("/edges/edge-1/status")[-1].json()["state"] == "online"

    # A dashboard or siren starting later gets the retained state at once, but not past events.
    late = broker.collector(["sitesentry/test-site/#"])
    assert late.wait_for(lambda ms: len(ms) >= 6)
    assert sorted(m.topic.rsplit("/", 2)[-2] + "/" + m.topic.rsplit("/", 1)[1] for m in late.messages) == [
        "cameras/gate",
        "edge-1/heartbeat",
        "edge-1/status",
        "gate/snapshot",
        "gate/status",
        "zones/crane",
    ]
    assert all(m.retain for m in late.messages)

    pub.stop()
    assert sub.wait_for(lambda ms: ms[-1].topic.endswith("/edges/edge-1/status"))
    offline = sub.messages[-1].json()
    assert (offline["state"], offline["reason"]) == ("offline", "stopped")
    sub.stop()
    late.stop()


def test_snapshots_published_before_the_link_is_up_collapse_to_the_latest(broker: Broker) -> None:
    pub = AlertPublisher(broker.config, site(), MODEL)
    for n in range(5):
        pub.publish_snapshot("gate", f"jpeg {n}".encode())
    sub = broker.collector(["sitesentry/test-site/cameras/gate/snapshot"])
    pub.start()
    assert sub.wait_for(lambda ms: len(ms) >= 1)
    pub.publish_event(make_event())  # something after the snapshot, to know the snapshot traffic is over
    assert pub.wait_delivered(10)
    pub.stop()
    assert [m.payload for m in sub.messages] == [b"jpeg 4"]
    sub.stop()


def test_alarm_without_a_broker_is_held_while_the_local_hook_still_fires(tmp_path: Path) -> None:
    marker = tmp_path / "siren"
    hook = AlarmHook(AlarmHookConfig(command=["/bin/sh", "-c", f'echo "$0" > {marker}', "{zone}"]))
    config = MqttConfig(host="127.0.0.1", port=free_port(), outbox=tmp_path / "outbox.sqlite3")
    pub = AlertPublisher(config, site(), MODEL, alarm_hook=hook)
    pub.start()
    pub.publish_alarm(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    hook.close()
    assert marker.read_text().strip() == "crane"
    assert pub.stats()["alarms_held_offline"] == 1  # its state goes out once the broker is back
    pub.stop(timeout=1)


@pytest.mark.slow
def test_an_mqtt5_publisher_switches_to_3_1_1_for_the_embedded_broker(tmp_path: Path) -> None:
    with EmbeddedBroker("127.0.0.1", 0) as embedded:
        config = MqttConfig(
            host="127.0.0.1",
            port=embedded.port,
            protocol="5",
            keepalive_s=5,
            outbox=tmp_path / "outbox.sqlite3",
        )
        sub = Collector("127.0.0.1", embedded.port, ["sitesentry/#"], protocol="3.1.1", username=None).start()
        pub = AlertPublisher(config, site(), MODEL)
        pub.start()
        pub.publish_event(make_event())
        assert pub.wait_delivered(30), pub.last_error
        assert pub.stats()["protocol"] == "3.1.1"
        assert sub.wait_for(lambda ms: any(m.topic.endswith("/events") for m in ms))
        assert json.loads(sub.on("/events")[0].payload)["rule"] == "no_helmet"
        pub.stop()
        sub.stop()


def test_an_on_alarm_lives_on_the_broker_while_the_edge_does_and_expires_after_it(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """mqtt.alarm_ttl_s: a siren subscribing after the edge died must not switch on for a stale alert."""
    ttl = 2
    topic = "sitesentry/test-site/alarms/zones/crane"
    pub = AlertPublisher(mosquitto.config(outbox=tmp_path / "outbox.sqlite3", alarm_ttl_s=ttl), site(), MODEL)
    pub.start()
    assert pub.wait_connected(10), pub.last_error
    pub.publish_alarm(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    live = Collector("127.0.0.1", mosquitto.port, [topic], username=OPS_USER, password=OPS_PASSWORD).start()
    live.wait_for(lambda m: len(m) >= 1)
    first = live.on("/crane")[0]
    assert first.json()["state"] == "on" and getattr(first.properties, "MessageExpiryInterval", None) <= ttl
    time.sleep(ttl * 2.5)  # past the expiry of the first message: only a refresh keeps it on the broker
    late = Collector("127.0.0.1", mosquitto.port, [topic], username=OPS_USER, password=OPS_PASSWORD).start()
    assert late.wait_for(lambda m: any(r.retain for r in m), 5), "the alarm vanished while the edge lives"
    assert late.on("/crane")[0].json()["state"] == "on"
    assert len(live.on("/crane")) >= 3, "sent again every half TTL"
    # The edge dies without switching it off (stop() sends no alarm changes, as a crash would not).
    pub.stop()
    live.stop()
    late.stop()
    time.sleep(ttl + 1)
    after = Collector("127.0.0.1", mosquitto.port, [topic], username=OPS_USER, password=OPS_PASSWORD).start()
    time.sleep(1.0)
    assert after.on("/crane") == [], "a stale `on` reached a siren that subscribed after the edge died"
    after.stop()
    # An `off` never expires: a siren subscribing later still learns the target is off.
    pub = AlertPublisher(
        mosquitto.config(outbox=tmp_path / "outbox2.sqlite3", alarm_ttl_s=ttl), site(), MODEL
    )
    pub.start()
    assert pub.wait_connected(10), pub.last_error
    pub.publish_alarm(make_event(zone="crane", rule=Rule.ZONE_ENTRY, phase=Phase.END))
    assert pub.wait_delivered(10)
    pub.stop()
    time.sleep(ttl + 1)
    later = Collector("127.0.0.1", mosquitto.port, [topic], username=OPS_USER, password=OPS_PASSWORD).start()
    assert later.wait_for(lambda m: len(m) >= 1, 5) and later.on("/crane")[0].json()["state"] == "off"
    later.stop()
