"""ONNX Runtime backend: reads an ultralytics-exported detector and runs it on the best provider present."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge.detections.base import ModelError
from edge.detections.engine_cache import default_cache_dir
from edge.detections.yolo import YoloDetector, read_model_info

log = logging.getLogger(__name__)

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


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


def provider_options(providers: Sequence[str], engine_cache: Path, trt_fp16: bool) -> list[dict[str, str]]:
    """ONNX Runtime options for each chosen provider: TensorRT keeps its engines and timing cache in
    `engine_cache` (else it rebuilds them on every start, minutes on a Jetson) and builds FP16 if asked."""
    options: list[dict[str, str]] = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            options.append(
                {
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(engine_cache),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(engine_cache),
                    "trt_fp16_enable": str(trt_fp16),
                }
            )
        else:
            options.append({})
    return options


class OnnxDetector(YoloDetector):
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
        engine_cache: Path | None = None,
        trt_fp16: bool = True,
    ) -> None:
        """Open an ONNX Runtime session, read the model's metadata and run a warm-up, or raise ModelError.

        One function on purpose: the steps run once, in order, each turning its failure into a ModelError
        naming the file; most of the length is the wrapped calls and the log line.
        """
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        chosen = choose_providers(providers, ort.get_available_providers())
        cache = Path(engine_cache) if engine_cache is not None else default_cache_dir()
        if "TensorrtExecutionProvider" in chosen:
            cache = cache / "onnxrt"
            cache.mkdir(parents=True, exist_ok=True)
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=chosen,
                provider_options=provider_options(chosen, cache, trt_fp16),
            )  # fmt: skip
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path}: not a loadable ONNX model ({first_line})") from None
        got = self.session.get_providers()
        lost = [name for name in chosen if name not in got]
        if lost:  # e.g. CUDA present in the wheel but its libraries (cuDNN, cuBLAS) missing on the box
            log.warning("ONNX Runtime did not start %s; running on %s", ",".join(lost), ",".join(got))
        input_meta = self.session.get_inputs()[0]
        info = read_model_info(
            self.path,
            dict(self.session.get_modelmeta().custom_metadata_map),
            [i.shape for i in self.session.get_inputs()],
            [o.shape for o in self.session.get_outputs()],
            expected_names,
            self.session.get_providers(),
        )
        self._setup_processing(
            info,
            confidence,
            default_confidence,
            iou,
            max_det,
            dynamic_hw=not all(isinstance(d, int) for d in input_meta.shape[2:]),
            input_dtype=np.float16 if "float16" in input_meta.type else np.float32,
        )
        self._input_name = input_meta.name
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

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the model on a prepared batch, splitting it when the batch axis is fixed."""
        if self.info.batch is None or self.info.batch == blob.shape[0]:
            return self.session.run(None, {self._input_name: blob})[0]
        return np.concatenate(
            [self.session.run(None, {self._input_name: blob[i : i + 1]})[0] for i in range(blob.shape[0])]
        )
