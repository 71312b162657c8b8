"""Annotation and blurring on real site photos: colours, zone overlay, time stamp, face blurring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest

from edge.annotate import (
    CLASS_COLOURS,
    COMPLIANT_COLOUR,
    MUTED_COLOUR,
    VIOLATION_COLOUR,
    Annotation,
    Focus,
    annotate,
    blur_regions,
    draw,
    draw_detections,
    format_timestamp,
    head_boxes,
)
from edge.config.models import ZoneConfig
from edge.dataflow import Detections, Frame, FrameResult, Rule, Track, Violation
from edge.label_layout import LabelLayout, overlaps
from edge.labels import CLASS_NAMES

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared/datasets/construction-site-safety/valid"
# Dataset class index -> canonical name (Hardhat, NO-Hardhat, NO-Safety Vest, Person, Safety Vest).
DATASET_CLASSES = {0: "helmet", 2: "head", 4: "no_vest", 5: "person", 7: "vest"}
HK = ZoneInfo("Asia/Hong_Kong")


def labelled_photos() -> Iterator[tuple[np.ndarray, Detections]]:
    """Every validation photo (sorted by name) with its labelled boxes as detections of confidence 0.8."""
    if not (PHOTOS / "images").is_dir():
        pytest.skip(f"construction-site-safety photos not found at {PHOTOS}")
    for label_file in sorted((PHOTOS / "labels").glob("*.txt")):
        image = cv2.imread(str(PHOTOS / "images" / f"{label_file.stem}.jpg"))
        if image is None:
            continue
        height, width = image.shape[:2]
        boxes, classes = [], []
        for line in label_file.read_text().splitlines():
            cls, cx, cy, bw, bh = line.split()
            if int(cls) not in DATASET_CLASSES:
                continue
            cx, cy, bw, bh = float(cx) * width, float(cy) * height, float(bw) * width, float(bh) * height
            boxes.append((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
            classes.append(CLASS_NAMES.index(DATASET_CLASSES[int(cls)]))
        if boxes:
            det = Detections(
                np.array(boxes, np.float32), np.full(len(boxes), 0.8, np.float32), np.array(classes, np.int32)
            )
            yield image, det


def load_site_photo(min_people: int = 2) -> tuple[np.ndarray, Detections]:
    """Return the first validation photo (sorted by name) with enough people and a large bare head."""
    for image, det in labelled_photos():
        heads = det.of("head").xyxy
        big_head = any(min(x2 - x1, y2 - y1) >= 30 for x1, y1, x2, y2 in heads)
        if len(det.of("person")) >= min_people and big_head:
            return image, det
    pytest.skip("no validation photo with two people and a bare head of 30+ px")


def frame_result(
    image: np.ndarray, det: Detections, violating: tuple[int, ...] = (), captured_at: float = 1_717_200_000.0
) -> FrameResult:
    """Track every person box (ids from 1) and give each id in `violating` a no-helmet violation."""
    tracks = tuple(
        Track(i + 1, tuple(float(v) for v in box), 0.9) for i, box in enumerate(det.of("person").xyxy)
    )
    by_id = {t.track_id: t for t in tracks}
    violations = tuple(Violation("gate", i, Rule.NO_HELMET, None, 0.8, by_id[i].xyxy) for i in violating)
    return FrameResult(Frame("gate", 7, captured_at, image), det, tracks, violations, ())


def left_edge(canvas: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Pixels of a box's left edge over its lower 60%, clear of the labels at the top."""
    x1, y1, x2, y2 = (int(v) for v in box)
    y2 = min(y2, canvas.shape[0] - 1)
    return canvas[y1 + int(0.4 * (y2 - y1)) : y2, max(0, x1)]


def share_of(pixels: np.ndarray, colour: tuple[int, int, int]) -> float:
    return float(np.mean(np.all(pixels == np.array(colour, np.uint8), axis=-1)))


