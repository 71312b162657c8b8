"""Topics and payload models: ids cannot break the topic tree; committed JSON Schemas match the models."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from mqtt_fixtures import SCHEMA_DIR, make_event, schema_errors

from contract.evidence import EvidenceChunk
from contract.payloads import (
    SCHEMA_VERSION,
    CameraStatusMessage,
    CameraZonesMessage,
    ControlCommand,
    ControlReply,
    EdgeStatusMessage,
    HeartbeatMessage,
    HeartbeatStats,
    OutboxFigures,
)
from contract.schemas import SCHEMAS, render, stale_schemas, write_schemas
from contract.topics import ParsedTopic, TopicKind, Topics, parse_topic
from edge.dataflow import Phase, Rule
from edge.mqtt.payloads import ModelInfo, alarm_message, event_message

HK = ZoneInfo("Asia/Hong_Kong")


def test_topics_put_fixed_words_between_ids_so_a_camera_named_like_a_level_stays_a_camera() -> None:
    topics = Topics("sitesentry", "kt-tower")
    assert topics.events("gate") == "sitesentry/kt-tower/cameras/gate/events"
    assert topics.edge_status("edge-1") == "sitesentry/kt-tower/edges/edge-1/status"
    assert topics.alarm_zone("crane") == "sitesentry/kt-tower/alarms/zones/crane"
    assert topics.alarm_camera("gate") == "sitesentry/kt-tower/alarms/cameras/gate"
    for camera in ("edges", "alarms", "cameras", "status"):
        assert topics.parse(topics.events(camera)) == ParsedTopic(TopicKind.EVENTS, "kt-tower", camera=camera)


def test_every_topic_parses_back_to_what_built_it() -> None:
    t = Topics("acme/safety", "s1")
    assert t.parse(t.camera_status("c1")) == ParsedTopic(TopicKind.CAMERA_STATUS, "s1", camera="c1")
    assert t.parse(t.snapshot("c1")) == ParsedTopic(TopicKind.SNAPSHOT, "s1", camera="c1")
    assert t.parse(t.heartbeat("e1")) == ParsedTopic(TopicKind.HEARTBEAT, "s1", edge="e1")
    assert t.parse(t.control("e1")) == ParsedTopic(TopicKind.CONTROL, "s1", edge="e1")
    assert t.parse(t.control_reply("e1")) == ParsedTopic(TopicKind.CONTROL_REPLY, "s1", edge="e1")
    assert t.parse(t.alarm_zone("z")) == ParsedTopic(TopicKind.ALARM, "s1", target_kind="zones", target="z")
    assert t.parse(t.alarm_camera("c1")) == ParsedTopic(
        TopicKind.ALARM, "s1", camera="c1", target_kind="cameras", target="c1"
    )
    assert parse_topic("acme/safety", "acme/other/s1/cameras/c1/events") is None
    assert parse_topic("acme/safety", "acme/safety/s1/cameras/c1/unknown") is None


@pytest.mark.parametrize("bad", ["+", "#", "gate/1", "", "gate cam", "x" * 65, "-gate"])
def test_ids_that_could_inject_levels_or_wildcards_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cannot be a topic level"):
        Topics("sitesentry", "site").events(bad)


def test_prefix_may_have_levels_but_no_wildcards() -> None:
    assert Topics("acme/safety", "s").events("c") == "acme/safety/s/cameras/c/events"
    with pytest.raises(ValueError, match="topic prefix"):
        Topics("acme/#", "s")


def test_event_message_carries_the_event_and_clamps_boxes_into_the_frame() -> None:
    event = make_event(phase=Phase.END, zone="crane", rule=Rule.ZONE_ENTRY)
    event = replace(event, boxes=((-0.01, 0.2, 0.4, 1.02), (0.1, 0.1, 0.2, 0.2)))
    emitted = datetime(2025, 6, 2, 17, 31, tzinfo=HK)
    msg = event_message(
        event,
        edge="edge-1",
        model=ModelInfo("ppe-yolo", "2025.06"),
        emitted_at=emitted,
        message_id=uuid.uuid4(),
    )
    data = json.loads(msg.model_dump_json())
    assert data["event_id"] == str(event.event_id)
    assert (data["type"], data["rule"], data["zone"]) == ("end", "zone_entry", "crane")
    assert data["person_box"] == {"x1": 0.0, "y1": 0.2, "x2": 0.4, "y2": 1.0}
    assert data["evidence_boxes"] == [{"x1": 0.1, "y1": 0.1, "x2": 0.2, "y2": 0.2}]
    assert data["emitted_at"] == "2025-06-02T17:31:00+08:00"
    # fromisoformat reads a trailing "Z" only from Python 3.11 on, and these tests run on 3.10 too
    ended, started = (
        datetime.fromisoformat(data[k].replace("Z", "+00:00")) for k in ("ended_at", "started_at")
    )
    assert ended > started
    assert data["evidence"][0] == {
        "kind": "snapshot",
        "path": "gate/snap-0.jpg",
        "sha256": "a" * 64,
        "offset_s": None,
    }
    assert data["model"] == {"name": "ppe-yolo", "version": "2025.06"}
    assert schema_errors("event", msg.model_dump_json().encode()) == []


def test_the_detectors_model_info_names_the_model_in_events() -> None:
    from edge.detections.base import ModelInfo as DetectorModelInfo

    info = DetectorModelInfo(name="ppe-yolo11n", version="3", names=("person",), imgsz=(640, 640), batch=None)
    msg = event_message(
        make_event(), edge="e", model=info, emitted_at=datetime.now(HK), message_id=uuid.uuid4()
    )
    assert (msg.model.name, msg.model.version) == ("ppe-yolo11n", "3")


def test_committed_schema_files_equal_what_the_models_generate() -> None:
    assert stale_schemas(SCHEMA_DIR) == [], "run `sitesentry mqtt schemas` and commit docs/schemas"


def test_schema_check_notices_a_changed_file(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert stale_schemas(tmp_path) == []
    (tmp_path / "alarm.json").write_text(render("alarm").replace('"on"', '"ON"'))
    (tmp_path / "heartbeat.json").unlink()
    assert stale_schemas(tmp_path) == ["heartbeat", "alarm"]


def test_every_payload_the_edge_builds_matches_its_schema_and_foreign_ones_do_not() -> None:
    now = datetime.now(HK)
    common = {"schema_version": SCHEMA_VERSION, "site": "s", "edge": "e"}
    samples = {
        "alarm": alarm_message(make_event(zone="crane"), at=now),
        "edge-status": EdgeStatusMessage(
            **common, state="offline", at=None, reason="connection lost", version="1"
        ),
        "camera-status": CameraStatusMessage(
            **common, camera="gate", state="reconnecting", detail="timeout", at=now
        ),
        "heartbeat": HeartbeatMessage(
            **common,
            at=now,
            uptime_s=3.5,
            cameras=HeartbeatStats.model_validate(
                {"cameras": {"gate": {"fps": 4.8, "latency_ms_p95": 61}}}
            ).cameras,
            queues={},
            outbox=OutboxFigures(pending=2, delivered_total=9, dropped_total=0),
            reconnects=1,
        ),
        "control-command": ControlCommand(request_id="r-1", action="disable", rule=Rule.NO_VEST),
        "control-reply": ControlReply(**common, request_id=None, status="error", message="not JSON", at=now),
        "camera-zones": CameraZonesMessage(
            **common, camera="gate", zones=[{"id": "pit", "polygon": [(0, 0), (1, 0), (1, 1)]}], at=now
        ),
        "evidence-chunk": EvidenceChunk(
            **common,
            camera="gate",
            kind="snapshot",
            path="gate/a.jpg",
            sha256="0" * 64,
            size=3,
            index=0,
            count=1,
        ),
    }
    assert set(samples) | {"event"} == set(SCHEMAS)
    for name, model in samples.items():
        assert schema_errors(name, model.model_dump_json().encode()) == [], name
    alarm = json.loads(samples["alarm"].model_dump_json())
    assert schema_errors("alarm", json.dumps({**alarm, "rule": "no_gloves"}).encode())
    assert schema_errors("alarm", json.dumps({**alarm, "volume": 11}).encode())


def test_control_command_needs_a_target_and_refuses_unknown_rules() -> None:
    with pytest.raises(ValueError, match="needs `rule`, `camera` or both"):
        ControlCommand.model_validate({"request_id": "r", "action": "enable"})
    with pytest.raises(ValueError):
        ControlCommand.model_validate({"request_id": "r", "action": "enable", "rule": "no_gloves"})
