"""Detection backends behind one small interface, chosen by the `type` key of the model config."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path

from edge.config.models import ModelConfig
from edge.detections.base import Detector, ModelError, ModelInfo
from edge.labels import CLASS_NAMES

log = logging.getLogger(__name__)

#: Device files that show an NVIDIA GPU (desktop driver, Jetson): ONNX Runtime GPU wheels list their
#: providers even on a box without one, so the provider list alone does not prove a GPU.
NVIDIA_DEVICES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu")
GPU_PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}


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


#: Backend name -> factory. Each imports its vendor library only when chosen, so a missing one disables
#: only that backend. (TensorRT runs through ONNX Runtime's TensorRT provider: type onnxrt.)
BACKENDS: dict[str, Callable[[ModelConfig], Detector]] = {"onnxrt": _onnxrt, "openvino": _openvino}


def _nvidia_gpu_provider(config: ModelConfig) -> str | None:
    wanted = [GPU_PROVIDERS[p] for p in config.providers if p in GPU_PROVIDERS]
    if not wanted or not any(Path(d).exists() for d in NVIDIA_DEVICES):
        return None
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    return next((p for p in wanted if p in available), None)


def choose_backend(config: ModelConfig) -> tuple[str, str]:
    """Resolve `model.type` to a backend name and the reason, by the rule documented on ModelConfig.type."""
    if config.type != "auto":
        return config.type, "set by model.type"
    if config.path.suffix == ".xml":
        return "openvino", f"{config.path.name} is an OpenVINO IR"
    gpu = _nvidia_gpu_provider(config)
    if gpu is not None:
        return "onnxrt", f"an NVIDIA GPU and ONNX Runtime's {gpu} are present"
    if importlib.util.find_spec("openvino") is not None:
        return "openvino", "no NVIDIA GPU; the openvino package is installed (faster on CPU)"
    return "onnxrt", "no NVIDIA GPU and no openvino package (pip install -e '.[openvino]' to use it on CPU)"


def create_detector(config: ModelConfig) -> Detector:
    """Build the configured backend; raises ModelError naming the file when the model is unusable."""
    name, reason = choose_backend(config)
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ModelError(f"model.type {name!r}: unknown backend; known: {', '.join(BACKENDS)}") from None
    log.info("detector backend %s (model.type %s: %s)", name, config.type, reason)
    if config.type == "auto" and name == "openvino" and config.path.suffix != ".xml":
        try:
            return factory(config)
        except ModelError as exc:  # an openvino build that cannot run here: ONNX Runtime still can
            log.warning("OpenVINO could not load the model (%s); falling back to ONNX Runtime", exc)
            return _onnxrt(config)
    return factory(config)


__all__ = ["BACKENDS", "Detector", "ModelError", "ModelInfo", "choose_backend", "create_detector"]
