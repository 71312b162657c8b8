"""Detection backends behind one small interface, chosen by the `type` key of the model config."""

from __future__ import annotations

import logging
from collections.abc import Callable

from edge.config.models import ModelConfig
from edge.detections.base import Detector, ModelError, ModelInfo
from edge.detections.select import HostFacts, choose_backend, probe_host
from edge.labels import CLASS_NAMES

log = logging.getLogger(__name__)


def _onnxrt(config: ModelConfig) -> Detector:
    from edge.detections.onnxrt import OnnxDetector

    return OnnxDetector(
        config.path,
        providers=config.providers,
        confidence=config.confidence,
        default_confidence=config.default_confidence,
        iou=config.iou,
        threads=config.threads,
        expected_names=CLASS_NAMES,
        engine_cache=config.engine_cache,
        trt_fp16=config.engine_precision == "fp16",
    )


def _openvino(config: ModelConfig) -> Detector:
    from edge.detections.openvino_backend import OpenVinoDetector

    return OpenVinoDetector(
        config.path,
        device=config.device,
        precision=config.precision,
        confidence=config.confidence,
        default_confidence=config.default_confidence,
        iou=config.iou,
        threads=config.threads,
        expected_names=CLASS_NAMES,
    )


def _tensorrt(config: ModelConfig) -> Detector:
    from edge.detections.tensorrt_backend import TensorRtDetector

    return TensorRtDetector(
        config.path,
        precision=config.engine_precision,
        max_batch=config.max_batch,
        cache_dir=config.engine_cache,
        calibration=config.calibration,
        confidence=config.confidence,
        default_confidence=config.default_confidence,
        iou=config.iou,
        expected_names=CLASS_NAMES,
    )


#: Backend name -> factory. Each imports its vendor library only when chosen, so a missing one disables
#: only that backend. tensorrt is the native TensorRT backend; onnxrt can also reach TensorRT and CUDA
#: through ONNX Runtime's execution providers (the second path, onnxruntime-gpu).
BACKENDS: dict[str, Callable[[ModelConfig], Detector]] = {
    "onnxrt": _onnxrt,
    "openvino": _openvino,
    "tensorrt": _tensorrt,
}


def create_detector(config: ModelConfig, facts: HostFacts | None = None) -> Detector:
    """Build the configured backend; raises ModelError naming the file when the model is unusable."""
    name, reason = choose_backend(config, facts)
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ModelError(f"model.type {name!r}: unknown backend; known: {', '.join(BACKENDS)}") from None
    log.info("detector backend %s (model.type %s: %s)", name, config.type, reason)
    if config.type == "auto" and name in ("openvino", "tensorrt") and config.path.suffix != ".xml":
        try:
            return factory(config)
        except ModelError as exc:  # a vendor build that cannot run here: ONNX Runtime still can
            log.warning("%s could not load the model (%s); falling back to ONNX Runtime", name, exc)
            return _onnxrt(config)
    return factory(config)


__all__ = [
    "BACKENDS",
    "Detector",
    "HostFacts",
    "ModelError",
    "ModelInfo",
    "choose_backend",
    "create_detector",
    "probe_host",
]
