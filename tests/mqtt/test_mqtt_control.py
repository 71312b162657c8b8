"""Control commands: only authorised clients, replies on the response topic, malformed input never hurts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
from mqtt_fixtures import (
    Collector,
    Mosquitto,
    Received,
    control_properties,
    make_event,
    schema_errors,
    site,
)

from edge.dataflow import Rule
from edge.mqtt import AlertPublisher, ControlCommand, ControlResult, ModelInfo
from edge.mqtt.control import ControlHandler, ControlRequest, reply_topic

CONTROL = "sitesentry/test-site/edges/edge-1/control"
DEFAULT_REPLY = "sitesentry/test-site/edges/edge-1/control/reply"
OWN_REPLY = DEFAULT_REPLY + "/ops-console"  # the only response topic ops-console's replies go to


@dataclass
class App:
    """What the lead's app does with commands: remember them, refuse unknown cameras."""

    received: list[ControlCommand] = field(default_factory=list)
    fail: bool = False

    def __call__(self, command: ControlCommand) -> ControlResult:
        if self.fail:
            raise RuntimeError("rule engine is restarting")
        self.received.append(command)
        if command.camera not in (None, "gate"):
            return ControlResult(ok=False, message=f"no camera {command.camera}")
        return ControlResult(ok=True, message=f"{command.action}d")


