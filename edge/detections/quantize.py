"""INT8 for TensorRT by explicit quantization: Q/DQ nodes inserted into the ONNX by ONNX Runtime's static
quantization, calibrated on the training pipeline's calibration set (`sitesentry export --calibration`).

TensorRT 10 builds an int8 engine that follows the Q/DQ nodes (the implicit-calibrator path is deprecated
since 10.1 and removed in 11). Only convolutions are quantized, symmetric as TensorRT requires, weights per
channel; the YOLO head's box-decoding tail stays in float, as the OpenVINO INT8 export keeps it (one INT8
scale cannot hold pixel distances up to the input size next to 0..1 class scores). Runs on the CPU with
ONNX Runtime, so the quantized ONNX is also what the tests evaluate without a GPU.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.detections.base import ModelError

log = logging.getLogger(__name__)

#: Bumped when the quantization recipe below changes: cached Q/DQ models and int8 engines rebuild.
QDQ_RECIPE = 1


def decode_tail_scope(node_names: list[str]) -> tuple[list[str], list[str]]:
    """Name patterns and op types of the YOLO head's box-decoding tail (DFL, anchors, sigmoid), kept float.

    The tail turns distances into pixels (values up to the input size) next to class scores in 0..1; one
    INT8 scale for both costs box accuracy, as ultralytics' own OpenVINO INT8 export also avoids.
    """
    heads = [int(m.group(1)) for n in node_names if (m := re.match(r"/model\.(\d+)/", n))]
    if not heads:
        return [], ["Sigmoid"]
    head = max(heads)
    # Everything in the head except its cv2/cv3 convolution branches: DFL, anchor grid, decode arithmetic.
    return [rf"/model\.{head}/(?!cv\d).*"], ["Sigmoid"]


def calibration_images(folder: Path) -> list[Path]:
    """The images a calibration set lists (`folder/calibration.txt`, or that listing file itself)."""
    listing = Path(folder)
    if listing.is_dir():
        listing = listing / "calibration.txt"
    if not listing.is_file():
        raise ModelError(
            f"{listing}: no calibration listing (`sitesentry export --calibration DIR` writes one)"
        )
    lines = [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    paths = [listing.parent / line for line in lines]
    missing = [p for p in paths if not p.is_file()]
    if missing or not paths:
        raise ModelError(
            f"{listing}: lists {len(paths)} images, {len(missing)} missing (first: {missing[:1]})"
        )
    return paths


def qdq_path(cache_dir: Path, onnx_path: Path, onnx_sha256: str, calibration_sha256: str) -> Path:
    """Where the Q/DQ model of an ONNX file and calibration set is cached."""
    return Path(cache_dir) / (
        f"{Path(onnx_path).stem}-qdq{QDQ_RECIPE}-{onnx_sha256[:12]}-{calibration_sha256[:12]}.onnx"
    )


def quantize_qdq(
    onnx_path: Path, images: list[Path], out: Path, imgsz: tuple[int, int] | None = None
) -> Path:
    """Write a Q/DQ (explicitly quantized) copy of `onnx_path` to `out`, calibrated on `images`.

    One function on purpose: the calibration reader closes over the input name and size read from the
    model, and the temporary file replaces `out` only once the model's metadata is copied into it.
    """
    import cv2
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edge.detections.boxes import letterbox, to_blob

    model = onnx.load(str(onnx_path), load_external_data=False)
    if imgsz is None:
        import ast

        meta = {p.key: p.value for p in model.metadata_props}
        h, w = ast.literal_eval(meta.get("imgsz", "[640, 640]"))
        imgsz = (int(h), int(w))
    size: tuple[int, int] = imgsz
    input_name = next(
        i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}
    )
    patterns, _ = decode_tail_scope([n.name for n in model.graph.node])
    tail = [n.name for n in model.graph.node if any(re.match(p, n.name) for p in patterns)]

    class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime's base is untyped
        def __init__(self) -> None:
            self._iter: Iterator[Path] = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            path = next(self._iter, None)
            if path is None:
                return None
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ModelError(f"{path}: calibration image is not readable")
            return {input_name: to_blob([letterbox(image, size)[0]])}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".onnx", dir=out.parent)
    os.close(fd)
    try:
        quantize_static(
            str(onnx_path),
            tmp,
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=tail,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        quantized = onnx.load(tmp)
        del quantized.metadata_props[:]  # the edge reads class names and input size from the metadata
        quantized.metadata_props.extend(model.metadata_props)
        quantized.metadata_props.add(
            key="sitesentry_precision", value="int8 (qdq, conv only, decode tail float)"
        )
        onnx.save(quantized, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    log.info("quantized %s -> %s (Q/DQ, %d calibration images)", onnx_path, out, len(images))
    return out
