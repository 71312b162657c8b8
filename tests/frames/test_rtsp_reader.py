"""RTSP sources and readers against a real GStreamer RTSP server on 127.0.0.1: restarts, stalls, freezes."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from frames_support import RtspServer, free_port, wait_until
from prometheus_client import CollectorRegistry

from edge.dataflow import Frame
from edge.frames.health import CameraStatus
from edge.frames.reader import CameraReader
from edge.frames.sources import RtspSource, SourceError, open_source

StartServer = Callable[..., RtspServer]
# Short settings keep the suite quick; production defaults are far longer.
FAST: dict[str, Any] = {"backoff_initial_s": 0.1, "backoff_max_s": 0.5, "open_timeout_s": 5.0}
FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


@pytest.fixture
def quick_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let FFmpeg probe a stream for 0.2 s instead of about 2 s, so each (re)connect is quick."""
    monkeypatch.setenv(FFMPEG_OPTIONS, "analyzeduration;200000")


class StatusLog:
    """A real status listener that keeps every change it hears."""

    def __init__(self) -> None:
        self.changes: list[tuple[CameraStatus, str | None]] = []

    def __call__(self, _camera_id: str, status: CameraStatus, detail: str | None) -> None:
        self.changes.append((status, detail))

    @property
    def statuses(self) -> list[CameraStatus]:
        """Return only the statuses, in order."""
        return [status for status, _ in self.changes]


def frames_after(reader: CameraReader, after_seq: int, count: int) -> list[Frame]:
    """Take `count` successive fresh frames newer than `after_seq`, failing if they stop coming."""
    frames: list[Frame] = []
    for _ in range(count):
        frame = reader.wait_frame(frames[-1].seq if frames else after_seq, timeout=15)
        assert frame is not None, f"no frame from {reader.camera_id} (status {reader.status})"
        frames.append(frame)
    return frames


@pytest.mark.parametrize("options", [None, "rtsp_transport;udp|analyzeduration;200000"])
def test_rtsp_source_reads_frames_over_tcp(
    rtsp_server: StartServer, monkeypatch: pytest.MonkeyPatch, options: str | None
) -> None:
    server = rtsp_server(tcp_only=True)  # refuses RTP over UDP, so frames prove the TCP transport
    if options is not None:  # TCP is forced even when the operator's options ask for UDP
        monkeypatch.setenv(FFMPEG_OPTIONS, options)
    source = open_source(server.url(), realtime=True, loop=False)
    try:
        assert isinstance(source, RtspSource) and source.live
        assert source.fps == pytest.approx(15.0)
        images = [source.read() for _ in range(5)]
        assert all(image is not None and image.shape == (240, 320, 3) for image in images)
    finally:
        source.close()
    assert os.environ.get(FFMPEG_OPTIONS) == options, "the operator's options are restored after opening"


@pytest.mark.usefixtures("quick_probe")
def test_rtsp_with_credentials_plays_and_wrong_ones_are_reported_redacted(rtsp_server: StartServer) -> None:
    server = rtsp_server(user="site", password="Corr3ct-Horse")
    source = open_source(server.url("site:Corr3ct-Horse"), realtime=True, loop=False)
    assert source.read() is not None
    assert "Corr3ct-Horse" not in source.describe()
    source.close()
    with pytest.raises(SourceError) as caught:
        open_source(server.url("site:wr0ng-pass"), realtime=True, loop=False)
    message = str(caught.value)
    assert "wr0ng-pass" not in message and "site:***@" in message
    assert "authentication" in message and "\n" not in message


def test_rtsp_path_that_does_not_exist_is_named(rtsp_server: StartServer) -> None:
    server = rtsp_server()
    with pytest.raises(SourceError, match="no stream at path '/other'"):
        open_source(server.url().replace("/stream", "/other"), realtime=True, loop=False)


def test_unreachable_rtsp_camera_goes_offline_with_one_redacted_line() -> None:
    url = f"rtsp://admin:s3cr3t-pw@127.0.0.1:{free_port()}/stream"
    with pytest.raises(SourceError) as caught:
        open_source(url, realtime=True, loop=False)
    assert str(caught.value).startswith("cannot open RTSP stream rtsp://admin:***@127.0.0.1:")
    assert "Connection refused" in str(caught.value) and "s3cr3t-pw" not in str(caught.value)

    heard = StatusLog()
    reader = CameraReader(
        "crane", url, fps_cap=5, realtime=True, loop=False, offline_after_attempts=2, on_status=heard, **FAST
    )
    reader.start()
    wait_until(lambda: reader.status == CameraStatus.OFFLINE, 15, "status offline")
    reader.stop(5)
    assert heard.statuses[:2] == [CameraStatus.RECONNECTING, CameraStatus.OFFLINE]
    assert all("s3cr3t-pw" not in (detail or "") for _, detail in heard.changes)
    assert "s3cr3t-pw" not in (reader.health.last_error or "")


