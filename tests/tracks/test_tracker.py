"""Person tracking: stable ids across frames, never reused after a reset."""

import numpy as np

from edge.dataflow import Detections
from edge.labels import CLASS_NAMES
from edge.tracks.tracker import PersonTracker


def people(*boxes: tuple[float, float, float, float], label: str = "person") -> Detections:
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.full(len(boxes), 0.8, np.float32),
        np.full(len(boxes), CLASS_NAMES.index(label), np.int32),
    )


def test_a_walking_person_keeps_one_id_and_ppe_boxes_are_not_tracked():
    tracker = PersonTracker(frame_rate=5)
    ids = set()
    for step in range(10):
        x = 100 + step * 5
        frame = Detections(
            np.array([[x, 100, x + 50, 250], [x + 10, 95, x + 40, 125]], np.float32),
            np.array([0.8, 0.8], np.float32),
            np.array([CLASS_NAMES.index("person"), CLASS_NAMES.index("helmet")], np.int32),
        )
        tracks = tracker.update(frame)
        if step == 0:
            continue  # ByteTrack confirms a new track on its second sighting
        assert len(tracks) == 1
        ids.add(tracks[0].track_id)
    assert len(ids) == 1


def test_ids_are_not_reused_after_a_reset():
    tracker = PersonTracker(frame_rate=5)
    before = {
        t.track_id for _ in range(3) for t in tracker.update(people((0, 0, 50, 150), (200, 0, 250, 150)))
    }
    tracker.reset()
    after = {
        t.track_id for _ in range(3) for t in tracker.update(people((0, 0, 50, 150), (200, 0, 250, 150)))
    }
    assert len(before) == 2 and len(after) == 2
    assert before.isdisjoint(after)
