"""Evaluate an ONNX model through the edge runtime's own detector, at box and at violation level.

Box level: AP50 and AP50-95 per class and their means from low-threshold detections (confidence 0.001),
and precision/recall at the site's operating thresholds. Violation level: for every labelled person, is a
missing helmet / vest flagged, decided by the same `assign_ppe` the rules use, on ground truth and on
predictions alike. A predicted person is the labelled one when their person boxes overlap, or when the
head (torso) boxes that decided the rule do: both at IoU >= 0.5. A labelled person counts for a rule
only when the labels settle it (a helmet or a bare head; a vest or a no_vest box): a person whose head
is not labelled at all is "undetermined" and left out. Single frames only: the rules' per-track evidence
and debounce over time are not part of this figure (`sitesentry eval --video` measures them), and an
unseen item counts as missing here only with `rules.missing_when_unseen` (default on). The violation
figures are also split by person height in the model input (SIZE_BANDS), since that, more than anything
else, decides whether a head can be judged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import yaml

from edge.config.models import ModelConfig, RulesConfig, TilingConfig
from edge.dataflow import Detections
from edge.labels import CLASS_NAMES, PERSON
from training.datasets.model import ClassMapping, LabelledImage
from training.datasets.yolo import read_yolo, split_folders
from training.metrics import (
    DetectionAccumulator,
    box_iou,
    confusion_matrix,
    precision_recall_counts,
    safe_ratio,
)

if TYPE_CHECKING:
    from edge.violations.ppe import Box

log = logging.getLogger(__name__)

#: Confidence floor for the AP pass: AP integrates over every threshold, so boxes must not be cut early.
AP_CONFIDENCE = 0.001
#: A predicted person counts as a labelled one when their boxes (or, per rule, their head or torso boxes)
#: overlap at least this much.
PERSON_MATCH_IOU = 0.5
_SPLITS = {"val": "valid", "valid": "valid", "test": "test", "train": "train"}
_MISSING = {"helmet": "helmet_missing", "vest": "vest_missing"}
_DECIDING_BOX = {"helmet": "head_box", "vest": "torso_box"}
#: The PPE classes whose confidence threshold decides each violation (persons keep their threshold).
RULE_CLASSES = {"no_helmet": ("helmet", "head"), "no_vest": ("vest", "no_vest")}
#: Thresholds tried for the operating-point sweep: the rule's PPE classes, and persons.
SWEEP_GRID = tuple(round(0.05 * i, 2) for i in range(1, 15))
PERSON_SWEEP_GRID = tuple(round(0.05 * i, 2) for i in range(4, 13))
#: The sweep's pick: the highest recall whose precision reaches this (the product's alert target).
TARGET_PRECISION = 0.80
#: Person height bands, in model-input pixels, for the violation figures: what the detector sees, so a
#: camera whose workers fall in a weak band is told to use tiling or a closer view.
SIZE_BANDS = (("small", 0.0, 64.0), ("medium", 64.0, 128.0), ("large", 128.0, float("inf")))


@dataclass(frozen=True)
class ClassMetrics:
    """Box-level figures for one class; AP is None for a class with no labelled boxes in the split."""

    name: str
    instances: int
    ap50: float | None
    ap50_95: float | None
    precision: float  # at the operating threshold, IoU 0.5
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int


@dataclass(frozen=True)
class SizeBandMetrics:
    """Violation figures for persons whose height in the model input falls in [min_px, max_px)."""

    band: str
    min_px: float
    max_px: float | None  # None: no upper bound
    positives: int
    true_positives: int
    false_positives: int  # a flagged detection of no labelled person falls in the band of its own height
    false_negatives: int
    precision: float
    recall: float


@dataclass(frozen=True)
class ViolationMetrics:
    """Per labelled person: was a missing helmet (or vest) flagged? Persons too small to judge left out."""

    rule: str  # "no_helmet" or "no_vest"
    positives: int  # labelled persons truly missing the item
    undetermined: int  # labelled persons with neither item nor its absence labelled (head hidden): left out
    true_positives: int
    false_positives: int  # flagged although wearing it, or a flagged detection of no labelled person
    false_negatives: int
    precision: float
    recall: float
    by_size: list[SizeBandMetrics] = field(default_factory=list)


@dataclass(frozen=True)
class OperatingPoint:
    """Violation-level precision and recall at one person threshold and one threshold for the PPE classes."""

    person_threshold: float
    threshold: float  # shared by the rule's PPE classes
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int


@dataclass(frozen=True)
class ViolationSweep:
    """How one violation rule trades precision for recall as the person and PPE thresholds move."""

    rule: str
    classes: tuple[str, ...]  # the PPE thresholds that moved together
    points: list[OperatingPoint]  # every (person, PPE) threshold pair tried
    best: OperatingPoint | None  # highest recall at precision >= target; None when no point reaches it
    balanced: OperatingPoint | None  # highest F1, for when no point reaches the target
    target_precision: float

    def frontier(self) -> list[OperatingPoint]:
        """The points no other point beats on both precision and recall, by recall."""
        kept = [
            p
            for p in self.points
            if not any(
                (q.precision >= p.precision and q.recall > p.recall)
                or (q.precision > p.precision and q.recall >= p.recall)
                for q in self.points
            )
        ]
        return sorted({(p.recall, p.precision): p for p in kept}.values(), key=lambda p: p.recall)


@dataclass
class EvalReport:
    """Everything `sitesentry eval` measured, JSON-ready through to_dict()."""

    model: str
    model_name: str
    model_version: str
    data: str
    split: str
    images: int
    imgsz: tuple[int, int]
    thresholds: dict[str, float]  # operating confidence per class
    nms_iou: float
    classes: list[ClassMetrics]
    map50: float
    map50_95: float
    precision: float  # mean over classes with labelled boxes, at the operating thresholds
    recall: float
    violations: list[ViolationMetrics]
    persons: dict[str, int]  # labelled, judged (big enough), detected (matched at IoU 0.5)
    confusion_matrix: list[list[int]]  # rows predicted, columns true; last row/column is background
    ms_per_image: float
    tiling: str | None = None  # "rows x cols, overlap" when images were detected tiled
    sweeps: list[ViolationSweep] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)

    def summary(self) -> dict[str, float | str]:
        """The headline figures stored in a model's metadata."""
        return headline(self.to_dict())