@dataclass
class Rig:
    app: App
    pub: AlertPublisher
    ops: Collector  # the operator's client: sends commands, reads replies

    def send(
        self,
        payload: bytes | str,
        sender: str | None = "ops-console",
        response: str | None = None,
        correlation: bytes | None = None,
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        info = self.ops.client.publish(
            CONTROL, data, qos=1, properties=control_properties(sender, response, correlation)
        )
        info.wait_for_publish(5)

    def replies(self, n: int) -> list[dict[str, object]]:
        # A slow answer to one of wait_subscribed's pings may still arrive: it is not one of the test's.
        def answers(ms: list[Received]) -> list[Received]:
            return [m for m in ms if is_reply(m.topic) and m.json().get("request_id") != "ping"]

        assert self.ops.wait_for(lambda ms: len(answers(ms)) >= n)
        return [m.json() for m in answers(self.ops.messages)]


def is_answer(message: Received, request_id: str) -> bool:
    """The reply to one request on ops-console's own reply topic."""
    return message.topic == OWN_REPLY and message.json()["request_id"] == request_id


def is_reply(topic: str) -> bool:
    """A control reply, on the fixed topic or a sender's own one (or anywhere a bug might send it)."""
    return topic.startswith(DEFAULT_REPLY) or topic.startswith("ops/")


@pytest.fixture
def rig(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Rig]:
    app = App()
    config = mosquitto.config(
        outbox=tmp_path / "o.sqlite3", control_clients=["ops-console"], control_max_bytes=4096
    )
    pub = AlertPublisher(config, site(), ModelInfo("ppe", "1"), on_control=app)
    pub.start()
    assert pub.wait_connected(10)
    ops = Collector(
        "127.0.0.1",
        mosquitto.port,
        # `<reply>/#` matches `<reply>` itself too; subscribing to both would deliver those replies twice.
        ["ops/#", DEFAULT_REPLY + "/#", "sitesentry/+/cameras/+/events"],
    ).start()
    yield Rig(app, pub, ops)
    pub.stop()
    ops.stop()


def wait_subscribed(rig: Rig) -> None:
    """The edge subscribes to its control topic on connect; an answered command proves it is listening
    (a ping sent before the broker handled the edge's SUBSCRIBE is lost, so ping until one is answered)."""
    deadline = time.monotonic() + 15
    while True:
        rig.send(json.dumps({"request_id": "ping", "action": "enable", "camera": "gate"}), response=OWN_REPLY)
        if rig.ops.wait_for(lambda ms: any(is_reply(m.topic) for m in ms), 1.0):
            break
        assert time.monotonic() < deadline, "the edge never answered a ping"
    time.sleep(0.3)  # let a late answer to an earlier ping arrive before the slate is cleaned
    rig.ops.messages.clear()
    rig.app.received.clear()


def test_an_authorised_command_runs_and_is_answered_on_its_response_topic(rig: Rig) -> None:
    wait_subscribed(rig)
    rig.send(
        json.dumps({"request_id": "r-17", "action": "disable", "rule": "no_vest"}),
        response=OWN_REPLY,
        correlation=b"\x01corr",
    )
    [reply] = rig.replies(1)
    assert rig.app.received == [ControlCommand(request_id="r-17", action="disable", rule=Rule.NO_VEST)]
    message = rig.ops.messages[0]
    assert message.topic == OWN_REPLY
    assert message.properties.CorrelationData == b"\x01corr"
    assert (reply["request_id"], reply["status"], reply["message"]) == ("r-17", "ok", "disabled")
    assert schema_errors("control-reply", message.payload) == []


def test_without_a_response_topic_the_reply_goes_to_the_fixed_reply_topic(rig: Rig) -> None:
    wait_subscribed(rig)
    rig.send(json.dumps({"request_id": "r-2", "action": "disable", "rule": "no_helmet", "camera": "dock"}))
    [reply] = rig.replies(1)
    assert rig.ops.messages[0].topic == DEFAULT_REPLY
    assert (reply["status"], reply["message"]) == ("error", "no camera dock")


def test_commands_from_unlisted_or_anonymous_clients_are_refused_without_a_reply(rig: Rig) -> None:
    wait_subscribed(rig)
    command = json.dumps({"request_id": "r-3", "action": "disable", "camera": "gate"})
    rig.send(command, sender="intruder", response="ops/replies/x")
    rig.send(command, sender=None, response=DEFAULT_REPLY + "/intruder")
    rig.send(command, sender="intruder")
    # A good command after them: once its reply is in, the strangers' would have been too.
    rig.send(json.dumps({"request_id": "r-ok", "action": "enable", "camera": "gate"}), response=OWN_REPLY)
    [reply] = rig.replies(1)
    assert reply["request_id"] == "r-ok"
    assert [c.request_id for c in rig.app.received] == ["r-ok"]
    assert rig.pub.stats()["control"]["unauthorised"] == 3


def test_replies_never_go_where_the_sender_points_but_to_its_own_reply_topic(rig: Rig) -> None:
    wait_subscribed(rig)
    events = "sitesentry/test-site/cameras/gate/events"
    for n, target in enumerate([events, "sitesentry/test-site/alarms/zones/crane", "ops/replies/other"]):
        rig.send(json.dumps({"request_id": f"r-{n}", "action": "enable", "camera": "gate"}), response=target)
    rig.send(b"not json", response=events)
    replies = rig.replies(4)
    assert {m.topic for m in rig.ops.messages if is_reply(m.topic)} == {OWN_REPLY}
    # The malformed one is answered on the network thread at once, the others by the worker: any order.
    assert sorted(str(r["request_id"]) for r in replies) == ["None", "r-0", "r-1", "r-2"]
    assert not [m for m in rig.ops.messages if m.topic == events]


def test_malformed_control_messages_are_rejected_counted_and_the_edge_keeps_working(rig: Rig) -> None:
    wait_subscribed(rig)
    bad = [
        b"not json",
        b"\xff\xfe\x00binary",
        b"[]",
        b'{"request_id": "r-4", "action": "disable"}',
        b'{"request_id": "r-5", "action": "disable", "rule": "no_gloves"}',
        b'{"request_id": "r-6", "action": "explode", "camera": "gate"}',
        b'{"request_id": "r 7", "action": "enable", "camera": "gate"}',
        b'{"request_id": "r-8", "action": "enable", "camera": "gate", "sudo": true}',
        json.dumps({"request_id": "r-9", "action": "enable", "camera": "gate", "pad": "x" * 10_000}).encode(),
        b"[" * 3000,  # nesting deep enough to blow the JSON parser's recursion limit
    ]
    for payload in bad:
        rig.send(payload, response=OWN_REPLY)
    replies = rig.replies(len(bad))
    assert rig.app.received == []
    assert all(r["status"] == "error" for r in replies)
    assert [r["request_id"] for r in replies][3:6] == ["r-4", "r-5", "r-6"]
    counts = rig.pub.stats()["control"]
    assert (counts["malformed"], counts["too_large"]) == (9, 1)
    # Still alive: events flow and a good command works.
    rig.pub.publish_event(make_event())
    assert rig.pub.wait_delivered(10)
    rig.send(json.dumps({"request_id": "r-10", "action": "enable", "rule": "no_vest"}), response=OWN_REPLY)
    assert rig.ops.wait_for(lambda ms: any(is_answer(m, "r-10") for m in ms))
    assert rig.ops.wait_for(lambda ms: any(m.topic.endswith("/events") for m in ms))


def test_a_failing_command_handler_becomes_an_error_reply(rig: Rig) -> None:
    wait_subscribed(rig)
    rig.app.fail = True
    rig.send(
        json.dumps({"request_id": "r-11", "action": "disable", "rule": "zone_entry"}),
        response=OWN_REPLY,
    )
    [reply] = rig.replies(1)
    assert (reply["status"], reply["message"]) == ("error", "command failed: rule engine is restarting")
    assert rig.pub.stats()["control"]["failed"] == 1


def test_control_needs_mqtt5_to_know_the_sender() -> None:
    called = threading.Event()

    def callback(command: ControlCommand) -> ControlResult:
        called.set()
        return ControlResult(True, "ok")

    handler = ControlHandler(
        site="s",
        edge="e",
        allowed_clients=["ops"],
        callback=callback,
        clock=lambda: datetime.now().astimezone(),
    )
    payload = json.dumps({"request_id": "r", "action": "enable", "camera": "gate"}).encode()
    outcome = handler.handle(ControlRequest(payload, "ops", None, None, mqtt5=False))
    # Over MQTT 3.1.1 the sender cannot be told from a stranger, so it gets no answer either.
    assert (outcome.result, outcome.reply) == ("unsupported", None)
    assert not called.is_set()


def test_a_star_in_control_clients_obeys_any_sender_even_over_mqtt_3_1_1() -> None:
    ran: list[ControlCommand] = []

    def callback(command: ControlCommand) -> ControlResult:
        ran.append(command)
        return ControlResult(True, "camera gate enabled")

    handler = ControlHandler(
        site="s",
        edge="e",
        allowed_clients=["*"],
        callback=callback,
        clock=lambda: datetime.now().astimezone(),
    )
    payload = json.dumps({"request_id": "r-311", "action": "enable", "camera": "gate"}).encode()
    outcome = handler.handle(ControlRequest(payload, None, None, None, mqtt5=False))
    assert [c.request_id for c in ran] == ["r-311"]
    assert outcome.reply is not None and (outcome.reply.status, outcome.reply.request_id) == ("ok", "r-311")
    # With no sender to address, the reply goes to the fixed reply topic, never a topic the sender names.
    steer = ControlRequest(payload, None, "sitesentry/s/cameras/gate/events", None, mqtt5=True)
    assert reply_topic("sitesentry/s/edges/e/control/reply", steer) == "sitesentry/s/edges/e/control/reply"


def test_without_control_clients_the_edge_does_not_listen(mosquitto: Mosquitto, tmp_path: Path) -> None:
    app = App()
    pub = AlertPublisher(
        mosquitto.config(outbox=tmp_path / "o.sqlite3"), site(), ModelInfo("ppe", "1"), on_control=app
    )
    pub.start()
    assert pub.wait_connected(10)
    ops = Collector("127.0.0.1", mosquitto.port, [DEFAULT_REPLY]).start()
    payload = json.dumps({"request_id": "r", "action": "enable", "camera": "gate"}).encode()
    ops.client.publish(
        CONTROL, payload, qos=1, properties=control_properties("ops-console", None, None)
    ).wait_for_publish(5)
    pub.publish_event(make_event())  # a round trip through the broker after the command
    assert pub.wait_delivered(10)
    pub.stop()
    ops.stop()
    assert app.received == [] and ops.messages == []
