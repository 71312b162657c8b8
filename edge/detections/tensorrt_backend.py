"""Native TensorRT backend (`model.type: tensorrt`): builds an engine from the shipped ONNX on first start,
caches it (edge/detections/engine_cache.py), and runs it with cuda-python buffers and one CUDA stream.

`tensorrt` (10.x) and cuda-python are imported only here, when this backend is chosen. Letterbox, decode
and NMS are YoloDetector's, shared with every backend; this module adds the engine and `infer`.

Precision: fp16 and fp32 set the builder flag on the ONNX network. int8 uses TensorRT's explicit
quantization: the ONNX gets Q/DQ nodes first (edge/detections/quantize.py, ONNX Runtime's static
quantization calibrated on the training pipeline's calibration set), and TensorRT follows them. The implicit
path (IInt8EntropyCalibrator2) is deprecated since TensorRT 10.1 and removed in 11, so it is not used.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.detections.base import ModelError
from edge.detections.engine_cache import (
    EngineKey,
    InputProfile,
    StaleEngine,
    check_engine,
    default_cache_dir,
    engine_path,
    sha256_file,
    sha256_files,
    write_engine,
)
from edge.detections.resolution import AUTO_MAX_INPUT
from edge.detections.yolo import YoloDetector, read_model_info

log = logging.getLogger(__name__)

#: Builder workspace: enough for every tactic this model size uses, small enough for an 8 GB Orin.
WORKSPACE_BYTES = 1 << 30
NO_TENSORRT = (
    "model.type tensorrt: the `tensorrt` Python package is not usable ({problem}); pip install -e "
    "'.[tensorrt]' (x86), or on Jetson the JetPack package python3-libnvinfer"
)
NO_CUDA_PYTHON = (
    "model.type tensorrt: cuda-python is not usable ({problem}); pip install 'cuda-python>=12.3,<13' "
    "(the CUDA major version of TensorRT)"
)


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine is built for and runs on."""

    index: int
    name: str
    uuid: str
    compute_capability: str
    total_mib: int


class CudaError(ModelError):
    """A CUDA runtime call failed; the message names the call and CUDA's error."""


def _import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # a wheel without libnvinfer raises ImportError or OSError
        problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelError(NO_TENSORRT.format(problem=problem)) from None
    major = int(str(trt.__version__).split(".")[0])
    if major != 10:
        raise ModelError(
            f"model.type tensorrt: TensorRT {trt.__version__} found; SiteSentry builds with the 10.x API "
            "(11 removed the FP16/INT8 builder flags): pip install 'tensorrt-cu12>=10.3,<11'"
        )
    return trt


def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6
        except (ImportError, OSError) as exc:
            problem = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(NO_CUDA_PYTHON.format(problem=problem)) from None
    return cudart


def _check(cudart: Any, result: Any, call: str) -> Any:
    """Unpack a cuda-python result tuple (error, values...), raising CudaError on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = cudart.cudaGetErrorName(err)[1]
        name = name.decode() if isinstance(name, bytes) else str(name)
        if call.startswith("cudaMalloc") and "MemoryAllocation" in name:
            raise CudaError(f"out of GPU memory: {call} failed ({name})")
        raise CudaError(f"CUDA {call} failed: {name}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(cudart: Any, index: int = 0) -> GpuInfo:
    """Describe CUDA device `index`; ModelError with one line when there is no usable NVIDIA GPU."""
    try:
        count = _check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    except CudaError as exc:
        raise ModelError(
            f"model.type tensorrt: no usable NVIDIA GPU ({exc}; is the driver loaded?)"
        ) from None
    if count <= index:
        raise ModelError(f"model.type tensorrt: no NVIDIA GPU {index} (CUDA sees {count})")
    props = _check(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    name = name.split("\0")[0]
    hexid = bytes(b & 0xFF for b in bytes(props.uuid.bytes)).hex()
    uuid = f"GPU-{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-{hexid[20:]}"
    return GpuInfo(
        index=index,
        name=name.strip(),
        uuid=uuid,
        compute_capability=f"{props.major}.{props.minor}",
        total_mib=int(props.totalGlobalMem) >> 20,
    )


def onnx_description(path: Path) -> tuple[dict[str, str], list[list[object]], list[list[object]]]:
    """An ONNX file's metadata and its input/output shapes (ints where fixed, names where dynamic)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not ONNX
        raise ModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None

    def shape(value: Any) -> list[object]:
        return [
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
            for d in value.type.tensor_type.shape.dim
        ]

    inputs = {i.name for i in model.graph.initializer}
    return (
        {p.key: p.value for p in model.metadata_props},
        [shape(i) for i in model.graph.input if i.name not in inputs],
        [shape(o) for o in model.graph.output],
    )


