"""Ingest against a real Mosquitto: nothing the broker queued is lost while the dashboard is down or when it
stops mid-burst (persistent MQTT 5 session, ack after commit), bad messages in a burst hold back none of the
good ones, and a zone edit goes to the edge and its reply comes back."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from dashboard_fixtures import PASSWORD, event_payload, make_settings
from fastapi.testclient import TestClient
from mqtt_fixtures import MOSQUITTO, MOSQUITTO_PASSWD, OPS_PASSWORD, OPS_USER, Mosquitto
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import func, select

from dashboard.app import build_context, create_app
from dashboard.auth import service
from dashboard.ingest import subscriber
from dashboard.ingest.handlers import Outcome, Prepared
from dashboard.ingest.subscriber import Ingest
from dashboard.settings import DashboardSettings
from dashboard.storage.migrate import upgrade
from dashboard.storage.models import Event, EventMessageRow, Role

pytestmark = pytest.mark.skipif(
    MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="mosquitto is not installed"
)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto with persistence and the ops account."""
    running = Mosquitto(tmp_path / "mosquitto").start()
    yield running
    running.stop()


def _settings(tmp_path: Path, broker: Mosquitto, database_url: str) -> DashboardSettings:
    mqtt_settings = {
        "port": broker.port,
        "username": OPS_USER,
        "password": OPS_PASSWORD,
        "control_timeout_s": 5,
    }
    return make_settings(tmp_path, database_url, ingest_enabled=True, mqtt=mqtt_settings)


