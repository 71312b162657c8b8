"""Scale-out: an edge publishes to its own Mosquitto, which bridges to a central Mosquitto; the dashboard
(on PostgreSQL) subscribes there. Events and evidence arrive, byte for byte and linked to their events, and
nothing is lost or doubled when the dashboard, the central broker or the edge's broker restarts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

# mqtt_fixtures lives beside the MQTT tests (no packages under tests/): reuse its broker and edge helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mqtt"))
from mqtt_fixtures import (  # noqa: E402
    EDGE_PASSWORD,
    EDGE_USER,
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    OPS_PASSWORD,
    OPS_USER,
    Collector,
    Mosquitto,
    make_event,
    site,
)

from dashboard.app import create_app  # noqa: E402
from dashboard.settings import DashboardSettings, MqttSettings  # noqa: E402
from dashboard.storage.models import Event, EventEvidence, EventMessageRow, EvidenceFile  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.config.models import SiteConfig, ZoneConfig  # noqa: E402
from edge.dataflow import EvidenceRef, Phase, Rule  # noqa: E402
from edge.mqtt import AlertPublisher, ModelInfo  # noqa: E402
from edge.runtime import Runtime  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WHOLE_VIEW = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
EVENTS = "sitesentry/+/cameras/+/events"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(MOSQUITTO is None or MOSQUITTO_PASSWD is None, reason="mosquitto is not installed"),
]


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database in the test PostgreSQL (SITESENTRY_TEST_PG_URL, or a cluster started here)."""
    url = os.environ.get("SITESENTRY_TEST_PG_URL")
    started: str | None = None
    if not url:
        try:
            out = subprocess.run(
                ["bash", str(REPO / "scripts" / "test-postgres.sh"), "start"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"no PostgreSQL for the scale-out test: {exc}")
        # pg_ctl's own progress lines come first on stdout; the script's exports follow.
        lines = [line.removeprefix("export ") for line in out.splitlines() if line.startswith("export ")]
        exports = dict(line.split("=", 1) for line in lines)
        url, started = exports["SITESENTRY_TEST_PG_URL"], exports["SITESENTRY_TEST_PG_DIR"]
    # A database of its own: other tests may share the cluster, and this one counts every row.
    name = f"scale_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
        if started:
            subprocess.run(["bash", str(REPO / "scripts" / "test-postgres.sh"), "stop", started], check=False)


def bridge_lines(central: Mosquitto) -> list[str]:
    """Mosquitto bridge from the edge's broker to the central one: the whole prefix both ways, QoS 1, a
    persistent session on each side so messages queue on the edge box while the link or the centre is down."""
    return [
        "connection central",
        f"address 127.0.0.1:{central.port}",
        "bridge_protocol_version mqttv50",
        "topic sitesentry/# both 1",
        "cleansession false",
        "remote_clientid bridge-edge-box",
        "local_clientid bridge-edge-box-local",
        f"remote_username {EDGE_USER}",
        f"remote_password {EDGE_PASSWORD}",
        # Retry the link every second (the default backs off to 30 s, too slow for a test).
        "restart_timeout 1",
        "keepalive_interval 10",
    ]


class Dashboard:
    """The real dashboard app (ingest, migrations, pages) run in-process through its lifespan."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self._running: Any = None  # the TestClient while the app runs

    def start(self) -> None:
        """Build the app and enter its lifespan: migrations, then the MQTT subscriber connects."""
        from fastapi.testclient import TestClient

        client = TestClient(create_app(self.settings, run_retention=False))
        client.__enter__()
        self._running = client

    def stop(self) -> None:
        """Leave the lifespan: the subscriber disconnects cleanly, its session stays on the broker."""
        if self._running is not None:
            self._running.__exit__(None, None, None)
            self._running = None


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it holds; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stored_message_ids(db: Session) -> list[str]:
    """Return the message ids of every event message the dashboard stored (one row per distinct id)."""
    return list(db.scalars(select(EventMessageRow.message_id)))


def edge_site_config(edge_broker: Mosquitto, tmp_path: Path) -> SiteConfig:
    """The sample site on the sample video at 2 frames/s with a whole-view danger zone (quick zone_entry)."""
    config = load_config(REPO / "samples" / "site.yaml")
    whole = ZoneConfig(id="whole-yard", name="Whole yard", polygon=WHOLE_VIEW, entry_forbidden=True)
    gate = config.cameras[0].model_copy(update={"fps": 2, "zones": [whole]})
    return config.model_copy(
        update={
            "cameras": [gate],
            "evidence": config.evidence.model_copy(
                update={"folder": tmp_path / "edge-1-evidence", "pre_s": 1, "post_s": 1}
            ),
            "rules": config.rules.model_copy(update={"debounce_s": 0.3, "max_new_events_per_min": 1000}),
            "mqtt": edge_broker.config(outbox=tmp_path / "edge-1" / "outbox.sqlite3"),
            "metrics": config.metrics.model_copy(update={"enabled": False}),
        }
    )


def write_file(folder: Path, relpath: str, size: int) -> EvidenceRef:
    """Write random bytes as the recorder would and return the file's reference."""
    data = os.urandom(size)
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return EvidenceRef(
        "clip" if relpath.endswith(".mp4") else "snapshot", relpath, hashlib.sha256(data).hexdigest()
    )


def test_events_and_evidence_cross_a_bridge_and_survive_restarts_of_every_hop(
    tmp_path: Path, pg_url: str
) -> None:
    central = Mosquitto(tmp_path / "central").start()
    edge_broker = Mosquitto(tmp_path / "edge-broker", extra_lines=bridge_lines(central)).start()
    settings = DashboardSettings(
        data_dir=tmp_path / "dashboard",
        database_url=pg_url,
        mqtt=MqttSettings(
            host="127.0.0.1",
            port=central.port,
            username=OPS_USER,
            password=OPS_PASSWORD,  # type: ignore[arg-type]
            client_id="dashboard-scale-out",
        ),
        secure_cookies=False,
    )
    dashboard = Dashboard(settings)
    engine = create_engine(pg_url)
    # What the edges really published, seen on the edge's own broker by a persistent subscriber: the truth
    # the dashboard is compared with.
    truth = Collector("127.0.0.1", edge_broker.port, [EVENTS], persistent=True, client_id="edge-truth")
    folders: dict[str, Path] = {}
    runtime: Runtime | None = None
    publisher: AlertPublisher | None = None
    seq = 0  # violations the controlled edge has sent

    def arrived() -> bool:
        published = [m.json() for m in truth.on("/events")]
        # The truth subscriber may lag behind the edge: wait until it has every message of the test's edge.
        if sum(m["edge"] == "edge-2" for m in published) < 2 * seq:
            return False
        wanted = {m["message_id"] for m in published}
        with Session(engine) as db:
            return wanted <= set(stored_message_ids(db))

    try:
        dashboard.start()
        truth.start()

        # 1. The real edge: YOLO on the sample video, zone_entry events with a snapshot and a clip each.
        config = edge_site_config(edge_broker, tmp_path)
        folders["edge-1"] = config.evidence.folder
        runtime = Runtime.build(config)
        runtime.start()

        def clip_stored() -> bool:
            with Session(engine) as db:
                kinds = db.scalars(
                    select(EvidenceFile.kind).where(
                        EvidenceFile.edge == "edge-1", EvidenceFile.stored_path.is_not(None)
                    )
                )
                return {"snapshot", "clip"} <= set(kinds)

        wait_until(clip_stored, 150, "a zone_entry snapshot and clip from the real edge")
        runtime.stop()
        runtime = None
        wait_until(arrived, 30, "every message of the real edge")

        # 2. A second edge on the same box whose timing the test controls (the real publisher and outbox).
        folder = folders["edge-2"] = tmp_path / "edge-2-evidence"
        publisher = AlertPublisher(
            edge_broker.config(outbox=tmp_path / "edge-2" / "outbox.sqlite3"),
            site(edge_id="edge-2"),
            ModelInfo("ppe", "1"),
            evidence_folder=folder,
        )
        publisher.start()
        assert publisher.wait_connected(10)

        def burst(n: int) -> None:
            """n violations: START naming a snapshot, END carrying the finished clip; both files pushed."""
            nonlocal seq
            for _ in range(n):
                seq += 1
                snapshot = write_file(folder, f"gate/2025-06-02/e{seq}.jpg", 30_000 + seq)
                clip = write_file(folder, f"gate/2025-06-02/e{seq}.mp4", 600_000 + seq)  # three chunks
                start = make_event(seq=seq, rule=Rule.NO_HELMET)
                start = replace(start, evidence=(snapshot, replace(clip, sha256=None, offset_s=1.0)))
                end = replace(start, phase=Phase.END, ended_at=start.started_at, evidence=(snapshot, clip))
                publisher.publish_event(start)
                publisher.push_evidence("gate", snapshot)
                publisher.publish_event(end)
                publisher.push_evidence("gate", clip)

        def edge_sent() -> bool:
            assert publisher is not None
            return publisher.pending == 0 and publisher.stats()["evidence"].get("backlog_files", 0) == 0

        # 2a. The dashboard is down while the edge publishes: its session on the central broker queues.
        dashboard.stop()
        burst(10)
        wait_until(edge_sent, 30, "the edge's outbox to drain")
        time.sleep(1)
        dashboard.start()
        wait_until(arrived, 60, "what was published while the dashboard was down")

        # 2b. The central broker is down: the bridge queues on the edge box; then the edge's broker restarts
        # too (graceful, so its queue is saved to disk) before the centre comes back.
        central.stop()
        burst(10)
        wait_until(edge_sent, 30, "the edge's outbox to drain into its own broker")
        edge_broker.stop()
        edge_broker.start()
        central.start()
        wait_until(arrived, 90, "what was queued on the edge box while the centre was down")

        # 2c. The edge's broker restarts while the edge publishes (the link drops under it).
        burst(5)
        edge_broker.stop()
        burst(5)
        edge_broker.start()
        wait_until(edge_sent, 30, "the edge's outbox to drain after its broker came back")
        wait_until(arrived, 60, "what was published across the edge broker's restart")

        def evidence_complete() -> bool:
            with Session(engine) as db:
                named = db.scalars(
                    select(func.count()).select_from(EvidenceFile).where(EvidenceFile.sha256.is_not(None))
                ).one()
                stored = db.scalars(
                    select(func.count())
                    .select_from(EvidenceFile)
                    .where(EvidenceFile.stored_path.is_not(None))
                ).one()
                return bool(named == stored)

        wait_until(evidence_complete, 60, "every evidence file with a checksum to be stored")
    finally:
        if runtime is not None:
            runtime.stop()
        if publisher is not None:
            publisher.stop()
        dashboard.stop()
        truth.stop()
        edge_broker.stop()
        central.stop()

    published = [m.json() for m in truth.on("/events")]
    with Session(engine) as db:
        ids = stored_message_ids(db)
        # Exactly once: every distinct message the edges sent is one timeline row, one event per event_id.
        assert sorted(ids) == sorted({m["message_id"] for m in published})
        assert db.scalar(select(func.count()).select_from(Event)) == len({m["event_id"] for m in published})
        assert {e for e in db.scalars(select(Event.edge).distinct())} == {"edge-1", "edge-2"}
        assert db.scalar(select(func.count()).select_from(Event).where(Event.edge == "edge-2")) == seq

        # Every file a message vouched for (a sha256) is stored byte for byte and linked to its events.
        vouched = {
            (m["edge"], e["path"]): e["sha256"] for m in published for e in m["evidence"] if e["sha256"]
        }
        assert len([k for k in vouched if k[0] == "edge-2"]) == 2 * seq
        assert any(k[0] == "edge-1" and k[1].endswith(".mp4") for k in vouched)
        for (edge_id, path), sha in vouched.items():
            row = db.scalar(
                select(EvidenceFile).where(EvidenceFile.edge == edge_id, EvidenceFile.path == path)
            )
            assert row is not None and row.stored_path is not None, f"{edge_id}:{path} not stored"
            data = (settings.evidence_dir / row.stored_path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sha == row.sha256
            assert data == (folders[edge_id] / path).read_bytes()
            linked = set(
                db.scalars(
                    select(Event.event_id)
                    .join(EventEvidence, EventEvidence.event_pk == Event.id)
                    .where(EventEvidence.evidence_id == row.id)
                )
            )
            naming = {m["event_id"] for m in published if any(e["path"] == path for e in m["evidence"])}
            assert linked == naming, f"{path}: linked to {linked}, named by {naming}"
    engine.dispose()
