"""`sitesentry doctor`: what this box can run (GPU, CUDA, TensorRT, ONNX Runtime, OpenVINO, decoders, disk)
and which detector backend `model.type: auto` would choose, as one typed record per check.

Every check only looks: it runs read-only tools with a timeout (nvidia-smi, gst-inspect-1.0, ffmpeg) and
imports vendor packages guarded, so a missing or broken tool becomes a `missing` or `warn` record, never a
crash. The backend row calls the same `choose_backend` the runtime uses, so it cannot disagree with `run`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from edge import __version__
from edge.config.models import EvidenceConfig, HardExamplesConfig, ModelConfig, MqttConfig, SiteConfig
from edge.detections.engine_cache import KEY_SUFFIX, default_cache_dir
from edge.detections.select import (
    NVIDIA_DEVICES,
    choose_backend,
    probe_cuda_python,
    probe_host,
    probe_tensorrt,
)

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "missing"]
#: Seconds any one external tool may take; a hung driver must not hang the doctor.
TOOL_TIMEOUT_S = 10.0
JETSON_RELEASE = Path("/etc/nv_tegra_release")
JETSON_MODEL = Path("/proc/device-tree/model")
CUDA_HOME = Path("/usr/local/cuda")
#: JetPack puts trtexec here without adding it to PATH.
TRTEXEC_JETPACK = Path("/usr/src/tensorrt/bin/trtexec")
#: GStreamer elements of the hardware RTSP pipeline (edge/frames/gstreamer.py) and of its software twin.
GST_ELEMENTS = ("rtspsrc", "parsebin", "nvv4l2decoder", "nvvidconv", "avdec_h264", "videoconvert", "appsink")


@dataclass(frozen=True)
class Check:
    """One finding: `missing` means absent here (often fine on a CPU box), `warn` present but unusable."""

    name: str
    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DoctorInput:
    """What the checks look at: the configured model and folders (defaults when no config is given)."""

    model: ModelConfig
    evidence: EvidenceConfig
    mqtt: MqttConfig
    hard_examples: HardExamplesConfig
    engine_cache: Path
    config_file: Path | None = None

    @classmethod
    def from_config(
        cls, site: SiteConfig | None, config_file: Path | None, default_model: Path
    ) -> DoctorInput:
        """Take the sections the checks need from a loaded site config, or the defaults without one."""
        if site is None:
            model = ModelConfig(path=default_model)
            return cls(model, EvidenceConfig(), MqttConfig(), HardExamplesConfig(), default_cache_dir())
        return cls(
            site.model,
            site.evidence,
            site.mqtt,
            site.hard_examples,
            site.model.engine_cache or default_cache_dir(),
            config_file,
        )


def _tool(args: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
    """Run a read-only tool; None when it is not installed, cannot start or does not finish in time."""
    exe = shutil.which(args[0]) or (
        args[0] if os.path.isabs(args[0]) and os.access(args[0], os.X_OK) else None
    )
    if exe is None:
        return None
    try:
        return subprocess.run(
            [exe, *args[1:]], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:200]


def check_system(_: DoctorInput) -> Check:
    """Operating system, CPU architecture and Python version."""
    os_name = platform.platform()
    try:
        release = dict(
            line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line
        )
        os_name = release.get("PRETTY_NAME", os_name).strip('"')
    except OSError:
        pass
    python = platform.python_version()
    details = {
        "os": os_name,
        "kernel": platform.release(),
        "arch": platform.machine(),
        "python": python,
        "python_executable": sys.executable,
        "sitesentry": __version__,
        "cpus": os.cpu_count(),
    }
    status: Status = "ok" if sys.version_info >= (3, 10) else "warn"
    return Check("system", status, f"{os_name}, {platform.machine()}, Python {python}", details)


def _jetson() -> dict[str, Any] | None:
    try:
        release = JETSON_RELEASE.read_text(errors="replace")
    except OSError:
        return None
    # "# R36 (release), REVISION: 4.0, GCID: ..., BOARD: generic, EABI: aarch64, DATE: ..."
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    l4t = f"{match.group(1)}.{match.group(2)}" if match else _first_line(release)
    try:
        model = JETSON_MODEL.read_text(errors="replace").strip("\x00\n ")
    except OSError:
        model = "Jetson (model unknown)"
    tegrastats = shutil.which("tegrastats") or (
        "/usr/bin/tegrastats" if Path("/usr/bin/tegrastats").exists() else None
    )
    return {"model": model, "l4t": l4t, "tegrastats": tegrastats}


def _nvidia_smi() -> list[dict[str, Any]] | None:
    fields = "name,driver_version,memory.total,compute_cap"
    done = _tool(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
    if done is None or done.returncode != 0:
        return None
    gpus = []
    for line in done.stdout.strip().splitlines():
        name, driver, memory, capability = (part.strip() for part in (line.split(",") + ["", "", ""])[:4])
        gpus.append(
            {
                "name": name,
                "driver": driver,
                "memory_mib": int(memory) if memory.isdigit() else memory,
                "compute_capability": capability,
                "source": "nvidia-smi",
            }
        )
    return gpus


def _nvml() -> list[dict[str, Any]] | None:
    if importlib.util.find_spec("pynvml") is None:
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            gpus = []
            for index in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
                gpus.append(
                    {
                        "name": pynvml.nvmlDeviceGetName(handle),
                        "driver": driver,
                        "memory_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20,
                        "compute_capability": f"{major}.{minor}",
                        "source": "NVML",
                    }
                )
            return gpus
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # NVML raises its own error types when the driver is absent or mismatched
        return None


def check_gpu(_: DoctorInput) -> Check:
    """NVIDIA GPUs (nvidia-smi, else NVML) and Jetson modules (/etc/nv_tegra_release)."""
    jetson = _jetson()
    devices = [d for d in NVIDIA_DEVICES if Path(d).exists()]
    if jetson is not None:
        import psutil

        details = {
            **jetson,
            "device_files": devices,
            "shared_memory_mib": psutil.virtual_memory().total // 2**20,
        }
        how = "tegrastats present" if jetson["tegrastats"] else "tegrastats not found"
        status: Status = "ok" if devices else "warn"
        note = "" if devices else "; no GPU device file (in a container: run it with the nvidia runtime)"
        return Check("gpu", status, f"{jetson['model']}, L4T {jetson['l4t']} ({how}){note}", details)
    gpus = _nvidia_smi() or _nvml()
    if gpus:
        names = ", ".join(f"{g['name']} ({g['memory_mib']} MiB, driver {g['driver']})" for g in gpus)
        return Check("gpu", "ok", names, {"gpus": gpus, "device_files": devices})
    if devices:
        return Check(
            "gpu",
            "warn",
            f"{', '.join(devices)} present but neither nvidia-smi nor NVML answers",
            {"device_files": devices},
        )
    return Check("gpu", "missing", "no NVIDIA GPU (no nvidia-smi, NVML, device file or Jetson release file)")


def check_cuda(_: DoctorInput) -> Check:
    """CUDA: the version the driver supports (nvidia-smi) and the toolkit installed (/usr/local/cuda)."""
    details: dict[str, Any] = {}
    done = _tool(["nvidia-smi"])
    if done is not None and done.returncode == 0:
        match = re.search(r"CUDA Version:\s*([\d.]+)", done.stdout)
        if match:
            details["driver_cuda"] = match.group(1)
    try:
        details["toolkit"] = json.loads((CUDA_HOME / "version.json").read_text())["cuda"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        nvcc = _tool(["nvcc", "--version"]) or _tool([str(CUDA_HOME / "bin/nvcc"), "--version"])
        match = re.search(r"release ([\d.]+)", nvcc.stdout) if nvcc is not None else None
        if match:
            details["toolkit"] = match.group(1)
    cuda_python = probe_cuda_python()
    if cuda_python.usable:
        details["cuda_python"] = cuda_python.version
    elif importlib.util.find_spec("cuda") is not None:
        details["cuda_python_problem"] = cuda_python.problem
    if not details:
        return Check("cuda", "missing", "no CUDA driver or toolkit found")
    parts = [
        f"{label} {details[key]}"
        for key, label in (
            ("driver_cuda", "driver supports"),
            ("toolkit", "toolkit"),
            ("cuda_python", "cuda-python"),
        )
        if key in details
    ]
    if "driver_cuda" not in details and _jetson() is None:  # a toolkit or wheel alone runs nothing
        return Check("cuda", "missing", "no CUDA driver; " + ", ".join(parts), details)
    return Check("cuda", "ok", ", ".join(parts), details)


def check_tensorrt(_: DoctorInput) -> Check:
    """TensorRT: the Python API the tensorrt backend imports (pip or JetPack), and trtexec."""
    fact = probe_tensorrt()
    trtexec = shutil.which("trtexec") or (str(TRTEXEC_JETPACK) if TRTEXEC_JETPACK.exists() else None)
    details = {"version": fact.version, "problem": fact.problem, "trtexec": trtexec}
    if fact.usable:
        summary = f"TensorRT {fact.version}" + (f", trtexec {trtexec}" if trtexec else "")
        return Check("tensorrt", "ok", summary, details)
    installed = importlib.util.find_spec("tensorrt") is not None
    if installed or trtexec:
        return Check("tensorrt", "warn", f"Python API unusable ({fact.problem}); trtexec: {trtexec}", details)
    return Check(
        "tensorrt",
        "missing",
        f"{fact.problem} (pip install -e '.[tensorrt]' on x86, JetPack's python3-libnvinfer on Jetson)",
        details,
    )


def check_onnxruntime(inp: DoctorInput) -> Check:
    """ONNX Runtime: version, the execution providers this build has, and whether the GPU ones can run."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Check("onnxruntime", "missing", f"not importable ({exc})")
    providers = list(ort.get_available_providers())
    details = {"version": ort.__version__, "providers": providers, "wanted": list(inp.model.providers)}
    summary = f"{ort.__version__}: {', '.join(providers)}"
    gpu_providers = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(providers)
    has_gpu = any(Path(d).exists() for d in NVIDIA_DEVICES)
    if has_gpu and not gpu_providers:
        return Check(
            "onnxruntime",
            "warn",
            summary + " (an NVIDIA GPU, but a CPU-only build: install onnxruntime-gpu)",
            details,
        )
    if gpu_providers and not has_gpu:
        summary += " (GPU providers listed, but no NVIDIA GPU here: they are not used)"
    return Check("onnxruntime", "ok", summary, details)


