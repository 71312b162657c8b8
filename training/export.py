"""Export a trained model: ONNX with SiteSentry metadata, INT8 calibration images, an INT8 OpenVINO IR.

TensorRT engines are built on the box that runs them: edge/detections/tensorrt_backend.py.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from edge.detections.quantize import decode_tail_scope
from edge.labels import CLASS_NAMES, CLASS_SET_VERSION
from training.datasets.model import Dataset, LabelledImage
from training.offline import prepare_offline

log = logging.getLogger(__name__)

#: Opset 17 runs on onnxruntime 1.18+ (and 1.31 here) and parses in TensorRT 8.5+ as JetPack 5 ships it.
ONNX_OPSET = 17
#: Keys ultralytics writes that the edge runtime reads; ours never overwrite them.
ULTRALYTICS_KEYS = ("names", "imgsz", "stride", "task", "batch")


class ExportError(ValueError):
    """A model that cannot be exported for SiteSentry; the message says why."""


def _model_names(names: Mapping[int, str] | list[str]) -> tuple[str, ...]:
    if isinstance(names, Mapping):
        return tuple(str(names[k]) for k in sorted(names))
    return tuple(str(n) for n in names)


def check_class_names(names: Mapping[int, str] | list[str], source: str) -> None:
    """Raise ExportError unless the model's classes are exactly the canonical ones, in order."""
    found = _model_names(names)
    if found != CLASS_NAMES:
        raise ExportError(
            f"{source}: model classes {list(found)} differ from SiteSentry's {list(CLASS_NAMES)} "
            f"(class set {CLASS_SET_VERSION}); train it on a dataset imported with a class mapping"
        )


