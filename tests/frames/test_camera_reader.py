"""The per-camera reader thread on real video files: freshest frame, drops, fps cap, end, failures."""

from __future__ import annotations

import random
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from frames_support import level_of, wait_until
from prometheus_client import CollectorRegistry

from edge.dataflow import Frame
from edge.frames.health import CameraStatus
from edge.frames.reader import Backoff, CameraReader, RateCap
from edge.frames.sources import FileSource


def drain(reader: CameraReader) -> list[Frame]:
    """Take every frame a reader hands out until it has ended."""
    frames: list[Frame] = []
    while (frame := reader.wait_frame(frames[-1].seq if frames else -1, timeout=10)) is not None:
        frames.append(frame)
    return frames


def test_file_reader_hands_out_increasing_frames_then_ends(videos: dict[str, Path]) -> None:
    heard: list[CameraStatus] = []
    reader = CameraReader(
        "gate",
        str(videos["short"]),
        fps_cap=60,
        realtime=False,
        loop=False,
        on_status=lambda c, s, d: heard.append(s),
    )
    reader.start()
    frames = drain(reader)
    assert reader.stop(5)
    snap = reader.health.snapshot()
    assert heard == [CameraStatus.ONLINE, CameraStatus.ENDED]
    assert reader.status == CameraStatus.ENDED, "stopping an ended reader keeps it ended"
    assert snap.frames_read == 12
    seqs = [frame.seq for frame in frames]
    assert seqs == sorted(set(seqs)) and seqs[-1] == 11
    assert len(frames) + snap.frames_dropped == 12, "every frame is either taken or counted as dropped"
    assert all(frame.camera_id == "gate" and frame.size == (160, 120) for frame in frames)
    assert all(a.captured_at <= b.captured_at for a, b in zip(frames, frames[1:], strict=False))


def test_fps_cap_skips_frames_by_media_time_and_does_not_count_them_as_dropped(
    videos: dict[str, Path],
) -> None:
    reader = CameraReader("gate", str(videos["short"]), fps_cap=5, realtime=False, loop=False)
    reader.start()
    frames = drain(reader)
    reader.stop(5)
    snap = reader.health.snapshot()
    # 12 frames at 20 fps capped to 5 fps: frames 0, 4 and 8 pass.
    assert snap.frames_read == 12 and snap.frames_skipped == 9
    assert len(frames) + snap.frames_dropped == 3


def test_slow_consumer_only_ever_gets_the_freshest_frame(videos: dict[str, Path]) -> None:
    reader = CameraReader("gate", str(videos["short"]), fps_cap=1000, realtime=True, loop=True)
    assert reader.newest_seq == -1
    reader.start()
    taken: list[Frame] = []
    first = reader.wait_frame(-1, timeout=10)
    assert first is not None
    taken.append(first)
    for _ in range(5):
        target = reader.health.snapshot().frames_read + 10

        def moved_on(target: int = target) -> bool:
            return reader.health.snapshot().frames_read >= target

        wait_until(moved_on, 10, "the reader to move on")
        frame = reader.latest(taken[-1].seq)
        assert frame is not None
        assert frame.seq > taken[-1].seq + 1, "frames older than the freshest one are never handed out"
        taken.append(frame)
    assert reader.stop(5)
    newest = reader.newest_seq  # looking does not take the frame
    last_published = reader.latest()
    assert last_published is not None and last_published.seq == newest
    unconsumed = 0 if last_published.seq == taken[-1].seq else 1
    dropped = reader.health.snapshot().frames_dropped
    assert dropped > 0
    assert len(taken) + dropped + unconsumed == last_published.seq + 1


def test_memory_stays_bounded_when_nobody_consumes(videos: dict[str, Path]) -> None:
    reader = CameraReader("gate", str(videos["fast"]), fps_cap=1000, realtime=True, loop=True)
    frame_bytes = 160 * 120 * 3
    tracemalloc.start()
    try:
        reader.start()
        wait_until(lambda: reader.health.snapshot().frames_read >= 100, 20, "100 frames")
        before, _ = tracemalloc.get_traced_memory()
        wait_until(lambda: reader.health.snapshot().frames_read >= 1100, 60, "1,100 frames")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        reader.stop(5)
        tracemalloc.stop()
    assert after - before < 20 * frame_bytes, f"grew {after - before} bytes over 1,000 unconsumed frames"
    assert reader.health.snapshot().frames_dropped >= 1000


