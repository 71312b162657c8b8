"""Logging set up as the CLI does: times in the site's time zone with offset; amqtt's chatter held back."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.broker import EmbeddedBroker
from edge.telemetry import setup_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in ("amqtt", "transitions")}
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, value in chatty.items():
        logging.getLogger(name).setLevel(value)


def test_log_times_are_in_the_site_time_zone_with_offset(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", timezone="Asia/Hong_Kong")
    logging.getLogger("edge.app").info("start no_helmet camera=gate")
    line = capsys.readouterr().err.strip()
    match = re.fullmatch(r"(\S+) INFO edge\.app: start no_helmet camera=gate", line)
    assert match, line
    at = datetime.fromisoformat(match[1])
    assert match[1].endswith("+08:00") and at.utcoffset() == timedelta(hours=8)
    assert abs((datetime.now(at.tzinfo) - at).total_seconds()) < 60


def test_json_log_times_carry_the_site_offset_too(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", json_lines=True, timezone="America/New_York")
    logging.getLogger("edge.app").warning("camera gate: lost")
    record = json.loads(capsys.readouterr().err)
    at = datetime.fromisoformat(record["time"])
    assert at.utcoffset() in (timedelta(hours=-5), timedelta(hours=-4))  # EST or EDT
    assert record["message"] == "camera gate: lost"


def connect_once(port: int) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    client.publish("sitesentry/x", b"1", qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_amqtt_state_machine_lines_are_held_back_unless_debugging(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(level, timezone="Asia/Hong_Kong")
    with EmbeddedBroker("127.0.0.1", 0) as broker:
        connect_once(broker.port)
    err = capsys.readouterr().err
    chatter = [line for line in err.splitlines() if re.search(r" (INFO|DEBUG) (amqtt|transitions)", line)]
    assert "embedded MQTT broker (amqtt, MQTT 3.1.1) listening" in err  # our own INFO lines stay
    if level == "INFO":
        assert chatter == []
    else:
        assert len(chatter) > 5, "at DEBUG the library's own lines are there for whoever needs them"