def headline(report: dict[str, Any]) -> dict[str, float | str]:
    """Pick the headline figures out of a report dict (as `sitesentry eval --json` writes it)."""
    try:
        out: dict[str, float | str] = {"data": Path(report["data"]).name, "split": report["split"]}
        out.update({"mAP50": round(report["map50"], 4), "mAP50-95": round(report["map50_95"], 4)})
        out.update({"precision": round(report["precision"], 4), "recall": round(report["recall"], 4)})
        for v in report["violations"]:
            out[f"{v['rule']}_precision"] = round(v["precision"], 4)
            out[f"{v['rule']}_recall"] = round(v["recall"], 4)
    except (KeyError, TypeError) as exc:
        raise ValueError(
            f"not an evaluation report written by `sitesentry eval --json` (missing {exc})"
        ) from None
    return out


@dataclass
class _ViolationCounts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    positives: int = 0
    undetermined: int = 0
    by_size: dict[str, list[int]] = field(default_factory=dict)  # band: [positives, tp, fp, fn]

    def add(
        self, band: str, positive: bool = False, tp: bool = False, fp: bool = False, fn: bool = False
    ) -> None:
        """Count one outcome, overall and in its size band."""
        self.positives += positive
        self.tp += tp
        self.fp += fp
        self.fn += fn
        row = self.by_size.setdefault(band, [0, 0, 0, 0])
        for i, hit in enumerate((positive, tp, fp, fn)):
            row[i] += hit

    def bands(self) -> list[SizeBandMetrics]:
        """Per size band figures, in SIZE_BANDS order, for the bands that saw anyone."""
        out = []
        for name, low, high in SIZE_BANDS:
            if name in self.by_size:
                positives, tp, fp, fn = self.by_size[name]
                out.append(
                    SizeBandMetrics(
                        name,
                        low,
                        None if high == float("inf") else high,
                        positives,
                        tp,
                        fp,
                        fn,
                        safe_ratio(tp, tp + fp),
                        safe_ratio(tp, tp + fn),
                    )
                )
        return out


