"""Which helmet, head, vest or no_vest box belongs to which person: geometric and one-to-one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.config.models import RulesConfig
from edge.dataflow import Detections
from edge.labels import HEAD, HELMET, NO_VEST, VEST

Box = tuple[float, float, float, float]

#: An item box must lie at least this much (share of its own area) inside the person's region to belong.
MIN_OVERLAP = 0.5


@dataclass(frozen=True, slots=True)
class PPEStatus:
    """What one person wears, as decided from the boxes assigned to them."""

    judged: bool  # False when the person is too small to judge PPE reliably
    helmet_missing: bool
    vest_missing: bool
    helmet_confidence: float  # confidence of the box that decided the helmet state (person's when none)
    vest_confidence: float
    head_box: Box | None  # the helmet or bare-head box assigned to the person
    torso_box: Box | None  # the vest or no_vest box assigned to the person


def head_regions(persons: np.ndarray, rules: RulesConfig) -> np.ndarray:
    """Return the region where each person's head (and helmet) should be, in pixels."""
    h = persons[:, 3] - persons[:, 1]
    w = persons[:, 2] - persons[:, 0]
    # Helmets poke above tight person boxes and heads lean sideways, so the region is a little generous.
    return np.column_stack(
        [
            persons[:, 0] - 0.1 * w,
            persons[:, 1] - 0.1 * h,
            persons[:, 2] + 0.1 * w,
            persons[:, 1] + rules.head_region * h,
        ]
    )


def torso_regions(persons: np.ndarray, rules: RulesConfig) -> np.ndarray:
    """Return the vertical band of each person box where a vest should be, in pixels."""
    h = persons[:, 3] - persons[:, 1]
    top, bottom = rules.torso_region
    return np.column_stack(
        [persons[:, 0], persons[:, 1] + top * h, persons[:, 2], persons[:, 1] + bottom * h]
    )


def containment(regions: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Share of each item box's area inside each region: shape (regions, items)."""
    if len(regions) == 0 or len(items) == 0:
        return np.zeros((len(regions), len(items)), np.float32)
    x1 = np.maximum(regions[:, None, 0], items[None, :, 0])
    y1 = np.maximum(regions[:, None, 1], items[None, :, 1])
    x2 = np.minimum(regions[:, None, 2], items[None, :, 2])
    y2 = np.minimum(regions[:, None, 3], items[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.clip((items[:, 2] - items[:, 0]) * (items[:, 3] - items[:, 1]), 1e-6, None)
    return (inter / area[None, :]).astype(np.float32)


def assign_one_to_one(score: np.ndarray, min_score: float = MIN_OVERLAP) -> dict[int, int]:
    """Assign each row at most one column and each column at most one row, maximising total score."""
    if score.size == 0:
        return {}
    rows, cols = linear_sum_assignment(-score)
    return {int(r): int(c) for r, c in zip(rows, cols, strict=True) if score[r, c] >= min_score}


def _assign_pair(
    regions: np.ndarray, detections: Detections, good: str, bad: str, persons: np.ndarray
) -> list[tuple[str, int] | None]:
    """Assign good/bad item boxes (e.g. helmet/head) jointly to persons; return (label, index) per person."""
    good_d, bad_d = detections.of(good), detections.of(bad)
    items = np.concatenate([good_d.xyxy, bad_d.xyxy]).reshape(-1, 4)
    score = containment(regions, items)
    if score.size:
        # Among persons that overlap one another, prefer the one whose box is centred on the item.
        centre_x = (items[:, 0] + items[:, 2]) / 2
        person_cx = (persons[:, 0] + persons[:, 2]) / 2
        person_w = np.clip(persons[:, 2] - persons[:, 0], 1e-6, None)
        offset = np.abs(centre_x[None, :] - person_cx[:, None]) / person_w[:, None]
        score = np.where(score >= MIN_OVERLAP, score - 0.25 * offset, 0.0)
    assigned = assign_one_to_one(score, min_score=1e-3)
    out: list[tuple[str, int] | None] = [None] * len(persons)
    for person, item in assigned.items():
        out[person] = (good, item) if item < len(good_d) else (bad, item - len(good_d))
    return out


def assign_ppe(
    persons_xyxy: np.ndarray,
    detections: Detections,
    rules: RulesConfig,
    person_confidence: np.ndarray | None = None,
    heights_px: np.ndarray | None = None,
) -> list[PPEStatus]:
    """Decide per person whether helmet and vest are missing, giving each PPE box to at most one person.

    `heights_px`: each person's height as the detector saw it (DetectPlan.heights_at_input), compared with
    rules.min_person_px; the box heights themselves when not given (a photo judged at its own size).
    """
    persons = np.asarray(persons_xyxy, np.float32).reshape(-1, 4)
    if person_confidence is None:
        person_confidence = np.ones(len(persons), np.float32)
    if heights_px is None:
        heights_px = persons[:, 3] - persons[:, 1]
    heads = _assign_pair(head_regions(persons, rules), detections, HELMET, HEAD, persons)
    torsos = _assign_pair(torso_regions(persons, rules), detections, VEST, NO_VEST, persons)
    statuses = []
    for i in range(len(persons)):
        judged = float(heights_px[i]) >= rules.min_person_px
        confidence = float(person_confidence[i])
        unseen = rules.missing_when_unseen
        head_box, helmet_missing, helmet_conf = _decide(heads[i], detections, HELMET, confidence, unseen)
        torso_box, vest_missing, vest_conf = _decide(torsos[i], detections, VEST, confidence, unseen)
        statuses.append(
            PPEStatus(judged, helmet_missing, vest_missing, helmet_conf, vest_conf, head_box, torso_box)
        )
    return statuses


def _decide(
    assigned: tuple[str, int] | None,
    detections: Detections,
    good: str,
    person_confidence: float,
    missing_when_unseen: bool,
) -> tuple[Box | None, bool, float]:
    if assigned is None:
        return None, missing_when_unseen, person_confidence
    label, index = assigned
    of_label = detections.of(label)
    box = tuple(float(v) for v in of_label.xyxy[index])
    return box, label != good, float(of_label.confidence[index])  # type: ignore[return-value]
