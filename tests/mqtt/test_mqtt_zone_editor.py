"""The zone editor, edge side: `set_zones` from the dashboard changes a running camera's danger zones, the
edge answers, publishes the zones it applies (retained), keeps them across a restart, and a person inside
the new polygon is a zone_entry; the snapshot of that event reaches the dashboard as evidence chunks."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mqtt_fixtures import Collector, Mosquitto, Received, control_properties, schema_errors, site

from contract.evidence import decode_chunk
from contract.payloads import CameraZonesMessage, ZonePolygon
from edge.config import load_config
from edge.config.models import SiteConfig, ZoneConfig
from edge.dataflow import EvidenceRef
from edge.mqtt import AlertPublisher, ModelInfo
from edge.runtime import Runtime

REPO = Path(__file__).resolve().parents[2]
WHOLE_VIEW = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
HOIST = ZoneConfig(id="hoist-bay", polygon=[(0.0, 0.0), (0.2, 0.0), (0.2, 0.2)], entry_forbidden=False)


def site_config(mosquitto: Mosquitto, tmp_path: Path) -> SiteConfig:
    """The sample site on the sample video at 2 frames/s, with a PPE-only zone beside its danger zone."""
    site = load_config(REPO / "samples" / "site.yaml")
    gate = site.cameras[0]
    danger = [zone for zone in gate.zones if zone.entry_forbidden]  # the sample's own PPE zone left out
    gate = gate.model_copy(update={"fps": 2, "zones": [*danger, HOIST]})
    return site.model_copy(
        update={
            "cameras": [gate],
            "evidence": site.evidence.model_copy(
                update={"folder": tmp_path / "evidence", "pre_s": 1, "post_s": 1}
            ),
            "rules": site.rules.model_copy(update={"debounce_s": 0.3, "max_new_events_per_min": 1000}),
            "mqtt": mosquitto.config(
                outbox=tmp_path / "data" / "outbox.sqlite3", control_clients=["ops-console"]
            ),
            "metrics": site.metrics.model_copy(update={"enabled": False}),
        }
    )


def zones_of(message: Received) -> dict[str, list[list[float]]]:
    return {z["id"]: z["polygon"] for z in message.json()["zones"]}


@pytest.mark.slow
def test_set_zones_applies_to_the_running_camera_is_published_and_survives_a_restart(
    mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = site_config(mosquitto, tmp_path)
    root = f"sitesentry/{config.site.id}"
    zones_topic, control = f"{root}/cameras/gate/zones", f"{root}/edges/edge-1/control"
    runtime = Runtime.build(config)
    runtime.start()
    ops = Collector(
        "127.0.0.1",
        mosquitto.port,
        [
            zones_topic,
            f"{root}/edges/edge-1/control/reply/#",
            f"{root}/cameras/+/events",
            f"{root}/edges/edge-1/evidence",
        ],
    ).start()

    def replies(request_id: str) -> list[dict[str, object]]:
        found = [m.json() for m in ops.messages if "/control/reply/" in m.topic]
        return [r for r in found if r["request_id"] == request_id]

    def send(request_id: str, camera: str, zones: list[dict[str, object]]) -> dict[str, object]:
        command = {"request_id": request_id, "action": "set_zones", "camera": camera, "zones": zones}
        props = control_properties("ops-console", "ops/replies", None)
        ops.client.publish(control, json.dumps(command), qos=1, properties=props).wait_for_publish(5)
        assert ops.wait_for(lambda ms: bool(replies(request_id)), 20)
        return replies(request_id)[0]

    try:
        # At start: the YAML's danger zone only (the PPE-only zone is not the editor's).
        assert ops.wait_for(lambda ms: any(m.topic == zones_topic for m in ms), 20)
        first = ops.on("/zones")[0]
        assert list(zones_of(first)) == ["crane-swing"]
        assert schema_errors("camera-zones", first.payload) == []
        late = Collector("127.0.0.1", mosquitto.port, [zones_topic]).start()
        assert late.wait_for(lambda ms: len(ms) >= 1)
        late.stop()
        assert late.messages[0].retain and late.messages[0].payload == first.payload

        # Refused, with the reason, and nothing changed.
        unknown = send("z-1", "dock", [{"id": "pit", "polygon": WHOLE_VIEW}])
        bow_tie = send(
            "z-2", "gate", [{"id": "pit", "polygon": [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]}]
        )
        clash = send("z-3", "gate", [{"id": "hoist-bay", "polygon": WHOLE_VIEW}])
        assert unknown["status"] == "error" and "unknown camera 'dock'" in str(unknown["message"])
        assert bow_tie["status"] == "error" and "must not cross itself" in str(bow_tie["message"])
        assert clash["status"] == "error" and "PPE-only zone" in str(clash["message"])
        assert {z.config.id for z in runtime.app.cameras["gate"].pipeline.engine.zones} == {
            "crane-swing",
            "hoist-bay",
        }

        # Applied without a restart: the whole view becomes a danger zone, crane-swing is redrawn.
        crane = [[0.5, 0.4], [0.9, 0.4], [0.9, 0.7], [0.5, 0.7]]
        ok = send(
            "z-4",
            "gate",
            [
                {"id": "whole-yard", "name": "Whole yard", "polygon": WHOLE_VIEW},
                {"id": "crane-swing", "polygon": crane},
            ],
        )
        assert (ok["status"], ok["message"]) == ("ok", "applied 2 zones to camera gate")
        assert ops.wait_for(
            lambda ms: any("whole-yard" in zones_of(m) for m in ms if m.topic == zones_topic), 10
        )
        latest = ops.on("/zones")[-1]
        assert zones_of(latest) == {"whole-yard": WHOLE_VIEW, "crane-swing": crane}
        engine_zones = {z.config.id: z.config for z in runtime.app.cameras["gate"].pipeline.engine.zones}
        assert set(engine_zones) == {"whole-yard", "crane-swing", "hoist-bay"}
        assert engine_zones["crane-swing"].min_dwell_s == 0.5, "a zone redrawn in place keeps its settings"
        assert engine_zones["hoist-bay"] == HOIST, "PPE-only zones are left alone"

        # A person anywhere in view is now inside a danger zone.
        def whole_yard_start(ms: list[Received]) -> bool:
            return any(
                m.topic.endswith("/events")
                and m.json()["type"] == "start"
                and m.json()["zone"] == "whole-yard"
                for m in ms
            )

        assert ops.wait_for(whole_yard_start, 120), "no zone_entry in the new zone"
        event = next(m.json() for m in ops.on("/events") if m.json()["zone"] == "whole-yard")
        assert event["rule"] == "zone_entry"
        snapshot = next(e for e in event["evidence"] if e["kind"] == "snapshot")

        # Its snapshot reaches the dashboard as evidence chunks, byte for byte.
        def snapshot_chunks(ms: list[Received]) -> list[bytes]:
            chunks = [decode_chunk(m.payload) for m in ms if m.topic.endswith("/evidence")]
            return [data for header, data in chunks if header.path == snapshot["path"]]

        assert ops.wait_for(lambda ms: len(snapshot_chunks(ms)) >= 1, 30)
        data = snapshot_chunks(ops.messages)[0]
        assert hashlib.sha256(data).hexdigest() == snapshot["sha256"]
        assert data == (config.evidence.folder / snapshot["path"]).read_bytes()
    finally:
        runtime.stop()
        ops.stop()
    stopped_at = time.time()

    # Kept across a restart: the override file beside the outbox is applied over the YAML's polygons.
    saved = json.loads((tmp_path / "data" / "zones-override.json").read_text())
    assert [z["id"] for z in saved["cameras"]["gate"]["zones"]] == ["whole-yard", "crane-swing"]
    with caplog.at_level(logging.INFO, logger="edge.violations.zone_edits"):
        again = Runtime.build(config)
    assert "camera gate: danger zones set from the dashboard (whole-yard, crane-swing) replace" in caplog.text
    assert {z.id for z in again.app.camera_zones()["gate"]} == {"whole-yard", "crane-swing", "hoist-bay"}
    again.start()
    fresh = Collector("127.0.0.1", mosquitto.port, [zones_topic]).start()
    try:

        def republished(ms: list[Received]) -> bool:
            return any(
                datetime.fromisoformat(m.json()["at"]).timestamp() >= stopped_at
                and zones_of(m).keys() == {"whole-yard", "crane-swing"}
                for m in ms
            )

        assert fresh.wait_for(republished, 20), "the restarted edge publishes the zones it applies"
    finally:
        again.stop()
        fresh.stop()


def test_the_documented_acl_lets_the_edge_push_evidence_and_zones_and_ops_read_them(tmp_path: Path) -> None:
    text = (REPO / "docs" / "mqtt.md").read_text(encoding="utf-8")
    acl = text.split("<!-- acl -->", 1)[1].split("```conf\n", 1)[1].split("```", 1)[0]
    users = {"edge-1": "pw-edge-1", "ops": "pw-ops", "siren": "pw-siren"}
    broker = Mosquitto(
        tmp_path / "acl-broker", acl=acl.replace("kt-tower-b", "test-site"), users=users
    ).start()
    folder = tmp_path / "evidence"
    (folder / "gate").mkdir(parents=True)
    (folder / "gate" / "e.jpg").write_bytes(b"\xff\xd8 jpeg")
    ref = EvidenceRef("snapshot", "gate/e.jpg", hashlib.sha256(b"\xff\xd8 jpeg").hexdigest())
    ops = Collector("127.0.0.1", broker.port, ["sitesentry/#"], username="ops", password="pw-ops").start()
    config = broker.config(username="edge-1", password="pw-edge-1", outbox=tmp_path / "o.sqlite3")
    pub = AlertPublisher(config, site(), ModelInfo("ppe", "1"), evidence_folder=folder)
    try:
        pub.start()
        assert pub.wait_connected(10), pub.last_error
        pub.push_evidence("gate", ref)
        zones = [ZonePolygon(id="pit", polygon=[(0.1, 0.1), (0.5, 0.1), (0.5, 0.5)])]
        pub.publish_camera_zones(
            CameraZonesMessage(
                schema_version=1,
                site="test-site",
                edge="edge-1",
                camera="gate",
                zones=zones,
                at=datetime.now(timezone.utc),
            )
        )
        wanted = ("/edges/edge-1/evidence", "/cameras/gate/zones")
        assert ops.wait_for(lambda ms: all(any(m.topic.endswith(w) for m in ms) for w in wanted))
        assert pub.wait_delivered(10)
        assert pub.stats().get("refused", 0) == 0
    finally:
        pub.stop()
        ops.stop()
        broker.stop()
