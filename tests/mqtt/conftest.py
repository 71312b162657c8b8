"""Fixtures for the MQTT tests: real Mosquitto and amqtt brokers on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_fixtures import MOSQUITTO, MOSQUITTO_PASSWD, OPENSSL, Certs, Mosquitto, make_certs

from edge.mqtt.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Test CA, server and client certificates, and an unrelated CA."""
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def mosquitto(tmp_path: Path, certs: Certs) -> Iterator[Mosquitto]:
    """A fresh Mosquitto with password auth on a plain and a TLS listener."""
    if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    broker = Mosquitto(tmp_path / "mosquitto", certs).start()
    yield broker
    broker.stop()


@pytest.fixture
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """The embedded amqtt broker on a free port."""
    broker = EmbeddedBroker("127.0.0.1", 0).start()
    yield broker
    broker.stop()
