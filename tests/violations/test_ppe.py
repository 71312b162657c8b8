"""Which PPE box belongs to which person: geometric, one-to-one."""

import numpy as np

from edge.config.models import RulesConfig
from edge.dataflow import Detections
from edge.labels import CLASS_NAMES
from edge.violations.ppe import assign_ppe

RULES = RulesConfig()


def dets(*boxes: tuple[str, float, float, float, float, float]) -> Detections:
    """Build detections from (label, x1, y1, x2, y2, confidence) rows."""
    return Detections(
        np.array([b[1:5] for b in boxes], np.float32).reshape(-1, 4),
        np.array([b[5] for b in boxes], np.float32),
        np.array([CLASS_NAMES.index(b[0]) for b in boxes], np.int32),
    )


def test_worker_with_helmet_and_vest_is_compliant():
    person = np.array([[100, 100, 200, 400]], np.float32)
    d = dets(
        ("person", 100, 100, 200, 400, 0.9),
        ("helmet", 125, 95, 175, 140, 0.8),
        ("vest", 110, 170, 190, 280, 0.7),
    )
    (status,) = assign_ppe(person, d, RULES)
    assert status.judged and not status.helmet_missing and not status.vest_missing
    assert status.helmet_confidence == np.float32(0.8)


def test_bare_head_box_means_helmet_missing_with_head_as_evidence():
    person = np.array([[100, 100, 200, 400]], np.float32)
    d = dets(("head", 125, 100, 175, 145, 0.6), ("no_vest", 110, 170, 190, 280, 0.55))
    (status,) = assign_ppe(person, d, RULES)
    assert status.helmet_missing and status.vest_missing
    assert status.head_box == (125.0, 100.0, 175.0, 145.0)
    assert abs(status.vest_confidence - 0.55) < 1e-6


def test_helmet_at_the_feet_does_not_count():
    person = np.array([[100, 100, 200, 400]], np.float32)
    d = dets(("helmet", 125, 350, 175, 395, 0.9))
    (status,) = assign_ppe(person, d, RULES)
    assert status.helmet_missing


def test_one_helmet_never_counts_for_two_close_workers():
    # Two overlapping workers, one helmet between their head regions: exactly one of them gets it.
    persons = np.array([[100, 100, 200, 400], [150, 105, 250, 405]], np.float32)
    d = dets(("helmet", 160, 100, 195, 135, 0.9))
    statuses = assign_ppe(persons, d, RULES)
    assert sorted(s.helmet_missing for s in statuses) == [False, True]


def test_each_close_worker_gets_the_helmet_centred_on_them():
    persons = np.array([[100, 100, 200, 400], [150, 105, 250, 405]], np.float32)
    d = dets(("helmet", 130, 100, 170, 135, 0.9), ("head", 180, 105, 220, 140, 0.8))
    first, second = assign_ppe(persons, d, RULES)
    assert not first.helmet_missing
    assert second.helmet_missing and second.head_box == (180.0, 105.0, 220.0, 140.0)


def test_tiny_person_is_not_judged():
    person = np.array([[10, 10, 20, 30]], np.float32)
    (status,) = assign_ppe(person, Detections.empty(), RULES)
    assert not status.judged


def test_nothing_seen_on_the_head_counts_as_missing_only_when_configured():
    person = np.array([[100, 100, 200, 400]], np.float32)
    d = dets(("vest", 110, 170, 190, 280, 0.7))  # head region empty: no helmet, no bare head
    (strict,) = assign_ppe(person, d, RULES)
    assert strict.helmet_missing and strict.head_box is None and not strict.vest_missing
    lenient = RulesConfig(missing_when_unseen=False)
    (seen_only,) = assign_ppe(person, d, lenient)
    assert not seen_only.helmet_missing and not seen_only.vest_missing
    (bare,) = assign_ppe(person, dets(("head", 125, 100, 175, 145, 0.6)), lenient)
    assert bare.helmet_missing and not bare.vest_missing  # a seen bare head still counts; torso unseen


def test_a_camera_can_override_the_unseen_policy():
    from edge.config.models import CameraConfig
    from edge.violations.engine import effective_rules

    camera = CameraConfig(id="gate", source="gate.mp4", rules={"missing_when_unseen": False})
    assert effective_rules(camera, RULES).missing_when_unseen is False
    assert effective_rules(CameraConfig(id="yard", source="y.mp4"), RULES).missing_when_unseen is True
