"""The native TensorRT backend: which backend `auto` picks from the box's facts, engine cache keys and the
refusal of stale or foreign engines, one-line errors without TensorRT or a GPU, config, INT8 Q/DQ
quantization (runs on the CPU), and, on a GPU, parity with ONNX Runtime and FP16/INT8 accuracy."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from pydantic import ValidationError

from edge.config import load_config
from edge.config.models import ModelConfig
from edge.detections import create_detector
from edge.detections.base import ModelError
from edge.detections.engine_cache import (
    EngineKey,
    InputProfile,
    StaleEngine,
    cached_engines,
    check_engine,
    engine_path,
    key_path,
    sha256_file,
    write_engine,
)
from edge.detections.onnxrt import OnnxDetector
from edge.detections.resolution import AUTO_MAX_INPUT
from edge.detections.select import HostFacts, LibraryFact, choose_backend, nvidia_device, probe_host
from edge.detections.tensorrt_backend import input_profile, onnx_description
from edge.labels import CLASS_NAMES

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "ppe-yolo" / "model.onnx"
SHARED = Path(os.environ.get("SITESENTRY_SHARED", REPO.parent / "shared"))
PHOTOS = SHARED / "datasets" / "construction-site-safety" / "valid" / "images"

GPU = HostFacts(
    nvidia_device="/dev/nvidia0",
    tensorrt=LibraryFact(version="10.3.0"),
    cuda_python=LibraryFact(version="12.6.2"),
    ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
    openvino=True,
)
NO_GPU = HostFacts(ort_providers=("CPUExecutionProvider",), openvino=True)


def photos(n: int) -> list[Path]:
    if not PHOTOS.is_dir():
        pytest.skip(f"real photos not available at {PHOTOS}")
    return sorted(PHOTOS.glob("*.jpg"))[:n]


def tensorrt_imports() -> bool:
    return probe_host(libraries=True).tensorrt.usable


# ---------------------------------------------------------------- backend selection


def test_auto_picks_tensorrt_only_with_a_gpu_tensorrt_and_cuda_python() -> None:
    config = ModelConfig(path=MODEL)
    name, reason = choose_backend(config, GPU)
    assert name == "tensorrt" and "TensorRT 10.3.0" in reason and "cuda-python 12.6.2" in reason
    no_cuda = dataclasses.replace(GPU, cuda_python=LibraryFact(problem="cuda is not installed"))
    assert choose_backend(config, no_cuda)[0] == "onnxrt"  # ONNX Runtime's CUDA provider, the second path
    no_trt = dataclasses.replace(GPU, tensorrt=LibraryFact(problem="tensorrt does not import (libnvinfer)"))
    name, reason = choose_backend(config, no_trt)
    assert name == "onnxrt" and "CUDAExecutionProvider" in reason
    assert choose_backend(config, NO_GPU)[0] == "openvino"
    assert choose_backend(config, dataclasses.replace(NO_GPU, openvino=False))[0] == "onnxrt"


def test_auto_on_a_gpu_without_any_gpu_runtime_says_so_and_uses_the_cpu() -> None:
    bare = HostFacts(nvidia_device="/dev/nvhost-ctrl-gpu", ort_providers=("CPUExecutionProvider",))
    name, reason = choose_backend(ModelConfig(path=MODEL), bare)
    assert name == "onnxrt" and "pip install -e '.[tensorrt]'" in reason


def test_providers_without_tensorrt_keep_auto_off_tensorrt_and_explicit_types_win() -> None:
    cuda_only = ModelConfig(path=MODEL, providers=["cuda", "cpu"])
    assert choose_backend(cuda_only, GPU) == (
        "onnxrt",
        "an NVIDIA GPU (/dev/nvidia0) and ONNX Runtime's CUDAExecutionProvider are present",
    )
    assert choose_backend(ModelConfig(path=MODEL, type="tensorrt"), NO_GPU) == (
        "tensorrt",
        "set by model.type",
    )
    assert choose_backend(ModelConfig(path=Path("m-int8.xml")), GPU)[0] == "openvino"


def test_probing_this_box_finds_no_gpu_and_does_not_import_tensorrt() -> None:
    if nvidia_device() is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    before = "tensorrt" in sys.modules
    facts = probe_host()
    assert facts.nvidia_device is None and facts.tensorrt.problem == "not probed: no NVIDIA GPU"
    assert ("tensorrt" in sys.modules) == before
    assert "CPUExecutionProvider" in facts.ort_providers
    deep = probe_host(libraries=True)  # what `sitesentry doctor` reports
    if not deep.tensorrt.usable:
        assert deep.tensorrt.problem and deep.tensorrt.problem.startswith("tensorrt ")


def test_nvidia_device_files_are_what_shows_a_gpu(tmp_path: Path) -> None:
    jetson = tmp_path / "nvhost-ctrl-gpu"
    assert nvidia_device((str(tmp_path / "nvidia0"), str(jetson))) is None
    jetson.touch()
    assert nvidia_device((str(tmp_path / "nvidia0"), str(jetson))) == str(jetson)


# ---------------------------------------------------------------- engine cache keys


PROFILE = InputProfile(1, 4, 4, (32, 32), (416, 416), (AUTO_MAX_INPUT, AUTO_MAX_INPUT))
KEY = EngineKey(
    gpu_name="Orin",
    gpu_uuid="GPU-0b1c2d3e-0000-1111-2222-333344445555",
    compute_capability="8.7",
    tensorrt_version="10.3.0",
    precision="fp16",
    profile=PROFILE,
    onnx_sha256="a" * 64,
)


def test_the_cache_key_changes_with_every_ingredient() -> None:
    variants = {
        "gpu_name": "NVIDIA H200",
        "gpu_uuid": "GPU-ffffffff-0000-1111-2222-333344445555",
        "compute_capability": "9.0",
        "tensorrt_version": "10.16.1",
        "precision": "int8",
        "profile": dataclasses.replace(PROFILE, max_batch=16, opt_batch=16),
        "onnx_sha256": "b" * 64,
        "calibration_sha256": "c" * 64,
        "recipe": KEY.recipe + 1,
    }
    assert set(variants) == {f.name for f in dataclasses.fields(EngineKey)}
    digests = {KEY.digest()} | {dataclasses.replace(KEY, **{k: v}).digest() for k, v in variants.items()}
    assert len(digests) == len(variants) + 1
    assert KEY.digest() == dataclasses.replace(KEY).digest()  # stable: same ingredients, same engine
    assert dataclasses.replace(KEY, profile=PROFILE) == KEY
    path = engine_path(Path("/cache"), MODEL, KEY)
    assert path.name == f"model-fp16-{KEY.digest()[:16]}.engine"


def test_a_written_engine_loads_only_with_its_own_key(tmp_path: Path) -> None:
    engine = write_engine(engine_path(tmp_path, MODEL, KEY), KEY, b"serialized plan")
    check_engine(engine, KEY)
    record = json.loads(key_path(engine).read_text())
    assert record["key"]["gpu_uuid"] == KEY.gpu_uuid and record["digest"] == KEY.digest()
    with pytest.raises(
        StaleEngine, match="built for another device: gpu_name 'Orin' .this box: 'NVIDIA H200'"
    ):
        check_engine(engine, dataclasses.replace(KEY, gpu_name="NVIDIA H200", compute_capability="9.0"))
    with pytest.raises(StaleEngine, match=r"stale: tensorrt_version '10.3.0' \(this box: '10.4.0'\)"):
        check_engine(engine, dataclasses.replace(KEY, tensorrt_version="10.4.0"))
    with pytest.raises(StaleEngine, match="stale: onnx_sha256"):
        check_engine(engine, dataclasses.replace(KEY, onnx_sha256="b" * 64))


def test_the_key_for_the_shipped_model_is_computed_without_tensorrt(tmp_path: Path) -> None:
    from edge.detections.tensorrt_backend import GpuInfo, engine_key

    orin = GpuInfo(0, "Orin", "GPU-0b1c2d3e-0000-1111-2222-333344445555", "8.7", 7620)
    key = engine_key(MODEL, orin, "10.3.0", "fp16", 4)
    assert key.onnx_sha256 == sha256_file(MODEL) and key.profile == PROFILE
    assert dataclasses.replace(key, onnx_sha256="a" * 64) == KEY
    with pytest.raises(ModelError, match="int8 needs model.calibration"):
        engine_key(MODEL, orin, "10.3.0", "int8", 4)
    calib = tmp_path / "calib"
    (calib / "images").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (calib / "images" / name).write_bytes(name.encode())
    (calib / "calibration.txt").write_text("images/a.jpg\nimages/b.jpg\n")
    int8 = engine_key(MODEL, orin, "10.3.0", "int8", 4, calib)
    (calib / "images" / "b.jpg").write_bytes(b"another image")
    assert int8.calibration_sha256 and engine_key(MODEL, orin, "10.3.0", "int8", 4, calib) != int8
    write_engine(engine_path(tmp_path, MODEL, key), key, b"plan")
    (tmp_path / "copied.engine").write_bytes(b"plan")
    listed = cached_engines(tmp_path)
    assert {p.name: k is not None for p, k in listed} == {
        engine_path(tmp_path, MODEL, key).name: True,
        "copied.engine": False,
    }


def test_engines_without_a_matching_key_file_or_with_other_bytes_are_refused(tmp_path: Path) -> None:
    engine = engine_path(tmp_path, MODEL, KEY)
    with pytest.raises(StaleEngine, match="no cached engine"):
        check_engine(engine, KEY)
    engine.write_bytes(b"copied from somewhere")
    with pytest.raises(StaleEngine, match="no key file"):
        check_engine(engine, KEY)
    key_path(engine).write_text("{not json")
    with pytest.raises(StaleEngine, match="unreadable key file"):
        check_engine(engine, KEY)
    write_engine(engine, KEY, b"serialized plan")
    engine.write_bytes(b"serialized plan, then cut off or swapped")
    with pytest.raises(StaleEngine, match="bytes differ"):
        check_engine(engine, KEY)
    assert sha256_file(engine) != json.loads(key_path(engine).read_text())["engine_sha256"]


def test_the_input_profile_spans_one_camera_to_max_batch_and_letterboxed_sizes() -> None:
    dynamic = input_profile((416, 416), dynamic_batch=True, dynamic_hw=True, max_batch=8, stride=32)
    # Up to the largest input `detect.input: auto` picks, so a wide camera's 640 or 1280 px input runs.
    top = AUTO_MAX_INPUT
    assert dynamic.shapes() == ((1, 3, 32, 32), (8, 3, 416, 416), (8, 3, top, top))
    assert dynamic.admits((1, 3, 256, 416)) and dynamic.admits((8, 3, 384, 640))
    assert not dynamic.admits((9, 3, 416, 416)) and not dynamic.admits((1, 3, top + 32, 416))
    fixed = input_profile((640, 640), dynamic_batch=False, dynamic_hw=False, max_batch=8, stride=32)
    assert fixed.shapes() == ((1, 3, 640, 640),) * 3


def test_the_shipped_onnx_is_read_without_tensorrt_for_its_profile(tmp_path: Path) -> None:
    meta, inputs, outputs = onnx_description(MODEL)
    assert inputs == [["batch", 3, "height", "width"]] and outputs == [["batch", 9, "anchors"]]
    assert meta["imgsz"] == "[416, 416]" and meta["stride"] == "32"
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match=r"model.onnx: not a loadable ONNX model"):
        onnx_description(broken)


# ---------------------------------------------------------------- errors without TensorRT or a GPU


def test_type_tensorrt_without_tensorrt_is_one_clear_line() -> None:
    if tensorrt_imports():
        pytest.skip("tensorrt imports here")
    with pytest.raises(ModelError) as err:
        create_detector(ModelConfig(type="tensorrt", path=MODEL))
    message = str(err.value)
    assert "\n" not in message and message.startswith("model.type tensorrt: the `tensorrt` Python package")
    assert "pip install -e '.[tensorrt]'" in message and "python3-libnvinfer" in message


def test_no_gpu_is_one_clear_line_from_the_real_cuda_runtime() -> None:
    if probe_host(libraries=True).cuda_python.version is None:
        pytest.skip("cuda-python is not installed")
    if nvidia_device() is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    from edge.detections.tensorrt_backend import _import_cudart, gpu_info

    with pytest.raises(ModelError) as err:
        gpu_info(_import_cudart())
    assert str(err.value).startswith(
        "model.type tensorrt: no usable NVIDIA GPU (CUDA cudaGetDeviceCount failed"
    )
    assert "\n" not in str(err.value)


def test_cuda_out_of_memory_is_named_as_such() -> None:
    if probe_host(libraries=True).cuda_python.version is None:
        pytest.skip("cuda-python is not installed")
    from edge.detections.tensorrt_backend import CudaError, _check, _import_cudart

    cudart = _import_cudart()
    with pytest.raises(
        CudaError, match=r"^out of GPU memory: cudaMalloc failed \(cudaErrorMemoryAllocation\)$"
    ):
        _check(cudart, (cudart.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc")
    assert _check(cudart, (cudart.cudaError_t.cudaSuccess, 7), "cudaGetDeviceCount") == 7


def test_auto_without_a_gpu_runs_on_the_cpu_and_reports_its_providers() -> None:
    detector = create_detector(ModelConfig(path=MODEL, providers=["tensorrt", "cuda", "cpu"]), NO_GPU)
    assert detector.info.providers and all("TensorRT" not in p for p in detector.info.providers)


def test_onnx_runtime_tensorrt_provider_gets_an_engine_cache_and_fp16() -> None:
    from edge.detections.onnxrt import provider_options

    options = provider_options(["TensorrtExecutionProvider", "CPUExecutionProvider"], Path("/c/onnxrt"), True)
    assert (
        options[0]["trt_engine_cache_enable"] == "True" and options[0]["trt_engine_cache_path"] == "/c/onnxrt"
    )
    assert options[0]["trt_fp16_enable"] == "True" and options[1] == {}
    assert provider_options(["TensorrtExecutionProvider"], Path("/c"), False)[0]["trt_fp16_enable"] == "False"


# ---------------------------------------------------------------- config


def test_config_takes_tensorrt_and_refuses_int8_without_a_calibration_set(tmp_path: Path) -> None:
    assert ModelConfig(type="tensorrt").engine_precision == "fp16"
    with pytest.raises(ValidationError, match="engine_precision int8 needs `calibration`"):
        ModelConfig(type="tensorrt", engine_precision="int8")
    with pytest.raises(ValidationError, match="engine_precision"):
        ModelConfig(engine_precision="int4")  # type: ignore[arg-type]
    site = tmp_path / "site.yaml"
    site.write_text(
        "site: {id: s1, name: S1, edge_id: e1}\n"
        "model: {type: tensorrt, engine_precision: int8, engine_cache: engines, calibration: calib}\n"
        "cameras: [{id: c1, source: x.mp4}]\n"
    )
    model = load_config(site).model
    assert model.engine_cache == (tmp_path / "engines").resolve()
    assert model.calibration == (tmp_path / "calib").resolve()


# ---------------------------------------------------------------- INT8 by explicit quantization (CPU)


def test_int8_qdq_model_quantizes_convolutions_keeps_decode_tail_float_and_finds_people(
    tmp_path: Path,
) -> None:
    from edge.detections.quantize import calibration_images, quantize_qdq

    images = photos(4)
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "calibration.txt").write_text("".join(f"{p}\n" for p in images))  # absolute paths also work
    out = quantize_qdq(MODEL, calibration_images(calib), tmp_path / "model-qdq.onnx")
    graph = onnx.load(str(out)).graph
    quantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert sum(1 for c in convs if c.input[0] in quantized) >= len(convs) - 2
    assert all(c.input[0] not in quantized for c in convs if "/dfl/" in c.name)  # decode tail stays float
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["names"] and meta["sitesentry_precision"].startswith("int8 (qdq")
    image = cv2.imread(str(images[0]))
    fp32 = OnnxDetector(MODEL, expected_names=CLASS_NAMES).detect(image)
    int8 = OnnxDetector(out, expected_names=CLASS_NAMES).detect(image)
    assert len(fp32) > 0 and abs(len(int8) - len(fp32)) <= max(2, len(fp32) // 3)


# ---------------------------------------------------------------- on an NVIDIA GPU


def needs_gpu() -> None:
    if nvidia_device() is None:
        pytest.skip("needs an NVIDIA GPU (none on this machine)")
    facts = probe_host(libraries=True)
    for fact in (facts.tensorrt, facts.cuda_python):
        if not fact.usable:
            pytest.skip(f"needs TensorRT and cuda-python: {fact.problem}")


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnx_runtime_on_real_photos(tmp_path: Path) -> None:
    needs_gpu()
    from edge.detections.tensorrt_backend import TensorRtDetector

    cache = Path(os.environ.get("SITESENTRY_ENGINE_CACHE", tmp_path))
    batch = int(os.environ.get("SITESENTRY_MAX_BATCH", "16"))  # gpu-check.sh: the engine it built already
    engine = TensorRtDetector(
        MODEL, "fp16", batch, cache, default_confidence=0.25, expected_names=CLASS_NAMES
    )
    reference = OnnxDetector(MODEL, default_confidence=0.25, expected_names=CLASS_NAMES)
    images = [cv2.imread(str(p)) for p in photos(16)]
    compared = 0
    for ours, theirs in zip(engine.detect_batch(images), [reference.detect(i) for i in images], strict=True):
        # A box whose score sits at the threshold may appear in one only: match the others by position.
        confident = theirs.confidence > 0.25 + 1e-2
        for box, cls, conf in zip(
            theirs.xyxy[confident], theirs.class_id[confident], theirs.confidence[confident], strict=True
        ):
            same = np.flatnonzero((ours.class_id == cls) & (np.abs(ours.xyxy - box).max(axis=1) <= 1.0))
            assert same.size, f"box {box} class {cls} missing from the TensorRT result"
            assert np.min(np.abs(ours.confidence[same] - conf)) <= 1e-2
            compared += 1
    assert compared > 20
    cached = TensorRtDetector(MODEL, "fp16", batch, cache, expected_names=CLASS_NAMES)
    assert cached.engine_file == engine.engine_file  # the second start loads the cached engine


@pytest.mark.gpu
@pytest.mark.parametrize("precision, points", [("fp16", 0.5), ("int8", 1.5)])
def test_engine_map50_stays_within_target_of_fp32(precision: str, points: float, tmp_path: Path) -> None:
    needs_gpu()
    data = Path(os.environ.get("SITESENTRY_EVAL_DATA", ""))
    if not data.is_file():
        pytest.skip("set SITESENTRY_EVAL_DATA to an imported dataset's data.yaml (scripts/gpu-check.sh does)")
    calibration = os.environ.get("SITESENTRY_CALIBRATION")
    if precision == "int8" and not calibration:
        pytest.skip("set SITESENTRY_CALIBRATION to a calibration set (scripts/gpu-check.sh does)")
    from training.evaluate import evaluate

    fp32 = evaluate(MODEL, data, "val")
    config = ModelConfig(
        type="tensorrt",
        engine_precision=precision,  # type: ignore[arg-type]
        calibration=Path(calibration) if calibration else None,
        engine_cache=Path(os.environ.get("SITESENTRY_ENGINE_CACHE", tmp_path)),
    )
    engine = evaluate(MODEL, data, "val", config)
    assert engine.map50 >= fp32.map50 - points / 100, (precision, engine.map50, fp32.map50)


def test_gpu_check_script_records_no_gpu_cleanly(tmp_path: Path) -> None:
    if nvidia_device() is not None:
        pytest.skip("this machine has an NVIDIA GPU: the script runs for real")
    out = tmp_path / "gpu-check.json"
    env = {
        **os.environ,
        "GPU_CHECK_OUT": str(out),
        "GPU_CHECK_PYTHON": sys.executable,
        "GPU_CHECK_NO_INSTALL": "1",
    }
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu-check.sh")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["gpu"]["present"] is False
    assert (
        report["steps"]["gpu"]["status"] == "skipped" and "no NVIDIA GPU" in report["steps"]["gpu"]["detail"]
    )
    assert {s["status"] for s in report["steps"].values()} <= {"ok", "skipped", "failed"}
    assert report["steps"]["libraries"]["status"] == "ok" and report["libraries"]["auto"][0] != "tensorrt"


# ---------------------------------------------------------------- sitesentry export --format engine


def test_export_format_engine_needs_an_onnx_file_and_says_why_it_cannot_build_here(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    def export(*args: object):
        return CliRunner().invoke(app, ["export", *(str(a) for a in args)])

    wrong = export("--format", "plan", "--weights", MODEL)
    assert wrong.exit_code == 2 and "--format 'plan': expected onnx or engine" in wrong.output
    weights = export("--format", "engine", "--weights", MODEL.with_suffix(".pt"))
    assert weights.exit_code == 2 and "builds from an ONNX file" in weights.output
    int8 = export("--format", "engine", "--weights", MODEL, "--precision", "int8")
    assert int8.exit_code == 2 and "engine_precision int8 needs `calibration`" in int8.output
    if tensorrt_imports() and nvidia_device() is not None:
        built = export("--format", "engine", "--weights", MODEL, "--out", tmp_path)
        assert built.exit_code == 0 and "cache key " in built.output, built.output
        assert list(tmp_path.glob("model-fp16-*.engine")) and list(tmp_path.glob("*.engine.key.json"))
    else:
        here = export("--format", "engine", "--weights", MODEL, "--out", tmp_path)
        assert here.exit_code == 2 and "error: model.type tensorrt: " in here.output
        assert not list(tmp_path.iterdir())  # nothing half-built left in the cache