def laplacian_var(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_person_box_turns_red_when_that_track_has_a_violation() -> None:
    image, det = load_site_photo()
    calm = frame_result(image, det)
    alarmed = frame_result(image, det, violating=(1,))
    box = calm.tracks[0].xyxy

    before, after = draw(calm, tz=HK), draw(alarmed, tz=HK)

    assert share_of(left_edge(before, box), COMPLIANT_COLOUR) > 0.5
    assert share_of(left_edge(before, box), VIOLATION_COLOUR) < 0.05
    assert share_of(left_edge(after, box), VIOLATION_COLOUR) > 0.5
    # The other people stay green.
    assert share_of(left_edge(after, alarmed.tracks[1].xyxy), COMPLIANT_COLOUR) > 0.5


def test_draw_leaves_the_frame_untouched_and_returns_same_size() -> None:
    image, det = load_site_photo()
    original = image.copy()
    out = draw(frame_result(image, det, violating=(1,)), tz=HK)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, original)
    assert not np.array_equal(out, image)


def test_zone_overlay_changes_pixels_inside_the_polygon_only() -> None:
    image, _ = load_site_photo()
    result = frame_result(image, Detections.empty())  # nothing drawn on top of the zone
    triangle = [(0.1, 0.95), (0.5, 0.4), (0.9, 0.95)]
    zone = ZoneConfig(id="pit", name="Excavation pit", polygon=triangle)

    plain, zoned = draw(result, tz=HK), draw(result, [zone], tz=HK)

    height, width = image.shape[:2]
    polygon = np.array([[round(x * (width - 1)), round(y * (height - 1))] for x, y in triangle], np.int32)
    inside = np.zeros((height, width), np.uint8)
    cv2.fillPoly(inside, [polygon], 255)
    changed = np.any(plain != zoned, axis=-1)
    assert not np.any(changed & (cv2.dilate(inside, np.ones((3, 3), np.uint8)) == 0))
    assert changed[inside > 0].mean() > 0.97