def read_metadata(onnx_path: Path) -> dict[str, str]:
    """Return an ONNX file's metadata_props as a dict."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def write_metadata(onnx_path: Path, entries: Mapping[str, object]) -> None:
    """Add or replace metadata_props in an ONNX file (values that are not strings are stored as JSON)."""
    import onnx

    model = onnx.load(str(onnx_path))
    current = {p.key: p.value for p in model.metadata_props}
    for key, value in entries.items():
        if key in ULTRALYTICS_KEYS and key in current:
            raise ExportError(f"metadata key {key!r} belongs to ultralytics and is kept as exported")
        current[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    del model.metadata_props[:]
    for key, value in current.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(onnx_path))


def export_onnx(
    weights: Path,
    out: Path,
    imgsz: int,
    dynamic: bool = False,
    half: bool = False,
    metadata: Mapping[str, object] | None = None,
    batch: int = 1,
) -> Path:
    """Export ultralytics weights to ONNX at `out`, adding SiteSentry metadata to ultralytics' own.

    `metadata` may carry model_name, model_version, training_data_hash and metrics (a dict, stored as
    JSON); sitesentry_class_set is always set. With `half`, weights are FP16 and inputs/outputs stay FP32.
    """
    weights, out = Path(weights), Path(out)
    if not weights.is_file():
        raise ExportError(f"{weights}: no such weights file")
    prepare_offline()
    from ultralytics import YOLO  # late: heavy, and it must see the offline environment first

    model = YOLO(str(weights))
    check_class_names(model.names, str(weights))
    with tempfile.TemporaryDirectory(prefix="sitesentry-export-") as tmp:
        # ultralytics writes beside its weights; a copy keeps the run folder's files untouched.
        staged = Path(tmp) / "model.pt"
        shutil.copyfile(weights, staged)
        exported = YOLO(str(staged)).export(
            format="onnx",
            imgsz=imgsz,
            dynamic=dynamic,
            batch=batch,
            quantize=16 if half else None,
            simplify=True,
            opset=ONNX_OPSET,
            device="cpu",
        )
        if not exported or not Path(exported).is_file():
            raise ExportError(f"{weights}: ultralytics did not produce an ONNX file")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(exported), out)
    entries: dict[str, object] = {
        "model_name": weights.stem,
        "model_version": "0",
        "training_data_hash": "unknown",
        "metrics": {},
    }
    entries.update(metadata or {})
    entries["sitesentry_class_set"] = CLASS_SET_VERSION
    write_metadata(out, entries)
    check_class_names(_parse_names(read_metadata(out)), str(out))
    _check_output_shape(out)
    log.info("exported %s -> %s (imgsz %d, %s batch, %s)", weights, out, imgsz,
             "dynamic" if dynamic else f"fixed {batch}", "fp16" if half else "fp32")  # fmt: skip
    return out


def _check_output_shape(onnx_path: Path) -> None:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    dims = [d.dim_value or d.dim_param for d in graph.output[0].type.tensor_type.shape.dim]
    if len(dims) != 3 or dims[1] != 4 + len(CLASS_NAMES):
        raise ExportError(
            f"{onnx_path}: output shape {dims} does not fit {len(CLASS_NAMES)} classes "
            f"(expected [batch, {4 + len(CLASS_NAMES)}, anchors]); the model head was built for other classes"
        )


def _parse_names(meta: Mapping[str, str]) -> dict[int, str]:
    import ast

    names = ast.literal_eval(meta.get("names", "{}"))
    if not isinstance(names, dict):
        raise ExportError(f"exported `names` metadata is not a mapping: {meta.get('names')!r}")
    return names


def write_calibration_set(dataset: Dataset, out_dir: Path, count: int = 300, seed: int = 0) -> Path:
    """Copy `count` images spread across source groups into out_dir plus a list file; return the list.

    Training images are preferred (the evaluation splits stay unseen); one image per group is taken
    before any group gets a second, so a long video does not crowd out the photos.
    """
    if count <= 0:
        raise ValueError(f"calibration image count must be positive, got {count}")
    pool = [img for img in dataset.images if img.split in (None, "train")] or list(dataset.images)
    if not pool:
        raise ValueError("the dataset has no images to calibrate with")
    groups: dict[str, list[LabelledImage]] = defaultdict(list)
    for img in pool:
        groups[img.group].append(img)
    rng = random.Random(seed)
    order = sorted(groups)
    rng.shuffle(order)
    for name in order:
        rng.shuffle(groups[name])
    chosen: list[LabelledImage] = []
    depth = 0
    while len(chosen) < count and any(len(groups[g]) > depth for g in order):
        chosen.extend(groups[g][depth] for g in order if len(groups[g]) > depth)
        depth += 1
    chosen = chosen[:count]
    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, img in enumerate(chosen):
        target = images_dir / f"{i:05d}_{img.path.name}"
        shutil.copyfile(img.path, target)
        lines.append(str(target.relative_to(out_dir)))
    listing = out_dir / "calibration.txt"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    log.info("wrote %d calibration images from %d groups to %s", len(chosen), len(groups), out_dir)
    return listing


def int8_path(onnx_path: Path) -> Path:
    """Where the INT8 OpenVINO IR of an ONNX model goes: beside it, `<stem>-int8.xml` (+ `.bin`)."""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(f"{onnx_path.stem}-int8.xml")


def read_calibration_images(listing: Path) -> list[Path]:
    """The image paths a calibration listing (`write_calibration_set`) names, relative to its folder."""
    listing = Path(listing)
    if not listing.is_file():
        raise ExportError(f"{listing}: no calibration listing (`sitesentry export --calibration` writes one)")
    paths = [listing.parent / line.strip() for line in listing.read_text(encoding="utf-8").splitlines()]
    paths = [p for p in paths if p.is_file()]
    if not paths:
        raise ExportError(f"{listing}: lists no readable images")
    return paths


def quantize_int8(
    onnx_path: Path,
    listing: Path,
    out: Path | None = None,
    subset_size: int = 300,
    keep_tail_fp32: bool = True,
) -> Path:
    """Quantize an exported ONNX detector to an INT8 OpenVINO IR with NNCF post-training quantization.

    Calibration images are letterboxed exactly as the edge runtime does; the metadata (class names, input
    size, SiteSentry keys) travels in the IR's rt_info, where the OpenVINO backend reads it.
    """
    import cv2
    import numpy as np

    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise ExportError("--int8 needs the openvino extra (pip install -e '.[openvino]')") from None
    from edge.detections.boxes import letterbox, to_blob

    onnx_path = Path(onnx_path)
    out = Path(out) if out is not None else int8_path(onnx_path)
    images = read_calibration_images(listing)
    meta = read_metadata(onnx_path)
    imgsz = _parse_imgsz(meta)
    core = ov.Core()
    model = core.read_model(str(onnx_path))

    def transform(path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ExportError(f"{path}: calibration image is not readable")
        return to_blob([letterbox(image, imgsz)[0]])

    ignored = None
    if keep_tail_fp32:
        patterns, types = decode_tail_scope([op.get_friendly_name() for op in model.get_ops()])
        ignored = nncf.IgnoredScope(patterns=patterns, types=types, validate=False)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(images, transform),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=min(subset_size, len(images)),
        ignored_scope=ignored,
    )
    for key, value in meta.items():  # nncf keeps rt_info today; set it again so the IR never loses it
        quantized.set_rt_info(value, ["framework", key])
    quantized.set_rt_info("int8 (nncf ptq, box-decoding tail fp32)" if keep_tail_fp32 else "int8 (nncf ptq)",
                          ["framework", "sitesentry_precision"])  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    log.info("quantized %s -> %s with %d calibration images", onnx_path, out, min(subset_size, len(images)))
    return out


def _parse_imgsz(meta: Mapping[str, str]) -> tuple[int, int]:
    import ast

    imgsz = ast.literal_eval(meta.get("imgsz", "None"))
    if not isinstance(imgsz, list | tuple) or len(imgsz) != 2:
        raise ExportError(f"exported `imgsz` metadata is not [h, w]: {meta.get('imgsz')!r}")
    return int(imgsz[0]), int(imgsz[1])