def input_profile(
    imgsz: tuple[int, int], dynamic_batch: bool, dynamic_hw: bool, max_batch: int, stride: int
) -> InputProfile:
    """The optimisation profile: batch 1..max_batch (opt = max_batch, the multi-camera case) and, for a
    dynamic-shape model, any stride-aligned input up to the largest a camera's `detect.input: auto` picks
    (AUTO_MAX_INPUT square; opt = imgsz, the size the model was trained at)."""
    batch = max_batch if dynamic_batch else 1
    if not dynamic_hw:
        return InputProfile(1, batch, batch, imgsz, imgsz, imgsz)
    top = max(AUTO_MAX_INPUT, *imgsz)
    return InputProfile(1, batch, batch, (stride, stride), imgsz, (top, top))


class _Logger:
    """Collects TensorRT's errors so a failed build or load can say why in one line."""

    def __init__(self, trt: Any) -> None:
        outer = self

        class Logger(trt.ILogger):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    outer.errors.append(msg)
                    log.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.Severity.WARNING:
                    log.warning("TensorRT: %s", msg)
                else:
                    log.debug("TensorRT: %s", msg)

        self.errors: list[str] = []
        self.trt_logger = Logger()

    def last(self) -> str:
        """The last error TensorRT logged (one line), or a placeholder."""
        return self.errors[-1].splitlines()[0][:300] if self.errors else "no error logged"


