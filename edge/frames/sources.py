"""Frame sources behind one interface: RTSP over TCP, video files (paced or fast, looped), USB cameras."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from edge.config.models import STREAM_SCHEMES
from edge.telemetry import redact

log = logging.getLogger(__name__)

_DEFAULT_FILE_FPS = 25.0
# A file-paced source that falls this far behind (slow disk, busy CPU) restarts its schedule instead of
# bursting frames to catch up, like a live camera would.
_MAX_PACING_LAG_S = 1.0
_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# OpenCV reads its FFmpeg options from the environment at each open; the lock keeps concurrent opens from
# seeing each other's temporary value.
_env_lock = threading.Lock()


class SourceError(RuntimeError):
    """A frame source that cannot be opened: the message is one line saying what and where, redacted.

    `unplayable` marks a file that is missing or holds no playable video: opening it again will not help,
    so once the camera is offline for it the reader gives up and the app stops waiting for it.
    """

    def __init__(self, message: str, *, unplayable: bool = False) -> None:
        super().__init__(message)
        self.unplayable = unplayable


class FrameSource:
    """An opened source of BGR frames; read it from one thread only."""

    live: bool = True  # frames arrive in real time and cannot be replayed (RTSP, USB)

    def __init__(self, capture: cv2.VideoCapture, where: str) -> None:
        self._capture = capture
        self._where = where
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._fps = fps if np.isfinite(fps) and 0 < fps < 1000 else 0.0

    @property
    def fps(self) -> float:
        """Return the nominal frame rate the source reports (0.0 when it does not say)."""
        return self._fps

    @property
    def ended(self) -> bool:
        """Return True once a finite source has nothing more to give (only non-looping files)."""
        return False

    @property
    def position_s(self) -> float | None:
        """Return the media time of the last frame read (files), or None for live sources."""
        return None

    @property
    def played_s(self) -> float | None:
        """Return the media time played since opening, across loops (files), or None for live sources."""
        return None

    def describe(self) -> str:
        """Return what and where this source is, credentials hidden."""
        return self._where

    def read(self) -> np.ndarray | None:
        """Return the next frame, or None when the stream is lost, timed out or ended."""
        return self.retrieve() if self.grab() else None

    def grab(self) -> bool:
        """Take the next frame from the stream without converting it to an image; False like read()'s None.

        A frame the fps cap skips is only grabbed: the stream is still consumed (so the next one is fresh)
        but not converted to BGR nor copied.
        """
        return bool(self._capture.grab())

    def retrieve(self) -> np.ndarray | None:
        """Return the frame last grabbed as a BGR image, or None when it cannot be converted."""
        ok, image = self._capture.retrieve()
        return image if ok and image is not None and image.size else None

    def lost(self, read_timeout_s: float) -> str:
        """Say, in one line, why read() returned None on a source that has not ended."""
        return f"lost {self._where}: connection closed or no frame within {read_timeout_s:g} s"

    def close(self) -> None:
        """Release the underlying capture; safe to call twice."""
        self._capture.release()

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class RtspSource(FrameSource):
    """An RTSP stream read through OpenCV's FFmpeg backend, RTP interleaved over TCP."""


class UsbSource(FrameSource):
    """A local camera by index (usb:N), through OpenCV's V4L2 backend on Linux, its default elsewhere."""


