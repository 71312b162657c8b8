"""One epoch on a tiny slice of real photos: train offline, export to ONNX, evaluate through the edge
detector, and check our mAP against ultralytics' own validation of the same ONNX file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from training_samples import MAPPING, copy_yolo_sample, rich_images, shared_dataset

from edge.labels import CLASS_NAMES
from training.datasets.model import ClassMapping
from training.datasets.split import remove_leaks
from training.datasets.yolo import read_yolo, write_yolo
from training.evaluate import evaluate
from training.export import export_onnx, read_metadata
from training.train import TrainConfig, dataset_hash, train

IMGSZ = 192


def in_unit_range(value: float | None) -> bool:
    return value is None or (math.isfinite(value) and 0.0 <= value <= 1.0)


@pytest.mark.slow
@pytest.mark.train
def test_one_epoch_trains_exports_and_evaluates_like_ultralytics(
    ultralytics_offline: Path, tmp_path: Path
) -> None:
    shared_dataset()
    source = copy_yolo_sample(tmp_path / "src", rich_images("train", 12), rich_images("valid", 4))
    data = write_yolo(remove_leaks(read_yolo(source, ClassMapping.load(MAPPING))), tmp_path / "data")

    config = TrainConfig(
        data=str(data), out_dir=str(tmp_path / "runs"), name="tiny", epochs=1, imgsz=IMGSZ, batch=8,
        freeze=10, workers=0, cache=None, extra={"plots": False, "val": True},
    )  # fmt: skip
    run_dir = train(config)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"]["epochs"] == 1 and record["data_hash"] == dataset_hash(data)
    assert record["ultralytics_args"]["plots"] is False and record["versions"]["ultralytics"] != "absent"
    weights = run_dir / "weights" / "best.pt"
    assert weights.is_file()
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        train(TrainConfig(data=str(data), out_dir=str(tmp_path / "runs"), name="never-ran"), resume=True)

    onnx_path = export_onnx(
        weights, tmp_path / "model.onnx", IMGSZ, metadata={"training_data_hash": dataset_hash(data)}
    )
    assert read_metadata(onnx_path)["training_data_hash"] == dataset_hash(data)

    report = evaluate(onnx_path, data, plots_dir=tmp_path / "plots")
    assert report.images == 4 and [c.name for c in report.classes] == list(CLASS_NAMES)
    figures = [report.map50, report.map50_95, report.precision, report.recall]
    figures += [v for c in report.classes for v in (c.ap50, c.ap50_95, c.precision, c.recall)]
    figures += [v for r in report.violations for v in (r.precision, r.recall)]
    assert all(in_unit_range(v) for v in figures), figures
    assert report.map50_95 <= report.map50 + 1e-9
    assert {v.rule for v in report.violations} == {"no_helmet", "no_vest"}
    assert report.persons["labelled"] > 0 and sum(c.instances for c in report.classes) > 0
    json.dumps(report.to_dict())

    from ultralytics import YOLO

    theirs = YOLO(str(onnx_path), task="detect").val(
        validator=single_label_validator(), data=str(data), imgsz=IMGSZ, batch=1, conf=0.001,
        iou=report.nms_iou, device="cpu", plots=False, project=str(tmp_path / "val"), name="onnx",
    )  # fmt: skip
    assert theirs.box.map50 > 0.01  # something was learnt, so the comparison below can fail
    assert report.map50 == pytest.approx(theirs.box.map50, abs=0.01 + 0.05 * theirs.box.map50)
    assert report.map50_95 == pytest.approx(theirs.box.map, abs=0.01 + 0.05 * theirs.box.map)


def single_label_validator() -> type:
    """Ultralytics' validator with one class per box, as the edge decides (its default keeps several)."""
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils import nms

    class SingleLabelValidator(DetectionValidator):
        def postprocess(self, preds):
            outputs = nms.non_max_suppression(
                preds, self.args.conf, self.args.iou, nc=0, multi_label=False, max_det=self.args.max_det
            )
            return [{"bboxes": x[:, :4], "conf": x[:, 4], "cls": x[:, 5], "extra": x[:, 6:]} for x in outputs]

    return SingleLabelValidator
