"""Files that are not playable videos (a photo renamed .mp4) and files that only loop by reopening.

A camera fed such a file must say so (offline, "not a playable video") instead of ending quietly, and a
looping file must keep looping even when its container cannot seek back.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from frames_support import level_of, wait_until

from edge.frames.health import CameraStatus
from edge.frames.reader import CameraReader
from edge.frames.sources import SourceError, open_source


def jpeg(level: int) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((120, 160, 3), level, np.uint8))
    assert ok
    return data.tobytes()


@pytest.fixture
def photo_as_mp4(tmp_path: Path) -> Path:
    """A JPEG photo renamed gate.mp4: FFmpeg opens it and decodes exactly one frame."""
    path = tmp_path / "gate.mp4"
    path.write_bytes(jpeg(128))
    return path


@pytest.mark.parametrize("loop", [True, False])
def test_a_photo_renamed_mp4_is_not_a_playable_video(photo_as_mp4: Path, loop: bool) -> None:
    with pytest.raises(SourceError) as caught:
        open_source(str(photo_as_mp4), realtime=False, loop=loop)
    assert str(caught.value) == (
        f"cannot play video file {photo_as_mp4}: not a playable video (it holds a single still image)"
    )
    assert caught.value.unplayable


def test_a_text_file_named_mp4_is_marked_unplayable(tmp_path: Path) -> None:
    fake = tmp_path / "gate.mp4"
    fake.write_text("not a video\n")
    with pytest.raises(SourceError) as caught:
        open_source(str(fake), realtime=False, loop=True)
    assert caught.value.unplayable


def test_a_missing_file_is_marked_unplayable(tmp_path: Path) -> None:
    # Opening it again gives the same answer: the camera goes offline and run stops waiting for it.
    with pytest.raises(SourceError) as caught:
        open_source(str(tmp_path / "later.mp4"), realtime=False, loop=True)
    assert caught.value.unplayable
    assert str(caught.value) == f"cannot open video file {tmp_path / 'later.mp4'}: no such file"


def test_a_looping_camera_on_a_photo_goes_offline_saying_why_and_never_ends(photo_as_mp4: Path) -> None:
    heard: list[tuple[CameraStatus, str | None]] = []
    reader = CameraReader(
        "gate",
        str(photo_as_mp4),
        fps_cap=5,
        realtime=True,
        loop=True,
        backoff_initial_s=0.02,
        backoff_max_s=0.05,
        offline_after_attempts=3,
        on_status=lambda _camera, status, detail: heard.append((status, detail)),
    )
    assert reader.unplayable is None
    reader.start()
    try:
        wait_until(lambda: reader.status == CameraStatus.OFFLINE, 10, "status offline")
        assert reader.unplayable is not None and "not a playable video" in reader.unplayable
        status, detail = heard[-1]
        assert status is CameraStatus.OFFLINE
        assert (
            detail
            == f"cannot play video file {photo_as_mp4}: not a playable video (it holds a single still image)"
        )
        assert CameraStatus.ONLINE not in [s for s, _ in heard] and CameraStatus.ENDED not in [
            s for s, _ in heard
        ]
        assert reader.latest() is None, "no frame of a photo is analysed as if it were a camera"
    finally:
        assert reader.stop(5)
    assert reader.unplayable is None, "a stopped camera is disabled, not unplayable"


def test_a_camera_on_a_missing_file_goes_offline_and_gives_up_instead_of_retrying_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "missing.mp4"
    reader = CameraReader(
        "gate", str(missing), fps_cap=5, realtime=True, loop=True, backoff_initial_s=0.02, backoff_max_s=0.05
    )
    reader.start()
    try:
        wait_until(lambda: reader.status == CameraStatus.OFFLINE, 10, "status offline")
        wait_until(lambda: not reader._thread.is_alive(), 10, "the reader thread gave up")
        attempts = reader.health.snapshot().attempts
        assert reader.unplayable == f"cannot open video file {missing}: no such file"
        assert reader.status is CameraStatus.OFFLINE, "it stays offline, saying why; it never 'ends'"
        missing.write_bytes(b"")  # nothing opens it again once given up
        time.sleep(0.3)
        assert reader.health.snapshot().attempts == attempts == 3
        assert f"camera gate: giving up: cannot open video file {missing}: no such file" in caplog.text
    finally:
        reader.stop(5)


def test_a_raw_mjpeg_stream_that_cannot_seek_still_loops(tmp_path: Path) -> None:
    # Concatenated JPEGs: FFmpeg accepts the seek to frame 0 and then returns nothing, so looping must
    # reopen the file; before, such a camera reported "ended" despite `loop: true`.
    path = tmp_path / "gate.mjpeg"
    path.write_bytes(b"".join(jpeg(level_of(i)) for i in range(5)))
    with open_source(str(path), realtime=False, loop=True) as source:
        levels = []
        for _ in range(12):
            image = source.read()
            assert image is not None, f"looping stopped after {len(levels)} frames"
            levels.append(round(float(image.mean()) / 10) * 10)
        assert levels == [level_of(i % 5) for i in range(12)]
        assert not source.ended
    with open_source(str(path), realtime=False, loop=False) as source:
        count = 0
        while source.read() is not None:
            count += 1
        assert count == 5 and source.ended