def build_engine(
    trt: Any,
    logger: _Logger,
    onnx_path: Path,
    precision: str,
    profile: InputProfile,
    workspace: int = WORKSPACE_BYTES,
) -> bytes:
    """Parse an ONNX file (with Q/DQ nodes for int8) and build a serialized engine; ModelError on failure."""
    builder = trt.Builder(logger.trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger.trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise ModelError(f"{onnx_path}: TensorRT cannot parse it ({(errors or [logger.last()])[0][:200]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8: layers without Q/DQ (the decode tail) run in fp16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    tensor = network.get_input(0)
    if any(d < 0 for d in tensor.shape):
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(tensor.name, *profile.shapes())
        config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = logger.last()
        if "out of memory" in reason.lower() or "outofmemory" in reason.lower().replace(" ", ""):
            raise ModelError(f"{onnx_path}: out of GPU memory building the TensorRT engine ({reason})")
        raise ModelError(f"{onnx_path}: TensorRT could not build an engine ({reason})")
    return bytes(serialized)


def engine_key(
    onnx_path: Path,
    gpu: GpuInfo,
    tensorrt_version: str,
    precision: str,
    max_batch: int,
    calibration: Path | None = None,
) -> EngineKey:
    """The cache key of the engine this box builds for an ONNX file, computed without TensorRT.

    The backend looks its engine up with it; `sitesentry doctor` can tell whether that engine is cached
    (engine_cache.check_engine) from `gpu_info` and the tensorrt version alone.
    """
    meta, inputs, outputs = onnx_description(onnx_path)
    info = read_model_info(onnx_path, meta, inputs, outputs, None, [])
    dynamic_hw = not all(isinstance(d, int) for d in inputs[0][2:])
    profile = input_profile(
        info.imgsz, info.batch is None, dynamic_hw, max_batch, int(meta.get("stride", 32))
    )
    calibration_sha = None
    if precision == "int8":
        from edge.detections.quantize import calibration_images

        if calibration is None:
            raise ModelError(
                "engine_precision int8 needs model.calibration (`sitesentry export --calibration`)"
            )
        calibration_sha = sha256_files(calibration_images(calibration))
    return EngineKey(
        gpu_name=gpu.name,
        gpu_uuid=gpu.uuid,
        compute_capability=gpu.compute_capability,
        tensorrt_version=tensorrt_version,
        precision=precision,
        profile=profile,
        onnx_sha256=sha256_file(onnx_path),
        calibration_sha256=calibration_sha,
    )


class TensorRtDetector(YoloDetector):
    """A YOLO detector run by a TensorRT engine: one execution context, one CUDA stream, pinned host and
    device buffers sized for the profile's largest batch; batches above max_batch run in chunks.

    Longer than most classes because it owns the whole engine life: key, cache, build, load, buffers, free.
    """

    def __init__(
        self,
        path: Path | str,
        precision: str = "fp16",
        max_batch: int = 4,
        cache_dir: Path | None = None,
        calibration: Path | None = None,
        confidence: Mapping[str, float] | None = None,
        default_confidence: float = 0.25,
        iou: float = 0.5,
        expected_names: Sequence[str] | None = None,
        max_det: int = 300,
        device: int = 0,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
        if self.path.suffix != ".onnx":
            raise ModelError(f"{self.path}: model.type tensorrt builds its engine from an ONNX file")
        trt = _import_tensorrt()
        self._cudart = cudart = _import_cudart()
        self._trt = trt
        self.gpu = gpu_info(cudart, device)
        _check(cudart, cudart.cudaSetDevice(device), "cudaSetDevice")
        meta, input_shapes, output_shapes = onnx_description(self.path)
        provider = f"TensorRT {trt.__version__} {precision} on {self.gpu.name}"
        info = read_model_info(self.path, meta, input_shapes, output_shapes, expected_names, [provider])
        dynamic_hw = not all(isinstance(d, int) for d in input_shapes[0][2:])
        stride = int(meta.get("stride", 32))
        self.profile = input_profile(info.imgsz, info.batch is None, dynamic_hw, max_batch, stride)
        self._capped: set[int] = set()  # detect.input values already warned about
        self.precision = precision
        self._logger = _Logger(trt)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.key, self.engine_file, build_from = self._key(calibration)
        engine = self._load_or_build(build_from)
        self._setup_processing(
            info, confidence, default_confidence, iou, max_det, dynamic_hw=dynamic_hw, input_dtype=np.float32
        )
        self._lock = threading.Lock()  # infer may be called from the app loop and from a bench thread
        self._buffers: list[tuple[str, int]] = []  # ("host" | "device", pointer) to free
        try:
            self._bind(engine)
            self.detect(np.full((*self.info.imgsz, 3), 114, np.uint8))  # warm-up: proves the engine runs
        except Exception:
            self.close()
            raise
        log.info(
            "loaded %s (%s %s) as TensorRT engine %s on %s (sm %s), input %sx%s, batch 1-%d",
            self.path, self.info.name, self.info.version, self.engine_file.name, self.gpu.name,
            self.gpu.compute_capability, self.info.imgsz[1], self.info.imgsz[0], self.profile.max_batch,
        )  # fmt: skip

    # ------------------------------------------------------------------ engine: key, cache, build, load

    def _key(self, calibration: Path | None) -> tuple[EngineKey, Path, Path]:
        """The cache key, the engine file, and the ONNX to build from (the Q/DQ one for int8)."""
        key = engine_key(
            self.path,
            self.gpu,
            str(self._trt.__version__),
            self.precision,
            self.profile.max_batch,
            calibration,
        )
        build_from = self.path
        if key.calibration_sha256 is not None and calibration is not None:
            from edge.detections.quantize import calibration_images, qdq_path, quantize_qdq

            build_from = qdq_path(self.cache_dir, self.path, key.onnx_sha256, key.calibration_sha256)
            if not build_from.is_file():
                quantize_qdq(self.path, calibration_images(calibration), build_from)
        return key, engine_path(self.cache_dir, self.path, key), build_from

    def _load_or_build(self, build_from: Path) -> Any:
        runtime = self._trt.Runtime(self._logger.trt_logger)
        self._runtime = runtime
        try:
            check_engine(self.engine_file, self.key)
            engine = runtime.deserialize_cuda_engine(self.engine_file.read_bytes())
            if engine is not None:
                log.info("TensorRT engine from the cache: %s", self.engine_file)
                return engine
            log.warning(
                "cached engine %s does not load (%s); rebuilding", self.engine_file, self._logger.last()
            )
        except StaleEngine as exc:
            log.info("%s; building the TensorRT engine (minutes on a Jetson)", exc)
        data = build_engine(self._trt, self._logger, build_from, self.precision, self.profile)
        write_engine(self.engine_file, self.key, data)
        log.info("built TensorRT engine %s, key %s", self.engine_file, self.key.describe())
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise ModelError(
                f"{self.engine_file}: the engine just built does not load ({self._logger.last()})"
            )
        return engine

    # ------------------------------------------------------------------ buffers and inference

    def _alloc(self, nbytes: int, what: str) -> tuple[int, int, np.ndarray]:
        """Pinned host + device buffers of nbytes; returns (host, device, host bytes as a NumPy view)."""
        cudart = self._cudart
        try:
            host = int(_check(cudart, cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
            self._buffers.append(("host", host))
            device = int(_check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc"))
            self._buffers.append(("device", device))
        except CudaError as exc:
            free, total = _check(cudart, cudart.cudaMemGetInfo(), "cudaMemGetInfo")
            raise ModelError(
                f"{self.path}: {exc} allocating {nbytes >> 20} MiB for {what} "
                f"({int(free) >> 20} of {int(total) >> 20} MiB free on {self.gpu.name})"
            ) from None
        view = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(host))
        return host, device, view

    def _bind(self, engine: Any) -> None:
        trt, cudart = self._trt, self._cudart
        self._engine = engine
        self._context = engine.create_execution_context()
        if self._context is None:
            raise ModelError(
                f"{self.path}: no TensorRT execution context ({self._logger.last()}; out of GPU memory?)"
            )
        self._stream = _check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{self.engine_file}: expected one input and one output, got {inputs} -> {outputs}"
            )
        self._input, self._output = inputs[0], outputs[0]
        self._input_np = np.dtype(trt.nptype(engine.get_tensor_dtype(self._input)))
        self._output_np = np.dtype(trt.nptype(engine.get_tensor_dtype(self._output)))
        self._input_dtype = self._input_np.type
        largest = self.profile.shapes()[2]
        self._context.set_input_shape(self._input, largest)
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        in_bytes = int(np.prod(largest)) * self._input_np.itemsize
        out_bytes = int(np.prod(out_shape)) * self._output_np.itemsize
        self._in_host, self._in_dev, self._in_view = self._alloc(in_bytes, "the input batch")
        self._out_host, self._out_dev, self._out_view = self._alloc(out_bytes, "the output batch")
        self._context.set_tensor_address(self._input, self._in_dev)
        self._context.set_tensor_address(self._output, self._out_dev)

    def input_size(self, images: Sequence[np.ndarray], long_side: int | None = None) -> tuple[int, int]:
        """The shared rule's input size, a camera's `detect.input` capped at the profile's largest."""
        if long_side is not None and long_side > min(self.profile.max_hw):
            if long_side not in self._capped:
                self._capped.add(long_side)
                log.warning(
                    "%s: detect.input %d px is above the engine profile's %d px; using %d px",
                    self.path,
                    long_side,
                    min(self.profile.max_hw),
                    min(self.profile.max_hw),
                )
            long_side = min(self.profile.max_hw)
        return super().input_size(images, long_side)

    def _run(self, blob: np.ndarray) -> np.ndarray:
        cudart, stream = self._cudart, self._stream
        if not self.profile.admits(blob.shape):
            raise ModelError(
                f"{self.path}: input {blob.shape} is outside the engine's profile {self.profile}"
            )
        blob = np.ascontiguousarray(blob, dtype=self._input_np)
        self._in_view[: blob.nbytes] = blob.reshape(-1).view(np.uint8)
        if not self._context.set_input_shape(self._input, blob.shape):
            raise ModelError(f"{self.path}: TensorRT refused input shape {blob.shape}")
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(
            cudart,
            cudart.cudaMemcpyAsync(self._in_dev, self._in_host, blob.nbytes, h2d, stream),
            "cudaMemcpyAsync",
        )
        if not self._context.execute_async_v3(int(stream)):
            raise ModelError(f"{self.path}: TensorRT inference failed ({self._logger.last()})")
        shape = tuple(self._context.get_tensor_shape(self._output))
        nbytes = int(np.prod(shape)) * self._output_np.itemsize
        _check(
            cudart,
            cudart.cudaMemcpyAsync(self._out_host, self._out_dev, nbytes, d2h, stream),
            "cudaMemcpyAsync",
        )
        _check(cudart, cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
        return self._out_view[:nbytes].view(self._output_np).reshape(shape).copy()

    def infer(self, blob: np.ndarray) -> np.ndarray:
        """Run the engine on a prepared batch, in chunks of the profile's largest batch."""
        step = self.profile.max_batch
        with self._lock:
            if self.gpu.index != 0:
                _check(self._cudart, self._cudart.cudaSetDevice(self.gpu.index), "cudaSetDevice")
            if blob.shape[0] <= step:
                return self._run(blob)
            return np.concatenate([self._run(blob[i : i + step]) for i in range(0, blob.shape[0], step)])

    def close(self) -> None:
        """Free the CUDA buffers and stream (also done at interpreter exit by the driver)."""
        cudart = self._cudart
        for kind, pointer in getattr(self, "_buffers", []):
            (cudart.cudaFreeHost if kind == "host" else cudart.cudaFree)(pointer)
        self._buffers = []
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None


def ensure_engine(
    onnx_path: Path,
    precision: str = "fp16",
    max_batch: int = 4,
    cache_dir: Path | None = None,
    calibration: Path | None = None,
    expected_names: Sequence[str] | None = None,
) -> TensorRtDetector:
    """Build (or find) the engine for this box in the cache and load it once: `sitesentry export --format
    engine` and scripts/gpu-check.sh call this; the returned detector's key and engine_file say where."""
    return TensorRtDetector(
        onnx_path, precision, max_batch, cache_dir, calibration, expected_names=expected_names
    )
