"""`sitesentry dataset ...` commands on real samples: one clear line out, non-zero exit on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import typer
import yaml
from training_samples import MAPPING, REPO, VIDEO, fixed_output_model, photo_dataset, truth_boxes
from typer.testing import CliRunner

from edge.labels import CLASS_NAMES
from training.cli import register
from training.datasets.yolo import read_yolo
from training.export import read_metadata


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def invoke(app: typer.Typer, *args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_importing_the_cli_loads_nothing_heavy() -> None:
    heavy = "{'torch', 'ultralytics', 'cv2', 'onnxruntime'}"
    code = f"import sys, training.cli; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == "[]"


def test_dataset_import_writes_a_canonical_split_dataset(app, yolo_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "v1"
    result = invoke(app, "dataset", "import", yolo_sample, "--out", out, "--mapping", MAPPING)
    assert result.exit_code == 0, result.output
    assert "imported 8 images (train 6, valid 2)" in result.output
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == list(CLASS_NAMES)
    dataset = read_yolo(out / "data.yaml")
    assert len(dataset.images) == 8 and all(img.path.is_symlink() for img in dataset.images)
    assert (out / "problems.txt").read_text() == ""


def test_dataset_import_refuses_bad_input_with_one_line(app, yolo_sample: Path, tmp_path: Path) -> None:
    missing = invoke(app, "dataset", "import", tmp_path / "nope.yaml", "--out", tmp_path / "a")
    assert missing.exit_code == 2 and "error:" in missing.output and "nope.yaml" in missing.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    busy = invoke(app, "dataset", "import", yolo_sample, "--out", tmp_path / "full")
    assert busy.exit_code == 2 and "not empty" in busy.output
    unmapped = invoke(app, "dataset", "import", yolo_sample, "--out", tmp_path / "b")
    assert (
        unmapped.exit_code == 0 and "is not in the mapping" in (tmp_path / "b" / "problems.txt").read_text()
    )
    bad_map = tmp_path / "map.yaml"
    bad_map.write_text("Person: worker\n")
    wrong = invoke(app, "dataset", "import", yolo_sample, "--out", tmp_path / "c", "--mapping", bad_map)
    assert wrong.exit_code == 2 and "'worker', which is not one of" in wrong.output
    # Nothing importable: the failure still says why, on screen and in problems.txt.
    coco = REPO / "tests" / "training" / "fixtures" / "tool_exports" / "cvat_coco"
    nothing = invoke(
        app, "dataset", "import", coco, "--out", tmp_path / "d", "--mapping", MAPPING, "--images", tmp_path
    )
    assert nothing.exit_code == 2 and "no images were imported" in nothing.output
    assert "zidane.jpg" in nothing.output and "zidane.jpg" in (tmp_path / "d" / "problems.txt").read_text()


def test_dataset_validate_prints_counts_and_writes_json(app, yolo_sample: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = invoke(
        app, "dataset", "validate", yolo_sample, "--mapping", MAPPING, "--json", report, "--strict"
    )
    assert result.exit_code == 0, result.output
    assert "8 images (train 6, valid 2)" in result.output and "0 problem(s)" in result.output
    data = json.loads(report.read_text())
    assert data["images"] == 8 and set(data["images_per_class"]) == set(CLASS_NAMES)
    (yolo_sample.parent / "train" / "images" / "broken.jpg").write_bytes(b"")
    strict = invoke(app, "dataset", "validate", yolo_sample, "--mapping", MAPPING, "--strict")
    assert strict.exit_code == 1 and "empty file" in strict.output


def test_dataset_split_regroups_into_a_new_version(app, yolo_sample: Path, tmp_path: Path) -> None:
    invoke(app, "dataset", "import", yolo_sample, "--out", tmp_path / "v1", "--mapping", MAPPING)
    result = invoke(
        app, "dataset", "split", tmp_path / "v1" / "data.yaml", "--out", tmp_path / "v2", "--valid", "0.5"
    )
    assert result.exit_code == 0, result.output
    assert "split 8 images from 8 groups" in result.output
    assert len(read_yolo(tmp_path / "v2" / "data.yaml").images) == 8


def test_eval_prints_the_tables_and_writes_json_and_plots(app, tmp_path: Path) -> None:
    data, dataset = photo_dataset(tmp_path)
    model = fixed_output_model(tmp_path / "fixed.onnx", truth_boxes(dataset))
    report = tmp_path / "eval" / "report.json"
    result = invoke(
        app, "eval", "--model", model, "--data", data, "--json", report, "--plots", tmp_path / "plots"
    )
    assert result.exit_code == 0, result.output
    assert "mAP50 1.000, mAP50-95 1.000" in result.output and "no_helmet" in result.output
    written = json.loads(report.read_text())
    assert written["map50"] == 1.0 and written["tiling"] is None
    assert {b["band"] for v in written["violations"] for b in v["by_size"]} <= {"small", "medium", "large"}
    assert (
        sum(b["positives"] for b in written["violations"][0]["by_size"])
        == written["violations"][0]["positives"]
    )
    assert (tmp_path / "plots" / "pr_curves.png").is_file()
    tiled = invoke(app, "eval", "--model", model, "--data", data, "--tiling", "2x3", "--json", report)
    assert tiled.exit_code == 0, tiled.output
    assert json.loads(report.read_text())["tiling"] == "2x3, overlap 0.2"
    for wrong, message in (("3by3", "expected ROWSxCOLS"), ("9x9", "less than or equal to 8")):
        refused = invoke(app, "eval", "--model", model, "--data", data, "--tiling", wrong)
        assert refused.exit_code == 2 and message in refused.output, refused.output
    junk = tmp_path / "junk.onnx"
    junk.write_text("nope")
    bad = invoke(app, "eval", "--model", junk, "--data", data)
    assert bad.exit_code == 2 and "not a loadable ONNX model" in bad.output


def test_extract_frames_and_export_queue_commands(app, tmp_path: Path) -> None:
    if not VIDEO.is_file():
        pytest.skip(f"real video not available at {VIDEO}")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("person\n")
    for n in (0, 25):
        (labels / f"frame_{n:06d}.txt").write_text("0 0.5 0.5 0.2 0.6\n")
    result = invoke(app, "dataset", "extract-frames", VIDEO, "--labels", labels, "--out", tmp_path / "frames")
    assert result.exit_code == 0, result.output
    assert "extracted 2 frames with 2 boxes" in result.output

    from edge.dataflow import Detections, Frame
    from edge.hard_examples import HardExampleQueue

    queue = HardExampleQueue(tmp_path / "queue", max_items=5, min_interval_s=0)
    for i, image in enumerate(sorted((tmp_path / "frames" / "images").glob("*.jpg"))):
        frame = Frame("gate", i, 1_714_550_400.0 + i, cv2.imread(str(image)))
        queue.add(frame, Detections.empty(), "false_alarm" if i else "low_confidence")
    batch = tmp_path / "batch"
    result = invoke(app, "dataset", "export-queue", tmp_path / "queue", "--out", batch, "--format", "yolo",
                    "--reason", "false_alarm")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "yolo labelling batch of 1 frames" in result.output
    assert len(read_yolo(batch / "data.yaml").images) == 1
    empty = invoke(
        app, "dataset", "export-queue", tmp_path / "queue", "--out", tmp_path / "b2", "--reason", "violation"
    )
    assert empty.exit_code == 2 and "no queued frames" in empty.output


@pytest.mark.train
def test_export_and_train_commands(app, canonical_weights: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "eval.json"
    metrics.write_text(json.dumps({"data": "d/data.yaml", "split": "val", "map50": 0.5, "map50_95": 0.3,
                                   "precision": 0.6, "recall": 0.7, "violations": []}))  # fmt: skip
    out = tmp_path / "model.onnx"
    result = invoke(app, "export", "--weights", canonical_weights, "--out", out, "--imgsz", "64",
                    "--name", "ppe-x", "--version", "3", "--metrics", metrics, "--engine")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"exported {out}" in result.output
    if shutil.which("nvidia-smi") is None:  # the ONNX file is still written; the engine is built on the box
        assert "TensorRT engine skipped: model.type tensorrt:" in result.output
    stored = read_metadata(out)
    assert stored["model_name"] == "ppe-x" and json.loads(stored["metrics"])["mAP50"] == 0.5
    resume = invoke(app, "train", "--resume", "--out-dir", tmp_path / "runs", "--name", "nothing")
    assert resume.exit_code == 2 and "cannot resume: no checkpoint" in resume.output
    no_data = invoke(app, "train", "--epochs", "1")
    assert no_data.exit_code == 2 and "--data is required" in no_data.output


def test_train_refuses_an_unknown_config_field_before_starting(app, tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("data: d/data.yaml\nepoch: 3\n")
    result = invoke(app, "train", "--config", config)
    assert result.exit_code == 2 and "unexpected keyword argument 'epoch'" in result.output
