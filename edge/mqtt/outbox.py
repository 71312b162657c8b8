"""The durable outbox: every alert is committed to SQLite (WAL) before it is published, removed on PUBACK."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
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
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
"""
_DROP_LOG_EVERY_S = 10.0
#: SQLite's "database or disk is full" result code: sqlite3.SQLITE_FULL (and sqlite_errorcode) are 3.11+.
_SQLITE_FULL = 13
#: Kept free next to the outbox and given up when the disk is full, so acknowledged messages can still be
#: deleted (a DELETE in WAL mode needs room too) and are not sent again after a restart.
RESERVE_BYTES = 4 * 1024 * 1024
#: State changes written with a message: key -> value, or None to delete the key.
StateChanges = Mapping[str, bytes | None]


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

    Over 250 lines because the queue, its drop policy, the state table and the disk-full handling (the
    reserve file, deletes left for later) share one SQLite connection and lock; each method is short.
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
        # Acknowledged but not yet deleted (the disk was full): never handed out again by this process.
        self._settled: set[int] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = self._take_file_lock()
        self._reserve = self.path.with_name(self.path.name + ".reserve")
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
        self._refill_reserve()

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
        return self._count - len(self._settled)

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
        state: StateChanges | None = None,
    ) -> int:
        """Commit a message (making room first if full) and return its id; it is on disk when this returns.

        `state` changes are committed in the same transaction, so they hold exactly when the message does.
        """
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
                self._write_state(state or {})
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

    def _write_state(self, changes: StateChanges) -> None:
        for key, value in changes.items():
            if value is None:
                self._db.execute("DELETE FROM state WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO state (key, value) VALUES (?, ?)"
                    " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def put_state(self, changes: StateChanges) -> None:
        """Commit state changes (key -> value, None deletes) without a message; raises OutboxError."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._write_state(changes)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise OutboxError(f"{self.path}: cannot write the outbox ({exc})") from exc

    def state_items(self, prefix: str) -> list[tuple[str, bytes]]:
        """Return the stored state entries whose key starts with `prefix`, in key order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, value FROM state WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
            ).fetchall()
        return [(str(k), bytes(v)) for k, v in rows]

    def pending(self, after_id: int = 0, limit: int = 100) -> list[OutboxMessage]:
        """Return up to `limit` messages with an id above `after_id`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, kind, key, created_at FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit + len(self._settled)),
            ).fetchall()
            settled = set(self._settled)
        return [_message(row) for row in rows if row[0] not in settled][:limit]

    def mark_delivered(self, ids: Iterable[int]) -> int:
        """Remove acknowledged messages in one transaction; return how many were still stored.

        When the disk is full the reserve file is given up and the delete tried again; if it still fails
        the ids are remembered and never handed out again, and deleted on a later call.
        """
        id_list = list(ids)
        with self._lock:
            todo = sorted(self._settled.union(id_list))
            if not todo:
                return 0
            try:
                removed = self._delete(todo)
            except sqlite3.OperationalError as exc:
                if not self._is_full(exc) or not self._release_reserve():
                    self._settled.update(id_list)
                    raise OutboxError(f"{self.path}: cannot remove delivered messages ({exc})") from exc
                try:
                    removed = self._delete(todo)
                except sqlite3.Error as again:
                    self._settled.update(id_list)
                    raise OutboxError(
                        f"{self.path}: cannot remove delivered messages ({again}); they will not be sent "
                        "again by this process"
                    ) from again
            self._settled.clear()
            self._count -= removed
            self.delivered_total += removed
        return removed

    def _delete(self, ids: list[int]) -> int:
        removed = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                removed += self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): only roll back what is still open.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        return removed

    @staticmethod
    def _is_full(exc: sqlite3.Error) -> bool:
        return "full" in str(exc).lower() or getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL

    def _release_reserve(self) -> bool:
        try:
            self._reserve.unlink()
        except FileNotFoundError:
            return False
        except OSError:
            return False
        log.warning("outbox %s: the disk is full; released %d reserved bytes", self.path, RESERVE_BYTES)
        return True

    def _refill_reserve(self) -> None:
        """Take the reserve back when there is room for it and some to spare; best effort."""
        try:
            if self._reserve.exists() or shutil.disk_usage(self.path.parent).free < 4 * RESERVE_BYTES:
                return
            with open(self._reserve, "wb") as f:
                os.posix_fallocate(f.fileno(), 0, RESERVE_BYTES)
        except OSError:
            self._reserve.unlink(missing_ok=True)

    def settle_disk(self) -> None:
        """Retry deletes left by a full disk and take the reserve back when there is room (pump, idle)."""
        if self._settled:
            try:
                self.mark_delivered(())
            except OutboxError:
                return
        self._refill_reserve()

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