def _publisher(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(OPS_USER, OPS_PASSWORD)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def _wait(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _count(app: Any) -> int:
    with app.state.ctx.db.session() as db:
        return int(db.scalar(select(func.count()).select_from(Event)) or 0)


def test_events_queued_while_the_dashboard_is_down_all_arrive_once(
    tmp_path: Path, broker: Mosquitto, database_url: str
) -> None:
    settings = _settings(tmp_path, broker, database_url)
    first = create_app(settings, run_retention=False)
    publisher = _publisher(broker)
    try:
        with TestClient(first):
            assert first.state.ctx.ingest.subscribed.wait(10)
            for _ in range(5):
                publisher.publish("sitesentry/site-a/cameras/gate/events", json.dumps(event_payload()), qos=1)
            assert _wait(lambda: _count(first) == 5)
        # Down: the broker queues for our persistent session.
        queued = [event_payload() for _ in range(20)]
        for payload in queued:
            publisher.publish(
                "sitesentry/site-a/cameras/gate/events", json.dumps(payload), qos=1
            ).wait_for_publish(5)
        publisher.publish(
            "sitesentry/site-a/cameras/gate/events", json.dumps(queued[0]), qos=1
        )  # a redelivery
        second = create_app(settings, run_retention=False)
        with TestClient(second):
            assert _wait(lambda: _count(second) == 25)
            time.sleep(0.5)
            assert _count(second) == 25
            assert second.state.ctx.metrics.message_count("events", "duplicate") == 1
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_a_zone_edit_reaches_the_edge_and_its_reply_comes_back(
    tmp_path: Path, broker: Mosquitto, database_url: str
) -> None:
    settings = _settings(tmp_path, broker, database_url)
    app = create_app(settings, run_retention=False)
    edge = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    edge.username_pw_set(OPS_USER, OPS_PASSWORD)
    seen: list[dict[str, Any]] = []

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # A stand-in edge: check the sender like the real one does, then answer on the sender's topic.
        command = json.loads(message.payload)
        seen.append(command)
        sender = dict(message.properties.UserProperty)["client_id"]  # type: ignore[union-attr]
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.CorrelationData = message.properties.CorrelationData  # type: ignore[union-attr]
        ok = all(len(zone["polygon"]) >= 3 for zone in command["zones"])
        reply = {"schema_version": 1, "request_id": command["request_id"], "site": "site-a", "edge": "edge-1",
                 "status": "ok" if ok else "error", "message": "applied" if ok else "polygon crosses itself",
                 "at": "2025-06-02T09:30:00+08:00"}  # fmt: skip
        client.publish(
            f"sitesentry/site-a/edges/edge-1/control/reply/{sender}", json.dumps(reply), 1, properties=props
        )

    edge.on_message = on_message
    edge.connect("127.0.0.1", broker.port)
    edge.subscribe("sitesentry/site-a/edges/edge-1/control", qos=1)
    edge.loop_start()
    try:
        with TestClient(app) as client:
            assert app.state.ctx.ingest.subscribed.wait(10)
            ids = {"site": "site-a", "edge": "edge-1", "camera": "gate"}
            status = {"schema_version": 1, **ids, "state": "online", "at": "2025-06-02T09:00:00+08:00"}
            edge.publish("sitesentry/site-a/cameras/gate/status", json.dumps(status), 1, retain=True)
            with app.state.ctx.db.session() as db:
                service.create_user(db, "olga", PASSWORD, Role.SAFETY_OFFICER, sites=["site-a"])
            csrf = client.post("/api/auth/login", json={"username": "olga", "password": PASSWORD}).json()[
                "csrf_token"
            ]
            assert _wait(lambda: client.get("/api/cameras").json() != [])
            zones = {"zones": [{"id": "pit", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}]}
            response = client.put(
                "/api/cameras/site-a/gate/zones", json=zones, headers={"X-CSRF-Token": csrf}
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "applied"
            assert seen[-1]["action"] == "set_zones" and seen[-1]["camera"] == "gate"
            entry = client.get("/api/audit").json()[0]
            assert entry["action"] == "zones.set" and entry["detail"]["result"] == "applied"
    finally:
        edge.loop_stop()
        edge.disconnect()


EVENTS_TOPIC = "sitesentry/site-a/cameras/gate/events"


def _start_ingest(settings: DashboardSettings, **options: int) -> Ingest:
    """Ingest alone (no web app), on a migrated database, subscribed."""
    ctx = build_context(settings)
    upgrade(ctx.db.engine)
    ingest = Ingest(ctx, **options)
    ingest.start()
    assert ingest.subscribed.wait(10)
    return ingest


def _stored_ids(ingest: Ingest) -> list[str]:
    with ingest.ctx.db.session() as db:
        return list(db.scalars(select(EventMessageRow.message_id)))


def _wrap_store(ingest: Ingest, before: Callable[[Sequence[Prepared]], None]) -> None:
    """Run `before` on every batch the dispatcher is asked to store (to slow it down or make it fail)."""
    store = ingest.dispatcher.store

    def wrapped(items: Sequence[Prepared]) -> list[Outcome]:
        before(items)
        return store(items)

    ingest.dispatcher.store = wrapped  # type: ignore[method-assign]


def test_a_dashboard_stopped_mid_burst_gets_every_message_once_after_restart(
    tmp_path: Path, broker: Mosquitto, database_url: str
) -> None:
    settings = _settings(tmp_path, broker, database_url)
    first = _start_ingest(settings, batch_max=10)
    # Slow storage down: the stop then comes while hundreds of messages are received but not yet stored.
    _wrap_store(first, lambda items: time.sleep(0.03))
    payloads = [event_payload() for _ in range(300)]
    publisher = _publisher(broker)
    try:
        for payload in payloads:
            publisher.publish(EVENTS_TOPIC, json.dumps(payload), qos=1)
        assert _wait(lambda: len(_stored_ids(first)) >= 30)
        # As a crash would: what was received and not stored is dropped (and was never acknowledged).
        first.stop(drain=False)
        assert len(_stored_ids(first)) < 300
        first.ctx.db.dispose()
        second = _start_ingest(settings)
        try:
            assert _wait(lambda: len(_stored_ids(second)) >= 300, 30)
            time.sleep(0.5)
            stored = _stored_ids(second)
            assert sorted(stored) == sorted(p["message_id"] for p in payloads)
            with second.ctx.db.session() as db:
                assert db.scalar(select(func.count()).select_from(Event)) == 300
        finally:
            second.stop()
            second.ctx.db.dispose()
    finally:
        publisher.loop_stop()
        publisher.disconnect()


def test_bad_messages_in_a_burst_hold_back_none_of_the_good_ones(
    tmp_path: Path, broker: Mosquitto, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriber, "_STORE_RETRIES", (0.01,))
    settings = _settings(tmp_path, broker, database_url)
    first = _start_ingest(settings)
    # A message that passes every check but whose storage fails (as a row the database refuses would):
    # the batch it is in fails, its other messages are then stored one by one, and it stays unacknowledged.
    poison = event_payload()
    batches: list[int] = []

    def fail_on_poison(items: Sequence[Prepared]) -> None:
        batches.append(len(items))
        time.sleep(0.1)  # the burst piles up meanwhile: the next batch holds many messages
        if any(str(item.content.message_id) == poison["message_id"] for item in items):
            raise RuntimeError("the database refuses this row")

    _wrap_store(first, fail_on_poison)
    good = [event_payload() for _ in range(40)]
    bad = [b"not json", json.dumps({**event_payload(), "schema_version": 99}).encode(), json.dumps(poison)]
    publisher = _publisher(broker)
    try:
        for payload in [*(json.dumps(p) for p in good[:20]), *bad, *(json.dumps(p) for p in good[20:])]:
            publisher.publish(EVENTS_TOPIC, payload, qos=1)
        assert _wait(lambda: len(_stored_ids(first)) >= 40)
        assert set(_stored_ids(first)) == {p["message_id"] for p in good}
        metrics = first.ctx.metrics
        assert metrics.rejected_count("events", "malformed") == 1
        assert metrics.rejected_count("events", "unknown_version") == 1
        assert metrics.rejected_count("storage", "error") >= 1
        assert max(batches) > 10 and 1 in batches[batches.index(max(batches)) + 1 :]
        first.stop()
        first.ctx.db.dispose()
        # The poison was left unacknowledged: the broker delivers it again, and now it can be stored.
        second = _start_ingest(settings)
        try:
            assert _wait(lambda: len(_stored_ids(second)) == 41)
        finally:
            second.stop()
            second.ctx.db.dispose()
    finally:
        publisher.loop_stop()
        publisher.disconnect()