def size_band(height_px: float) -> str:
    """Name the SIZE_BANDS band a person of this height (model-input pixels) falls in."""
    for name, low, high in SIZE_BANDS:
        if low <= height_px < high:
            return name
    return SIZE_BANDS[-1][0]


def ground_truth(img: LabelledImage, width: int, height: int) -> Detections:
    """Turn an image's labelled boxes into pixel-space Detections with confidence 1."""
    if not img.boxes:
        return Detections.empty()
    rows = [(b.cx - b.w / 2, b.cy - b.h / 2, b.cx + b.w / 2, b.cy + b.h / 2) for b in img.boxes]
    xyxy = np.asarray(rows, np.float32) * np.array([width, height, width, height], np.float32)
    cls = np.array([CLASS_NAMES.index(b.label) for b in img.boxes], np.int32)
    return Detections(xyxy, np.ones(len(cls), np.float32), cls, CLASS_NAMES)


def match_persons(
    gt: np.ndarray,
    pred: np.ndarray,
    iou: float = PERSON_MATCH_IOU,
    gt_parts: Sequence[Box | None] | None = None,
    pred_parts: Sequence[Box | None] | None = None,
) -> dict[int, int]:
    """Pair labelled and predicted persons one-to-one, highest IoU first: {gt index: pred index}.

    With parts (each person's head or torso box, None where it has none), two persons also match when
    their parts overlap by `iou`: labellers and the model often disagree on how much of a half-hidden
    body to box, far less on where its head is.
    """
    overlap = box_iou(gt, pred)
    if gt_parts is not None and pred_parts is not None and overlap.size:
        overlap = np.maximum(overlap, part_iou(gt_parts, pred_parts))
    pairs = np.argwhere(overlap >= iou)
    pairs = pairs[np.argsort(-overlap[pairs[:, 0], pairs[:, 1]], kind="stable")]
    out: dict[int, int] = {}
    used: set[int] = set()
    for g, p in pairs.tolist():
        if g not in out and p not in used:
            out[g] = p
            used.add(p)
    return out


def part_iou(a: Sequence[Box | None], b: Sequence[Box | None]) -> np.ndarray:
    """IoU of every part box in a with every one in b; 0 wherever either side has no part."""
    has_a = np.array([box is not None for box in a], bool)
    has_b = np.array([box is not None for box in b], bool)
    out = np.zeros((len(a), len(b)))
    if has_a.any() and has_b.any():
        boxes_a = np.array([box for box in a if box is not None], np.float64)
        boxes_b = np.array([box for box in b if box is not None], np.float64)
        out[np.ix_(has_a, has_b)] = box_iou(boxes_a, boxes_b)
    return out


