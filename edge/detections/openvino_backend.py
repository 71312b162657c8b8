"""OpenVINO backend: runs an ultralytics ONNX file or an OpenVINO IR (.xml, e.g. the INT8 one `sitesentry
export --int8` writes) on the CPU, with the same letterbox/decode/NMS as every backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.detections.base import ModelError
from edge.detections.yolo import YoloDetector, read_model_info

log = logging.getLogger(__name__)

#: rt_info section where OpenVINO keeps an ONNX file's metadata_props (an IR saved from it keeps them too).
METADATA_SECTION = "framework"


def model_metadata(model: Any) -> dict[str, str]:
    """An OpenVINO model's ultralytics/SiteSentry metadata as strings (empty when it has none)."""
    rt_info = model.get_rt_info()
    if METADATA_SECTION not in rt_info:
        return {}
    return {key: model.get_rt_info([METADATA_SECTION, key]).astype(str) for key in rt_info[METADATA_SECTION]}


def _dims(partial_shape: Any) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in partial_shape]


class OpenVinoDetector(YoloDetector):
    """A YOLO detector run by OpenVINO; one camera gets a latency-tuned request, a batch of cameras runs as
    parallel asynchronous requests (one per image, one CPU stream each) so every core stays busy."""

    def __init__(
        self,
        path: Path | str,
        device: str = "CPU",
        confidence: Mapping[str, float] | None = None,
        default_confidence: float = 0.25,
        iou: float = 0.5,
        threads: int = 0,
        expected_names: Sequence[str] | None = None,
        max_det: int = 300,
        precision: str = "f32",
    ) -> None:
        """Read the model and its metadata, compile it on a warm-up image, or raise ModelError.

        One function on purpose: the steps run once, in order, each turning its failure into a ModelError
        naming the file; most of the length is the wrapped calls and the log line.
        """
        try:
            import openvino as ov
        except ImportError:
            raise ModelError(
                "model.type openvino: the `openvino` package is not installed (pip install -e '.[openvino]')"
            ) from None
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        self._ov = ov
        self._core = ov.Core()
        self.device = device
        try:
            self._model = self._core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises its own RuntimeError subclasses for unreadable files
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"{self.path}: not a model OpenVINO can read ({first_line})") from None
        input_shape = _dims(self._model.inputs[0].get_partial_shape())
        info = read_model_info(
            self.path,
            model_metadata(self._model),
            [_dims(i.get_partial_shape()) for i in self._model.inputs],
            [_dims(o.get_partial_shape()) for o in self._model.outputs],
            expected_names,
            [f"OpenVINO:{device}"],
        )
        self._setup_processing(
            info,
            confidence,
            default_confidence,
            iou,
            max_det,
            dynamic_hw=not all(isinstance(d, int) for d in input_shape[2:]),
            input_dtype=np.float32,  # OpenVINO converts inside the graph, also for FP16/INT8 IRs
        )
        self._threads = threads
        # OpenVINO's CPU plugin computes in bf16 by default where the CPU has it (AVX512-BF16, AMX), which
        # moves scores by up to 0.08 on this model: an FP32 model runs as FP32 unless bf16 is asked for.
        self._precision = precision
        # OpenVINO's CPU plugin runs a static shape about twice as fast as a dynamic one, and a camera's
        # input size never changes: one compiled model per (hint, input shape), compiled on first use.
        self._compiled: dict[tuple[str, tuple[int, ...]], Any] = {}
        self._requests: dict[tuple[int, ...], Any] = {}
        self._queues: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()  # infer may be called from the app loop and from a bench thread
        try:  # warm-up: compiles the model for its own input size and proves the graph runs
            self.detect(np.full((*self.info.imgsz, 3), 114, np.uint8))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses without a common base
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(
                f"{self.path}: the model does not run on a {self.info.imgsz} image ({first_line})"
            ) from None
        log.info(
            "loaded %s (%s %s) with OpenVINO %s on %s (%s), input %sx%s",
            self.path,
            self.info.name,
            self.info.version,
            ov.get_version(),
            device,
            precision,
            self.info.imgsz[1],
            self.info.imgsz[0],
        )

    def _compile(self, hint: str, shape: tuple[int, ...]) -> Any:
        key = (hint, shape)
        if key not in self._compiled:
            model = self._model.clone()
            if self.info.batch is None or self._dynamic_hw:
                model.reshape({model.inputs[0].get_any_name(): list(shape)})
            config: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": self._precision}
            if self._threads:
                config["INFERENCE_NUM_THREADS"] = self._threads
            self._compiled[key] = self._core.compile_model(model, self.device, config)
            log.debug("compiled %s for input %s with hint %s", self.path.name, shape, hint)
        return self._compiled[key]

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the model: one image as one latency request, several as parallel asynchronous requests."""
        single = (1, *blob.shape[1:])
        with self._lock:
            if blob.shape[0] == 1:
                request = self._requests.get(single)
                if request is None:
                    request = self._requests[single] = self._compile("LATENCY", single).create_infer_request()
                request.infer({0: blob})
                return request.get_output_tensor(0).data.copy()
            queue = self._queues.get(single)
            if queue is None:
                compiled = self._compile("THROUGHPUT", single)
                queue = self._queues[single] = self._ov.AsyncInferQueue(
                    compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
                )
            outputs: list[np.ndarray | None] = [None] * blob.shape[0]

            def done(request: Any, index: int) -> None:
                outputs[index] = request.get_output_tensor(0).data.copy()

            queue.set_callback(done)
            for i in range(blob.shape[0]):
                queue.start_async({0: blob[i : i + 1]}, i)
            queue.wait_all()
            return np.concatenate(outputs)  # type: ignore[arg-type]  # every slot is filled by wait_all
