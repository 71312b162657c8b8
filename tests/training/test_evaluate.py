"""`evaluate` through the edge's ONNX detector, with a model whose answers are known exactly.

The model is a real ONNX file run by onnxruntime, built so that its output is a fixed set of boxes:
evaluated on one real photo, every figure of the report can be worked out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from training_samples import fixed_output_model, photo_dataset, truth_boxes

from edge.config.models import RulesConfig
from edge.labels import CLASS_NAMES
from training.datasets.model import ClassMapping
from training.evaluate import count_violations, evaluate, headline


def test_perfect_answers_score_one_and_extra_boxes_cost_precision(tmp_path: Path) -> None:
    data, dataset = photo_dataset(tmp_path)
    boxes = truth_boxes(dataset)
    person = next(b for b in boxes if b[0] == "person")
    boxes += [("person", 0.2, *person[2:]), ("no_vest", 0.5, 0, 0, 20, 20)]  # a weak duplicate, a ghost
    model = fixed_output_model(tmp_path / "fixed.onnx", boxes)
    report = evaluate(model, data, plots_dir=tmp_path / "plots")
    counts = {name: sum(1 for b in dataset.images[0].boxes if b.label == name) for name in CLASS_NAMES}
    assert report.images == 1 and report.model_name == "fixed-answers"
    for c in report.classes:
        assert c.instances == counts[c.name]
        assert c.ap50 == pytest.approx(1.0) and c.ap50_95 == pytest.approx(
            1.0
        )  # every label found, ranked first
        assert c.recall == 1.0
    by_name = {c.name: c for c in report.classes}
    assert by_name["person"].precision == 1.0  # the 0.2 duplicate is below the site's person threshold
    assert by_name["no_vest"].false_positives == 1
    assert by_name["no_vest"].precision == pytest.approx(counts["no_vest"] / (counts["no_vest"] + 1))
    assert report.map50 == pytest.approx(1.0)
    assert report.persons == {"labelled": 4, "judged": 4, "detected": 4}
    rules = {v.rule: v for v in report.violations}
    assert set(rules) == {"no_helmet", "no_vest"}
    for v in rules.values():
        assert v.positives >= 1 and v.precision == 1.0 and v.recall == 1.0 and v.false_positives == 0
    assert np.trace(np.array(report.confusion_matrix)[:5, :5]) == len(dataset.images[0].boxes)
    assert report.confusion_matrix[4][5] == 1  # the ghost no_vest, predicted on background
    assert sorted(Path(p).name for p in report.plots) == [
        "confusion_matrix.png",
        "pr_curves.png",
        "violation_operating_points.png",
    ]
    assert all(Path(p).stat().st_size > 10_000 for p in report.plots)
    json.dumps(report.to_dict())
    assert headline(report.to_dict())["mAP50"] == 1.0


def test_a_missed_helmet_lowers_helmet_figures_and_flags_its_wearer(tmp_path: Path) -> None:
    data, dataset = photo_dataset(tmp_path)
    boxes = truth_boxes(dataset)
    dropped = next(i for i, b in enumerate(boxes) if b[0] == "helmet")
    boxes.pop(dropped)
    report = evaluate(fixed_output_model(tmp_path / "fixed.onnx", boxes), data)
    helmet = next(c for c in report.classes if c.name == "helmet")
    assert helmet.recall == pytest.approx(1 / 2) and helmet.false_negatives == 1
    assert helmet.ap50 == pytest.approx(51 / 101)  # precision 1 up to recall 0.5, nothing beyond
    no_helmet = next(v for v in report.violations if v.rule == "no_helmet")
    assert no_helmet.false_positives == 1 and no_helmet.recall == 1.0  # its wearer now looks bare-headed
    assert no_helmet.precision == pytest.approx(no_helmet.positives / (no_helmet.positives + 1))


def test_threshold_sweep_shows_a_weak_helmet_turning_into_a_false_alarm(tmp_path: Path) -> None:
    data, dataset = photo_dataset(tmp_path)
    boxes = truth_boxes(dataset)
    weak = next(i for i, b in enumerate(boxes) if b[0] == "helmet")
    boxes[weak] = ("helmet", 0.42, *boxes[weak][2:])
    report = evaluate(fixed_output_model(tmp_path / "fixed.onnx", boxes), data)
    sweep = next(s for s in report.sweeps if s.rule == "no_helmet")
    assert sweep.classes == ("helmet", "head")
    by_threshold = {(p.person_threshold, p.threshold): p for p in sweep.points}
    below, above = by_threshold[(0.35, 0.4)], by_threshold[(0.35, 0.45)]
    assert below.false_positives == 0 and below.precision == 1.0 and below.recall == 1.0
    # Above 0.42 the helmet is gone, so its wearer looks bare-headed: one false alarm, recall unchanged.
    assert above.false_positives == 1 and above.recall == 1.0
    assert above.precision == pytest.approx(above.true_positives / (above.true_positives + 1))
    assert sweep.best is not None and sweep.best.threshold <= 0.4 and sweep.best.precision == 1.0
    [top] = sweep.frontier()  # one trade-off beats or equals every other
    assert (top.precision, top.recall) == (sweep.best.precision, sweep.best.recall)
    vest = next(s for s in report.sweeps if s.rule == "no_vest")
    assert all(p.precision == 1.0 and p.recall == 1.0 for p in vest.points)  # every vest box scores 0.9+
    json.dumps(report.to_dict())


def test_violation_counts_per_labelled_person() -> None:
    from edge.dataflow import Detections

    def dets(rows):
        xyxy = np.array([r[1:] for r in rows], np.float32).reshape(-1, 4)
        cls = np.array([CLASS_NAMES.index(r[0]) for r in rows], np.int32)
        return Detections(xyxy, np.full(len(rows), 0.9, np.float32), cls)

    a, b, c, d = (0, 0, 100, 300), (200, 0, 300, 300), (400, 0, 500, 300), (800, 0, 900, 300)
    truth = dets([
        ("person", *a), ("head", 30, 0, 70, 40),      # A: bare head
        ("person", *b), ("helmet", 230, 0, 270, 40),  # B: helmet
        ("person", *c), ("head", 430, 0, 470, 40),    # C: bare head, but the model misses C entirely
        ("person", *d),                               # D: head not labelled (turned away): unknown
    ])  # fmt: skip
    predicted = dets([
        ("person", *a), ("head", 30, 0, 70, 40),         # A flagged: true positive
        ("person", *b), ("head", 230, 0, 270, 40),       # B flagged: false positive
        ("person", 600, 0, 700, 300), ("head", 630, 0, 670, 40),  # nobody there: false positive
        ("person", *d),                                  # D flagged (no helmet seen): not counted
    ])  # fmt: skip
    counts: dict = {}
    persons = count_violations(truth, predicted, RulesConfig(require=["helmet"]), counts)
    assert persons == {"labelled": 4, "judged": 4, "detected": 3}
    v = counts["no_helmet"]
    assert (v.positives, v.undetermined, v.tp, v.fp, v.fn) == (2, 1, 1, 2, 1)
    assert "no_vest" not in counts  # not required by these rules

    # At 0.3 model-input px per image px every 300 px person is 90 px tall in the model input: medium.
    counts = {}
    count_violations(truth, predicted, RulesConfig(require=["helmet"]), counts, input_scale=0.3)
    bands = counts["no_helmet"].bands()
    assert [(b.band, b.positives, b.true_positives, b.false_positives, b.false_negatives) for b in bands] == [
        ("medium", 2, 1, 2, 1)
    ]
    assert (bands[0].min_px, bands[0].max_px) == (64.0, 128.0)


def test_violation_size_bands_split_small_and_large_persons() -> None:
    from edge.dataflow import Detections

    def dets(rows):
        xyxy = np.array([r[1:] for r in rows], np.float32).reshape(-1, 4)
        cls = np.array([CLASS_NAMES.index(r[0]) for r in rows], np.int32)
        return Detections(xyxy, np.full(len(rows), 0.9, np.float32), cls)

    far, near = (0, 0, 20, 50), (100, 0, 200, 400)  # 50 and 400 px tall in the model input
    truth = dets([("person", *far), ("head", 5, 0, 15, 8), ("person", *near), ("head", 130, 0, 170, 50)])
    predicted = dets([("person", *near), ("head", 130, 0, 170, 50)])  # the far worker is missed
    counts: dict = {}
    count_violations(truth, predicted, RulesConfig(require=["helmet"], min_person_px=0), counts)
    bands = {b.band: b for b in counts["no_helmet"].bands()}
    assert set(bands) == {"small", "large"}
    assert (bands["small"].recall, bands["large"].recall) == (0.0, 1.0)
    assert bands["large"].max_px is None


def test_a_person_boxed_differently_is_still_matched_by_the_head_that_decided() -> None:
    from edge.dataflow import Detections

    def dets(rows):
        xyxy = np.array([r[1:] for r in rows], np.float32).reshape(-1, 4)
        cls = np.array([CLASS_NAMES.index(r[0]) for r in rows], np.int32)
        return Detections(xyxy, np.full(len(rows), 0.9, np.float32), cls)

    # The labeller boxed only the visible upper body; the model boxed the whole worker (IoU 0.4).
    truth = dets([("person", 0, 0, 100, 120), ("head", 30, 0, 70, 40)])
    predicted = dets([("person", 0, 0, 100, 300), ("head", 32, 2, 70, 40)])
    counts: dict = {}
    persons = count_violations(truth, predicted, RulesConfig(require=["helmet"]), counts)
    assert persons["detected"] == 0  # as persons they do not match...
    v = counts["no_helmet"]
    assert (v.positives, v.tp, v.fp, v.fn) == (1, 1, 0, 0)  # ...but the bare head is the same one
    # A different head (elsewhere in the box) does not rescue the match: one miss and one false alarm.
    counts = {}
    elsewhere = dets([("person", 0, 0, 100, 300), ("head", 30, 60, 70, 100)])
    count_violations(truth, elsewhere, RulesConfig(require=["helmet"], head_region=0.4), counts)
    v = counts["no_helmet"]
    assert (v.tp, v.fp, v.fn) == (0, 1, 1)


def test_bad_inputs_are_refused_clearly(tmp_path: Path) -> None:
    data, dataset = photo_dataset(tmp_path)
    from edge.detections.base import ModelError

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        evaluate(junk, data)
    model = fixed_output_model(tmp_path / "fixed.onnx", truth_boxes(dataset))
    with pytest.raises(ValueError, match="no images in the 'test' split"):
        evaluate(model, data, split="test")
    other = yaml.safe_load(data.read_text()) | {"names": ["a", "b", "c", "d", "e"]}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    with pytest.raises(ValueError, match="are not SiteSentry's"):
        evaluate(model, tmp_path / "other.yaml")
    mapping = ClassMapping(dict(zip("abcde", CLASS_NAMES, strict=True)))
    assert evaluate(model, tmp_path / "other.yaml", mapping=mapping).map50 == pytest.approx(1.0)


def test_train_and_val_naming_one_folder_evaluate_that_folder(tmp_path: Path) -> None:
    """An evaluation-only set often names one folder as both `train:` and `val:` (issue 12, item 9)."""
    data, dataset = photo_dataset(tmp_path)
    model = fixed_output_model(tmp_path / "fixed.onnx", truth_boxes(dataset))
    layout = yaml.safe_load(data.read_text())
    folder = layout["val"]
    shared = data.with_name("shared.yaml")
    shared.write_text(yaml.safe_dump(layout | {"train": folder, "val": folder}))
    report = evaluate(model, shared, split="val")
    assert report.images == len(list((data.parent / folder).glob("*.jpg"))) == 1
    assert report.map50 == pytest.approx(1.0)
    assert any("shares its folder" in note for note in report.notes)
    with pytest.raises(ValueError, match="no images in the 'test' split"):
        evaluate(model, shared, split="test")
