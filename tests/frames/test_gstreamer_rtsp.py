"""`decoder: nvv4l2` (GStreamer RTSP pipeline for the Jetson hardware decoder): config rules, the clear error
on an OpenCV without GStreamer, and the pipeline string played for real against the RTSP test server.

Here (no Jetson) the pipeline is played by Debian's OpenCV (built with GStreamer) under the system Python,
with GStreamer's software H.264 decoder in place of nvv4l2decoder: everything but the NVIDIA elements is
the string the edge opens. On a box with nvv4l2decoder and an OpenCV with GStreamer, the last test opens
the real hardware pipeline through open_source.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import typing
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import yaml
from frames_support import SYSTEM_PYTHON, RtspServer

from edge.config import ConfigError, load_config
from edge.config.models import CameraConfig
from edge.frames.sources import GSTREAMER_DECODERS, RtspSource, SourceError, open_source, rtsp_pipeline

StartServer = Callable[..., RtspServer]
SOFTWARE_DECODE = "avdec_h264 ! videoconvert"  # stands in for GSTREAMER_DECODERS["nvv4l2"] off a Jetson
PLAY = """
import json, sys, cv2
cap = cv2.VideoCapture(sys.argv[1], cv2.CAP_GSTREAMER)
shapes = [list(img.shape) for ok, img in (cap.read() for _ in range(int(sys.argv[2]))) if ok]
print(json.dumps({"opened": cap.isOpened(), "shapes": shapes}))
"""


def system_gstreamer_opencv() -> str | None:
    """Why the system Python cannot play a GStreamer pipeline through OpenCV, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = "import cv2; print(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))"
    done = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    if done.stdout.strip() != "True":
        return "the system Python's OpenCV has no GStreamer backend (apt-get install python3-opencv)"
    gst = shutil.which("gst-inspect-1.0")
    has_avdec = gst and subprocess.run([gst, "--exists", "avdec_h264"], timeout=30).returncode == 0
    return None if has_avdec else "GStreamer's avdec_h264 is missing (apt-get install gstreamer1.0-libav)"


def play(pipeline: str, frames: int = 5) -> dict:
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", PLAY, pipeline, str(frames)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_decoder_names_are_the_configs_choices() -> None:
    choices = typing.get_args(CameraConfig.model_fields["decoder"].annotation)
    assert set(choices) == {"software", *GSTREAMER_DECODERS}


def test_config_refuses_a_hardware_decoder_for_files_and_usb(tmp_path: Path) -> None:
    for source in ("usb:0", "samples/vtest.mp4"):
        path = tmp_path / "site.yaml"
        cameras = [{"id": "gate", "source": source, "decoder": "nvv4l2"}]
        path.write_text(yaml.safe_dump({"site": {"id": "s", "name": "S"}, "cameras": cameras}))
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert any("decoder nvv4l2 reads rtsp:// sources only" in line for line in caught.value.lines())
    path.write_text(
        yaml.safe_dump(
            {
                "site": {"id": "s", "name": "S"},
                "cameras": [{"id": "g", "source": "rtsp://cam/1", "decoder": "nvv4l2"}],
            }
        )
    )
    assert load_config(path).cameras[0].decoder == "nvv4l2"


@pytest.mark.skipif(cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), reason="this OpenCV has GStreamer")
def test_nvv4l2_on_an_opencv_without_gstreamer_is_one_clear_line() -> None:
    with pytest.raises(SourceError) as caught:
        open_source("rtsp://admin:s3cr3t@127.0.0.1:9/live", realtime=True, loop=False, decoder="nvv4l2")
    message = str(caught.value)
    assert "has no GStreamer backend" in message and "decoder: software" in message
    assert "s3cr3t" not in message and "\n" not in message


def test_pipeline_quotes_the_url_and_keeps_only_the_freshest_frame() -> None:
    pipeline = rtsp_pipeline('rtsp://u:p"a\\ss@cam:554/live', GSTREAMER_DECODERS["nvv4l2"], tcp_timeout_s=2.5)
    assert pipeline.startswith('rtspsrc location="rtsp://u:p%22a%5Css@cam:554/live" protocols=tcp ')
    assert "tcp-timeout=2500000 ! parsebin ! nvv4l2decoder ! nvvidconv" in pipeline
    assert pipeline.endswith("! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


@pytest.mark.parametrize("password", ["Corr3ct-Horse", 'quo"te'])
def test_pipeline_plays_a_real_rtsp_stream_with_credentials(rtsp_server: StartServer, password: str) -> None:
    reason = system_gstreamer_opencv()
    if reason:
        pytest.skip(reason)
    server: RtspServer = rtsp_server(user="site", password=password, tcp_only=True)
    result = play(rtsp_pipeline(server.url(f"site:{password}"), SOFTWARE_DECODE))
    assert result == {"opened": True, "shapes": [[240, 320, 3]] * 5}
    wrong = play(rtsp_pipeline(server.url("site:wr0ng"), SOFTWARE_DECODE), frames=1)
    assert wrong == {"opened": False, "shapes": []}


def hardware_pipeline_unavailable() -> str | None:
    gst = shutil.which("gst-inspect-1.0")
    if not (gst and subprocess.run([gst, "--exists", "nvv4l2decoder"], timeout=30).returncode == 0):
        return "no nvv4l2decoder (JetPack's GStreamer plugins)"
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        return "this OpenCV has no GStreamer backend"
    return None


@pytest.mark.gpu
def test_nvv4l2_decoder_reads_the_stream_on_a_jetson(rtsp_server: StartServer) -> None:
    reason = hardware_pipeline_unavailable()
    if reason:
        pytest.skip(reason)
    server = rtsp_server(tcp_only=True)
    source = open_source(server.url(), realtime=True, loop=False, decoder="nvv4l2")
    try:
        assert isinstance(source, RtspSource) and "decoder nvv4l2" in source.describe()
        assert all(
            image is not None and image.shape == (240, 320, 3) for image in (source.read() for _ in range(5))
        )
    finally:
        source.close()
