"""`sitesentry detect`: an annotated copy of a real photo or video, and one clear line for bad input."""

from pathlib import Path

import av
import cv2
import numpy as np
from typer.testing import CliRunner

from edge.cli import app

REPO = Path(__file__).resolve().parents[2]
PHOTOS = REPO.parent / "shared/datasets/construction-site-safety/valid/images"


def site_photo(tmp_path: Path) -> Path:
    """A real construction photo from ../shared when present, else a frame of the sample video."""
    photos = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if photos:
        return photos[0]
    capture = cv2.VideoCapture(str(REPO / "samples" / "vtest.mp4"))
    ok, image = capture.read()
    capture.release()
    assert ok
    path = tmp_path / "frame.jpg"
    cv2.imwrite(str(path), image)
    return path


def test_detect_writes_an_annotated_photo_and_counts_the_boxes(tmp_path: Path) -> None:
    photo = site_photo(tmp_path)
    out = tmp_path / "annotated.jpg"
    result = CliRunner().invoke(app, ["detect", str(photo), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{out}: ") and "person" in result.output
    original, annotated = cv2.imread(str(photo)), cv2.imread(str(out))
    assert annotated.shape == original.shape
    assert np.mean(cv2.absdiff(original, annotated)) > 0.5  # boxes were drawn


def test_detect_on_a_video_writes_an_h264_copy_with_every_frame(tmp_path: Path) -> None:
    capture = cv2.VideoCapture(str(REPO / "samples" / "vtest.mp4"))
    clip = tmp_path / "short.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, (640, 480))
    for _ in range(12):
        ok, image = capture.read()
        assert ok
        writer.write(image)
    writer.release()
    capture.release()

    result = CliRunner().invoke(app, ["detect", str(clip)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "short.annotated.mp4"
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 12


def test_detect_refuses_what_it_cannot_read_in_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "camera.mp4"
    junk.write_bytes(b"this is not a video")
    for args, message in (
        ([str(junk)], f"{junk}: not a readable image or video"),
        ([str(tmp_path / "absent.jpg")], f"{tmp_path / 'absent.jpg'}: no such file"),
        ([str(site_photo(tmp_path)), "--model", str(junk)], f"{junk}: not a loadable ONNX model"),
    ):
        result = CliRunner().invoke(app, ["detect", *args])
        assert result.exit_code != 0
        assert message in result.output and "Traceback" not in result.output
