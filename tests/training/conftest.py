"""Fixtures for the training tests: tiny real samples from ../shared, and an offline ultralytics."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from training_samples import copy_yolo_sample, rich_images, shared_dataset


@pytest.fixture
def yolo_sample(tmp_path: Path) -> Path:
    """Six training and two validation photos in the dataset's own classes; returns data.yaml."""
    shared_dataset()
    return copy_yolo_sample(tmp_path / "css", rich_images("train", 6), rich_images("valid", 2), link=False)


@pytest.fixture(scope="session")
def ultralytics_offline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point ultralytics at a throwaway config dir with nothing to download; skip without the train extra."""
    if importlib.util.find_spec("ultralytics") is None:  # checked without importing: env must come first
        pytest.skip("needs the train extra (pip install -e '.[train]')")
    from training.offline import prepare_offline

    return prepare_offline(tmp_path_factory.mktemp("yolo-config"))


@pytest.fixture(scope="session")
def canonical_weights(ultralytics_offline: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained YOLOv8n with SiteSentry's five classes, built from ultralytics' packaged model YAML."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from edge.labels import CLASS_NAMES

    model = YOLO("yolov8n.yaml")
    model.model = DetectionModel("yolov8n.yaml", nc=len(CLASS_NAMES), verbose=False)
    model.model.names = dict(enumerate(CLASS_NAMES))
    path = tmp_path_factory.mktemp("weights") / "canonical-yolov8n.pt"
    model.save(path)
    return path
