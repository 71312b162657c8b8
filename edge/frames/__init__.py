"""Frame sources (RTSP, files, USB), the per-camera reader thread and stream health states."""

from edge.frames.health import CameraHealth, CameraMetrics, CameraStatus, HealthSnapshot, camera_metrics
from edge.frames.reader import CameraReader
from edge.frames.sources import FrameSource, SourceError, open_source, quiet_video_backends

__all__ = [
    "CameraHealth",
    "CameraMetrics",
    "CameraReader",
    "CameraStatus",
    "FrameSource",
    "HealthSnapshot",
    "SourceError",
    "camera_metrics",
    "open_source",
    "quiet_video_backends",
]
