"""What every backend of an ultralytics YOLO detector shares: reading its metadata, and the image-side steps
(letterbox in, decode + NMS out) around a backend-specific `infer`."""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge.dataflow import Detections
from edge.detections.base import ModelError, ModelInfo
from edge.detections.boxes import Letterbox, decode, letterbox, threshold_vector, to_blob
from edge.detections.resolution import fit_input

#: An input or output shape as a backend reports it: ints where fixed, anything else (None, a name) where not.
Shape = Sequence[object]


def _parse_literal(value: str | None, key: str, path: Path) -> object:
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ModelError(f"{path}: metadata {key!r} is not readable: {value[:60]!r}") from None


def read_model_info(
    path: Path,
    meta: Mapping[str, str],
    input_shapes: Sequence[Shape],
    output_shapes: Sequence[Shape],
    expected_names: Sequence[str] | None,
    providers: Sequence[str],
) -> ModelInfo:
    """Check an ultralytics detector's metadata and shapes and describe it; ModelError names the problem."""
    names_raw = _parse_literal(meta.get("names"), "names", path)
    if not isinstance(names_raw, dict) or not names_raw:
        raise ModelError(f"{path}: no class names in the ONNX metadata (export it with ultralytics)")
    names = tuple(str(names_raw[k]) for k in sorted(names_raw))
    if expected_names is not None and tuple(expected_names) != names:
        raise ModelError(
            f"{path}: model classes {list(names)} differ from the expected {list(expected_names)}"
        )
    if len(input_shapes) != 1 or len(input_shapes[0]) != 4:
        raise ModelError(f"{path}: expected one NCHW image input, got {[list(s) for s in input_shapes]}")
    batch_dim, _, h, w = input_shapes[0]
    imgsz_meta = _parse_literal(meta.get("imgsz"), "imgsz", path)
    if isinstance(h, int) and isinstance(w, int):
        imgsz = (h, w)
    elif isinstance(imgsz_meta, list | tuple) and len(imgsz_meta) == 2:
        imgsz = (int(imgsz_meta[0]), int(imgsz_meta[1]))
    else:
        raise ModelError(f"{path}: input size unknown (no fixed input shape and no `imgsz` metadata)")
    if len(output_shapes) != 1 or len(output_shapes[0]) != 3 or output_shapes[0][1] != 4 + len(names):
        raise ModelError(
            f"{path}: unexpected outputs {[list(s) for s in output_shapes]}; a detector exported by "
            f"ultralytics has one output of shape [batch, {4 + len(names)}, anchors]"
        )
    batch = batch_dim if isinstance(batch_dim, int) else None
    if batch is not None and batch != 1:
        raise ModelError(
            f"{path}: fixed batch size {batch} is not supported; export with batch 1 or a dynamic batch axis"
        )
    return ModelInfo(
        name=meta.get("model_name") or meta.get("description") or path.stem,
        version=meta.get("model_version") or meta.get("version", "unknown"),
        names=names,
        imgsz=imgsz,
        batch=batch,
        metadata=dict(meta),
        providers=list(providers),
    )


class YoloDetector:
    """Letterbox, decode and NMS for a YOLO model; a backend sets `info` and the input, and adds `infer`."""

    info: ModelInfo

    def _setup_processing(
        self,
        info: ModelInfo,
        confidence: Mapping[str, float] | None,
        default_confidence: float,
        iou: float,
        max_det: int,
        dynamic_hw: bool,
        input_dtype: type,
    ) -> None:
        self.info = info
        self.iou = iou
        self.max_det = max_det
        self.thresholds = threshold_vector(info.names, confidence, default_confidence)
        # Fewer pixels, same detections: a dynamic-shape model takes a letterboxed rectangle, not a square.
        self._dynamic_hw = dynamic_hw
        self._stride = int(info.metadata.get("stride", 32))
        self._input_dtype = input_dtype

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the model on a prepared batch (each backend implements it)."""
        raise NotImplementedError

    @property
    def dynamic_input(self) -> bool:
        """True when the model takes any stride-aligned input size (so a camera may ask for a larger one)."""
        return self._dynamic_hw

    @property
    def stride(self) -> int:
        """The model's largest stride: every input side is a multiple of it."""
        return self._stride

    def input_size(self, images: Sequence[np.ndarray], long_side: int | None = None) -> tuple[int, int]:
        """Pick the input (h, w): the model's fixed size, or for a dynamic-shape model the smallest
        stride-aligned rectangle that holds every image scaled to fit imgsz (4:3 video: 416x320, not 416x416),
        or to fit a long_side x long_side square when one is given (a camera's `detect.input`).
        """
        if not self._dynamic_hw:
            return self.info.imgsz
        if long_side is not None:
            sizes = [fit_input(im.shape[1], im.shape[0], long_side, self._stride) for im in images]
            return max(h for h, _ in sizes), max(w for _, w in sizes)
        h_max, w_max = self.info.imgsz
        out_h = out_w = 0
        for image in images:
            h0, w0 = image.shape[:2]
            gain = min(h_max / h0, w_max / w0)
            out_h = max(out_h, math.ceil(round(h0 * gain) / self._stride) * self._stride)
            out_w = max(out_w, math.ceil(round(w0 * gain) / self._stride) * self._stride)
        return min(out_h, h_max), min(out_w, w_max)

    def preprocess(
        self, images: Sequence[np.ndarray], long_side: int | None = None
    ) -> tuple[np.ndarray, list[Letterbox]]:
        """Letterbox and stack images into the model's input tensor (sized by input_size)."""
        size = self.input_size(images, long_side)
        boxed = [letterbox(image, size) for image in images]
        return to_blob([b[0] for b in boxed], self._input_dtype), [b[1] for b in boxed]

    def postprocess(self, output: np.ndarray, boxes: list[Letterbox]) -> list[Detections]:
        """Decode and NMS each image's output back into its own pixel coordinates."""
        output = output.astype(np.float32, copy=False)
        return [
            decode(output[i], box, self.info.names, self.thresholds, self.iou, self.max_det)
            for i, box in enumerate(boxes)
        ]

    def detect(self, image: np.ndarray) -> Detections:
        """Detect objects in one BGR image."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray], long_side: int | None = None) -> list[Detections]:
        """Detect objects in several BGR images in one inference when the model has a dynamic batch axis;
        long_side: the input's long side for a dynamic-shape model (default: the model's own size)."""
        if not images:
            return []
        blob, boxes = self.preprocess(images, long_side)
        return self.postprocess(self.infer(blob), boxes)
