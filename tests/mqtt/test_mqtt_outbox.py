"""The durable outbox: ordered, crash-safe, bounded with a counted and logged drop policy."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from edge.mqtt.outbox import Outbox, OutboxError


def test_messages_come_back_in_write_order_and_leave_once_delivered(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 100)
    ids = [box.add(f"t/{i % 2}", f"m{i}".encode(), key=f"cam{i % 2}") for i in range(6)]
    assert [m.payload for m in box.pending()] == [f"m{i}".encode() for i in range(6)]
    assert [m.id for m in box.pending(after_id=ids[2], limit=2)] == ids[3:5]
    assert box.mark_delivered([ids[0], ids[3], 999]) == 2
    assert [m.payload for m in box.pending()] == [b"m1", b"m2", b"m4", b"m5"]
    assert (len(box), box.delivered_total, box.last_id()) == (4, 2, ids[-1])
    box.close()


def test_undelivered_messages_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, 100)
    first = box.add("t", b"kept", qos=1, retain=False, kind="event:start", key="gate")
    box.close()
    reopened = Outbox(path, 100)
    [message] = reopened.pending()
    assert (message.id, message.payload, message.kind, message.key, message.qos) == (
        first,
        b"kept",
        "event:start",
        "gate",
        1,
    )
    assert reopened.add("t", b"next") > first
    reopened.close()


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    Outbox(tmp_path / "o.sqlite3", 100).close()
    with sqlite3.connect(tmp_path / "o.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_full_outbox_drops_the_oldest_update_first_then_the_oldest_message(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dropped = []
    box = Outbox(tmp_path / "o.sqlite3", 100, on_drop=dropped.append)
    for i in range(100):
        box.add("t", f"start{i}".encode(), kind="event:start", droppable=False)
    box.add("t", b"update0", kind="event:update", droppable=True)  # full: start0 goes (no update yet stored)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt.outbox"):
        box.add("t", b"update1", kind="event:update", droppable=True)  # update0 goes, not start1
        box.add("t", b"end", kind="event:end", droppable=False)  # update1 goes
    kept = [m.payload for m in box.pending(limit=1000)]
    assert len(kept) == 100
    assert kept[0] == b"start1" and kept[-1] == b"end"
    assert b"update0" not in kept and b"update1" not in kept
    assert [m.payload for m in dropped] == [b"start0", b"update0", b"update1"]
    assert box.dropped_total == 3
    assert "outbox" in caplog.text and "is full" in caplog.text
    box.close()


def test_a_second_user_of_the_same_outbox_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", 100)
    with pytest.raises(OutboxError, match="in use by another process"):
        Outbox(tmp_path / "o.sqlite3", 100)
    box.close()
    Outbox(tmp_path / "o.sqlite3", 100).close()


def test_a_file_that_is_not_a_database_gives_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OutboxError, match="not a usable SQLite database.*move it aside"):
        Outbox(path, 100)