def count_violations(
    truth: Detections,
    predicted: Detections,
    rules: RulesConfig,
    counts: dict[str, _ViolationCounts],
    input_scale: float = 1.0,
) -> dict[str, int]:
    """Add one image's violation outcomes to counts; return its labelled / judged / detected person counts.

    input_scale (model-input pixels per image pixel) places each person in a SIZE_BANDS band.
    """
    from edge.violations.ppe import assign_ppe  # the rules' own association code

    gt_persons, pred_persons = truth.of(PERSON), predicted.of(PERSON)
    gt_status = assign_ppe(gt_persons.xyxy, truth, rules)
    pred_status = assign_ppe(pred_persons.xyxy, predicted, rules, pred_persons.confidence)
    detected = match_persons(gt_persons.xyxy, pred_persons.xyxy)
    gt_bands = [size_band(input_scale * float(b[3] - b[1])) for b in gt_persons.xyxy]
    pred_bands = [size_band(input_scale * float(b[3] - b[1])) for b in pred_persons.xyxy]
    for item, attr in _MISSING.items():
        if item not in rules.require:
            continue
        part = _DECIDING_BOX[item]
        pairs = match_persons(
            gt_persons.xyxy,
            pred_persons.xyxy,
            gt_parts=[getattr(s, part) for s in gt_status],
            pred_parts=[getattr(s, part) for s in pred_status],
        )
        matched_pred = set(pairs.values())
        c = counts.setdefault(f"no_{item}", _ViolationCounts())
        for g, status in enumerate(gt_status):
            if not status.judged:
                continue  # too small for the rules to judge, so neither flagged nor missed on site
            if getattr(status, _DECIDING_BOX[item]) is None:
                c.undetermined += 1  # no helmet and no bare head labelled: the truth is unknown
                continue
            p = pairs.get(g)
            flagged = p is not None and pred_status[p].judged and getattr(pred_status[p], attr)
            if getattr(status, attr):
                c.add(gt_bands[g], positive=True, tp=flagged, fn=not flagged)
            else:
                c.add(gt_bands[g], fp=flagged)
        for p, status in enumerate(pred_status):
            if p not in matched_pred and status.judged and getattr(status, attr):
                c.add(pred_bands[p], fp=True)
    return {
        "labelled": len(gt_status),
        "judged": sum(s.judged for s in gt_status),
        "detected": len(detected),
    }


