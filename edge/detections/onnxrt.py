"""ONNX Runtime backend: reads an ultralytics-exported detector and runs it on the best provider present."""

from __future__ import annotations

import ast
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge.dataflow import Detections
from edge.detections.base import ModelError, ModelInfo
from edge.detections.boxes import decode, letterbox, threshold_vector, to_blob

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


def _parse_literal(value: str | None, key: str, path: Path) -> object:
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise ModelError(f"{path}: metadata {key!r} is not readable: {value[:60]!r}") from None


def choose_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """Map config provider names to ONNX Runtime's, keeping only those this build really has."""
    chosen = []
    for name in wanted:
        ort_name = PROVIDER_NAMES.get(name, name)
        if ort_name in available:
            chosen.append(ort_name)
        else:
            log.info("execution provider %s is not available in this onnxruntime build; skipped", name)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class OnnxDetector:
    """A YOLO detector exported to ONNX by ultralytics (output: batch x (4 + classes) x anchors)."""

    def __init__(
        self,
        path: Path | str,
        providers: Sequence[str] = ("cpu",),
        confidence: Mapping[str, float] | None = None,
        default_confidence: float = 0.25,
        iou: float = 0.5,
        threads: int = 0,
        expected_names: Sequence[str] | None = None,
        max_det: int = 300,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=choose_providers(providers, ort.get_available_providers())
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first_line})") from None
        self.info = self._read_info(expected_names)
        self.iou = iou
        self.max_det = max_det
        self.thresholds = threshold_vector(self.info.names, confidence, default_confidence)
        input_meta = self.session.get_inputs()[0]
        # Fewer pixels, same detections: a dynamic-shape model takes a letterboxed rectangle, not a square.
        self._dynamic_hw = not all(isinstance(d, int) for d in input_meta.shape[2:])
        self._stride = int(self.info.metadata.get("stride", 32))
        self._input_name = input_meta.name
        self._input_dtype = np.float16 if "float16" in input_meta.type else np.float32
        try:  # warm-up: the first run allocates, and proves the graph really runs on this input
            self.detect(np.full((*self.info.imgsz, 3), 114, np.uint8))
        except Exception as exc:  # onnxruntime raises its own unrelated error types
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(
                f"{self.path}: the model does not run on a {self.info.imgsz} image ({first_line})"
            ) from None
        log.info(
            "loaded %s (%s %s) on %s, input %sx%s, batch %s",
            self.path,
            self.info.name,
            self.info.version,
            ",".join(self.info.providers),
            self.info.imgsz[1],
            self.info.imgsz[0],
            self.info.batch or "dynamic",
        )

    def _read_info(self, expected_names: Sequence[str] | None) -> ModelInfo:
        meta = dict(self.session.get_modelmeta().custom_metadata_map)
        names_raw = _parse_literal(meta.get("names"), "names", self.path)
        if not isinstance(names_raw, dict) or not names_raw:
            raise ModelError(f"{self.path}: no class names in the ONNX metadata (export it with ultralytics)")
        names = tuple(str(names_raw[k]) for k in sorted(names_raw))
        if expected_names is not None and tuple(expected_names) != names:
            raise ModelError(
                f"{self.path}: model classes {list(names)} differ from the expected {list(expected_names)}"
            )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{self.path}: expected one NCHW image input, got {[i.shape for i in inputs]}")
        batch_dim, _, h, w = inputs[0].shape
        imgsz_meta = _parse_literal(meta.get("imgsz"), "imgsz", self.path)
        if isinstance(h, int) and isinstance(w, int):
            imgsz = (h, w)
        elif isinstance(imgsz_meta, list | tuple) and len(imgsz_meta) == 2:
            imgsz = (int(imgsz_meta[0]), int(imgsz_meta[1]))
        else:
            raise ModelError(
                f"{self.path}: input size unknown (no fixed input shape and no `imgsz` metadata)"
            )
        out_shape = outputs[0].shape
        if len(outputs) != 1 or len(out_shape) != 3 or out_shape[1] != 4 + len(names):
            raise ModelError(
                f"{self.path}: unexpected outputs {[o.shape for o in outputs]}; a detector exported by "
                f"ultralytics has one output of shape [batch, {4 + len(names)}, anchors]"
            )
        batch = batch_dim if isinstance(batch_dim, int) else None
        if batch is not None and batch != 1:
            raise ModelError(
                f"{self.path}: fixed batch size {batch} is not supported; "
                "export with batch 1 or a dynamic batch axis"
            )
        return ModelInfo(
            name=meta.get("model_name") or meta.get("description") or self.path.stem,
            version=meta.get("model_version") or meta.get("version", "unknown"),
            names=names,
            imgsz=imgsz,
            batch=batch,
            metadata=meta,
            providers=list(self.session.get_providers()),
        )

    def input_size(self, images: Sequence[np.ndarray]) -> tuple[int, int]:
        """Pick the input (h, w): the model's fixed size, or for a dynamic-shape model the smallest
        stride-aligned rectangle that holds every image scaled to fit imgsz (4:3 video: 416x320, not 416x416).
        """
        if not self._dynamic_hw:
            return self.info.imgsz
        h_max, w_max = self.info.imgsz
        out_h = out_w = 0
        for image in images:
            h0, w0 = image.shape[:2]
            gain = min(h_max / h0, w_max / w0)
            out_h = max(out_h, math.ceil(round(h0 * gain) / self._stride) * self._stride)
            out_w = max(out_w, math.ceil(round(w0 * gain) / self._stride) * self._stride)
        return min(out_h, h_max), min(out_w, w_max)

    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list]:
        """Letterbox and stack images into the model's input tensor."""
        size = self.input_size(images)
        boxed = [letterbox(image, size) for image in images]
        return to_blob([b[0] for b in boxed], self._input_dtype), [b[1] for b in boxed]

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the model on a prepared batch, splitting it when the batch axis is fixed."""
        if self.info.batch is None or self.info.batch == blob.shape[0]:
            return self.session.run(None, {self._input_name: blob})[0]
        return np.concatenate(
            [self.session.run(None, {self._input_name: blob[i : i + 1]})[0] for i in range(blob.shape[0])]
        )

    def postprocess(self, output: np.ndarray, boxes: list) -> list[Detections]:
        """Decode and NMS each image's output back into its own pixel coordinates."""
        output = output.astype(np.float32, copy=False)
        return [
            decode(output[i], box, self.info.names, self.thresholds, self.iou, self.max_det)
            for i, box in enumerate(boxes)
        ]

    def detect(self, image: np.ndarray) -> Detections:
        """Detect objects in one BGR image."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects in several BGR images in one inference when the model has a dynamic batch axis."""
        if not images:
            return []
        blob, boxes = self.preprocess(images)
        return self.postprocess(self.infer(blob), boxes)
