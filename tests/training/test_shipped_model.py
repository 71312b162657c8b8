"""The shipped model's card figures are what `sitesentry eval` measures on the dataset's valid split."""

import json

import pytest
from training_samples import MAPPING, REPO, shared_dataset

from training.datasets.model import ClassMapping
from training.evaluate import evaluate

SHIPPED = REPO / "models" / "ppe-yolo"


def test_eval_reproduces_the_metrics_shipped_with_the_model() -> None:
    card = json.loads((SHIPPED / "metrics.json").read_text(encoding="utf-8"))
    # Straight from the source dataset through the class mapping: the valid split is the one imported.
    report = evaluate(
        SHIPPED / "model.onnx", shared_dataset() / "data.yaml", mapping=ClassMapping.load(MAPPING)
    ).to_dict()
    assert report["model_version"] == card["model_version"]
    assert report["images"] == card["images"] == 114
    # ONNX Runtime's kernels differ a little between CPUs: allow a borderline box to flip, no more.
    assert report["map50"] == pytest.approx(card["map50"], abs=2e-3)
    assert report["map50_95"] == pytest.approx(card["map50_95"], abs=2e-3)
    for ours, shipped in zip(report["classes"], card["classes"], strict=True):
        assert ours["name"] == shipped["name"]
        assert ours["ap50"] == pytest.approx(shipped["ap50"], abs=5e-3), ours["name"]
    by_rule = {v["rule"]: v for v in card["violations"]}
    for v in report["violations"]:
        shipped = by_rule[v["rule"]]
        assert v["positives"] == shipped["positives"], v["rule"]  # from the labels alone
        for k in ("true_positives", "false_positives", "false_negatives"):
            assert abs(v[k] - shipped[k]) <= 1, (v["rule"], k)
    assert report["map50"] >= 0.75  # the starter model's box-level target on this split
