"""Frames come out of a real labelled video at the chosen rate, with the track boxes of that frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
import yaml
from training_samples import VIDEO

from training.datasets.model import ClassMapping, source_group
from training.datasets.video import cvat_video_labels, extract_frames, yolo_frame_labels
from training.datasets.yolo import read_yolo

W, H = 848, 480

CVAT_VIDEO = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>12</id>
      <name>hardhat workers</name>
      <size>75</size>
      <mode>interpolation</mode>
      <start_frame>0</start_frame>
      <stop_frame>74</stop_frame>
      <frame_filter></frame_filter>
      <original_size><width>{w}</width><height>{h}</height></original_size>
    </task>
  </meta>
  <track id="0" label="worker" source="manual">
    <box frame="0" keyframe="1" outside="0" occluded="0" xtl="100" ytl="100" xbr="200" ybr="400"/>
    <box frame="50" keyframe="1" outside="0" occluded="0" xtl="300" ytl="100" xbr="400" ybr="400"/>
    <box frame="60" keyframe="1" outside="1" occluded="0" xtl="300" ytl="100" xbr="400" ybr="400"/>
  </track>
  <track id="1" label="hard hat" source="manual">
    <box frame="20" keyframe="1" outside="0" occluded="0" xtl="500" ytl="50" xbr="540" ybr="80"/>
    <box frame="30" keyframe="1" outside="0" occluded="0" xtl="520" ytl="50" xbr="560" ybr="80"/>
  </track>
  <track id="3" label="hard hat" source="manual">
    <box frame="10" keyframe="1" outside="0" occluded="0" xtl="800" ytl="50" xbr="940" ybr="80"/>
  </track>
  <track id="2" label="worker" source="manual">
    <points frame="0" keyframe="1" outside="0" occluded="0" points="10,10" z_order="0"></points>
  </track>
</annotations>
"""


def video() -> Path:
    if not VIDEO.is_file():
        pytest.skip(f"real video not available at {VIDEO}")
    return VIDEO


@pytest.fixture
def mapping() -> ClassMapping:
    return ClassMapping({"worker": "person", "hard hat": "helmet"})


def test_cvat_video_frames_are_sampled_at_the_rate_with_interpolated_tracks(tmp_path: Path, mapping) -> None:
    xml = tmp_path / "annotations.xml"
    xml.write_text(CVAT_VIDEO.format(w=W, h=H))
    labels = cvat_video_labels(xml, mapping)
    dataset = extract_frames(video(), labels, tmp_path / "out", fps=2)
    frames = [int(img.path.stem.rsplit("_", 1)[1]) for img in dataset.images]
    assert frames == [0, 13, 25, 38, 50, 63]  # 25 fps video, one frame per half second, up to stop_frame 74
    assert {source_group(img.path) for img in dataset.images} == {"hardhat-workers"}
    by_frame = dict(zip(frames, dataset.images, strict=True))
    person = [b for b in by_frame[25].boxes if b.label == "person"][0]
    assert person.cx * W == pytest.approx(250, abs=0.5)  # halfway between keyframes 0 and 50
    assert [b.label for b in by_frame[63].boxes] == ["helmet"]  # the person went outside at frame 60
    assert cv2.imread(str(by_frame[13].path)).shape == (H, W, 3)
    messages = [str(p) for p in dataset.problems]
    assert any("points tracks are not imported" in m for m in messages)
    assert any("out of range" in m for m in messages)  # track 3 runs past the right edge
    back = read_yolo(tmp_path / "out" / "data.yaml")
    assert len(back.images) == 6 and not back.problems
    assert yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["names"][0] == "person"


def test_yolo_per_frame_folder_skips_and_reports_unlabelled_frames(tmp_path: Path, mapping) -> None:
    folder = tmp_path / "obj_train_data"
    folder.mkdir()
    (tmp_path / "obj.names").write_text("worker\nhard hat\n")
    (folder / "frame_000000.txt").write_text("0 0.5 0.5 0.2 0.6\n")
    (folder / "frame_000025.txt").write_text("")
    (folder / "frame_000050.txt").write_text("1 0.5 0.1 0.05 0.05\n7 0.5 0.5 0.1 0.1\n")
    labels = yolo_frame_labels(tmp_path, mapping)
    dataset = extract_frames(video(), labels, tmp_path / "out", fps=2)
    assert [img.path.stem for img in dataset.images] == [
        f"hardhat-workers_frame_{n:06d}" for n in (0, 25, 50)
    ]
    assert [len(img.boxes) for img in dataset.images] == [1, 0, 1]
    messages = [str(p) for p in dataset.problems]
    assert any("frame_000050.txt:2" in m and "class id 7" in m for m in messages)
    assert any("2 sampled frame(s) have no labels" in m for m in messages)  # frames 13 and 38


def test_a_file_that_is_not_a_video_is_refused(tmp_path: Path, mapping) -> None:
    bogus = tmp_path / "clip.mp4"
    bogus.write_text("not a video")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "classes.txt").write_text("worker\n")
    with pytest.raises(ValueError, match="clip.mp4"):
        extract_frames(bogus, yolo_frame_labels(tmp_path / "labels", mapping), tmp_path / "out")
