"""Detection metrics in NumPy: box matching, COCO-style average precision, counts and a confusion matrix.

AP follows COCO: predictions of a class are ranked by confidence over the whole split, each is matched
greedily to the unclaimed ground-truth box of its class with the highest IoU at or above the threshold,
and precision (made monotone) is averaged at 101 recall points. mAP50-95 averages IoU 0.50:0.05:0.95.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N, 4 xyxy) with every box in b (M, 4 xyxy): shape (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_image(
    pred_xyxy: np.ndarray,
    pred_conf: np.ndarray,
    pred_cls: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_cls: np.ndarray,
    thresholds: np.ndarray = IOU_THRESHOLDS,
) -> np.ndarray:
    """Mark each prediction of one image a true positive per IoU threshold: (N, T) bool.

    Predictions are taken in descending confidence; each claims the unclaimed same-class ground-truth box
    with the highest IoU, if that IoU reaches the threshold.
    """
    n = len(pred_conf)
    correct = np.zeros((n, len(thresholds)), bool)
    if n == 0 or len(gt_cls) == 0:
        return correct
    iou = box_iou(gt_xyxy, pred_xyxy) * (np.asarray(gt_cls)[:, None] == np.asarray(pred_cls)[None, :])
    claimed = np.zeros((len(gt_cls), len(thresholds)), bool)
    for j in np.argsort(-np.asarray(pred_conf), kind="stable"):
        available = np.where(claimed, -1.0, iou[:, j, None])  # (gt, thresholds)
        best = available.argmax(0)
        hit = available[best, np.arange(len(thresholds))] >= thresholds
        correct[j] = hit
        claimed[best[hit], np.nonzero(hit)[0]] = True
    return correct


def average_precision(correct: np.ndarray, confidence: np.ndarray, n_gt: int) -> float:
    """COCO 101-point AP of one class at one IoU threshold from per-prediction hits and confidences."""
    if n_gt == 0:
        raise ValueError("AP is undefined for a class without ground-truth boxes")
    if len(correct) == 0:
        return 0.0
    order = np.argsort(-np.asarray(confidence), kind="stable")
    hits = np.asarray(correct, bool)[order]
    tp = np.cumsum(hits)
    recall = tp / n_gt
    precision = tp / np.arange(1, len(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(envelope), envelope[np.minimum(index, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def pr_curve(correct: np.ndarray, confidence: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and monotone precision of one class, in descending confidence order (for plotting)."""
    order = np.argsort(-np.asarray(confidence), kind="stable")
    tp = np.cumsum(np.asarray(correct, bool)[order])
    recall = tp / max(n_gt, 1)
    precision = tp / np.arange(1, len(tp) + 1)
    return recall, np.maximum.accumulate(precision[::-1])[::-1]


@dataclass
class DetectionAccumulator:
    """Collects per-image matches over a split, then gives AP per class and IoU threshold."""

    num_classes: int
    thresholds: np.ndarray = field(default_factory=lambda: IOU_THRESHOLDS.copy())
    _correct: list[np.ndarray] = field(default_factory=list)
    _conf: list[np.ndarray] = field(default_factory=list)
    _cls: list[np.ndarray] = field(default_factory=list)
    n_gt: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.n_gt = np.zeros(self.num_classes, int)

    def add(
        self,
        pred_xyxy: np.ndarray,
        pred_conf: np.ndarray,
        pred_cls: np.ndarray,
        gt_xyxy: np.ndarray,
        gt_cls: np.ndarray,
    ) -> None:
        """Match one image's predictions against its ground truth and keep the result."""
        self._correct.append(match_image(pred_xyxy, pred_conf, pred_cls, gt_xyxy, gt_cls, self.thresholds))
        self._conf.append(np.asarray(pred_conf, np.float64).reshape(-1))
        self._cls.append(np.asarray(pred_cls, int).reshape(-1))
        self.n_gt += np.bincount(np.asarray(gt_cls, int).reshape(-1), minlength=self.num_classes)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return all (correct (N, T), confidence (N,), class (N,)) collected so far."""
        if not self._correct:
            return np.zeros((0, len(self.thresholds)), bool), np.zeros(0), np.zeros(0, int)
        return np.concatenate(self._correct), np.concatenate(self._conf), np.concatenate(self._cls)

    def ap(self) -> np.ndarray:
        """AP per class and threshold, (classes, T); NaN for classes with no ground-truth boxes."""
        correct, conf, cls = self.arrays()
        out = np.full((self.num_classes, len(self.thresholds)), np.nan)
        for c in range(self.num_classes):
            if self.n_gt[c] == 0:
                continue
            mine = cls == c
            for t in range(len(self.thresholds)):
                out[c, t] = average_precision(correct[mine, t], conf[mine], int(self.n_gt[c]))
        return out

    def curves(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Recall/precision curves at the first threshold (IoU 0.5) for classes with ground truth."""
        correct, conf, cls = self.arrays()
        return {
            c: pr_curve(correct[cls == c, 0], conf[cls == c], int(self.n_gt[c]))
            for c in range(self.num_classes)
            if self.n_gt[c]
        }


def confusion_matrix(
    pred_xyxy: np.ndarray,
    pred_cls: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_cls: np.ndarray,
    num_classes: int,
    iou: float = 0.5,
) -> np.ndarray:
    """One image's (classes + 1) x (classes + 1) counts, rows predicted, columns true; last is background.

    Boxes are paired one-to-one by highest IoU regardless of class, so a helmet seen as a head shows up.
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), int)
    overlap = box_iou(pred_xyxy, gt_xyxy)
    pairs = np.argwhere(overlap >= iou)
    pairs = pairs[np.argsort(-overlap[pairs[:, 0], pairs[:, 1]], kind="stable")]
    used_pred: set[int] = set()
    used_gt: set[int] = set()
    for p, g in pairs.tolist():
        if p in used_pred or g in used_gt:
            continue
        used_pred.add(p)
        used_gt.add(g)
        matrix[int(pred_cls[p]), int(gt_cls[g])] += 1
    for p in set(range(len(pred_cls))) - used_pred:
        matrix[int(pred_cls[p]), num_classes] += 1
    for g in set(range(len(gt_cls))) - used_gt:
        matrix[num_classes, int(gt_cls[g])] += 1
    return matrix


def precision_recall_counts(
    pred_xyxy: np.ndarray,
    pred_conf: np.ndarray,
    pred_cls: np.ndarray,
    gt_xyxy: np.ndarray,
    gt_cls: np.ndarray,
    num_classes: int,
    iou: float = 0.5,
) -> np.ndarray:
    """True positives, false positives and false negatives per class at one IoU: shape (classes, 3)."""
    correct = match_image(pred_xyxy, pred_conf, pred_cls, gt_xyxy, gt_cls, np.array([iou]))[:, 0]
    pred_cls = np.asarray(pred_cls, int).reshape(-1)
    tp = np.bincount(pred_cls[correct], minlength=num_classes)
    fp = np.bincount(pred_cls[~correct], minlength=num_classes)
    n_gt = np.bincount(np.asarray(gt_cls, int).reshape(-1), minlength=num_classes)
    return np.stack([tp, fp, n_gt - tp], axis=1)


def safe_ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, or 0.0 when there is nothing to divide by."""
    return float(numerator) / float(denominator) if denominator else 0.0
