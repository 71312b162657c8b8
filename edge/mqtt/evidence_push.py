"""Evidence push: every snapshot and clip goes to the dashboard over MQTT, in chunks, through the outbox.

Edge boxes sit behind NAT and 4G routers, so the dashboard cannot fetch files from them; the edge sends
them instead, as `contract.evidence` chunk messages on `<prefix>/<site>/edges/<edge>/evidence`.

How, and why this way:

- A file waiting to be sent is one small row (path, checksum, size, next chunk) in the table
  `evidence_queue` of the outbox's SQLite file, committed before `push` returns, so it survives a restart
  of the edge; the file's bytes stay where the recorder wrote them.
- A feeder thread copies the next chunks into the outbox as ordinary QoS 1 messages (kind `evidence:<kind>`,
  droppable), at most `WINDOW_CHUNKS` at a time. The outbox sends in write order, so an alert written
  while a clip is on its way waits behind at most that many chunks (1 MiB), not behind the whole backlog,
  and the outbox database never holds more than that much evidence.
- The backlog of waiting files is bounded (`mqtt.evidence_backlog_mb`): past it the oldest waiting clips,
  then snapshots, are dropped. Evidence never displaces an alert.
- Retention may delete a file before its turn: it is skipped with a log line and a counter.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, cast

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter

from contract.evidence import CHUNK_BYTES, MAX_FILE_BYTES, EvidenceChunk, chunk_count, encode_chunk
from contract.payloads import SCHEMA_VERSION, QueueFigures
from edge.dataflow import EvidenceRef
from edge.mqtt.outbox import Outbox, OutboxError

log = logging.getLogger(__name__)

#: Evidence chunks in the outbox at once: what an alert written now may have to wait behind.
WINDOW_CHUNKS = 4
#: How often the feeder looks for room when nothing wakes it (acknowledgements do not).
IDLE_WAIT_S = 0.2
#: Outbox kinds of evidence chunks start with this.
KIND_PREFIX = "evidence:"
_RECENT_KEPT = 512  # (path, sha256) pairs remembered: events sharing a clip push it once
_LOG_EVERY_S = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS evidence_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    next_index INTEGER NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (path, sha256)
);
"""


@dataclass(frozen=True, slots=True)
class QueuedFile:
    """A file waiting to be sent, and the chunk to send next."""

    id: int
    camera: str
    kind: Literal["snapshot", "clip"]
    path: str  # relative to the evidence folder
    sha256: str
    size: int
    next_index: int