def check_openvino(_: DoctorInput) -> Check:
    """OpenVINO: version and the devices it sees."""
    if importlib.util.find_spec("openvino") is None:
        return Check("openvino", "missing", "not installed (pip install -e '.[openvino]'; x86 CPUs)")
    try:
        import openvino as ov

        devices = list(ov.Core().available_devices)
        version = ov.get_version()
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses for a broken install
        return Check("openvino", "warn", f"installed but not usable ({_first_line(str(exc))})")
    return Check(
        "openvino", "ok", f"{version}: devices {', '.join(devices)}", {"version": version, "devices": devices}
    )


def _opencv_video() -> dict[str, Any]:
    import cv2

    registry = cv2.videoio_registry
    # getStreamBackends() also names plugin backends this build cannot load; hasBackend() tries them.
    backends = [registry.getBackendName(b) for b in registry.getStreamBackends() if registry.hasBackend(b)]
    return {
        "version": cv2.__version__,
        "video_backends": backends,
        "gstreamer": bool(registry.hasBackend(cv2.CAP_GSTREAMER)),
    }


def check_opencv(_: DoctorInput) -> Check:
    """OpenCV's video I/O backends (FFmpeg decodes RTSP and files; GStreamer is needed for nvv4l2)."""
    info = _opencv_video()
    gstreamer = "yes" if info["gstreamer"] else "no"
    summary = f"{info['version']}: {', '.join(info['video_backends'])} (GStreamer: {gstreamer})"
    return Check("opencv", "ok", summary, info)


