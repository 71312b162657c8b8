"""Our AP, matching and confusion counts: hand-worked cases, and agreement with ultralytics' own metrics."""

from __future__ import annotations

import numpy as np
import pytest
from training_samples import MAPPING, shared_dataset

from edge.labels import CLASS_NAMES
from training.datasets.model import ClassMapping
from training.datasets.yolo import read_yolo
from training.metrics import (
    DetectionAccumulator,
    average_precision,
    box_iou,
    confusion_matrix,
    match_image,
    precision_recall_counts,
)


def test_ap_of_a_hand_worked_ranking() -> None:
    # TP, FP, TP over 2 boxes: precision 1 up to recall 0.5, then 2/3 up to recall 1 (101-point COCO).
    ap = average_precision(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), n_gt=2)
    assert ap == pytest.approx((51 * 1.0 + 50 * (2 / 3)) / 101)
    assert average_precision(np.array([True, True]), np.array([0.5, 0.4]), n_gt=2) == pytest.approx(1.0)
    assert average_precision(np.array([], bool), np.array([]), n_gt=3) == 0.0
    with pytest.raises(ValueError):
        average_precision(np.array([True]), np.array([0.5]), n_gt=0)


def test_a_duplicate_box_is_a_false_positive_and_classes_must_agree() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 30]], float)
    correct = match_image(pred, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), gt, np.array([0, 0]))
    assert correct[:, 0].tolist() == [True, False, False]
    counts = precision_recall_counts(
        pred, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), gt, np.array([0, 0]), 5
    )
    assert counts[0].tolist() == [1, 1, 1] and counts[1].tolist() == [0, 1, 0]


def test_lower_confidence_box_with_better_overlap_does_not_steal_the_match() -> None:
    gt = np.array([[0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 12]], float)
    correct = match_image(pred, np.array([0.2, 0.9]), np.array([0, 0]), gt, np.array([0]))
    assert correct[:, 0].tolist() == [False, True]  # the confident one came first and claimed it


def test_confusion_matrix_counts_swaps_misses_and_ghosts() -> None:
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], float)
    gt_cls = np.array([1, 0, 3])
    pred = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [80, 80, 90, 90]], float)
    pred_cls = np.array([2, 0, 4])
    m = confusion_matrix(pred, pred_cls, gt, gt_cls, 5)
    assert m[2, 1] == 1 and m[0, 0] == 1  # helmet seen as head; person right
    assert m[5, 3] == 1 and m[4, 5] == 1  # vest missed; no_vest from nothing
    assert m.sum() == 4


def synthetic_predictions(seed: int = 0):
    """Noisy, partly wrong predictions around the real labels of the shared validation photos."""
    dataset = read_yolo(shared_dataset() / "data.yaml", ClassMapping.load(MAPPING))
    images = [img for img in dataset.images if img.split == "valid"]
    rng = np.random.default_rng(seed)
    out = []
    for img in images:
        gt = (
            np.array([[b.cx - b.w / 2, b.cy - b.h / 2, b.cx + b.w / 2, b.cy + b.h / 2] for b in img.boxes])
            * 640
        )
        gt = gt.reshape(-1, 4)
        gt_cls = np.array([CLASS_NAMES.index(b.label) for b in img.boxes], int)
        boxes, conf, cls = [], [], []
        for box, c in zip(gt, gt_cls, strict=True):
            size = np.r_[box[2:] - box[:2], box[2:] - box[:2]]
            for _ in range(rng.choice([0, 1, 1, 1, 2])):  # missed, found, or found twice
                boxes.append(box + rng.normal(0, 0.08, 4) * size)
                conf.append(rng.uniform(0.05, 1.0))
                cls.append(c if rng.random() > 0.1 else rng.integers(0, 5))
        for _ in range(rng.integers(0, 4)):  # ghosts
            x, y = rng.uniform(0, 600, 2)
            boxes.append(np.array([x, y, x + rng.uniform(5, 80), y + rng.uniform(5, 80)]))
            conf.append(rng.uniform(0.0, 0.7))
            cls.append(rng.integers(0, 5))
        order = np.argsort(-np.array(conf))
        out.append(
            (
                np.array(boxes).reshape(-1, 4)[order],
                np.array(conf)[order],
                np.array(cls, int)[order],
                gt,
                gt_cls,
            )
        )
    return out


@pytest.mark.train
def test_ap_agrees_with_ultralytics_on_real_labels(ultralytics_offline) -> None:
    import torch
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import ap_per_class

    validator = DetectionValidator()
    ours = DetectionAccumulator(len(CLASS_NAMES))
    tps, confs, classes, targets = [], [], [], []
    for pred, conf, cls, gt, gt_cls in synthetic_predictions():
        ours.add(pred, conf, cls, gt, gt_cls)
        iou = torch.from_numpy(box_iou(gt, pred))
        theirs = validator.match_predictions(torch.from_numpy(cls), torch.from_numpy(gt_cls), iou).numpy()
        np.testing.assert_array_equal(match_image(pred, conf, cls, gt, gt_cls), theirs)
        tps.append(theirs)
        confs.append(conf)
        classes.append(cls)
        targets.append(gt_cls)
    result = ap_per_class(
        np.concatenate(tps), np.concatenate(confs), np.concatenate(classes), np.concatenate(targets)
    )
    their_ap, their_classes = result[5], result[6]
    our_ap = ours.ap()
    assert their_classes.tolist() == [0, 1, 2, 3, 4]
    assert 0.2 < their_ap[:, 0].mean() < 0.95  # a meaningful range, not a trivial 0 or 1
    # COCO's step interpolation against ultralytics' linear one: a small, bounded difference.
    np.testing.assert_allclose(our_ap[:, 0], their_ap[:, 0], atol=0.01)
    np.testing.assert_allclose(our_ap.mean(1), their_ap.mean(1), atol=0.01)