class FileSource(FrameSource):
    """A video file: paced at its own frame rate or as fast as possible, optionally looped."""

    live = False

    def __init__(
        self, capture: cv2.VideoCapture, where: str, path: Path, *, realtime: bool, loop: bool
    ) -> None:
        super().__init__(capture, where)
        self._path = path
        self._realtime = realtime
        self._loop = loop
        self._index = -1  # frames read since the (last) start of the file
        self._ticks = -1  # frames read since opening, across loops: the pacing schedule
        self._ended = False
        self._started: float | None = None  # monotonic time at which tick 0 was due
        # Decode two frames now: a file OpenCV opens but cannot decode, or a still image under a video's
        # name (FFmpeg plays a JPEG renamed .mp4 as one frame), fails here instead of as a silent "end".
        first = self._decode_next()
        second = self._decode_next() if first is not None else None
        if first is None or second is None:
            capture.release()
            what = "no frame can be decoded" if first is None else "it holds a single still image"
            raise SourceError(f"cannot play {where}: not a playable video ({what})", unplayable=True)
        self._pending: list[np.ndarray] = [first, second]
        self._grabbed: np.ndarray | None = None  # a pending frame taken by grab(), for retrieve()
        if self._fps == 0.0:
            log.warning("%s does not state its frame rate; assuming %.0f fps", where, _DEFAULT_FILE_FPS)

    def _decode_next(self) -> np.ndarray | None:
        """Read the next frame straight from the capture (no pending frames, pacing or looping)."""
        return FrameSource.retrieve(self) if FrameSource.grab(self) else None

    @property
    def _rate(self) -> float:
        return self._fps or _DEFAULT_FILE_FPS

    @property
    def ended(self) -> bool:
        """Return True once a non-looping file reached its end."""
        return self._ended

    @property
    def position_s(self) -> float | None:
        """Return the media time of the last frame read, restarting at 0 on each loop."""
        return max(self._index, 0) / self._rate

    @property
    def played_s(self) -> float:
        """Return the media time of the last frame read since opening, growing on across loops."""
        return max(self._ticks, 0) / self._rate

    def grab(self) -> bool:
        """Take the next frame, sleeping until it is due when paced; False at the end unless looping."""
        if self._ended:
            return False
        self._grabbed = self._pending.pop(0) if self._pending else None
        ok = self._grabbed is not None or super().grab()
        if not ok and self._loop:
            ok = self._rewind()
            if not ok:  # not an end: a looping camera must not finish quietly; the reader reopens
                return False
        if not ok:
            self._ended = True
            return False
        self._index += 1
        self._ticks += 1
        if self._realtime:
            self._pace()
        return True

    def retrieve(self) -> np.ndarray | None:
        """Return the frame last grabbed as a BGR image (the first two were decoded at open)."""
        if self._grabbed is not None:
            image, self._grabbed = self._grabbed, None
            return image
        return super().retrieve()

    def lost(self, read_timeout_s: float) -> str:
        """Say why a looping file gave no frame: it could not start again from its first frame."""
        return f"cannot read {self._where} again from its first frame"

    def _rewind(self) -> bool:
        """Seek back to the first frame and grab it; reopen when the container cannot seek."""
        self._index = -1
        if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0) and super().grab():
            return True
        # Raw streams (concatenated JPEGs, .m4v) accept the seek and then give nothing: reopen those too.
        self._capture.release()
        self._capture = cv2.VideoCapture(str(self._path), cv2.CAP_FFMPEG)
        return super().grab()

    def _pace(self) -> None:
        now = time.monotonic()
        offset = self._ticks / self._rate
        if self._started is None or now - (self._started + offset) > _MAX_PACING_LAG_S:
            self._started = now - offset
        due = self._started + offset
        if due > now:
            time.sleep(due - now)