def check_gstreamer(_: DoctorInput) -> Check:
    """GStreamer elements of the hardware RTSP pipeline, via gst-inspect-1.0."""
    version = _tool(["gst-inspect-1.0", "--version"])
    if version is None:
        return Check("gstreamer", "missing", "gst-inspect-1.0 not found (apt install gstreamer1.0-tools)")
    present = {}
    for element in GST_ELEMENTS:
        done = _tool(["gst-inspect-1.0", "--exists", element])
        present[element] = done is not None and done.returncode == 0
    found = [e for e, ok in present.items() if ok]
    details = {"version": _first_line(version.stdout), "elements": present}
    return Check("gstreamer", "ok", f"{details['version']}; elements: {', '.join(found) or 'none'}", details)


def check_hw_decode(inp: DoctorInput) -> Check:
    """Whether `decoder: nvv4l2` can work: JetPack's nvv4l2decoder plus an OpenCV built with GStreamer."""
    opencv = _opencv_video()
    gst_ok = opencv["gstreamer"]
    done = _tool(["gst-inspect-1.0", "--exists", "nvv4l2decoder"])
    nvv4l2 = done is not None and done.returncode == 0
    details = {"opencv_gstreamer": gst_ok, "nvv4l2decoder": nvv4l2}
    if gst_ok and nvv4l2:
        return Check("hw_decode", "ok", "decoder: nvv4l2 available (NVDEC through GStreamer)", details)
    lacking = [
        what
        for what, ok in (("nvv4l2decoder (JetPack)", nvv4l2), ("OpenCV with GStreamer", gst_ok))
        if not ok
    ]
    status: Status = "warn" if _jetson() is not None else "missing"
    return Check(
        "hw_decode",
        status,
        f"decoder: nvv4l2 unavailable (no {' and no '.join(lacking)}); cameras decode in software (FFmpeg)",
        details,
    )


def check_ffmpeg(_: DoctorInput) -> Check:
    """The ffmpeg command (OpenCV and PyAV bundle their own libraries; the command is for diagnosis)."""
    done = _tool(["ffmpeg", "-hide_banner", "-version"])
    if done is None or done.returncode != 0:
        return Check("ffmpeg", "missing", "ffmpeg command not found (not needed: OpenCV bundles FFmpeg)")
    version = _first_line(done.stdout).split(" Copyright")[0]
    return Check("ffmpeg", "ok", version, {"version": version})


