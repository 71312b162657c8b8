"""The durable outbox: every alert is committed to SQLite (WAL) before it is published, removed on PUBACK."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    droppable INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_droppable ON outbox (droppable, id);
"""
_DROP_LOG_EVERY_S = 10.0


class OutboxError(ValueError):
    """The outbox file cannot be used (message names the file and what to do)."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One stored message, in the order it was written."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: str  # what it is, for logs and metrics, e.g. "event:update"
    key: str  # ordering key (the camera id): messages of one key are delivered in id order
    created_at: float  # wall-clock seconds


class Outbox:
    """A bounded, ordered, crash-safe queue of messages waiting for the broker's acknowledgement.

    When full, the oldest droppable message (an event update) goes first, then the oldest of any kind;
    every drop is counted and logged. One process at a time may open a file (an exclusive lock).
    """

    def __init__(
        self,
        path: Path,
        max_messages: int,
        *,
        fsync: bool = True,
        on_drop: Callable[[OutboxMessage], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_messages = max_messages
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self.dropped_total = 0
        self.delivered_total = 0
        self._dropped_unlogged = 0
        self._last_drop_log = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_file_lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives a power cut of the edge box, not only a crash of the process.
            self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
            self._count = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            self._release_file_lock()
            raise OutboxError(
                f"outbox {self.path} is not a usable SQLite database ({exc}); move it aside to start empty"
            ) from None
        if self._count:
            log.info(
                "outbox %s holds %d undelivered message(s); they will be sent first", self.path, self._count
            )

    def _take_file_lock(self) -> int:
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxError(
                f"outbox {self.path} is in use by another process; give each edge process its own outbox"
            ) from None
        return fd

    def _release_file_lock(self) -> None:
        if self._lock_file >= 0:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            os.close(self._lock_file)
            self._lock_file = -1

    def __len__(self) -> int:
        return self._count

    def add(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        kind: str = "event",
        key: str = "",
        droppable: bool = False,
    ) -> int:
        """Commit a message (making room first if full) and return its id; it is on disk when this returns."""
        dropped: OutboxMessage | None = None
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if self._count >= self.max_messages:
                    dropped = self._drop_one()
                cur = db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain, kind, key, droppable, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), kind, key, int(droppable), time.time()),
                )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot write the outbox ({exc})") from exc
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if dropped is not None:
                self._count -= 1
                self.dropped_total += 1
            self._count += 1
            row_id = cur.lastrowid
        if dropped is not None:
            self._report_drop(dropped)
        assert row_id is not None
        return row_id

    def _drop_one(self) -> OutboxMessage | None:
        columns = "id, topic, payload, qos, retain, kind, key, created_at"
        row = (
            self._db.execute(
                f"SELECT {columns} FROM outbox WHERE droppable = 1 ORDER BY id LIMIT 1"
            ).fetchone()
            or self._db.execute(f"SELECT {columns} FROM outbox ORDER BY id LIMIT 1").fetchone()
        )
        if row is None:
            return None
        self._db.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
        return _message(row)

    def _report_drop(self, message: OutboxMessage) -> None:
        if self._on_drop is not None:
            self._on_drop(message)
        self._dropped_unlogged += 1
        now = time.monotonic()
        # One warning per interval, carrying the count, so a long outage is loud but does not flood the log.
        if now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            log.warning(
                "outbox %s is full (%d messages): dropped %d message(s), latest the oldest %s on %s; "
                "%d dropped since start",
                self.path,
                self.max_messages,
                self._dropped_unlogged,
                message.kind,
                message.topic,
                self.dropped_total,
            )
            self._dropped_unlogged = 0
            self._last_drop_log = now

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Return up to `limit` messages with an id above `after_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, kind, key, created_at FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [_message(row) for row in rows]

    def mark_delivered(self, ids: Iterable[int]) -> int:
        """Remove acknowledged messages in one transaction; return how many were still stored."""
        id_list = list(ids)
        if not id_list:
            return 0
        removed = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for start in range(0, len(id_list), 500):
                    chunk = id_list[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= removed
            self.delivered_total += removed
        return removed

    def last_id(self) -> int:
        """Return the id of the newest stored message, 0 when empty."""
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM outbox").fetchone()
        return int(row[0] or 0)

    def count_kind(self, prefix: str) -> int:
        """Return how many stored messages have a kind starting with `prefix` (e.g. "evidence:")."""
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM outbox WHERE substr(kind, 1, ?) = ?", (len(prefix), prefix)
            ).fetchone()
        return int(row[0])

    def oldest_age_s(self) -> float | None:
        """Return how long the oldest waiting message has waited, or None when empty."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created_at) FROM outbox").fetchone()
        return None if row is None or row[0] is None else max(0.0, time.time() - float(row[0]))

    def close(self) -> None:
        """Close the database and release the file lock."""
        with self._lock:
            if self._lock_file < 0:
                return
            self._db.close()
            self._release_file_lock()


def _message(row: tuple[int, str, bytes, int, int, str, str, float]) -> OutboxMessage:
    return OutboxMessage(
        id=row[0],
        topic=row[1],
        payload=bytes(row[2]),
        qos=row[3],
        retain=bool(row[4]),
        kind=row[5],
        key=row[6],
        created_at=row[7],
    )