def evaluate(
    model: Path,
    data: Path,
    split: str = "val",
    model_config: ModelConfig | None = None,
    rules: RulesConfig | None = None,
    mapping: ClassMapping | None = None,
    plots_dir: Path | None = None,
    providers: Sequence[str] = ("cpu",),
    threads: int = 0,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    tiling: TilingConfig | None = None,
) -> EvalReport:
    """Run the edge detector over a YOLO dataset split and measure it; optionally write PNG plots.

    With tiling (enabled), every image is detected as a tiled camera is on site: full frame plus slices.

    One function on purpose: the per-image loop feeds several tallies (AP, counts, confusion matrix,
    violations, sweep inputs) that the report is built from at the end; split up, they would travel together
    as one more state object.
    """
    from edge.detections.onnxrt import OnnxDetector
    from edge.detections.tiling import detect_tiled
    from edge.detections.yolo import YoloDetector

    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(_SPLITS)}")
    model_config = model_config or ModelConfig()
    rules = rules or RulesConfig()
    if mapping is None:
        names = yaml.safe_load(Path(data).read_text(encoding="utf-8")).get("names")
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else names
        if tuple(names or ()) != CLASS_NAMES:
            raise ValueError(
                f"{data}: classes {names} are not SiteSentry's {list(CLASS_NAMES)}; "
                "import the dataset first (`sitesentry dataset import --mapping`) or pass a mapping"
            )
    dataset = read_yolo(Path(data), mapping)
    images = [img for img in dataset.images if img.split == _SPLITS[split]][:limit]
    notes = []
    if not images:
        # `train:` and `val:` naming one folder (an evaluation-only set) were read once, as train.
        folder = split_folders(Path(data)).get(_SPLITS[split])
        images = [img for img in dataset.images if folder and img.path.parent.resolve() == folder][:limit]
        if images:
            notes.append(f"the {split!r} split shares its folder {folder} with another split")
    if not images:
        raise ValueError(f"{data}: no images in the {split!r} split")
    if dataset.problems:
        notes.append(
            f"{len(dataset.problems)} problem(s) reading {data}; `sitesentry dataset validate` lists them"
        )

    def detector(confidence: dict[str, float], default: float) -> YoloDetector:
        if model_config.type == "tensorrt":  # the native engine, built or taken from model.engine_cache
            from edge.detections.tensorrt_backend import TensorRtDetector

            return TensorRtDetector(
                model, model_config.engine_precision, model_config.max_batch, model_config.engine_cache,
                model_config.calibration, confidence, default, model_config.iou, expected_names=CLASS_NAMES,
            )  # fmt: skip
        if Path(model).suffix == ".xml":  # an OpenVINO IR (the INT8 export): only OpenVINO reads it
            from edge.detections.openvino_backend import OpenVinoDetector

            return OpenVinoDetector(
                model, "CPU", confidence, default, model_config.iou, threads, expected_names=CLASS_NAMES
            )
        return OnnxDetector(
            model, providers, confidence, default, model_config.iou, threads, expected_names=CLASS_NAMES
        )

    ap_detector = detector({}, AP_CONFIDENCE)
    site_detector = detector(model_config.confidence, model_config.default_confidence)
    thresholds = {n: float(t) for n, t in zip(CLASS_NAMES, site_detector.thresholds, strict=True)}

    nc = len(CLASS_NAMES)
    accumulator = DetectionAccumulator(nc)
    counts = np.zeros((nc, 3), int)
    matrix = np.zeros((nc + 1, nc + 1), int)
    violations: dict[str, _ViolationCounts] = {}
    persons = {"labelled": 0, "judged": 0, "detected": 0}
    # (truth, low-threshold boxes, input scale) per image, for the sweep
    scored_images: list[tuple[Detections, Detections, float]] = []
    inference_s = 0.0
    for i, img in enumerate(images):
        image = cv2.imread(str(img.path), cv2.IMREAD_COLOR)
        if image is None:
            notes.append(f"{img.path}: not a readable image; skipped")
            continue
        truth = ground_truth(img, image.shape[1], image.shape[0])
        started = time.perf_counter()
        # model-input pixels per image pixel (of the full frame when tiled), as the letterbox scales it
        in_h, in_w = ap_detector.input_size([image])
        scale = min(in_h / image.shape[0], in_w / image.shape[1])
        if tiling is not None and tiling.enabled:
            low = detect_tiled(ap_detector, image, tiling, model_config.iou)
            site = keep_above(low, thresholds)
        else:
            # One inference, decoded twice: with the AP floor, and with the site's thresholds as on site.
            blob, boxes = ap_detector.preprocess([image])
            raw = ap_detector.infer(blob)
            low = ap_detector.postprocess(raw, boxes)[0]
            site = site_detector.postprocess(raw, boxes)[0]
        inference_s += time.perf_counter() - started
        accumulator.add(low.xyxy, low.confidence, low.class_id, truth.xyxy, truth.class_id)
        counts += precision_recall_counts(
            site.xyxy, site.confidence, site.class_id, truth.xyxy, truth.class_id, nc
        )
        matrix += confusion_matrix(site.xyxy, site.class_id, truth.xyxy, truth.class_id, nc)
        for key, value in count_violations(truth, site, rules, violations, scale).items():
            persons[key] += value
        scored_images.append((truth, low, scale))
        if progress is not None:
            progress(i + 1, len(images))

    ap = accumulator.ap()
    classes = []
    for c, name in enumerate(CLASS_NAMES):
        tp, fp, fn = (int(v) for v in counts[c])
        has_gt = bool(accumulator.n_gt[c])
        classes.append(
            ClassMetrics(
                name=name,
                instances=int(accumulator.n_gt[c]),
                ap50=float(ap[c, 0]) if has_gt else None,
                ap50_95=float(ap[c].mean()) if has_gt else None,
                precision=safe_ratio(tp, tp + fp),
                recall=safe_ratio(tp, tp + fn),
                true_positives=tp,
                false_positives=fp,
                false_negatives=fn,
            )
        )
    scored = [c for c in classes if c.instances]
    if len(scored) < nc:
        missing = ", ".join(c.name for c in classes if not c.instances)
        notes.append(f"no labelled boxes of {missing} in this split: left out of the means")
    report = EvalReport(
        model=str(model),
        model_name=ap_detector.info.name,
        model_version=ap_detector.info.version,
        data=str(data),
        split=split,
        images=len(images),
        imgsz=tuple(ap_detector.info.imgsz),  # type: ignore[arg-type]
        thresholds=thresholds,
        nms_iou=model_config.iou,
        classes=classes,
        map50=float(np.mean([c.ap50 for c in scored])) if scored else 0.0,
        map50_95=float(np.mean([c.ap50_95 for c in scored])) if scored else 0.0,
        precision=float(np.mean([c.precision for c in scored])) if scored else 0.0,
        recall=float(np.mean([c.recall for c in scored])) if scored else 0.0,
        violations=[
            ViolationMetrics(
                rule,
                v.positives,
                v.undetermined,
                v.tp,
                v.fp,
                v.fn,
                safe_ratio(v.tp, v.tp + v.fp),
                safe_ratio(v.tp, v.tp + v.fn),
                v.bands(),
            )
            for rule, v in violations.items()
        ],
        persons=persons,
        confusion_matrix=matrix.tolist(),
        ms_per_image=1000 * inference_s / max(len(images), 1),
        tiling=f"{tiling.rows}x{tiling.cols}, overlap {tiling.overlap:g}"
        if tiling is not None and tiling.enabled
        else None,
        sweeps=sweep_violations(scored_images, thresholds, rules),
        notes=notes,
    )
    if plots_dir is not None:
        _plot(report, accumulator, Path(plots_dir))
    return report