def check_engine_cache(inp: DoctorInput) -> Check:
    """The TensorRT engine cache folder and the engines in it."""
    folder = inp.engine_cache
    if not folder.is_dir():
        return Check(
            "engine_cache",
            "missing",
            f"{folder} does not exist yet (the first GPU start fills it)",
            {"folder": str(folder), "engines": []},
        )
    engines: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.engine")):
        stat = path.stat()
        entry: dict[str, Any] = {
            "file": path.name,
            "bytes": stat.st_size,
            "modified": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(),
        }
        try:  # the key the runtime checks before loading (edge/detections/engine_cache.py)
            key = json.loads(path.with_name(path.name + KEY_SUFFIX).read_text())
            entry["key"] = {
                k: key.get(k) for k in ("gpu_name", "compute_capability", "tensorrt_version", "precision")
            }
        except (OSError, ValueError, AttributeError):
            entry["key"] = None  # no readable key: the runtime rebuilds this engine instead of loading it
        engines.append(entry)
    total = sum(e["bytes"] for e in engines) / 2**20
    return Check(
        "engine_cache",
        "ok",
        f"{folder}: {len(engines)} file(s), {total:.1f} MiB",
        {"folder": str(folder), "engines": engines},
    )


def _existing(path: Path) -> Path:
    """The path itself or its nearest existing ancestor (a folder made on first start has none yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(inp: DoctorInput) -> Check:
    """Free disk where evidence, the outbox, hard examples and engines are written."""
    folders = {
        "evidence": inp.evidence.folder,
        "outbox": inp.mqtt.outbox.parent,
        "engine_cache": inp.engine_cache,
    }
    if inp.hard_examples.enabled:
        folders["hard_examples"] = inp.hard_examples.folder
    rows: dict[str, dict[str, Any]] = {}
    for role, folder in folders.items():
        usage = shutil.disk_usage(_existing(folder))
        rows[role] = {
            "folder": str(folder),
            "free_gb": round(usage.free / 1e9, 2),
            "total_gb": round(usage.total / 1e9, 2),
        }
    low = [role for role, row in rows.items() if row["free_gb"] < inp.evidence.min_free_gb]
    summary = ", ".join(f"{role} {row['free_gb']:.1f} GB free" for role, row in rows.items())
    if low:
        return Check(
            "disk",
            "warn",
            f"{summary}; below evidence.min_free_gb ({inp.evidence.min_free_gb:g} GB): {', '.join(low)}",
            {"folders": rows},
        )
    return Check("disk", "ok", summary, {"folders": rows})


def check_backend(inp: DoctorInput) -> Check:
    """Which backend `model.type` resolves to for the configured model, and why (the runtime's own rule)."""
    facts = probe_host()  # what the runtime probes (TensorRT imported only with a GPU), so the answers agree
    name, reason = choose_backend(inp.model, facts)
    details = {
        "facts": asdict(facts),
        "type": inp.model.type,
        "backend": name,
        "reason": reason,
        "model": str(inp.model.path),
        "providers": list(inp.model.providers),
    }
    summary = f"{name} for {inp.model.path.name} (model.type {inp.model.type}: {reason})"
    if not inp.model.path.is_file():
        return Check("backend", "warn", f"{summary}; but {inp.model.path} does not exist", details)
    return Check("backend", "ok", summary, details)


CHECKS: tuple[Callable[[DoctorInput], Check], ...] = (
    check_system,
    check_gpu,
    check_cuda,
    check_tensorrt,
    check_onnxruntime,
    check_openvino,
    check_opencv,
    check_gstreamer,
    check_hw_decode,
    check_ffmpeg,
    check_engine_cache,
    check_disk,
    check_backend,
)


def run_checks(inp: DoctorInput, checks: Sequence[Callable[[DoctorInput], Check]] = CHECKS) -> list[Check]:
    """Run every check; one that fails unexpectedly becomes a `warn` record naming the error."""
    results = []
    for check in checks:
        try:
            results.append(check(inp))
        except Exception as exc:  # the doctor reports a broken tool; it must not become one
            log.debug("doctor check %s failed", check.__name__, exc_info=True)
            name = check.__name__.removeprefix("check_")
            results.append(
                Check(name, "warn", f"check failed: {type(exc).__name__}: {_first_line(str(exc))}")
            )
    return results


def to_json(checks: Sequence[Check]) -> dict[str, Any]:
    """The report as a JSON-ready dict: one object per check, in order."""
    return {"sitesentry": __version__, "checks": [asdict(c) for c in checks]}
