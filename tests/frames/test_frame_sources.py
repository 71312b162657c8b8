"""Video-file, USB and argument handling of open_source, against real generated video files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from frames_support import level_of

from edge.frames.sources import FileSource, FrameSource, SourceError, open_source, tcp_capture_options


def grey(image: np.ndarray) -> float:
    """Return the mean level of a frame, which identifies it in the generated videos."""
    return float(image.mean())


def count_frames(source: FrameSource) -> int:
    """Read a source dry and return how many frames it gave."""
    count = 0
    while source.read() is not None:
        count += 1
    return count


def test_file_source_reads_every_frame_in_order_then_reports_end(videos: dict[str, Path]) -> None:
    source = open_source(str(videos["short"]), realtime=False, loop=False)
    assert isinstance(source, FileSource) and not source.live
    assert source.fps == pytest.approx(20.0)
    levels = []
    while (image := source.read()) is not None:
        assert image.shape == (120, 160, 3)
        levels.append(grey(image))
    assert source.ended
    assert source.read() is None
    assert levels == pytest.approx([level_of(i) for i in range(12)], abs=5)
    source.close()


def test_looping_file_source_starts_again_at_the_first_frame(videos: dict[str, Path]) -> None:
    source = open_source(str(videos["short"]), realtime=False, loop=True)
    levels, positions = [], []
    for _ in range(12 * 2 + 3):
        image = source.read()
        assert image is not None, "a looping file must never run dry"
        levels.append(grey(image))
        positions.append(source.position_s)
    assert not source.ended
    assert levels[12:24] == pytest.approx(levels[:12], abs=3)
    assert positions[12] == 0.0 and positions[11] == pytest.approx(11 / 20)
    source.close()


def test_paced_file_source_delivers_at_the_files_own_frame_rate(videos: dict[str, Path]) -> None:
    # A lower bound only: pacing sleeps until each frame is due, so load can only make it later.
    source = open_source(str(videos["short"]), realtime=True, loop=False)
    started = time.monotonic()
    count = count_frames(source)
    elapsed = time.monotonic() - started
    assert count == 12
    assert elapsed >= 11 / 20 * 0.95


def test_fast_file_source_does_not_wait_for_the_files_frame_rate(videos: dict[str, Path]) -> None:
    # The 'slow' file lasts 4 s at 1 fps; reading 4 tiny frames unpaced takes milliseconds, so 2 s is far off.
    source = open_source(str(videos["slow"]), realtime=False, loop=False)
    started = time.monotonic()
    count = count_frames(source)
    assert count == 4
    assert time.monotonic() - started < 2.0


def test_text_file_named_mp4_gives_one_line_error_naming_the_file(tmp_path: Path) -> None:
    fake = tmp_path / "camera.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError) as caught:
        open_source(str(fake), realtime=True, loop=False)
    message = str(caught.value)
    assert str(fake) in message and "\n" not in message
    assert message.startswith("cannot open video file")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("missing.mp4", "no such file"), ("folder", "not a regular file")],
)
def test_missing_or_odd_video_path_says_what_is_wrong(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(SourceError, match=expected) as caught:
        open_source(str(tmp_path / name), realtime=False, loop=False)
    assert str(tmp_path / name) in str(caught.value)


def test_relative_video_path_is_reported_as_the_absolute_path_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SourceError) as caught:
        open_source("videos/gate.mp4", realtime=False, loop=False)
    assert str(caught.value) == f"cannot open video file {tmp_path / 'videos' / 'gate.mp4'}: no such file"


def test_unsupported_scheme_is_refused_with_credentials_hidden() -> None:
    with pytest.raises(SourceError) as caught:
        open_source("http://admin:hunter2@127.0.0.1/video", realtime=False, loop=False)
    assert "hunter2" not in str(caught.value) and "unsupported camera source" in str(caught.value)


def test_usb_source_needs_a_numeric_index() -> None:
    with pytest.raises(SourceError, match="usb:N"):
        open_source("usb:front", realtime=False, loop=False)


def test_absent_usb_camera_names_the_device() -> None:
    index = 63
    if os.path.exists(f"/dev/video{index}"):
        pytest.skip(f"/dev/video{index} exists on this machine")
    with pytest.raises(SourceError) as caught:
        open_source(f"usb:{index}", realtime=False, loop=False)
    assert f"USB camera {index}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_tcp_capture_options_force_tcp_and_keep_other_options() -> None:
    assert tcp_capture_options(None) == "rtsp_transport;tcp"
    assert tcp_capture_options("rtsp_transport;udp|stimeout;100") == "rtsp_transport;tcp|stimeout;100"


def test_quieted_backends_leave_only_our_one_line_on_stderr(tmp_path: Path) -> None:
    fake = tmp_path / "camera.mp4"
    fake.write_text("not a video")
    script = (
        "import logging, sys\n"
        "from edge.frames.sources import SourceError, open_source, quiet_video_backends\n"
        "logging.basicConfig(stream=sys.stderr, format='%(message)s')\n"
        "quiet_video_backends()\n"
        "try:\n"
        f"    open_source({str(fake)!r}, realtime=False, loop=False)\n"
        "except SourceError as exc:\n"
        "    logging.getLogger('t').error('%s', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    lines = result.stderr.strip().splitlines()
    assert lines == [f"cannot open video file {fake}: not a video format FFmpeg can read"]
