"""Helpers for the frame-source tests: generated test videos and a real RTSP server process on 127.0.0.1."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
APT_PACKAGES = (
    "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-ugly"
)


def level_of(index: int) -> int:
    """Return the grey level that identifies frame `index` in a generated video."""
    return 20 + 10 * (index % 20)


def write_video(
    path: Path, *, frames: int, fps: float, still: bool = False, size: tuple[int, int] = (160, 120)
) -> Path:
    """Write an MP4 whose frame i is flat grey at level_of(i) (or all identical when still)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for index in range(frames):
        image = np.full((height, width, 3), level_of(0 if still else index), np.uint8)
        writer.write(image)
    writer.release()
    return path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """A gst-rtsp-server subprocess; kill() and start() again on the same port simulate a camera restart."""

    def __init__(self, *, pattern: str, tcp_only: bool, user: str | None, password: str | None) -> None:
        self.port = 0
        self._args = ["--pattern", pattern] + (["--tcp-only"] if tcp_only else [])
        if user:
            self._args += ["--user", user, "--password", password or ""]
        self._proc: subprocess.Popen[str] | None = None

    def url(self, credentials: str = "") -> str:
        """Return the stream URL, with `user:password@` when given."""
        return f"rtsp://{credentials}{'@' if credentials else ''}127.0.0.1:{self.port}/stream"

    def start(self, timeout_s: float = 20.0) -> RtspServer:
        """Start serving (on the previous port after a kill) and wait until it accepts connections."""
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port), *self._args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._proc = proc
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            ready = selector.select(timeout_s)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.kill()
            stderr = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"RTSP test server did not start: {line!r} {stderr[-2000:]}")
        self.port = int(line.split()[1])
        return self

    def kill(self) -> None:
        """Kill the server abruptly, like a camera losing power."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGCONT)
            self._proc.kill()
        if self._proc is not None:
            self._proc.wait(10)

    def pause(self) -> None:
        """Freeze the server process: connections stay open but no packet flows."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again."""
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)


def gst_rtsp_unavailable() -> str | None:
    """Return why the RTSP server cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "missing = [e for e in ('videotestsrc', 'x264enc', 'rtph264pay', 'videoconvert')"
        " if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
    )
    try:
        result = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode != 0:
        return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "gi import failed"
    if result.stdout.strip():
        return f"missing GStreamer elements: {result.stdout.strip()}"
    return None


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.02)
