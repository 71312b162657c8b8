"""Delete stored evidence by age, and oldest first while the disk is low on free space."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

GB = 1_000_000_000  # min_free_gb is in SI gigabytes, as disk vendors and `df -H` count them
#: Between full sweeps the free space is checked this often (one statvfs), so a filling disk is answered
#: within seconds rather than at the next sweep.
FREE_CHECK_S = 5.0
EVIDENCE_SUFFIXES = (".jpg", ".mp4")
PARTIAL_MARK = ".part."  # files still being written by the recorder
PARTIAL_STALE_S = 3600.0  # a partial file this old belongs to a crashed writer
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DiskUsage(Protocol):
    """The part of shutil.disk_usage's result the sweeper reads."""

    @property
    def free(self) -> int: ...


@dataclass(frozen=True)
class SweepReport:
    """What one sweep deleted: files, bytes freed, and files per reason (age, low_disk, stale_partial)."""

    deleted_files: int = 0
    freed_bytes: int = 0
    reason_counts: dict[str, int] = field(default_factory=dict)


class _Entry(NamedTuple):
    mtime: float
    path: Path
    size: int


class RetentionSweeper:
    """Keeps the evidence folder within its retention period and the disk above its free-space floor."""

    def __init__(
        self,
        folder: Path,
        retention_days: float,
        min_free_gb: float,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
    ) -> None:
        self._folder = Path(folder)
        self._max_age_s = retention_days * 86400.0
        self._min_free = int(min_free_gb * GB)
        self._clock = clock
        self._disk_usage = disk_usage
        self._stop = threading.Event()
        self._poked = threading.Event()
        self._thread: threading.Thread | None = None
        registry = registry if registry is not None else CollectorRegistry()
        self._deleted = Counter(
            "sitesentry_retention_deleted_files",
            "Evidence files deleted, by reason.",
            ["reason"],
            registry=registry,
        )
        self._freed = Counter(
            "sitesentry_retention_freed_bytes",
            "Bytes of evidence deleted, by reason.",
            ["reason"],
            registry=registry,
        )
        self._errors = Counter(
            "sitesentry_retention_errors", "Evidence files that could not be deleted.", registry=registry
        )
        self._free_bytes = Gauge(
            "sitesentry_evidence_disk_free_bytes",
            "Free bytes on the evidence disk at the last sweep.",
            registry=registry,
        )

    def _evidence_files(self) -> list[_Entry]:
        """Only `<camera>/<YYYY-MM-DD>/<name>.jpg|.mp4` is ours; anything else in the folder is left alone."""
        entries: list[_Entry] = []
        for day in self._folder.glob("*/*"):
            if not (_DATE_DIR.match(day.name) and day.is_dir()):
                continue
            for path in day.iterdir():
                if path.suffix not in EVIDENCE_SUFFIXES or not path.is_file():
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                entries.append(_Entry(stat.st_mtime, path, stat.st_size))
        entries.sort()
        return entries

    def _delete(self, entry: _Entry, reason: str, tally: Tally[str], freed: list[int]) -> bool:
        try:
            entry.path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._errors.inc()
            log.warning("could not delete evidence %s: %s", entry.path, exc)
            return False
        tally[reason] += 1
        freed[0] += entry.size
        self._deleted.labels(reason).inc()
        self._freed.labels(reason).inc(entry.size)
        return True

    def _free(self) -> int | None:
        try:
            free = int(self._disk_usage(self._folder).free)
        except OSError as exc:
            log.warning("cannot read free space of %s: %s", self._folder, exc)
            return None
        self._free_bytes.set(free)
        return free

    def sweep(self) -> SweepReport:
        """Delete evidence past retention, then the oldest while free space is below the floor."""
        if not self._folder.is_dir():
            return SweepReport()
        now = self._clock()
        tally: Tally[str] = Tally()
        freed = [0]
        keep: deque[_Entry] = deque()
        for entry in self._evidence_files():
            age = now - entry.mtime
            if PARTIAL_MARK in entry.path.name:
                if age > PARTIAL_STALE_S:
                    self._delete(entry, "stale_partial", tally, freed)
                continue  # a clip being written is never a candidate below
            if age > self._max_age_s:
                self._delete(entry, "age", tally, freed)
            else:
                keep.append(entry)

        free = self._free()
        while keep and free is not None and free < self._min_free:
            # Delete enough for the measured deficit, then measure again: the file system has the last word.
            deficit, freed_now = self._min_free - free, 0
            while keep and freed_now < deficit:
                entry = keep.popleft()
                if self._delete(entry, "low_disk", tally, freed):
                    freed_now += entry.size
            free = self._free()
        if free is not None and free < self._min_free:
            log.warning(
                "evidence disk still below %.2f GB free (%.2f GB) with no evidence left to delete",
                self._min_free / GB,
                free / GB,
            )

        self._remove_empty_days(now)
        report = SweepReport(sum(tally.values()), freed[0], dict(tally))
        if report.deleted_files:
            log.info(
                "retention deleted %d evidence file(s), %d bytes: %s",
                report.deleted_files,
                freed[0],
                dict(tally),
            )
        return report

    def _remove_empty_days(self, now: float) -> None:
        # Recent days are left even when empty: the evidence writer may have just created one and be
        # about to write into it (the site's date can run a day ahead of or behind UTC).
        today = datetime.fromtimestamp(now, timezone.utc).date()  # noqa: UP017 (the edge runs on 3.10 too)
        recent = (today - timedelta(days=2)).isoformat()
        for day in self._folder.glob("*/*"):
            if _DATE_DIR.match(day.name) and day.name < recent and day.is_dir() and not any(day.iterdir()):
                try:
                    day.rmdir()
                except OSError:  # a clip started writing there meanwhile
                    pass

    def poke(self) -> None:
        """Ask for a sweep now (a write just failed for lack of space); returns at once."""
        self._poked.set()

    def low_on_space(self) -> bool:
        """Tell whether the evidence disk is below its free-space floor now (one statvfs)."""
        free = self._free()
        return free is not None and free < self._min_free

    def start(self, interval_s: float = 600.0) -> None:
        """Sweep now and then every interval_s seconds on a background thread, and at once whenever the
        disk falls below its free-space floor (checked every few seconds) or `poke` is called."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s,), name="evidence-retention", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the background thread."""
        self._stop.set()
        self._poked.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self, interval_s: float) -> None:
        next_sweep = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_sweep or self._poked.is_set() or self.low_on_space():
                self._poked.clear()
                try:
                    self.sweep()
                except Exception:  # one bad sweep must not end retention for good
                    log.exception("evidence retention sweep failed")
                next_sweep = time.monotonic() + interval_s
            self._poked.wait(min(FREE_CHECK_S, max(0.0, next_sweep - time.monotonic())))
