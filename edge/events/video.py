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


class VideoEncoder:
    """An open video file that takes BGR frames one at a time, so no clip has to be held in memory whole.

    Frames whose size differs from `size` (w, h) are resized; the container follows the file's suffix
    (.mp4, .mkv, .mov, .avi). `close()` finishes the file; `abort()` gives up on it (the caller removes it).
    """

    def __init__(
        self, path: Path, fps: float, size: tuple[int, int], codec: Codec = "h264", crf: int = 26
    ) -> None:
        self.path = path
        self.codec = usable_codec(codec)
        self.written = 0
        width, height = size
        if self.codec == "h264":
            self.size = (_even(width), _even(height))  # yuv420p needs even dimensions
            self._open_h264(fps, crf)
        else:
            self.size = size
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, size)
            if not self._writer.isOpened():
                self._writer.release()
                raise EncoderError(f"{path}: cannot open an mp4v video writer")

    def _open_h264(self, fps: float, crf: int) -> None:
        import av

        self._rate = Fraction(fps).limit_denominator(1001)
        try:
            self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
        except av.error.FFmpegError as exc:
            raise self._h264_error(exc) from None
        try:
            self._stream = self._container.add_stream("libx264", rate=self._rate)
            self._stream.width, self._stream.height = self.size
            self._stream.pix_fmt = "yuv420p"  # the only chroma layout every browser decodes
            self._stream.options = {"preset": "veryfast", "crf": str(crf)}
            self._stream.thread_count = 1  # the clip writer runs beside inference: one core at most
        except av.error.FFmpegError as exc:
            self.abort()  # the file is open: release it before reporting
            raise self._h264_error(exc) from None

    def write(self, image: np.ndarray) -> None:
        """Append one BGR frame."""
        image = _fit(image, self.size)
        if self.codec == "h264":
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = self.written
            frame.time_base = 1 / self._rate
            try:
                self._container.mux(self._stream.encode(frame))
            except av.error.FFmpegError as exc:
                raise self._h264_error(exc) from None
        else:
            self._writer.write(image)
        self.written += 1

    def close(self) -> int:
        """Flush and finish the file; return the frames written."""
        if self.codec == "h264":
            import av

            try:
                self._container.mux(self._stream.encode(None))
                self._container.close()
            except av.error.FFmpegError as exc:
                raise self._h264_error(exc) from None
        else:
            self._writer.release()
        return self.written

    def abort(self) -> None:
        """Release the file without finishing it; never raises."""
        try:
            if self.codec == "h264":
                self._container.close()
            else:
                self._writer.release()
        except Exception as exc:  # already failing: the first error is the one worth reporting
            log.debug("closing abandoned video %s: %s", self.path, exc)

    def _h264_error(self, exc: Exception) -> OSError:
        if isinstance(exc, OSError) and exc.errno is not None:
            return OSError(exc.errno, str(exc), str(self.path))
        return EncoderError(f"{self.path}: H.264 encoding failed ({exc})")


def encode_video(
    path: Path,
    images: Iterable[np.ndarray],
    fps: float,
    size: tuple[int, int],
    codec: Codec = "h264",
    crf: int = 26,
) -> int:
    """Encode BGR images (resized to `size` (w, h) where they differ) to a video; return frames written."""
    encoder = VideoEncoder(path, fps, size, codec, crf)
    try:
        for image in images:
            encoder.write(image)
    except BaseException:
        encoder.abort()
        raise
    return encoder.close()


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) != size:  # the camera changed resolution mid-clip
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def count_frames(path: Path) -> int:
    """Return how many frames a video file's container says it holds (0 when it does not open)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()