def test_unreadable_file_goes_reconnecting_then_offline_with_one_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "gate.mp4"
    fake.write_text("not a video")
    heard: list[tuple[CameraStatus, str | None]] = []
    reader = CameraReader(
        "gate",
        str(fake),
        fps_cap=5,
        realtime=True,
        loop=False,
        backoff_initial_s=0.02,
        backoff_max_s=0.05,
        offline_after_attempts=3,
        on_status=lambda c, s, d: heard.append((s, d)),
    )
    reader.start()
    wait_until(lambda: reader.status == CameraStatus.OFFLINE, 10, "status offline")
    assert reader.stop(5)
    assert [status for status, _ in heard] == [
        CameraStatus.RECONNECTING,
        CameraStatus.OFFLINE,
        CameraStatus.DISABLED,
    ]
    error = reader.health.last_error
    assert error is not None and str(fake) in error and "\n" not in error
    assert reader.health.snapshot().reconnects >= 2
    assert reader.latest() is None


def test_video_files_are_exempt_from_the_frozen_watchdog(videos: dict[str, Path]) -> None:
    # A recording may legitimately hold a still scene; only live streams are checked for identical frames.
    reader = CameraReader(
        "gate",
        str(videos["still"]),
        fps_cap=30,
        realtime=True,
        loop=True,
        frozen_after_s=0.2,
        backoff_initial_s=0.01,
    )
    reader.start()
    wait_until(lambda: reader.health.snapshot().frames_read >= 30, 20, "a second of paced still frames")
    reader.stop(5)
    assert reader.health.snapshot().reconnects == 0


def test_a_broken_camera_does_not_stop_a_good_one(videos: dict[str, Path], tmp_path: Path) -> None:
    broken_path = tmp_path / "broken.mp4"
    broken_path.write_bytes(b"\x00" * 4096)
    good = CameraReader("good", str(videos["short"]), fps_cap=30, realtime=True, loop=True)
    broken = CameraReader(
        "broken", str(broken_path), fps_cap=30, realtime=True, loop=True, backoff_initial_s=0.01
    )
    broken.start()
    good.start()
    try:
        # It is tried again, then given up (offline, saying why): a file of zeros will not become a video.
        wait_until(lambda: broken.health.snapshot().reconnects >= 2, 10, "the broken camera to retry")
        wait_until(lambda: broken.unplayable is not None, 10, "the broken camera to be given up")
        last = -1
        for _ in range(10):
            frame = good.wait_frame(last, timeout=5)
            assert frame is not None, "the good camera stopped delivering"
            last = frame.seq
        assert good.status == CameraStatus.ONLINE
        assert broken.status in (CameraStatus.RECONNECTING, CameraStatus.OFFLINE)
    finally:
        good.stop(5)
        broken.stop(5)