def test_entered_zone_is_tinted_red() -> None:
    image, det = load_site_photo()
    zone = ZoneConfig(id="pit", polygon=[(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)])
    quiet = frame_result(image, det)
    track = quiet.tracks[0]
    entered = FrameResult(
        quiet.frame,
        quiet.detections,
        quiet.tracks,
        (Violation("gate", track.track_id, Rule.ZONE_ENTRY, "pit", 0.9, track.xyxy),),
        (),
    )
    lower = slice(image.shape[0] * 3 // 4, None)
    quiet_red = draw(quiet, [zone])[lower, :, 2].astype(float).mean()
    entered_red = draw(entered, [zone])[lower, :, 2].astype(float).mean()
    quiet_green = draw(quiet, [zone])[lower, :, 1].astype(float).mean()
    entered_green = draw(entered, [zone])[lower, :, 1].astype(float).mean()
    assert entered_red >= quiet_red and entered_green < quiet_green - 20


def test_time_stamp_is_site_time_with_offset_in_the_top_left_corner() -> None:
    assert format_timestamp(0.0, HK) == "1970-01-01 08:00:00+08:00"
    assert format_timestamp(1_717_200_000.0, ZoneInfo("UTC")) == "2024-06-01 00:00:00+00:00"

    image, det = load_site_photo()
    first = draw(frame_result(image, det, captured_at=1_717_200_000.0), tz=HK)
    later = draw(frame_result(image, det, captured_at=1_717_200_000.0 + 3_723.0), tz=HK)
    ys, xs = np.nonzero(np.any(first != later, axis=-1))
    assert ys.size > 0
    assert ys.max() < image.shape[0] * 0.15 and xs.max() < image.shape[1] * 0.8


def test_blur_hides_detail_inside_head_boxes_and_nothing_else() -> None:
    image, det = load_site_photo()
    heads = [tuple(b) for b in det.of("head").xyxy.tolist() if min(b[2] - b[0], b[3] - b[1]) >= 30]
    x1, y1, x2, y2 = (int(round(v)) for v in heads[0])
    original = image.copy()

    blurred = blur_regions(image, heads[:1])

    assert np.array_equal(image, original)
    inner = (slice(y1 + 2, y2 - 2), slice(x1 + 2, x2 - 2))
    assert laplacian_var(blurred[inner]) < 0.1 * laplacian_var(image[inner])
    outside = np.ones(image.shape[:2], bool)
    outside[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1] = False
    assert np.array_equal(blurred[outside], image[outside])


def test_head_boxes_cover_head_detections_and_top_fifth_of_each_person() -> None:
    image, det = load_site_photo()
    result = frame_result(image, det)
    regions = head_boxes(result)

    def covered(box: tuple[float, float, float, float]) -> bool:
        return any(r[0] <= box[0] and r[1] <= box[1] and r[2] >= box[2] and r[3] >= box[3] for r in regions)

    for label in ("head", "helmet"):
        for box in det.of(label).xyxy.tolist():
            assert covered(tuple(box))
    for track in result.tracks:
        x1, y1, x2, y2 = track.xyxy
        assert covered((x1, y1, x2, y1 + 0.2 * (y2 - y1) - 1e-3))


def test_draw_detections_boxes_each_class_in_its_colour() -> None:
    image, det = load_site_photo()
    everything = draw_detections(image, det)
    assert everything.shape == image.shape and not np.array_equal(everything, image)
    for i, name in enumerate(det.labels()):
        single = Detections(det.xyxy[i : i + 1], det.confidence[i : i + 1], det.class_id[i : i + 1])
        x1, y1, x2, y2 = (int(v) for v in det.xyxy[i])
        drawn = draw_detections(image, single)
        mid_y = min((y1 + y2) // 2, image.shape[0] - 1)
        assert tuple(drawn[mid_y, max(0, x1)]) == CLASS_COLOURS[name], name


def test_boxes_outside_or_degenerate_are_skipped_without_error() -> None:
    image, _ = load_site_photo()
    odd = np.array(
        [[-50, -50, 20, 20], [600, 600, 900, 900], [10, 10, 10, 10], [30, 40, 20, 30], [np.nan, 0, 5, 5]],
        np.float32,
    )
    det = Detections(odd, np.full(5, 0.5, np.float32), np.array([0, 1, 2, 3, 4], np.int32))
    result = FrameResult(
        Frame("gate", 1, 0.0, image), det, (Track(3, (-10.0, -10.0, 5000.0, 5000.0), 0.9),), (), ()
    )
    assert draw(result).shape == image.shape
    assert draw_detections(image, det).shape == image.shape
    assert blur_regions(image, odd.tolist()).shape == image.shape


# Runs under Debian's python3 with python3-opencv (apt), whose OpenCV 4 still has the Haar face cascade
# that the project's OpenCV 5 wheel dropped: an independent face detector to check the blur against.
FACE_FINDER = """
import json, sys, cv2
cascade = cv2.CascadeClassifier("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml")
found = {}
for path in sys.argv[1:]:
    gray = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY)
    found[path] = [[int(v) for v in f] for f in cascade.detectMultiScale(gray, 1.1, 5, minSize=(40, 40))]
print(json.dumps(found))
"""


def frontal_faces(paths: list[Path]) -> dict[str, np.ndarray]:
    """Faces (xyxy) OpenCV's Haar cascade finds in each image, run by Debian's python3-opencv."""
    import json
    import subprocess

    cascade = Path("/usr/share/opencv4/haarcascades/haarcascade_frontalface_default.xml")
    if not cascade.is_file() or subprocess.run(["/usr/bin/python3", "-c", "import cv2"]).returncode:
        pytest.skip("needs apt packages python3-opencv and opencv-data (scripts/setup.sh --dev)")
    out = subprocess.run(
        ["/usr/bin/python3", "-c", FACE_FINDER, *map(str, paths)], capture_output=True, text=True, check=True
    )
    return {
        path: np.array([[x, y, x + w, y + h] for x, y, w, h in faces], np.float32).reshape(-1, 4)
        for path, faces in json.loads(out.stdout).items()
    }


def test_blurred_evidence_leaves_no_face_a_face_detector_finds(tmp_path: Path) -> None:
    # Head boxes cover the top of the head (crown to eyebrows), so a blur of the box alone left faces
    # recognisable: this photo's two faces were both found again after blurring.
    from edge.detections.onnxrt import OnnxDetector

    assets = Path(cv2.__file__).parents[1] / "ultralytics" / "assets"
    photos = [assets / "zidane.jpg", assets / "bus.jpg"]
    if not all(p.is_file() for p in photos):
        pytest.skip("ultralytics' sample photos come with the train extra")
    model = Path(__file__).resolve().parents[1] / "models" / "ppe-yolo" / "model.onnx"
    detector = OnnxDetector(model, default_confidence=0.3, expected_names=CLASS_NAMES)
    blurred_paths, people = [], []
    for photo in photos:
        image = cv2.imread(str(photo))
        detections = detector.detect(image)
        people.append(detections.of("person").xyxy)
        blurred = blur_regions(
            image, head_boxes(FrameResult(Frame("gate", 1, 0.0, image), detections, (), (), ()))
        )
        blurred_paths.append(tmp_path / photo.name)
        cv2.imwrite(str(blurred_paths[-1]), blurred)
    faces = frontal_faces(photos + blurred_paths)
    checked = 0
    for photo, blurred_path, persons in zip(photos, blurred_paths, people, strict=True):
        after = faces[str(blurred_path)]
        for face in faces[str(photo)]:
            cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
            # a worker's face: in the upper part of a detected person (the cascade also fires on clutter)
            if not any(p[0] <= cx <= p[2] and p[1] <= cy <= p[1] + 0.4 * (p[3] - p[1]) for p in persons):
                continue
            checked += 1
            overlap = [
                max(0.0, min(face[2], a[2]) - max(face[0], a[0]))
                * max(0.0, min(face[3], a[3]) - max(face[1], a[1]))
                for a in after
            ]
            assert not overlap or max(overlap) < 0.3 * (face[2] - face[0]) * (face[3] - face[1]), photo.name
    assert checked >= 2


def crowded_photo() -> tuple[np.ndarray, Detections]:
    """The validation photo with the most labelled people (first by name among equals)."""
    return max(labelled_photos(), key=lambda photo: len(photo[1].of("person")))


def assert_laid_out(annotation: Annotation) -> None:
    """Every tag lies inside the frame, overlaps no other tag, and is drawn where it says (its colour)."""
    height, width = annotation.image.shape[:2]
    rects = [label.rect for label in annotation.labels]
    for i, rect in enumerate(rects):
        assert 0 <= rect[0] < rect[2] <= width and 0 <= rect[1] < rect[3] <= height, annotation.labels[i]
        for j in range(i + 1, len(rects)):
            assert not overlaps(rect, rects[j]), (annotation.labels[i], annotation.labels[j])
    for label in annotation.labels:
        x1, y1, x2, y2 = label.rect
        # The tag's background (the text covers the rest) is its colour: drawn last, nothing covers it.
        assert share_of(annotation.image[y1:y2, x1:x2], label.colour) > 0.4, label


def test_tags_never_overlap_each_other_the_zone_name_or_the_caption_on_a_crowded_photo() -> None:
    image, det = crowded_photo()
    people = len(det.of("person"))
    assert people >= 10, "the validation set has a photo of a crowd"
    result = frame_result(image, det, violating=(1, 2, 3, 4))
    zone = ZoneConfig(
        id="pit", name="Excavation pit", polygon=[(0.2, 0.3), (0.8, 0.3), (0.8, 0.9), (0.2, 0.9)]
    )

    everyone = annotate(result, [zone], tz=HK)

    assert_laid_out(everyone)
    kinds = [label.kind for label in everyone.labels]
    # Nothing was dropped to make room: caption, zone name, one tag per person and per PPE box.
    assert everyone.dropped == 0
    assert kinds.count("caption") == 1 and kinds.count("zone") == 1
    assert kinds.count("person") == people and kinds.count("ppe") == len(det) - people
    for track in result.tracks:
        focused = annotate(
            result, [zone], tz=HK, focus=Focus(track.track_id, Rule.NO_HELMET, None, 0.8, track.xyxy)
        )
        assert_laid_out(focused)
        assert [label.kind for label in focused.labels][:3] == ["caption", "focus", "zone"]


def test_an_event_snapshot_highlights_its_own_person_and_mutes_the_others() -> None:
    image, det = crowded_photo()
    result = frame_result(image, det, violating=(1, 2))
    subject, bystander, violator = result.tracks[0], result.tracks[2], result.tracks[1]

    snapshot = annotate(
        result, tz=HK, focus=Focus(subject.track_id, Rule.NO_HELMET, None, 0.83, subject.xyxy)
    )

    assert share_of(left_edge(snapshot.image, subject.xyxy), VIOLATION_COLOUR) > 0.5
    # Everyone else, violating or not, is a thin grey box without a tag.
    for other in (bystander, violator):
        assert share_of(left_edge(snapshot.image, other.xyxy), MUTED_COLOUR) > 0.3
        assert share_of(left_edge(snapshot.image, other.xyxy), VIOLATION_COLOUR) < 0.05
    tags = {label.kind: label for label in snapshot.labels}
    assert tags["focus"].text == "NO HELMET 0.83" and tags["focus"].colour == VIOLATION_COLOUR
    assert "person" not in tags
    # The tag sits on its person's box edge (above, below or inside), not somewhere else in the frame.
    x1, y1, x2, y2 = (int(v) for v in subject.xyxy)
    fx1, fy1, fx2, fy2 = tags["focus"].rect
    assert fx1 < x2 and x1 < fx2 and y1 - (fy2 - fy1) - 1 <= fy1 <= y2 + 1


def test_a_zone_entry_snapshot_names_the_zone_and_tints_only_that_zone_red() -> None:
    image, det = crowded_photo()
    result = frame_result(image, det)
    subject = result.tracks[0]
    pit = ZoneConfig(
        id="pit", name="Excavation pit", polygon=[(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]
    )
    crane = ZoneConfig(id="crane", polygon=[(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)])

    snapshot = annotate(
        result, [pit, crane], HK, focus=Focus(subject.track_id, Rule.ZONE_ENTRY, "pit", 0.91, subject.xyxy)
    )

    tags = {label.text: label for label in snapshot.labels}
    assert "IN ZONE Excavation pit 0.91" in tags
    assert tags["Excavation pit"].colour == VIOLATION_COLOUR and tags["crane"].colour != VIOLATION_COLOUR


def test_label_layout_keeps_tags_apart_and_leaves_out_what_does_not_fit() -> None:
    layout = LabelLayout(200, 100)
    layout.reserve((0, 0, 80, 20))
    box = (50, 40, 120, 90)
    rects = [layout.place((60, 15), [(box[0], box[1] - 15), (box[0], box[3])]) for _ in range(40)]
    placed = [r for r in rects if r is not None]
    # 200 x 100 holds at most 3 x 6 tags of 60 x 15 besides the reserved corner; none overlaps another.
    assert 10 <= len(placed) < 20 and rects[-1] is None
    everything = [*placed, (0, 0, 80, 20)]
    assert all(not overlaps(a, b) for i, a in enumerate(everything) for b in everything[i + 1 :])
    assert all(0 <= r[0] and r[2] <= 200 and 0 <= r[1] and r[3] <= 100 for r in placed)
    assert placed[0] == (50, 25, 110, 40)  # the first tag gets the first spot: just above the box


VIDEO = Path(__file__).resolve().parents[1].parent / "shared/videos/hardhat-workers.mp4"
#: The frame with the most people the shipped model finds when sampling the video once a second (5 people,
#: 13 boxes at confidence 0.3).
BUSIEST_FRAME = 525


def test_tags_stay_apart_on_a_crowded_frame_of_real_site_video_with_the_shipped_model() -> None:
    from edge.detections.onnxrt import OnnxDetector

    if not VIDEO.is_file():
        pytest.skip(f"site video not found at {VIDEO}")
    model = Path(__file__).resolve().parents[1] / "models" / "ppe-yolo" / "model.onnx"
    detector = OnnxDetector(model, default_confidence=0.3, expected_names=CLASS_NAMES)
    capture = cv2.VideoCapture(str(VIDEO))
    capture.set(cv2.CAP_PROP_POS_FRAMES, BUSIEST_FRAME)
    ok, image = capture.read()
    capture.release()
    assert ok, f"{VIDEO} has no frame {BUSIEST_FRAME}"
    found = detector.detect(image)
    assert len(found.of("person")) >= 4 and len(found) >= 10, "a crowded frame"
    result = frame_result(image, found, violating=(1, 2))
    # As evidence draws it: heads blurred first, then boxes and tags on top.
    blurred = FrameResult(
        Frame("gate", 7, result.frame.captured_at, blur_regions(image, head_boxes(result))),
        found,
        result.tracks,
        result.violations,
        (),
    )
    zone = ZoneConfig(
        id="yard", name="Crane swing radius", polygon=[(0.3, 0.4), (0.8, 0.4), (0.8, 0.95), (0.3, 0.95)]
    )
    everyone = annotate(blurred, [zone], HK)
    assert_laid_out(everyone)
    assert everyone.dropped == 0 and len(everyone.labels) == 2 + len(found)  # caption, zone, every box
    for track in result.tracks:
        focus = Focus(track.track_id, Rule.ZONE_ENTRY, "yard", 0.9, track.xyxy)
        snapshot = annotate(blurred, [zone], HK, focus=focus)
        assert_laid_out(snapshot)
        assert snapshot.dropped == 0
        assert "IN ZONE Crane swing radius 0.90" in [label.text for label in snapshot.labels]


def test_focus_of_an_event_uses_its_track_then_its_violation_then_its_own_box() -> None:
    import uuid
    from datetime import datetime, timezone

    from edge.dataflow import Phase, SafetyEvent

    image = np.zeros((200, 400, 3), np.uint8)
    event = SafetyEvent(
        event_id=uuid.uuid4(),
        phase=Phase.START,
        site_id="s",
        camera_id="gate",
        rule=Rule.NO_VEST,
        zone=None,
        track_id=4,
        started_at=datetime(2024, 6, 1, tzinfo=timezone.utc),
        ended_at=None,
        peak_confidence=0.9,
        boxes=((0.25, 0.5, 0.5, 1.0),),
        frame_seq=1,
    )
    frame = Frame("gate", 1, 0.0, image)
    tracked = FrameResult(frame, Detections.empty(), (Track(4, (10.0, 20.0, 30.0, 40.0), 0.9),), (), ())
    violating = FrameResult(
        frame,
        Detections.empty(),
        (),
        (Violation("gate", 4, Rule.NO_VEST, None, 0.61, (1.0, 2.0, 3.0, 4.0)),),
        (),
    )
    untracked = FrameResult(frame, Detections.empty(), (), (), ())
    assert Focus.of_event(event, tracked) == Focus(4, Rule.NO_VEST, None, 0.9, (10.0, 20.0, 30.0, 40.0))
    assert Focus.of_event(event, violating) == Focus(4, Rule.NO_VEST, None, 0.61, (1.0, 2.0, 3.0, 4.0))
    assert Focus.of_event(event, untracked).xyxy == (100.0, 100.0, 200.0, 200.0)
