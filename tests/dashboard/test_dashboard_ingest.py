"""Ingest handlers on real SQLite and PostgreSQL databases and real evidence files: upsert, dedupe, late
clips, retractions, and every kind of bad payload refused and counted without disturbing the good ones."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dashboard_fixtures import event_payload, make_settings
from sqlalchemy import func, select

from contract.evidence import CHUNK_BYTES, file_chunks
from dashboard.app import build_context
from dashboard.context import AppContext
from dashboard.ingest.handlers import Dispatcher, Prepared
from dashboard.storage.migrate import upgrade
from dashboard.storage.models import Camera, Edge, Event, EventMessageRow, EvidenceFile

EVENTS = "sitesentry/site-a/cameras/gate/events"
EVIDENCE = "sitesentry/site-a/edges/edge-1/evidence"


@pytest.fixture
def ingest(database_url: str, tmp_path: Path) -> Iterator[tuple[AppContext, Dispatcher]]:
    """A migrated database and the dispatcher the MQTT subscriber hands messages to."""
    ctx = build_context(make_settings(tmp_path, database_url))
    upgrade(ctx.db.engine)
    yield ctx, Dispatcher(ctx)
    ctx.db.dispose()


def _send(dispatcher: Dispatcher, payload: dict[str, object], topic: str = EVENTS) -> str:
    return dispatcher.handle(topic, json.dumps(payload).encode()).result


def test_start_update_end_is_one_event_with_a_timeline(ingest: tuple[AppContext, Dispatcher]) -> None:
    ctx, dispatcher = ingest
    event_id = uuid.uuid4()
    start = datetime(2025, 6, 2, 1, 30, tzinfo=UTC)
    for i, phase in enumerate(("start", "update", "end")):
        payload = event_payload(
            event_id=event_id, phase=phase, started_at=start, emitted_at=start + timedelta(seconds=i)
        )
        assert _send(dispatcher, payload) == "stored"
    with ctx.db.session() as db:
        events = list(db.scalars(select(Event)))
        assert len(events) == 1 and events[0].phase == "end" and events[0].ended_at is not None
        assert db.scalar(select(func.count()).select_from(EventMessageRow)) == 3


def test_a_redelivered_message_is_a_harmless_duplicate(ingest: tuple[AppContext, Dispatcher]) -> None:
    ctx, dispatcher = ingest
    payload = event_payload()
    assert _send(dispatcher, payload) == "stored"
    assert _send(dispatcher, payload) == "duplicate"
    with ctx.db.session() as db:
        assert db.scalar(select(func.count()).select_from(EventMessageRow)) == 1
    assert ctx.metrics.message_count("events", "duplicate") == 1


def test_a_repeated_end_with_a_late_clip_updates_the_event(ingest: tuple[AppContext, Dispatcher]) -> None:
    ctx, dispatcher = ingest
    event_id = uuid.uuid4()
    start = datetime(2025, 6, 2, 1, 30, tzinfo=UTC)
    clip = {"kind": "clip", "path": "gate/clip.mp4", "sha256": None, "offset_s": 3.0}
    snap = {"kind": "snapshot", "path": "gate/snap.jpg", "sha256": "a" * 64, "offset_s": None}
    _send(
        dispatcher, event_payload(event_id=event_id, phase="start", started_at=start, evidence=[snap, clip])
    )
    _send(dispatcher, event_payload(event_id=event_id, phase="end", started_at=start, evidence=[snap, clip],
                                    emitted_at=start + timedelta(seconds=6)))  # fmt: skip
    late = {**clip, "sha256": "b" * 64}
    repeated = event_payload(event_id=event_id, phase="end", started_at=start, evidence=[snap, late],
                             emitted_at=start + timedelta(seconds=9), end_reason="cleared")  # fmt: skip
    assert _send(dispatcher, repeated) == "stored"
    with ctx.db.session() as db:
        assert db.scalar(select(func.count()).select_from(Event)) == 1
        event = db.scalars(select(Event)).one()
        assert event.phase == "end" and event.end_reason == "cleared"
        files = {link.evidence.path: link for link in event.evidence_links}
        assert files["gate/clip.mp4"].evidence.sha256 == "b" * 64 and files["gate/clip.mp4"].offset_s == 3.0


def test_a_retracted_clip_is_unlinked_and_an_update_never_reopens(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    event_id = uuid.uuid4()
    start = datetime(2025, 6, 2, 1, 30, tzinfo=UTC)
    clip = {"kind": "clip", "path": "gate/clip.mp4", "sha256": None, "offset_s": 0.0}
    snap = {"kind": "snapshot", "path": "gate/snap.jpg", "sha256": None, "offset_s": None}
    _send(dispatcher, event_payload(event_id=event_id, phase="end", started_at=start, evidence=[snap, clip]))
    _send(dispatcher, event_payload(event_id=event_id, phase="update", started_at=start, evidence=[snap],
                                    emitted_at=start + timedelta(seconds=30)))  # fmt: skip
    with ctx.db.session() as db:
        event = db.scalars(select(Event)).one()
        assert event.phase == "end"
        assert [link.evidence.path for link in event.evidence_links] == ["gate/snap.jpg"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (json.dumps({**event_payload(), "schema_version": 99}).encode(), "unknown_version"),
        (json.dumps({**event_payload(), "confidence": 7}).encode(), "malformed"),
        (json.dumps({**event_payload(), "surprise": 1}).encode(), "malformed"),
        (json.dumps(event_payload(camera="other")).encode(), "topic_mismatch"),
        (b"{" + b" " * 70_000 + b"}", "oversized"),
    ],
)
def test_bad_payloads_are_rejected_counted_and_good_ones_still_stored(
    ingest: tuple[AppContext, Dispatcher], payload: bytes, reason: str
) -> None:
    ctx, dispatcher = ingest
    outcome = dispatcher.handle(EVENTS, payload)
    assert (outcome.result, outcome.reason) == ("rejected", reason)
    assert ctx.metrics.rejected_count("events", reason) == 1
    assert _send(dispatcher, event_payload()) == "stored"


def test_status_heartbeat_zones_and_snapshot_update_the_latest_state(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    now = datetime.now(UTC)
    base = {"schema_version": 1, "site": "site-a", "edge": "edge-1"}
    status = {**base, "state": "online", "at": now.isoformat(), "version": "0.1.0", "heartbeat_s": 30}
    assert _send(dispatcher, status, "sitesentry/site-a/edges/edge-1/status") == "stored"
    camera = {**base, "camera": "gate", "state": "online", "at": now.isoformat()}
    assert _send(dispatcher, camera, "sitesentry/site-a/cameras/gate/status") == "stored"
    older = {**camera, "state": "offline", "at": (now - timedelta(hours=1)).isoformat()}
    assert _send(dispatcher, older, "sitesentry/site-a/cameras/gate/status") == "stale"
    outbox = {"pending": 0, "delivered_total": 3, "dropped_total": 0}
    heartbeat = {**base, "at": now.isoformat(), "uptime_s": 5, "cameras": {"gate": {"fps": 12.5}},
                 "queues": {}, "outbox": outbox, "reconnects": 0}  # fmt: skip
    assert _send(dispatcher, heartbeat, "sitesentry/site-a/edges/edge-1/heartbeat") == "stored"
    zones = {**base, "camera": "gate", "at": now.isoformat(),
             "zones": [{"id": "pit", "polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}]}  # fmt: skip
    assert _send(dispatcher, zones, "sitesentry/site-a/cameras/gate/zones") == "stored"
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 100
    assert dispatcher.handle("sitesentry/site-a/cameras/gate/snapshot", jpeg).result == "stored"
    assert dispatcher.handle("sitesentry/site-a/cameras/gate/snapshot", b"GIF89a").reason == "malformed"
    with ctx.db.session() as db:
        row = db.scalars(select(Camera)).one()
        assert (row.state, row.fps, row.zones[0]["id"]) == ("online", 12.5, "pit")
        assert (ctx.settings.evidence_dir / row.snapshot_path).read_bytes() == jpeg
        assert db.scalars(select(Edge)).one().heartbeat_s == 30


def _chunks(data: bytes, path: str = "gate/clip.mp4") -> list[bytes]:
    return list(file_chunks(data, site="site-a", edge="edge-1", camera="gate", kind="clip", path=path))


def test_evidence_chunks_out_of_order_and_twice_make_one_verified_file(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    data = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 10)  # three chunks
    chunks = _chunks(data)
    assert len(chunks) == 3
    _send(
        dispatcher,
        event_payload(evidence=[{"kind": "clip", "path": "gate/clip.mp4", "sha256": None, "offset_s": 0}]),
    )
    results = [
        dispatcher.handle(EVIDENCE, chunk).result for chunk in (chunks[2], chunks[0], chunks[0], chunks[1])
    ]
    assert results == ["partial", "partial", "partial", "stored"]
    assert dispatcher.handle(EVIDENCE, chunks[1]).result == "duplicate"
    target = ctx.settings.evidence_dir / "site-a" / "edge-1" / "gate" / "clip.mp4"
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    with ctx.db.session() as db:
        row = db.scalars(select(EvidenceFile)).one()
        assert row.stored_path == "site-a/edge-1/gate/clip.mp4" and len(row.links) == 1
    assert not any(ctx.settings.scratch_dir.iterdir())


def test_evidence_whose_bytes_do_not_match_its_sha256_is_refused(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    data = b"x" * (CHUNK_BYTES + 5)
    good = _chunks(data)
    bad_tail = _chunks(b"x" * CHUNK_BYTES + b"y" * 5)[1]
    # Same header (sha of `data`) but other bytes: splice the header of the good chunk onto the bad bytes.
    forged = good[1].partition(b"\n")[0] + b"\n" + bad_tail.partition(b"\n")[2]
    assert dispatcher.handle(EVIDENCE, good[0]).result == "partial"
    outcome = dispatcher.handle(EVIDENCE, forged)
    assert (outcome.result, outcome.reason) == ("rejected", "sha_mismatch")
    assert ctx.metrics.rejected_count("evidence", "sha_mismatch") == 1
    assert not (ctx.settings.evidence_dir / "site-a" / "edge-1" / "gate" / "clip.mp4").exists()


def test_evidence_paths_that_climb_out_and_other_edges_are_refused(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    chunk = _chunks(b"data")[0]
    header, _, data = chunk.partition(b"\n")
    climbing = header.replace(b'"gate/clip.mp4"', b'"../../../etc/cron.d/x"') + b"\n" + data
    assert dispatcher.handle(EVIDENCE, climbing).reason == "malformed"
    assert dispatcher.handle("sitesentry/site-a/edges/edge-2/evidence", chunk).reason == "topic_mismatch"
    huge = header + b"\n" + b"z" * (CHUNK_BYTES + 5000)
    assert dispatcher.handle(EVIDENCE, huge).reason == "oversized"
    assert not list(ctx.settings.evidence_dir.rglob("*"))


def _prepared(dispatcher: Dispatcher, payloads: list[bytes], topic: str = EVENTS) -> list[Prepared]:
    items = [dispatcher.prepare(topic, payload) for payload in payloads]
    return [item for item in items if isinstance(item, Prepared)]


def test_a_batch_stores_a_message_id_once_and_keeps_an_events_order(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    event_id = uuid.uuid4()
    start = datetime(2025, 6, 2, 1, 30, tzinfo=UTC)
    clip = {"kind": "clip", "path": "gate/clip.mp4", "sha256": None, "offset_s": 3.0}
    snap = {"kind": "snapshot", "path": "gate/snap.jpg", "sha256": "a" * 64, "offset_s": None}
    first = event_payload(event_id=event_id, phase="start", started_at=start, evidence=[snap, clip])
    late = {**clip, "sha256": "b" * 64}
    end = event_payload(event_id=event_id, phase="end", started_at=start, evidence=[snap, late],
                        emitted_at=start + timedelta(seconds=6), end_reason="cleared")  # fmt: skip
    other = event_payload()
    payloads = [json.dumps(p).encode() for p in (first, first, end, other, end, other)]
    outcomes = dispatcher.store(_prepared(dispatcher, payloads))
    assert [o.result for o in outcomes] == [
        "stored",
        "duplicate",
        "stored",
        "stored",
        "duplicate",
        "duplicate",
    ]
    # A later batch with the same ids: duplicates too.
    again = dispatcher.store(_prepared(dispatcher, payloads[:1]))
    assert [o.result for o in again] == ["duplicate"]
    with ctx.db.session() as db:
        assert db.scalar(select(func.count()).select_from(EventMessageRow)) == 3
        assert db.scalar(select(func.count()).select_from(Event)) == 2
        event = db.scalars(select(Event).where(Event.event_id == str(event_id))).one()
        assert (event.phase, event.end_reason) == ("end", "cleared")
        assert [m.type for m in event.messages] == ["start", "end"]
        files = {link.evidence.path: link for link in event.evidence_links}
        assert set(files) == {"gate/snap.jpg", "gate/clip.mp4"}
        assert files["gate/clip.mp4"].evidence.sha256 == "b" * 64 and files["gate/clip.mp4"].offset_s == 3.0
    assert ctx.metrics.message_count("events", "duplicate") == 4


def test_a_clip_retracted_within_a_batch_is_not_linked(ingest: tuple[AppContext, Dispatcher]) -> None:
    ctx, dispatcher = ingest
    event_id = uuid.uuid4()
    start = datetime(2025, 6, 2, 1, 30, tzinfo=UTC)
    clip = {"kind": "clip", "path": "gate/clip.mp4", "sha256": None, "offset_s": 0.0}
    snap = {"kind": "snapshot", "path": "gate/snap.jpg", "sha256": None, "offset_s": None}
    end = event_payload(event_id=event_id, phase="end", started_at=start, evidence=[snap, clip])
    update = event_payload(event_id=event_id, phase="update", started_at=start, evidence=[snap],
                           emitted_at=start + timedelta(seconds=30))  # fmt: skip
    dispatcher.store(_prepared(dispatcher, [json.dumps(end).encode(), json.dumps(update).encode()]))
    with ctx.db.session() as db:
        event = db.scalars(select(Event)).one()
        assert event.phase == "end"
        assert [link.evidence.path for link in event.evidence_links] == ["gate/snap.jpg"]


def test_bad_messages_in_a_burst_are_refused_before_the_batch_and_the_rest_stored(
    ingest: tuple[AppContext, Dispatcher],
) -> None:
    ctx, dispatcher = ingest
    good = [json.dumps(event_payload()).encode() for _ in range(6)]
    burst = [
        *good[:3],
        b"not json",
        json.dumps({**event_payload(), "schema_version": 99}).encode(),
        *good[3:],
    ]
    prepared = [dispatcher.prepare(EVENTS, payload) for payload in burst]
    assert [getattr(item, "reason", None) for item in prepared][3:5] == ["malformed", "unknown_version"]
    outcomes = dispatcher.store([item for item in prepared if isinstance(item, Prepared)])
    assert [o.result for o in outcomes] == ["stored"] * 6
    with ctx.db.session() as db:
        assert db.scalar(select(func.count()).select_from(EventMessageRow)) == 6