def test_stopping_a_reader_that_never_started_marks_it_disabled(videos: dict[str, Path]) -> None:
    reader = CameraReader("gate", str(videos["short"]), fps_cap=5, realtime=True, loop=False)
    assert reader.stop(1)
    assert reader.status == CameraStatus.DISABLED
    assert reader.wait_frame(-1, timeout=1) is None


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(0.5, 4.0, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (30, 4.0)]:
        delays = [backoff.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1, "jitter spreads retries of many cameras"
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_rate_cap_keeps_the_average_rate_and_restarts_on_a_looped_timeline() -> None:
    cap = RateCap(5)
    admitted = [t for t in (i / 15 for i in range(45)) if cap.admit(t)]
    assert len(admitted) == 15
    assert cap.admit(0.0), "a timeline that jumps back (a looped file) starts over"


def test_unpaced_file_waits_for_the_consumer_so_no_frame_is_dropped(videos: dict[str, Path]) -> None:
    reader = CameraReader("gate", str(videos["short"]), fps_cap=1000, realtime=False, loop=False)
    reader.start()
    seqs: list[int] = []
    last = -1
    while True:
        frame = reader.wait_frame(last, timeout=10)
        if frame is None:
            break
        time.sleep(0.002)  # a consumer slower than decoding
        seqs.append(frame.seq)
        last = frame.seq
    reader.stop(5)
    snapshot = reader.health.snapshot()
    assert reader.status is CameraStatus.ENDED
    assert seqs == list(range(len(seqs))) and len(seqs) == snapshot.frames_read
    assert snapshot.frames_dropped == 0


def test_frames_the_fps_cap_skips_are_grabbed_and_never_retrieved(
    videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    retrieved: list[int] = []
    real_retrieve = FileSource.retrieve

    def counting_retrieve(source: FileSource) -> np.ndarray | None:
        retrieved.append(source._index)
        return real_retrieve(source)

    monkeypatch.setattr(FileSource, "retrieve", counting_retrieve)
    registry = CollectorRegistry()
    reader = CameraReader(
        "gate", str(videos["short"]), fps_cap=5, realtime=False, loop=False, registry=registry
    )
    reader.start()
    frames = drain(reader)
    reader.stop(5)
    snap = reader.health.snapshot()
    # 12 frames at 20 fps capped to 5 fps: frames 0, 4 and 8 are converted to images, the 9 others only
    # grabbed; the images handed out are those very frames (grab and retrieve stay in step).
    assert retrieved == [0, 4, 8]
    assert [int(frame.image[0, 0, 0]) for frame in frames] == pytest.approx(
        [level_of(0), level_of(4), level_of(8)], abs=6
    )
    assert snap.frames_read == 12 and snap.frames_skipped == 9 and snap.frames_grabbed_only == 9
    assert registry.get_sample_value("sitesentry_camera_frames_grabbed_only_total", {"camera": "gate"}) == 9


def test_a_looping_capped_file_grabs_across_its_end(videos: dict[str, Path]) -> None:
    reader = CameraReader("gate", str(videos["short"]), fps_cap=5, realtime=False, loop=True)
    reader.start()
    frames: list[Frame] = []
    while len(frames) < 7 and (frame := reader.wait_frame(frames[-1].seq if frames else -1, 10)):
        frames.append(frame)
    reader.stop(5)
    # Each pass of the 12-frame file gives frames 0, 4 and 8; the rewind is grabbed like any frame.
    levels = [int(frame.image[0, 0, 0]) for frame in frames]
    assert levels == pytest.approx([level_of(i) for i in (0, 4, 8, 0, 4, 8, 0)], abs=6)
    assert reader.health.snapshot().frames_grabbed_only >= 12


@pytest.mark.parametrize("consumer_delay_s", [0.0, 0.08])
def test_an_unpaced_file_is_stamped_on_its_own_timeline_whatever_the_analysis_speed(
    videos: dict[str, Path], consumer_delay_s: float
) -> None:
    """Rules run on captured_at: a fast box and a slow one must see the same 0.2 s between 5 fps frames."""
    before = time.time()
    reader = CameraReader("gate", str(videos["short"]), fps_cap=5, realtime=False, loop=True)
    reader.start()
    frames: list[Frame] = []
    while len(frames) < 7 and (frame := reader.wait_frame(frames[-1].seq if frames else -1, 10)):
        time.sleep(consumer_delay_s)  # analysis time
        frames.append(frame)
    reader.stop(5)
    gaps = np.diff([frame.captured_at for frame in frames])
    # 20 fps capped to 5: frames 0, 4, 8 of each 12-frame pass, so 0.2 s apart and 0.2 s over each loop.
    assert gaps == pytest.approx([0.2] * 6, abs=1e-6)
    assert before <= frames[0].captured_at <= frames[0].received_at
    assert all(frame.read_at is not None and frame.read_at >= before for frame in frames)