class _Skip(Exception):
    """The file cannot be sent any more (deleted, changed, unreadable); `reason` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class EvidencePusher:
    """Queues evidence files durably and feeds their chunks into the outbox a few at a time.

    Over 250 lines because the durable queue, the feeder thread, the backlog limit and their metrics all
    work on one SQLite table under one lock; each method is short.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        folder: Path,
        topic: str,
        site: str,
        edge: str,
        backlog_bytes: int,
        on_added: Callable[[int], None],
        registry: CollectorRegistry | None = None,
        fsync: bool = True,
    ) -> None:
        self._outbox = outbox
        self._folder = Path(folder)
        self._topic = topic
        self._site = site
        self._edge = edge
        self._backlog_bytes = backlog_bytes
        self._on_added = on_added
        self._lock = threading.Lock()
        # Our own connection to the outbox's file: the table lives beside the outbox and under its file lock.
        self._db = sqlite3.connect(outbox.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.executescript(_SCHEMA)
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._counts: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        files, waiting = self._backlog()
        if files:
            log.info(
                "evidence push: %d file(s) (%.1f MB) wait from before; sending them first",
                files,
                waiting / 1e6,
            )
        r = registry
        self._files = MetricCounter(
            "sitesentry_mqtt_evidence_files",
            "Evidence files by outcome: queued, sent (every chunk in the outbox), dropped_backlog, missing "
            "(deleted before it was sent), changed, too_large, unreadable.",
            ["result"],
            registry=r,
        )
        self._chunks = MetricCounter(
            "sitesentry_mqtt_evidence_chunks", "Evidence chunks written to the outbox.", registry=r
        )
        Gauge(
            "sitesentry_mqtt_evidence_backlog_files", "Evidence files waiting to be sent.", registry=r
        ).set_function(lambda: self._backlog()[0])
        Gauge(
            "sitesentry_mqtt_evidence_backlog_bytes",
            "Bytes of evidence files waiting to be sent.",
            registry=r,
        ).set_function(lambda: self._backlog()[1])

    # -- producers (pipeline and clip writer threads) --------------------------------------------------------

    def push(self, camera: str, ref: EvidenceRef) -> None:
        """Queue a written evidence file for sending; returns once the request is on disk."""
        if ref.sha256 is None or ref.kind not in ("snapshot", "clip"):
            return  # a clip still recording is pushed again, with its checksum, when it is written
        key = (ref.path, ref.sha256)
        with self._lock:
            if key in self._recent:
                return  # a clip shared by several events
            self._recent[key] = None
            while len(self._recent) > _RECENT_KEPT:
                self._recent.popitem(last=False)
        try:
            size = (self._folder / ref.path).stat().st_size
        except FileNotFoundError:
            self._skipped("missing", f"evidence {ref.path} was deleted before it could be queued")
            return
        except OSError as exc:
            self._skipped("unreadable", f"evidence {ref.path} cannot be read ({exc.strerror})")
            return
        if size > MAX_FILE_BYTES:
            self._skipped("too_large", f"evidence {ref.path} is {size} bytes, above {MAX_FILE_BYTES}")
            return
        dropped: list[str] | None = None
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                dropped = self._make_room(size)
                if dropped is not None:
                    db.execute(
                        "INSERT OR IGNORE INTO evidence_queue (camera, kind, path, sha256, size, next_index,"
                        " created_at) VALUES (?, ?, ?, ?, ?, 0, ?)",
                        (camera, ref.kind, ref.path, ref.sha256, size, time.time()),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        if dropped is None:
            self._skipped("dropped_backlog", f"evidence {ref.path} not queued: the backlog is full")
            return
        for path in dropped:
            self._skipped("dropped_backlog", f"evidence {path} dropped: the backlog passed its limit")
        self._files.labels("queued").inc()
        self._count("queued")
        self._wake.set()

    def _make_room(self, size: int) -> list[str] | None:
        """Drop waiting files (oldest clip first, then snapshots) until `size` more fits; None: it cannot."""
        if size > self._backlog_bytes:
            return None
        total = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM evidence_queue").fetchone()[0])
        dropped = []
        while total + size > self._backlog_bytes:
            # A file half sent is kept: its first chunks already cost the uplink.
            row = self._db.execute(
                "SELECT id, path, size FROM evidence_queue WHERE next_index = 0"
                " ORDER BY kind = 'snapshot', id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM evidence_queue WHERE id = ?", (row[0],))
            dropped.append(str(row[1]))
            total -= int(row[2])
        return dropped

    # -- feeder thread ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the feeder thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="mqtt-evidence", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the feeder; what is not yet in the outbox stays queued for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._db.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.feed()
            except Exception:
                # A bug here must not end evidence delivery for good: log it and try again later.
                log.exception("evidence push: unexpected error in the feeder")
            self._wake.wait(IDLE_WAIT_S)

    def feed(self) -> int:
        """Copy chunks of waiting files into the outbox while fewer than WINDOW_CHUNKS wait there."""
        room = WINDOW_CHUNKS - self._outbox.count_kind(KIND_PREFIX)
        added = 0
        while room > 0 and not self._stop.is_set():
            head = self._head()
            if head is None:
                break
            try:
                data = self._read_chunk(head)
            except _Skip as skip:
                self._forget(head.id)
                self._skipped(skip.reason, str(skip))
                continue
            header = EvidenceChunk(
                schema_version=SCHEMA_VERSION,
                site=self._site,
                edge=self._edge,
                camera=head.camera,
                kind=head.kind,
                path=head.path,
                sha256=head.sha256,
                size=head.size,
                index=head.next_index,
                count=chunk_count(head.size),
            )
            try:
                row_id = self._outbox.add(
                    self._topic,
                    encode_chunk(header, data),
                    qos=1,
                    kind=KIND_PREFIX + head.kind,
                    key=KIND_PREFIX.rstrip(":"),
                    droppable=True,
                )
            except OutboxError as exc:
                self._warn("outbox", f"evidence push: {exc}; trying again later")
                break
            # Crash between these two commits: the chunk is sent twice, which receivers already expect.
            self._advance(head, header.count)
            self._chunks.inc()
            self._on_added(row_id)
            room -= 1
            added += 1
        return added

    def _head(self) -> QueuedFile | None:
        with self._lock:
            row = self._db.execute(
                "SELECT id, camera, kind, path, sha256, size, next_index FROM evidence_queue"
                " ORDER BY id LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        return QueuedFile(
            row[0], row[1], cast(Literal["snapshot", "clip"], row[2]), row[3], row[4], row[5], row[6]
        )

    def _read_chunk(self, head: QueuedFile) -> bytes:
        path = self._folder / head.path
        try:
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size != head.size:
                    raise _Skip(
                        "changed", f"evidence {head.path} changed size ({head.size} -> {size}); skipped"
                    )
                if head.next_index == 0 and _digest(handle) != head.sha256:
                    raise _Skip("changed", f"evidence {head.path} no longer matches its sha256; skipped")
                handle.seek(head.next_index * CHUNK_BYTES)
                return handle.read(CHUNK_BYTES)
        except FileNotFoundError:
            raise _Skip(
                "missing", f"evidence {head.path} was deleted (retention?) before it was sent; skipped"
            ) from None
        except OSError as exc:
            raise _Skip(
                "unreadable", f"evidence {head.path} cannot be read ({exc.strerror}); skipped"
            ) from None

    def _advance(self, head: QueuedFile, count: int) -> None:
        with self._lock:
            if head.next_index + 1 >= count:
                self._db.execute("DELETE FROM evidence_queue WHERE id = ?", (head.id,))
                done = True
            else:
                self._db.execute(
                    "UPDATE evidence_queue SET next_index = ? WHERE id = ?", (head.next_index + 1, head.id)
                )
                done = False
        if done:
            self._files.labels("sent").inc()
            self._count("sent")

    def _forget(self, row_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM evidence_queue WHERE id = ?", (row_id,))

    # -- figures ---------------------------------------------------------------------------------------------

    def _backlog(self) -> tuple[int, int]:
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM evidence_queue"
                ).fetchone()
            except sqlite3.ProgrammingError:  # closed on stop; a late metrics scrape reads nothing
                return 0, 0
        return int(row[0]), int(row[1])

    def figures(self) -> QueueFigures:
        """The heartbeat's view: files waiting, and files dropped (backlog full or deleted) since start."""
        return QueueFigures(depth=self._backlog()[0], capacity=None, dropped=self.dropped_total)

    @property
    def dropped_total(self) -> int:
        """Files that will never be sent: dropped for the backlog bound, deleted, changed or unreadable."""
        with self._lock:
            return sum(n for reason, n in self._counts.items() if reason not in ("queued", "sent"))

    def stats(self) -> dict[str, int]:
        """Counts by outcome since start, and the backlog now."""
        files, waiting = self._backlog()
        with self._lock:
            counts = dict(self._counts)
        return {**counts, "backlog_files": files, "backlog_bytes": waiting}

    # -- helpers ---------------------------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        with self._lock:
            self._counts[reason] += 1

    def _skipped(self, reason: str, message: str) -> None:
        self._files.labels(reason).inc()
        self._count(reason)
        with self._lock:
            total = self._counts[reason]
        self._warn(reason, f"{message} ({total} {reason.replace('_', ' ')} since start)")

    def _warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        # After a long outage retention may delete hundreds of waiting files: a line per reason per interval.
        if now - self._last_log.get(key, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._last_log[key] = now
            log.warning(message)


def _digest(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()
