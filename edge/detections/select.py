"""Which detector backend `model.type: auto` picks on this box, from facts about the box probed once.

The rule is a pure function of a `HostFacts` record, so `sitesentry doctor`, the runtime and the tests ask
the same question: `choose_backend(config, probe_host())`. Probing imports the vendor libraries only where
they could be used (TensorRT and cuda-python only when an NVIDIA GPU device file exists), and catches every
way an install can be broken (a wheel without its shared libraries raises ImportError or OSError).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edge.config.models import ModelConfig

log = logging.getLogger(__name__)

#: Device files that show an NVIDIA GPU: the desktop driver, Jetson's nvgpu as JetPack 5 names it, and as
#: JetPack 6's out-of-tree nvgpu driver does. ONNX Runtime GPU wheels list their providers even on a box
#: without a GPU, so the provider list alone does not prove one.
NVIDIA_DEVICES = ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu", "/dev/nvgpu/igpu0/ctrl")
#: Config provider name -> ONNX Runtime's name, for the providers that need an NVIDIA GPU.
GPU_PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider"}


@dataclass(frozen=True)
class LibraryFact:
    """One optional library: its version when it imports, else why not (None, None: not installed)."""

    version: str | None = None
    problem: str | None = None

    @property
    def usable(self) -> bool:
        """True when the library imported."""
        return self.version is not None


@dataclass(frozen=True)
class HostFacts:
    """What `auto` looks at: an NVIDIA GPU device file, TensorRT, cuda-python, ONNX Runtime's providers,
    OpenVINO. Tests and `sitesentry doctor` build one by hand or with `probe_host`."""

    nvidia_device: str | None = None  # the device file that shows an NVIDIA GPU; None: none found
    tensorrt: LibraryFact = field(default_factory=LibraryFact)
    cuda_python: LibraryFact = field(default_factory=LibraryFact)
    ort_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    openvino: bool = False


def _import_version(module: str, version_of: str | None = None) -> LibraryFact:
    """Import `module` and read its version; a missing or broken install becomes the problem text."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return LibraryFact(problem=f"{module.split('.')[0]} is not installed")
    try:
        imported = importlib.import_module(module)
        if version_of is not None:
            imported = importlib.import_module(version_of)
    except (ImportError, OSError) as exc:  # a wheel whose shared libraries are missing or for another CUDA
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return LibraryFact(problem=f"{module} does not import ({first_line})")
    return LibraryFact(version=str(getattr(imported, "__version__", "unknown")))


def probe_tensorrt() -> LibraryFact:
    """Whether `import tensorrt` works here, and its version."""
    return _import_version("tensorrt")


def probe_cuda_python() -> LibraryFact:
    """Whether cuda-python's runtime bindings import here (cuda.bindings, or the older cuda.cudart)."""
    fact = _import_version("cuda.bindings.runtime", "cuda.bindings")
    if fact.usable or importlib.util.find_spec("cuda") is None:
        return fact
    old = _import_version("cuda.cudart")  # cuda-python before 12.6 (JetPack 6's pip default)
    return old if old.usable else fact


def nvidia_device(devices: tuple[str, ...] = NVIDIA_DEVICES) -> str | None:
    """The first NVIDIA device file present (a GPU driver is loaded), or None."""
    return next((d for d in devices if Path(d).exists()), None)


def probe_host(libraries: bool | None = None) -> HostFacts:
    """Probe this box. TensorRT and cuda-python are imported only with an NVIDIA GPU present, or when
    `libraries` is True (`sitesentry doctor` reports them anyway); False never imports them."""
    device = nvidia_device()
    deep = device is not None if libraries is None else libraries
    try:
        import onnxruntime as ort

        providers = tuple(ort.get_available_providers())
    except ImportError:
        providers = ()
    return HostFacts(
        nvidia_device=device,
        tensorrt=probe_tensorrt() if deep else LibraryFact(problem="not probed: no NVIDIA GPU"),
        cuda_python=probe_cuda_python() if deep else LibraryFact(problem="not probed: no NVIDIA GPU"),
        ort_providers=providers,
        openvino=importlib.util.find_spec("openvino") is not None,
    )


def choose_backend(config: ModelConfig, facts: HostFacts | None = None) -> tuple[str, str]:
    """Resolve `model.type` to a backend name and the reason, by the rule documented on ModelConfig.type.

    `facts` defaults to `probe_host()` (only probed when `type` is auto).
    """
    if config.type != "auto":
        return config.type, "set by model.type"
    if config.path.suffix == ".xml":
        return "openvino", f"{config.path.name} is an OpenVINO IR"
    facts = facts if facts is not None else probe_host()
    gpu = facts.nvidia_device
    if gpu is not None and "tensorrt" in config.providers:
        if facts.tensorrt.usable and facts.cuda_python.usable:
            return "tensorrt", (
                f"an NVIDIA GPU ({gpu}), TensorRT {facts.tensorrt.version} and cuda-python "
                f"{facts.cuda_python.version} are present"
            )
        missing = [f.problem for f in (facts.tensorrt, facts.cuda_python) if not f.usable and f.problem]
        log.info("native TensorRT not used: %s", "; ".join(missing) or "unavailable")
    if gpu is not None:
        wanted = [GPU_PROVIDERS[p] for p in config.providers if p in GPU_PROVIDERS]
        provider = next((p for p in wanted if p in facts.ort_providers), None)
        if provider is not None:
            return "onnxrt", f"an NVIDIA GPU ({gpu}) and ONNX Runtime's {provider} are present"
    if facts.openvino:
        reason = "no NVIDIA GPU" if gpu is None else "no usable GPU runtime for the NVIDIA GPU"
        return "openvino", f"{reason}; the openvino package is installed (faster on CPU)"
    if gpu is not None:
        return "onnxrt", (
            "an NVIDIA GPU but neither TensorRT + cuda-python nor onnxruntime-gpu "
            "(pip install -e '.[tensorrt]'): ONNX Runtime on the CPU"
        )
    return "onnxrt", "no NVIDIA GPU and no openvino package (pip install -e '.[openvino]' to use it on CPU)"
