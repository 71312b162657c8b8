"""The edge's hard-example queue: saves real frames with predictions, stays bounded, never raises; and the
labelling loop: export a CVAT batch, label it, import it back merged into the dataset without leakage."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from training_samples import VIDEO

from edge.dataflow import Detections, Frame
from edge.hard_examples import HardExampleQueue, has_uncertain, read_queue
from edge.labels import CLASS_NAMES
from training.datasets.cvat import read_cvat
from training.datasets.queue import export_queue
from training.datasets.split import assign_missing_splits, remove_leaks
from training.datasets.yolo import read_yolo, write_yolo

T0 = 1_714_550_400.0  # 2024-05-01 08:00:00 UTC


def real_frames(n: int) -> list[np.ndarray]:
    if not VIDEO.is_file():
        pytest.skip(f"real video not available at {VIDEO}")
    capture = cv2.VideoCapture(str(VIDEO))
    frames = []
    while len(frames) < n:
        ok, image = capture.read()
        assert ok
        frames.append(image)
        for _ in range(24):  # one frame a second
            capture.grab()
    capture.release()
    return frames


def detections() -> Detections:
    xyxy = np.array([[100, 50, 220, 400], [130, 50, 180, 100], [110, 150, 210, 300]], np.float32)
    return Detections(xyxy, np.array([0.9, 0.41, 0.35], np.float32), np.array([0, 2, 3], np.int32))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_saved_example_holds_the_clean_frame_predictions_and_sidecar(tmp_path: Path) -> None:
    frame = Frame("gate", 42, T0 + 61.25, real_frames(1)[0])
    queue = HardExampleQueue(tmp_path / "q", max_items=10)
    image = queue.add(frame, detections(), "low_confidence")
    assert image is not None and image.name == "gate-20240501T08_frame_0101250.jpg"
    saved = cv2.imread(str(image))
    assert saved.shape == frame.image.shape
    assert np.abs(saved.astype(int) - frame.image.astype(int)).mean() < 3  # clean, not annotated
    rows = [r.split() for r in image.with_suffix(".txt").read_text().splitlines()]
    assert [int(r[0]) for r in rows] == [0, 2, 3]
    h, w = frame.image.shape[:2]
    assert float(rows[0][1]) == pytest.approx(160 / w, abs=1e-5) and float(rows[0][4]) == pytest.approx(
        350 / h
    )
    side = json.loads(image.with_suffix(".json").read_text())
    assert side["camera_id"] == "gate" and side["frame_seq"] == 42 and side["reason"] == "low_confidence"
    assert side["captured_at"].startswith("2024-05-01T08:01:01.25") and side["event_id"] is None
    assert side["class_names"] == list(CLASS_NAMES) and len(side["detections"]) == 3
    assert has_uncertain(detections(), 0.3, 0.45) and not has_uncertain(detections(), 0.5, 0.8)


def test_the_queue_is_bounded_rate_limited_and_keeps_false_alarms_longest(tmp_path: Path) -> None:
    registry, clock = CollectorRegistry(), Clock()
    queue = HardExampleQueue(tmp_path / "q", max_items=3, registry=registry, min_interval_s=5, clock=clock)
    frames = real_frames(6)
    queue.add(Frame("gate", 0, T0, frames[0]), detections(), "violation", event_id="ev-1")
    assert queue.add(Frame("gate", 1, T0 + 1, frames[1]), detections(), "violation") is None  # too soon
    assert sample(registry, "sitesentry_hard_examples_skipped_total", cause="rate_limited") == 1
    assert queue.mark_false_alarm("ev-1", note="shadow, not a person") == 1
    for i in range(2, 6):
        clock.now += 6
        assert queue.add(Frame("gate", i, T0 + i, frames[i]), detections(), "violation") is not None
    items = read_queue(tmp_path / "q")
    assert len(items) == 3 == len(queue)
    assert [it.event_id for it in items if it.false_alarm] == ["ev-1"]  # survived three evictions
    assert [round(it.captured_at - T0) for it in items] == [0, 4, 5]
    assert len(list((tmp_path / "q").glob("*.jpg"))) == 3
    assert sample(registry, "sitesentry_hard_examples_skipped_total", cause="evicted") == 2
    assert sample(registry, "sitesentry_hard_examples_queued") == 3
    assert json.loads(items[0].sidecar.read_text())["note"] == "shadow, not a person"


def test_failures_are_logged_and_counted_never_raised(tmp_path: Path, caplog) -> None:
    registry = CollectorRegistry()
    queue = HardExampleQueue(tmp_path / "q", max_items=3, registry=registry, min_interval_s=0)
    broken = Frame("gate", 1, T0, np.zeros((0, 0, 3), np.uint8))  # nothing to encode
    assert queue.add(broken, detections(), "violation") is None
    assert queue.add(Frame("gate", 2, T0, real_frames(1)[0]), detections(), "not-a-reason") is None
    (tmp_path / "q").rename(tmp_path / "gone")
    (tmp_path / "q").write_text("a file where the folder was")
    assert queue.add(Frame("gate", 3, T0 + 5, real_frames(1)[0]), detections(), "violation") is None
    assert sample(registry, "sitesentry_hard_examples_skipped_total", cause="error") == 3
    assert "could not save a hard example" in caplog.text


def test_exported_batch_is_labelled_and_merged_back_without_leaking(
    tmp_path: Path, yolo_sample: Path
) -> None:
    clock = Clock()
    queue = HardExampleQueue(tmp_path / "q", max_items=20, min_interval_s=0, clock=clock)
    for i, image in enumerate(real_frames(4)):
        queue.add(
            Frame("gate", i, T0 + 2 * i, image), detections(), "low_confidence" if i % 2 else "violation"
        )
    batch = tmp_path / "batch"
    exported = export_queue(tmp_path / "q", batch, "cvat")
    assert len(exported.images) == 4 and not read_queue(tmp_path / "q")  # moved out of the queue
    assert len(list((tmp_path / "q" / "exported" / "batch").glob("*.json"))) == 4
    assert len(json.loads((batch / "manifest.json").read_text())) == 4

    # The labeller fixes the pre-filled boxes in CVAT: drops the uncertain head, adds a helmet.
    tree = ET.parse(batch / "annotations.xml")
    for image in tree.getroot().iter("image"):
        head = next(b for b in image.iter("box") if b.get("label") == "head")
        image.remove(head)
        helmet = {"label": "helmet", "occluded": "0", "xtl": "130", "ytl": "40", "xbr": "180", "ybr": "90"}
        ET.SubElement(image, "box", helmet)
    tree.write(batch / "annotations.xml")
    labelled = read_cvat(batch)
    assert not labelled.problems
    assert all(sorted(b.label for b in img.boxes) == ["helmet", "person", "vest"] for img in labelled.images)

    from training_samples import MAPPING

    from training.datasets.model import ClassMapping

    current = write_yolo(read_yolo(yolo_sample, ClassMapping.load(MAPPING)), tmp_path / "v1")
    old = read_yolo(current)
    old.images.extend(labelled.images)
    merged = remove_leaks(assign_missing_splits(old, valid=0.5, seed=0))
    new = [img for img in merged.images if img.path.parent == batch / "images"]
    assert len(new) == 4 and len({img.split for img in new}) == 1  # one camera-hour: one split
    assert {img.group for img in new} == {"gate-20240501T08"}
    v2 = read_yolo(write_yolo(merged, tmp_path / "v2"))
    assert len(v2.images) == len(merged.images) == 12 and not v2.problems


def test_cvat_batch_numbers_images_in_name_order_and_declares_every_class(tmp_path: Path) -> None:
    queue = HardExampleQueue(tmp_path / "q", max_items=20, min_interval_s=0)
    for i, image in enumerate(real_frames(3)):
        queue.add(Frame("gate", i, T0 + 2 * i, image), detections(), "violation", event_id=f"ev-{i}")
    for event in ("ev-0", "ev-1"):
        assert queue.mark_false_alarm(event) == 1
    export_queue(tmp_path / "q", tmp_path / "b", "cvat", limit=2)  # picks ev-1, then ev-0: false alarms
    root = ET.parse(tmp_path / "b" / "annotations.xml").getroot()
    # CVAT falls back to the <image> id when a name matches no task frame: ids must be name-order frames.
    images = [(img.get("id"), img.get("name")) for img in root.iter("image")]
    assert images == [
        ("0", "gate-20240501T08_frame_0000000.jpg"),
        ("1", "gate-20240501T08_frame_0002000.jpg"),
    ]
    declared = [label.findtext("name") for label in root.iter("label")]
    assert declared == list(CLASS_NAMES)
    assert {box.get("label") for box in root.iter("box")} <= set(declared)


def test_yolo_batch_is_the_flat_layout_labelling_tools_read(tmp_path: Path) -> None:
    queue = HardExampleQueue(tmp_path / "q", max_items=20, min_interval_s=0)
    for i, image in enumerate(real_frames(2)):
        queue.add(Frame("gate", i, T0 + 2 * i, image), detections(), "low_confidence")
    predicted = {p.name: p.read_text() for p in (tmp_path / "q").glob("*.txt")}
    batch = tmp_path / "b"
    export_queue(tmp_path / "q", batch, "yolo")
    # Label Studio's YOLO import reads classes.txt, images/ and labels/ at the top; datumaro's `yolo` and
    # ultralytics read data.yaml, which has no `path` so that the batch can be moved.
    assert (batch / "classes.txt").read_text().split() == list(CLASS_NAMES)
    assert sorted(p.name for p in (batch / "images").iterdir()) == sorted(
        name.replace(".txt", ".jpg") for name in predicted
    )
    assert {p.name: p.read_text() for p in (batch / "labels").iterdir()} == predicted
    data = yaml.safe_load((batch / "data.yaml").read_text())
    assert "path" not in data and data["train"] == "images" and data["names"] == list(CLASS_NAMES)
    back = read_yolo(batch / "data.yaml")
    assert len(back.images) == 2 and not back.problems
    assert all(sorted(b.label for b in img.boxes) == ["head", "person", "vest"] for img in back.images)
    # Its `train:` key is not a split: importing the batch leaves the split to the camera-hour grouping.
    assert data["unsplit"] is True and {img.split for img in back.images} == {None}