def quiet_video_backends() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter so a failing camera logs only our one line.

    Process-wide: call once at start-up (the CLI), before the first capture is opened. An operator's
    OPENCV_FFMPEG_LOGLEVEL, if set, is kept for debugging.
    """
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def open_source(
    source: str,
    *,
    realtime: bool,
    loop: bool,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 5.0,
    decoder: str = "software",
) -> FrameSource:
    """Open rtsp://..., a video file path or usb:N; raise SourceError with one clear line when it cannot.

    `decoder` (CameraConfig.decoder) picks how RTSP video is decoded: "software" (OpenCV's FFmpeg) or a
    name in GSTREAMER_DECODERS (a GStreamer pipeline, e.g. JetPack's hardware decoder).
    """
    source = source.strip()
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if scheme in STREAM_SCHEMES and decoder in GSTREAMER_DECODERS:
        return _open_rtsp_gstreamer(source, decoder, open_timeout_s=open_timeout_s)
    if scheme in STREAM_SCHEMES:  # the schemes config validation accepts, and only those
        return _open_rtsp(source, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s)
    if scheme:
        raise SourceError(
            f"unsupported camera source {redact(source)}: use rtsp://..., a video file path or usb:N"
        )
    if source.lower().startswith("usb:"):
        return _open_usb(source)
    return _open_file(source, realtime=realtime, loop=loop)


def _timeouts(open_timeout_s: float, read_timeout_s: float) -> list[int]:
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        max(1, int(open_timeout_s * 1000)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        max(1, int(read_timeout_s * 1000)),
    ]


def tcp_capture_options(current: str | None) -> str:
    """Return OpenCV FFmpeg capture options with rtsp_transport forced to tcp, keeping the other options."""
    pairs = [item for item in (current or "").split("|") if item and not item.startswith("rtsp_transport;")]
    return "|".join(["rtsp_transport;tcp", *pairs])


def _open_rtsp(url: str, *, open_timeout_s: float, read_timeout_s: float) -> FrameSource:
    where = f"RTSP stream {redact(url)}"
    with _env_lock:
        previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
        # Over UDP a lossy site network smears frames; TCP trades latency for intact images.
        os.environ[_FFMPEG_OPTIONS_ENV] = tcp_capture_options(previous)
        try:
            capture = cv2.VideoCapture(url, cv2.CAP_FFMPEG, _timeouts(open_timeout_s, read_timeout_s))
        finally:
            if previous is None:
                del os.environ[_FFMPEG_OPTIONS_ENV]
            else:
                os.environ[_FFMPEG_OPTIONS_ENV] = previous
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {where}: {diagnose_rtsp(url, timeout_s=min(open_timeout_s, 3.0))}")
    return RtspSource(capture, where)


#: GStreamer decode chains by CameraConfig.decoder name: parsed H.264/H.265 in, raw video out. nvv4l2 is
#: JetPack's NVDEC decoder; nvvidconv copies its frames out of NVMM memory (the BGR conversion is on the CPU).
GSTREAMER_DECODERS = {"nvv4l2": "nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert"}


def rtsp_pipeline(url: str, decode: str, *, latency_ms: int = 200, tcp_timeout_s: float = 10.0) -> str:
    """Return the GStreamer pipeline that reads an RTSP URL over TCP, decodes it with `decode` and hands
    BGR frames to OpenCV, keeping only the freshest one (parsebin finds the depayloader and parser, so
    H.264 and H.265 cameras need no setting)."""
    # Characters that end or escape a quoted gst-launch value are percent-encoded (the URL stays valid).
    quoted = url.replace("\\", "%5C").replace('"', "%22")
    return (
        f'rtspsrc location="{quoted}" protocols=tcp latency={latency_ms}'
        f" tcp-timeout={int(tcp_timeout_s * 1_000_000)} ! parsebin ! {decode}"
        " ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def _open_rtsp_gstreamer(url: str, decoder: str, *, open_timeout_s: float) -> FrameSource:
    where = f"RTSP stream {redact(url)} (decoder {decoder})"
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise SourceError(
            f"cannot open {where}: this OpenCV {cv2.__version__} has no GStreamer backend (use the system"
            " OpenCV JetPack ships, see deploy/jetson/README.md, or set the camera's decoder: software)"
        )
    # OpenCV's GStreamer backend takes no open/read timeouts: rtspsrc's tcp-timeout bounds the connect.
    pipeline = rtsp_pipeline(url, GSTREAMER_DECODERS[decoder], tcp_timeout_s=open_timeout_s)
    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        capture.release()
        reason = diagnose_rtsp(url, timeout_s=min(open_timeout_s, 3.0))
        raise SourceError(f"cannot open {where}: {reason} (`sitesentry doctor` lists the GStreamer elements)")
    return RtspSource(capture, where)


def diagnose_rtsp(url: str, *, timeout_s: float = 3.0) -> str:
    """Say why an RTSP URL gives no video, as far as a TCP connect and one unauthenticated DESCRIBE tell."""
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        return "the URL names no host"
    try:
        port = parts.port or (322 if parts.scheme.lower() == "rtsps" else 554)
    except ValueError:
        return "the URL has an invalid port"
    try:
        conn = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return f"cannot connect to {host}:{port} ({reason})"
    with conn:
        if parts.scheme.lower() == "rtsps":
            return (
                f"{host}:{port} accepts connections but no video stream could be opened (TLS, path or codec?)"
            )
        address = parts.netloc.rsplit("@", 1)[-1]  # without user:password, IPv6 brackets kept
        bare = urlunsplit((parts.scheme, address, parts.path or "/", parts.query, ""))
        try:
            conn.sendall(f"DESCRIBE {bare} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
            status_line = conn.recv(256).split(b"\r\n", 1)[0].decode("latin-1")
        except OSError as exc:
            return f"{host}:{port} accepts connections but does not answer RTSP ({exc.strerror or exc})"
    if not status_line:
        return f"{host}:{port} closed the connection without an RTSP answer"
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("RTSP/"):
        return f"{host}:{port} does not speak RTSP"
    code = fields[1]
    answer = " ".join(fields[1:])
    if code == "401":
        hint = "check user name and password" if parts.password else "the URL needs user:password@"
        return f"the server requires authentication ({answer}); {hint}"
    if code == "404":
        return f"the server has no stream at path {parts.path or '/'!r} ({answer})"
    if code == "200":
        return "the server describes the stream but no frames could be decoded (codec or transport?)"
    return f"the server answers {answer}"


def _open_usb(source: str) -> FrameSource:
    index_text = source.split(":", 1)[1]
    if not index_text.isdigit():
        raise SourceError(
            f"invalid USB camera source {source!r}: write usb:N with N the camera index, e.g. usb:0"
        )
    index = int(index_text)
    where = f"USB camera {index} ({source})"
    # V4L2 directly on Linux: the default backend order tries FFmpeg first and logs a confusing error.
    capture = cv2.VideoCapture(index, cv2.CAP_V4L2 if sys.platform == "linux" else cv2.CAP_ANY)
    if not capture.isOpened():
        capture.release()
        device = Path(f"/dev/video{index}")
        reason = (
            f"{device} does not exist"
            if sys.platform == "linux" and not device.exists()
            else "busy or unsupported"
        )
        raise SourceError(f"cannot open {where}: {reason}")
    return UsbSource(capture, where)


def _open_file(source: str, *, realtime: bool, loop: bool) -> FrameSource:
    path = Path(source).expanduser().absolute()  # absolute: the line must say where it looked
    where = f"video file {path}"
    if not path.exists():
        raise SourceError(f"cannot open {where}: no such file", unplayable=True)
    if not path.is_file():
        raise SourceError(f"cannot open {where}: not a regular file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot open {where}: permission denied")
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open {where}: not a video format FFmpeg can read", unplayable=True)
    return FileSource(capture, where, path, realtime=realtime, loop=loop)
