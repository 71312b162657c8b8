"""Fixtures for the frame-source tests: generated test videos and a real RTSP server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from frames_support import APT_PACKAGES, RtspServer, gst_rtsp_unavailable, write_video


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated test videos: 'short' 12 frames at 20 fps, 'slow' 4 frames at 1 fps, 'still' 30 frames,
    'fast' 12 frames at 500 fps (a paced stream that outruns any consumer)."""
    folder = tmp_path_factory.mktemp("videos")
    return {
        "short": write_video(folder / "short.mp4", frames=12, fps=20),
        "slow": write_video(folder / "slow.mp4", frames=4, fps=1),
        "still": write_video(folder / "still.mp4", frames=30, fps=30, still=True),
        "fast": write_video(folder / "fast.mp4", frames=12, fps=500),
    }


@pytest.fixture(scope="session")
def gst_rtsp() -> None:
    """Skip with the apt packages to install when Debian's GStreamer RTSP server is not usable."""
    reason = gst_rtsp_unavailable()
    if reason:
        pytest.skip(f"GStreamer RTSP server unavailable ({reason}); apt-get install {APT_PACKAGES}")


@pytest.fixture
def rtsp_server(gst_rtsp: None) -> Iterator[Callable[..., RtspServer]]:
    """Factory: start a real RTSP server on a free 127.0.0.1 port; every server is killed afterwards."""
    servers: list[RtspServer] = []

    def start(
        pattern: str = "ball",
        tcp_only: bool = False,
        user: str | None = None,
        password: str | None = None,
        port: int = 0,
    ) -> RtspServer:
        server = RtspServer(pattern=pattern, tcp_only=tcp_only, user=user, password=password)
        server.port = port
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()