def keep_above(detections: Detections, thresholds: dict[str, float]) -> Detections:
    """Drop boxes under their class's threshold (the same as decoding with it: NMS never lets a lower
    box suppress a higher one)."""
    floor = np.array([thresholds.get(name, 1.0) for name in detections.names], np.float32)
    keep = detections.confidence >= floor[detections.class_id]
    return Detections(detections.xyxy[keep], detections.confidence[keep], detections.class_id[keep])


def _f1(point: OperatingPoint) -> float:
    return 2 * point.precision * point.recall / (point.precision + point.recall)


def sweep_violations(
    scored_images: Sequence[tuple[Detections, Detections, float]],
    thresholds: dict[str, float],
    rules: RulesConfig,
    grid: Sequence[float] = SWEEP_GRID,
    person_grid: Sequence[float] = PERSON_SWEEP_GRID,
    target_precision: float = TARGET_PRECISION,
) -> list[ViolationSweep]:
    """For each required PPE rule, move the person threshold and its classes' threshold over the grids."""
    sweeps = []
    for rule, classes in RULE_CLASSES.items():
        if rule.removeprefix("no_") not in rules.require:
            continue
        points = []
        for person_threshold in person_grid:
            for threshold in grid:
                moved = {**thresholds, **dict.fromkeys(classes, threshold), PERSON: person_threshold}
                counts: dict[str, _ViolationCounts] = {}
                for truth, low, scale in scored_images:
                    count_violations(truth, keep_above(low, moved), rules, counts, scale)
                c = counts.get(rule, _ViolationCounts())
                points.append(
                    OperatingPoint(
                        person_threshold,
                        threshold,
                        safe_ratio(c.tp, c.tp + c.fp),
                        safe_ratio(c.tp, c.tp + c.fn),
                        c.tp,
                        c.fp,
                        c.fn,
                    )
                )
        reaching = [p for p in points if p.precision >= target_precision and p.true_positives]
        best = max(reaching, key=lambda p: (p.recall, p.precision)) if reaching else None
        scored = [p for p in points if p.true_positives]
        balanced = max(scored, key=_f1) if scored else None
        sweeps.append(ViolationSweep(rule, classes, points, best, balanced, target_precision))
    return sweeps


def _plot(report: EvalReport, accumulator: DetectionAccumulator, plots_dir: Path) -> None:
    try:
        from training.plots import plot_confusion_matrix, plot_pr_curves, plot_violation_sweeps
    except ImportError:
        message = "plots skipped: matplotlib is not installed (pip install -e '.[train]')"
        log.warning(message)
        report.notes.append(message)
        return
    curves = {CLASS_NAMES[c]: curve for c, curve in accumulator.curves().items()}
    ap50 = {c.name: c.ap50 for c in report.classes if c.ap50 is not None}
    report.plots = [
        str(plot_pr_curves(curves, ap50, plots_dir / "pr_curves.png")),
        str(plot_violation_sweeps(report.sweeps, plots_dir / "violation_operating_points.png")),
        str(
            plot_confusion_matrix(
                np.array(report.confusion_matrix), CLASS_NAMES, plots_dir / "confusion_matrix.png"
            )
        ),
    ]
