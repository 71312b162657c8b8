"""Detection backends behind one small interface, chosen by the `type` key of the model config."""

from __future__ import annotations

from collections.abc import Callable

from edge.config.models import ModelConfig
from edge.detections.base import Detector, ModelError, ModelInfo
from edge.labels import CLASS_NAMES


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
    )


#: Backend name -> factory. TensorRT and OpenVINO backends register here; each imports its vendor
#: library only when chosen, so a missing one disables only that backend.
BACKENDS: dict[str, Callable[[ModelConfig], Detector]] = {"onnxrt": _onnxrt}


def create_detector(config: ModelConfig) -> Detector:
    """Build the configured backend; raises ModelError naming the file when the model is unusable."""
    try:
        factory = BACKENDS[config.type]
    except KeyError:
        raise ModelError(
            f"model.type {config.type!r}: unknown backend; known: {', '.join(BACKENDS)}"
        ) from None
    return factory(config)


__all__ = ["BACKENDS", "Detector", "ModelError", "ModelInfo", "create_detector"]
