"""Video encoding for evidence clips and annotated videos: H.264 through PyAV, MPEG-4 part 2 through OpenCV.

H.264 (libx264, yuv420p, moov atom first) is what browsers play inline and is about four times smaller
than OpenCV's mp4v at the same look; pip's OpenCV cannot encode it, PyAV's wheels can.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

log = logging.getLogger(__name__)

Codec = Literal["h264", "mp4v"]


class EncoderError(OSError):
    """The encoder could not open or finish a video file (OpenCV reports no errno of its own)."""


@functools.cache
def h264_available() -> bool:
    """Return True when PyAV is installed with the libx264 encoder."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


def usable_codec(wanted: Codec) -> Codec:
    """Return `wanted`, or mp4v (logged once) when H.264 is asked for but PyAV/libx264 is missing."""
    if wanted == "h264" and not h264_available():
        _warn_no_h264()
        return "mp4v"
    return wanted


@functools.cache
def _warn_no_h264() -> None:
    log.warning("H.264 clips need PyAV with libx264 (pip install av); writing MPEG-4 part 2 (mp4v) instead")


def _even(n: int) -> int:
    return n - n % 2


def encode_video(
    path: Path,
    images: Iterable[np.ndarray],
    fps: float,
    size: tuple[int, int],
    codec: Codec = "h264",
    crf: int = 26,
) -> int:
    """Encode BGR images (resized to `size` (w, h) where they differ) to a video; return frames written.

    The container follows the file's suffix (.mp4, .mkv, .mov, .avi).
    """
    codec = usable_codec(codec)
    width, height = size
    if codec == "h264":
        return _encode_h264(path, images, fps, (_even(width), _even(height)), crf)
    return _encode_opencv(path, images, fps, size)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) != size:  # the camera changed resolution mid-clip
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def _encode_h264(
    path: Path, images: Iterable[np.ndarray], fps: float, size: tuple[int, int], crf: int
) -> int:
    import av

    rate = Fraction(fps).limit_denominator(1001)
    written = 0
    try:
        with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"  # the only chroma layout every browser decodes
            stream.options = {"preset": "veryfast", "crf": str(crf)}
            stream.thread_count = 1  # the clip writer runs beside inference: one core at most
            for image in images:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(_fit(image, size)), format="bgr24")
                frame.pts = written
                frame.time_base = 1 / rate
                container.mux(stream.encode(frame))
                written += 1
            container.mux(stream.encode(None))
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise OSError(exc.errno, str(exc), str(path)) from None
        raise EncoderError(f"{path}: H.264 encoding failed ({exc})") from None
    return written


def _encode_opencv(path: Path, images: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> int:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
    written = 0
    try:
        if not writer.isOpened():
            raise EncoderError(f"{path}: cannot open an mp4v video writer")
        for image in images:
            writer.write(_fit(image, size))
            written += 1
    finally:
        writer.release()
    return written


def count_frames(path: Path) -> int:
    """Return how many frames a video file's container says it holds (0 when it does not open)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
