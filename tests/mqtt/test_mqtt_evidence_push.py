"""Evidence push: snapshots and clips reach a subscriber on another machine in chunks, byte for byte, across
broker and edge restarts; deleted files are skipped and a backlog is bounded."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from mqtt_fixtures import Collector, Mosquitto, Received, make_event, schema_errors, site

from contract.evidence import CHUNK_BYTES, EvidenceChunk, decode_chunk
from edge.dataflow import EvidenceRef
from edge.mqtt import AlertPublisher, ModelInfo
from edge.mqtt.evidence_push import WINDOW_CHUNKS, EvidencePusher
from edge.mqtt.outbox import Outbox

EVIDENCE = "sitesentry/test-site/edges/edge-1/evidence"
HEARTBEAT = "sitesentry/test-site/edges/edge-1/heartbeat"


def write(folder: Path, relpath: str, size: int) -> EvidenceRef:
    """Write a file of random bytes as the recorder would, and return its reference."""
    data = os.urandom(size)
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    kind = "clip" if relpath.endswith(".mp4") else "snapshot"
    return EvidenceRef(kind, relpath, hashlib.sha256(data).hexdigest())


def reassemble(messages: list[Received]) -> dict[str, bytes]:
    """What the dashboard does: collect chunks by checksum (duplicates allowed), keep files that verify."""
    parts: dict[str, dict[int, bytes]] = {}
    headers: dict[str, EvidenceChunk] = {}
    for message in messages:
        header, data = decode_chunk(message.payload)
        parts.setdefault(header.sha256, {})[header.index] = data
        headers[header.sha256] = header
    files = {}
    for sha, chunks in parts.items():
        header = headers[sha]
        if len(chunks) == header.count:
            data = b"".join(chunks[i] for i in range(header.count))
            if hashlib.sha256(data).hexdigest() == sha:
                files[header.path] = data
    return files


def test_a_snapshot_and_a_multi_chunk_clip_arrive_byte_identical(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    folder = tmp_path / "evidence"
    snapshot = write(folder, "gate/2025-06-02/e1.jpg", 40_000)
    clip = write(folder, "gate/2025-06-02/e1.mp4", 3 * CHUNK_BYTES + 1234)  # four chunks, the last short
    dashboard = Collector("127.0.0.1", mosquitto.port, [EVIDENCE, HEARTBEAT]).start()
    config = mosquitto.config(outbox=tmp_path / "outbox.sqlite3")
    pub = AlertPublisher(config, site(), ModelInfo("ppe", "1"), evidence_folder=folder)
    pub.start()
    try:
        pub.publish_event(make_event())
        pub.push_evidence("gate", snapshot)
        pub.push_evidence("gate", clip)
        pub.push_evidence("gate", clip)  # a second event sharing the clip: sent once
        assert dashboard.wait_for(lambda ms: len(reassemble([m for m in ms if m.topic == EVIDENCE])) == 2, 30)
        assert pub.wait_delivered(10)
        before = len(dashboard.on("/heartbeat"))  # one goes out on connect too (and stays retained)
        pub.heartbeat()
        assert dashboard.wait_for(lambda ms: len([m for m in ms if m.topic == HEARTBEAT]) > before)
        stats = pub.stats()["evidence"]
    finally:
        pub.stop()
        dashboard.stop()
    chunks = dashboard.on("/evidence")
    files = reassemble(chunks)
    assert files == {
        snapshot.path: (folder / snapshot.path).read_bytes(),
        clip.path: (folder / clip.path).read_bytes(),
    }
    headers = [decode_chunk(m.payload)[0] for m in chunks]
    assert {(h.site, h.edge, h.camera, h.kind, h.path, h.count) for h in headers} == {
        ("test-site", "edge-1", "gate", "snapshot", snapshot.path, 1),
        ("test-site", "edge-1", "gate", "clip", clip.path, 4),
    }
    assert all(not m.retain for m in chunks)
    assert schema_errors("evidence-chunk", chunks[0].payload.partition(b"\n")[0]) == []
    assert (stats["queued"], stats["sent"], stats["backlog_files"]) == (2, 2, 0)
    queues = dashboard.on("/heartbeat")[-1].json()["queues"]
    assert queues["evidence_push"] == {"depth": 0, "capacity": None, "dropped": 0}


def test_a_clip_survives_a_broker_restart_mid_transfer_and_an_edge_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    folder = tmp_path / "evidence"
    clip = write(
        folder, "yard/2025-06-02/e2.mp4", 40 * CHUNK_BYTES - 17
    )  # 40 chunks: 10 feeder rounds at least
    # The dashboard keeps a persistent session, so chunks sent while it reconnects wait for it at the broker.
    dashboard = Collector(
        "127.0.0.1", mosquitto.port, [EVIDENCE], persistent=True, client_id="dashboard-ingest"
    ).start()
    config = mosquitto.config(outbox=tmp_path / "outbox.sqlite3")
    pub = AlertPublisher(config, site(), ModelInfo("ppe", "1"), evidence_folder=folder)
    pub.start()
    assert pub.wait_connected(10)
    pub.push_evidence("yard", clip)
    assert dashboard.wait_for(lambda ms: len(ms) >= 2, 30)
    mosquitto.stop()
    received_before = {decode_chunk(m.payload)[0].index for m in dashboard.on("/evidence")}
    assert 2 <= len(received_before) < 40, "the broker stopped in the middle of the transfer"
    pub.stop(timeout=1.0)  # the edge restarts too while the broker is down; its outbox keeps the rest
    mosquitto.start()
    pub = AlertPublisher(config, site(), ModelInfo("ppe", "1"), evidence_folder=folder)
    pub.start()
    try:
        assert dashboard.wait_for(lambda ms: clip.path in reassemble(ms), 60), (
            f"{len({decode_chunk(m.payload)[0].index for m in dashboard.on('/evidence')})} of 40 chunks"
        )
        assert pub.wait_delivered(10)
    finally:
        pub.stop()
        dashboard.stop()
    assert reassemble(dashboard.on("/evidence"))[clip.path] == (folder / clip.path).read_bytes()


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", 1000, fsync=False)


def pusher_for(outbox: Outbox, folder: Path, backlog_bytes: int = 10**9) -> EvidencePusher:
    return EvidencePusher(
        outbox,
        folder=folder,
        topic=EVIDENCE,
        site="test-site",
        edge="edge-1",
        backlog_bytes=backlog_bytes,
        on_added=lambda _row: None,
        fsync=False,
    )


def sent_paths(outbox: Outbox) -> list[tuple[str, int]]:
    return [(h.path, h.index) for h, _ in (decode_chunk(r.payload) for r in outbox.pending(limit=1000))]


def test_a_file_deleted_by_retention_before_it_was_sent_is_skipped_and_counted(
    outbox: Outbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "evidence"
    first = write(folder, "gate/2025-06-02/a.jpg", 1000)
    second = write(folder, "gate/2025-06-02/b.jpg", 1000)
    pusher = pusher_for(outbox, folder)
    pusher.push("gate", first)
    pusher.push("gate", second)
    (folder / first.path).unlink()  # the retention sweep got there first (a long outage)
    with caplog.at_level(logging.WARNING):
        assert pusher.feed() == 1
    assert sent_paths(outbox) == [(second.path, 0)]
    assert pusher.stats()["missing"] == 1 and pusher.figures().dropped == 1
    assert "gate/2025-06-02/a.jpg was deleted (retention?) before it was sent" in caplog.text
    pusher.stop()


def test_only_a_window_of_chunks_sits_in_the_outbox_and_the_rest_survives_a_restart(
    outbox: Outbox, tmp_path: Path
) -> None:
    folder = tmp_path / "evidence"
    clip = write(folder, "gate/2025-06-02/c.mp4", 10 * CHUNK_BYTES)
    pusher = pusher_for(outbox, folder)
    pusher.push("gate", clip)
    assert pusher.feed() == WINDOW_CHUNKS
    assert pusher.feed() == 0, "no more until the broker acknowledged some"
    assert outbox.count_kind("evidence:") == WINDOW_CHUNKS
    acknowledged = sent_paths(outbox)[:2]
    outbox.mark_delivered([r.id for r in outbox.pending()][:2])
    assert pusher.feed() == 2
    pusher.stop()
    outbox.close()  # the edge restarts: four chunks wait in the outbox, four in the file
    reopened = Outbox(outbox.path, 1000, fsync=False)
    pusher = pusher_for(reopened, folder)
    assert pusher.stats()["backlog_files"] == 1
    while True:
        acknowledged += sent_paths(reopened)
        reopened.mark_delivered([r.id for r in reopened.pending()])
        if not pusher.feed():
            break
    assert acknowledged == [(clip.path, i) for i in range(10)]
    assert pusher.stats()["sent"] == 1 and pusher.stats()["backlog_files"] == 0
    pusher.stop()
    reopened.close()


def test_the_backlog_is_bounded_dropping_the_oldest_clip_first(outbox: Outbox, tmp_path: Path) -> None:
    folder = tmp_path / "evidence"
    pusher = pusher_for(outbox, folder, backlog_bytes=1000)
    old_clip = write(folder, "gate/2025-06-02/1.mp4", 400)
    snapshot = write(folder, "gate/2025-06-02/2.jpg", 300)
    new_clip = write(folder, "gate/2025-06-02/3.mp4", 400)
    huge = write(folder, "gate/2025-06-02/4.mp4", 1001)
    for ref in (old_clip, snapshot, new_clip, huge):
        pusher.push("gate", ref)
    sent = []
    while pusher.feed():
        sent += sent_paths(outbox)
        outbox.mark_delivered([r.id for r in outbox.pending()])
    assert sent == [(snapshot.path, 0), (new_clip.path, 0)]
    assert pusher.stats() == {
        "queued": 3,
        "dropped_backlog": 2,
        "sent": 2,
        "backlog_files": 0,
        "backlog_bytes": 0,
    }
    assert pusher.figures().dropped == 2
    pusher.stop()
