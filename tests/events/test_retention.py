"""Retention on real files: age by mtime, oldest first under a low-disk condition, other files left alone."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

from prometheus_client import CollectorRegistry

from edge.events.retention import GB, RetentionSweeper, SweepReport

DAY = 86400.0


def evidence_file(root: Path, relpath: str, size: int, age_s: float, now: float) -> Path:
    """Create a file of `size` bytes whose mtime is `age_s` before `now`."""
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    os.utime(path, (now - age_s, now - age_s))
    return path


class Usage(NamedTuple):
    total: int
    used: int
    free: int


class SmallDisk:
    """A disk of `capacity` bytes holding just the real files under `root`: free space follows deletions."""

    def __init__(self, root: Path, capacity: int) -> None:
        self.root, self.capacity = root, capacity

    def __call__(self, _path: Path) -> Usage:
        used = sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
        return Usage(self.capacity, used, self.capacity - used)


def test_sweep_deletes_evidence_past_retention_by_mtime(tmp_path: Path) -> None:
    now = time.time()
    old_jpg = evidence_file(tmp_path, "gate/2024-01-01/a.jpg", 1000, 40 * DAY, now)
    old_mp4 = evidence_file(tmp_path, "gate/2024-01-01/a.mp4", 3000, 40 * DAY, now)
    recent = evidence_file(tmp_path, "gate/2024-02-09/b.jpg", 500, 1 * DAY, now)
    foreign = [
        evidence_file(tmp_path, "README.txt", 10, 400 * DAY, now),
        evidence_file(tmp_path, "gate/logo.jpg", 10, 400 * DAY, now),
        evidence_file(tmp_path, "gate/exports/old.mp4", 10, 400 * DAY, now),
    ]
    registry = CollectorRegistry()
    sweeper = RetentionSweeper(
        tmp_path, retention_days=30, min_free_gb=0, registry=registry, clock=lambda: now
    )

    report = sweeper.sweep()

    assert report == SweepReport(deleted_files=2, freed_bytes=4000, reason_counts={"age": 2})
    assert not old_jpg.exists() and not old_mp4.exists() and recent.exists()
    assert not (tmp_path / "gate/2024-01-01").exists()  # the emptied date folder is gone
    assert (tmp_path / "gate/2024-02-09").exists()
    assert all(path.exists() for path in foreign)
    assert registry.get_sample_value("sitesentry_retention_deleted_files_total", {"reason": "age"}) == 2
    assert registry.get_sample_value("sitesentry_retention_freed_bytes_total", {"reason": "age"}) == 4000
    assert sweeper.sweep() == SweepReport()


def test_low_disk_deletes_oldest_first_until_free_space_is_back(tmp_path: Path) -> None:
    now = time.time()
    files = [
        evidence_file(tmp_path, f"cam{i % 2}/2024-06-0{1 + i // 5}/e{i}.jpg", 100_000, (10 - i) * 3600.0, now)
        for i in range(10)
    ]
    disk = SmallDisk(tmp_path, capacity=1_200_000)  # 1.0 MB used, 0.2 MB free
    sweeper = RetentionSweeper(
        tmp_path, retention_days=30, min_free_gb=500_000 / GB, clock=lambda: now, disk_usage=disk
    )

    report = sweeper.sweep()

    assert report == SweepReport(deleted_files=3, freed_bytes=300_000, reason_counts={"low_disk": 3})
    assert [path.exists() for path in files] == [False] * 3 + [True] * 7
    assert disk(tmp_path).free >= 500_000


def test_low_disk_never_deletes_a_clip_being_written_but_clears_stale_partials(tmp_path: Path) -> None:
    now = time.time()
    writing = evidence_file(tmp_path, "gate/2024-06-01/e1.part.mp4", 100_000, 5.0, now)
    crashed = evidence_file(tmp_path, "gate/2024-06-01/e0.part.mp4", 100_000, 2 * 3600.0, now)
    done = evidence_file(tmp_path, "gate/2024-06-01/e0.jpg", 100_000, 2 * 3600.0, now)
    disk = SmallDisk(tmp_path, capacity=300_000)  # full

    report = RetentionSweeper(tmp_path, 30, 1.0, clock=lambda: now, disk_usage=disk).sweep()

    assert report.reason_counts == {"stale_partial": 1, "low_disk": 1}
    assert writing.exists() and not crashed.exists() and not done.exists()


def test_background_sweeper_keeps_sweeping_until_stopped(tmp_path: Path) -> None:
    now = time.time()
    sweeper = RetentionSweeper(tmp_path, retention_days=1, min_free_gb=0)
    # A non-evidence file keeps the old day folder from being removed (as empty) while the test fills it.
    evidence_file(tmp_path, "gate/2024-06-01/notes.txt", 10, 0, now)
    sweeper.start(interval_s=0.05)
    try:
        first = evidence_file(tmp_path, "gate/2024-06-01/a.jpg", 10, 2 * DAY, now)
        deadline = time.monotonic() + 20
        while first.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not first.exists(), "background sweep never deleted an expired file"
    finally:
        sweeper.stop()
    assert not any(t.name == "evidence-retention" for t in threading.enumerate())


def test_an_empty_folder_of_a_recent_day_is_left_for_the_writer(tmp_path: Path) -> None:
    now = time.time()
    today = time.strftime("%Y-%m-%d", time.gmtime(now))
    (tmp_path / "gate" / today).mkdir(parents=True)  # just created by the evidence writer, file to follow
    (tmp_path / "gate" / "2024-03-01").mkdir()
    RetentionSweeper(tmp_path, retention_days=30, min_free_gb=0, clock=lambda: now).sweep()
    assert (tmp_path / "gate" / today).is_dir() and not (tmp_path / "gate" / "2024-03-01").exists()


def test_missing_folder_sweeps_nothing(tmp_path: Path) -> None:
    assert RetentionSweeper(tmp_path / "absent", 30, 1.0).sweep() == SweepReport()


def test_a_disk_falling_below_its_floor_is_swept_within_seconds_not_at_the_next_sweep(tmp_path: Path) -> None:
    now = time.time()
    disk = SmallDisk(tmp_path, capacity=10_000)
    sweeper = RetentionSweeper(tmp_path, retention_days=30, min_free_gb=4_000 / GB, disk_usage=disk)
    sweeper.start(interval_s=3600)  # the periodic sweep will not come again during this test
    try:
        time.sleep(0.2)
        old = evidence_file(tmp_path, "gate/2025-06-01/old.mp4", 4_000, 3600, now)
        evidence_file(tmp_path, "gate/2025-06-02/new.mp4", 3_000, 60, now)  # 3,000 bytes free: too few
        deadline = time.monotonic() + 15
        while old.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not old.exists(), "the low-disk check did not sweep"
        assert (tmp_path / "gate/2025-06-02/new.mp4").exists()
    finally:
        sweeper.stop()


def test_poke_sweeps_at_once(tmp_path: Path) -> None:
    now = time.time()
    sweeper = RetentionSweeper(tmp_path, retention_days=1, min_free_gb=0)
    sweeper.start(interval_s=3600)
    try:
        time.sleep(0.2)
        expired = evidence_file(tmp_path, "gate/2024-06-01/a.jpg", 10, 2 * DAY, now)
        evidence_file(tmp_path, "gate/2024-06-01/keep.txt", 10, 0, now)
        sweeper.poke()
        deadline = time.monotonic() + 3
        while expired.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not expired.exists()
    finally:
        sweeper.stop()