@pytest.mark.usefixtures("quick_probe")
def test_offline_camera_comes_online_when_it_appears(rtsp_server: StartServer) -> None:
    port = free_port()
    heard = StatusLog()
    reader = CameraReader(
        "gate",
        f"rtsp://127.0.0.1:{port}/stream",
        fps_cap=15,
        realtime=True,
        loop=False,
        offline_after_attempts=1,
        on_status=heard,
        **FAST,
    )
    reader.start()
    try:
        wait_until(lambda: reader.status == CameraStatus.OFFLINE, 15, "status offline")
        rtsp_server(port=port)
        assert frames_after(reader, -1, 3)[0].seq == 0
    finally:
        reader.stop(5)
    assert heard.statuses == [CameraStatus.OFFLINE, CameraStatus.ONLINE, CameraStatus.DISABLED]


@pytest.mark.slow
@pytest.mark.usefixtures("quick_probe")
def test_server_restart_midstream_reconnects_and_sequence_keeps_increasing(rtsp_server: StartServer) -> None:
    server = rtsp_server()
    heard = StatusLog()
    registry = CollectorRegistry()
    reader = CameraReader(
        "gate",
        server.url(),
        fps_cap=15,
        realtime=True,
        loop=False,
        registry=registry,
        on_status=heard,
        **FAST,
    )
    reader.start()
    try:
        before = frames_after(reader, -1, 5)
        server.kill()
        wait_until(lambda: reader.status == CameraStatus.RECONNECTING, 15, "status reconnecting")
        server.start()  # same port, like a camera rebooting
        wait_until(lambda: reader.status == CameraStatus.ONLINE, 20, "status online again")
        after = frames_after(reader, before[-1].seq, 5)
    finally:
        reader.stop(5)
    assert after[0].seq > before[-1].seq
    assert heard.statuses[:3] == [CameraStatus.ONLINE, CameraStatus.RECONNECTING, CameraStatus.ONLINE]
    assert (registry.get_sample_value("sitesentry_camera_reconnects_total", {"camera": "gate"}) or 0) >= 1
    assert (
        registry.get_sample_value("sitesentry_camera_status", {"camera": "gate", "status": "disabled"}) == 1
    )


@pytest.mark.slow
@pytest.mark.usefixtures("quick_probe")
def test_stalled_stream_without_frames_is_reconnected(rtsp_server: StartServer) -> None:
    server = rtsp_server()
    heard = StatusLog()
    reader = CameraReader(
        "gate",
        server.url(),
        fps_cap=15,
        realtime=True,
        loop=False,
        frozen_after_s=1.0,
        on_status=heard,
        **FAST,
    )
    reader.start()
    try:
        last = frames_after(reader, -1, 3)[-1]
        server.pause()  # the TCP connection stays up but nothing flows
        wait_until(lambda: reader.status != CameraStatus.ONLINE, 20, "the stall to be noticed")
        server.resume()
        wait_until(lambda: reader.status == CameraStatus.ONLINE, 20, "status online again")
        assert frames_after(reader, last.seq, 3)[0].seq > last.seq
    finally:
        reader.stop(5)
    lost = [detail for status, detail in heard.changes if status == CameraStatus.RECONNECTING]
    assert lost and "no frame within 1 s" in (lost[0] or "")


@pytest.mark.slow
@pytest.mark.usefixtures("quick_probe")
def test_frozen_stream_of_identical_frames_triggers_reconnect(rtsp_server: StartServer) -> None:
    server = rtsp_server(pattern="solid-color")  # a live stream whose picture never changes
    heard = StatusLog()
    reader = CameraReader(
        "gate",
        server.url(),
        fps_cap=15,
        realtime=True,
        loop=False,
        frozen_after_s=0.8,
        on_status=heard,
        **FAST,
    )
    reader.start()
    try:
        wait_until(lambda: reader.health.snapshot().reconnects >= 1, 20, "a reconnect of the frozen stream")
    finally:
        reader.stop(5)
    frozen = [detail for status, detail in heard.changes if status == CameraStatus.RECONNECTING]
    assert frozen and "frozen" in (frozen[0] or "") and "identical frames" in (frozen[0] or "")


@pytest.mark.usefixtures("quick_probe")
def test_live_camera_keeps_delivering_while_another_is_unreachable(rtsp_server: StartServer) -> None:
    server = rtsp_server()
    good = CameraReader("gate", server.url(), fps_cap=15, realtime=True, loop=False, **FAST)
    broken = CameraReader(
        "crane", f"rtsp://127.0.0.1:{free_port()}/stream", fps_cap=15, realtime=True, loop=False, **FAST
    )
    broken.start()
    good.start()
    try:
        frames = frames_after(good, -1, 10)
        assert [f.seq for f in frames] == sorted({f.seq for f in frames})
        assert good.status == CameraStatus.ONLINE
        assert broken.status in (CameraStatus.RECONNECTING, CameraStatus.OFFLINE)
        assert broken.health.snapshot().frames_read == 0
    finally:
        good.stop(5)
        broken.stop(5)
