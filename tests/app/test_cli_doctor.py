"""`sitesentry doctor` run for real on this box: every check answers, the JSON is well-formed, a missing
tool is reported instead of crashing, and the backend row agrees with the runtime's own `auto` rule."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge import doctor
from edge.config.models import ModelConfig
from edge.detections.engine_cache import KEY_SUFFIX
from edge.detections.select import NVIDIA_DEVICES, choose_backend
from edge.doctor import CHECKS, Check, DoctorInput, run_checks

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "ppe-yolo" / "model.onnx"
NAMES = [c.__name__.removeprefix("check_") for c in CHECKS]
HAS_NVIDIA = shutil.which("nvidia-smi") is not None or any(Path(d).exists() for d in NVIDIA_DEVICES)


def run_doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
    )


def site_yaml(tmp_path: Path, **model: object) -> Path:
    data = yaml.safe_load((REPO / "samples" / "site.yaml").read_text(encoding="utf-8"))
    data["cameras"][0]["source"] = str(REPO / "samples" / "vtest.mp4")
    data["model"] = {"path": str(MODEL), **model}
    data["evidence"]["folder"] = str(tmp_path / "evidence")
    data["mqtt"]["outbox"] = str(tmp_path / "outbox.sqlite3")
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_json_report_has_every_check_in_order_with_a_valid_status(tmp_path: Path) -> None:
    done = run_doctor("--json", "--config", str(site_yaml(tmp_path)))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [c["name"] for c in report["checks"]] == NAMES
    for check in report["checks"]:
        assert check["status"] in ("ok", "warn", "missing"), check
        assert check["summary"] and "\n" not in check["summary"], check
    checks = by_name(report)
    assert checks["system"]["details"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert checks["onnxruntime"]["status"] == "ok"
    assert "CPUExecutionProvider" in checks["onnxruntime"]["details"]["providers"]
    assert checks["disk"]["details"]["folders"]["evidence"]["folder"] == str(tmp_path / "evidence")


@pytest.mark.skipif(HAS_NVIDIA, reason="this machine has an NVIDIA GPU")
def test_without_a_gpu_says_so_and_auto_picks_a_cpu_backend(tmp_path: Path) -> None:
    checks = by_name(json.loads(run_doctor("--json", "--config", str(site_yaml(tmp_path))).stdout))
    assert checks["gpu"]["status"] == "missing"
    assert checks["gpu"]["summary"].startswith("no NVIDIA GPU")
    assert checks["hw_decode"]["status"] == "missing"
    backend = checks["backend"]["details"]
    expected = "openvino" if importlib.util.find_spec("openvino") else "onnxrt"
    assert backend["backend"] == expected
    assert backend["reason"].startswith("no NVIDIA GPU")
    # The same rule the runtime applies, not a copy of it:
    assert (backend["backend"], backend["reason"]) == choose_backend(ModelConfig(path=MODEL))


def test_backend_row_follows_model_type_and_warns_about_a_missing_model(tmp_path: Path) -> None:
    checks = by_name(json.loads(run_doctor("--json", "-c", str(site_yaml(tmp_path, type="onnxrt"))).stdout))
    assert checks["backend"]["details"]["backend"] == "onnxrt"
    assert checks["backend"]["details"]["reason"] == "set by model.type"
    assert checks["backend"]["status"] == "ok"
    ir = tmp_path / "model-int8.xml"
    checks = by_name(json.loads(run_doctor("--json", "-c", str(site_yaml(tmp_path, path=str(ir)))).stdout))
    assert checks["backend"]["details"]["backend"] == "openvino"
    assert checks["backend"]["status"] == "warn"
    assert f"{ir} does not exist" in checks["backend"]["summary"]


def test_missing_tools_are_reported_not_crashed_on(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    done = run_doctor("--json", env={"PATH": str(empty)})  # no nvidia-smi, gst-inspect-1.0, ffmpeg, nvcc
    assert done.returncode == 0, done.stderr
    checks = by_name(json.loads(done.stdout))
    assert list(checks) == NAMES
    assert checks["gstreamer"]["status"] == "missing"
    assert "gst-inspect-1.0 not found" in checks["gstreamer"]["summary"]
    assert checks["ffmpeg"]["status"] == "missing"
    assert checks["hw_decode"]["details"]["nvv4l2decoder"] is False


def test_table_lists_every_check() -> None:
    done = run_doctor()
    assert done.returncode == 0, done.stderr
    for name in NAMES:
        assert name in done.stdout


def test_a_bad_config_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {id: a, name: A}\ncameras: [{id: c, source: usb:0, fps: 0}]\n", encoding="utf-8")
    done = run_doctor("--config", str(bad))
    assert done.returncode == 2
    assert "cameras[0].fps" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_check_that_raises_becomes_a_warning() -> None:
    def check_broken(_: DoctorInput) -> Check:
        raise OSError("driver went away")

    inp = DoctorInput.from_config(None, None, MODEL)
    results = run_checks(inp, [doctor.check_system, check_broken])
    assert results[0].name == "system"
    assert results[1] == Check("broken", "warn", "check failed: OSError: driver went away")


def test_engine_cache_lists_engines_with_their_keys_and_low_disk_warns(tmp_path: Path) -> None:
    cache = tmp_path / "engines"
    cache.mkdir()
    (cache / "model-fp16-0123.engine").write_bytes(b"\0" * 2048)
    key = {"gpu_name": "Orin", "compute_capability": "8.7", "tensorrt_version": "10.3.0", "precision": "fp16"}
    (cache / f"model-fp16-0123.engine{KEY_SUFFIX}").write_text(json.dumps({**key, "recipe": 1}))
    (cache / "model-int8-4567.engine").write_bytes(b"\0" * 1024)  # no key file: the runtime rebuilds it
    base = DoctorInput.from_config(None, None, MODEL)
    inp = dataclasses.replace(
        base,
        evidence=base.evidence.model_copy(update={"folder": tmp_path / "evidence", "min_free_gb": 1e9}),
        engine_cache=cache,
    )
    engine = doctor.check_engine_cache(inp)
    assert engine.status == "ok"
    assert [(e["file"], e["bytes"], e["key"]) for e in engine.details["engines"]] == [
        ("model-fp16-0123.engine", 2048, key),
        ("model-int8-4567.engine", 1024, None),
    ]
    disk = doctor.check_disk(inp)
    assert disk.status == "warn"
    assert "below evidence.min_free_gb (1e+09 GB): evidence, outbox, engine_cache" in disk.summary
    empty = doctor.check_engine_cache(dataclasses.replace(inp, engine_cache=tmp_path / "none"))
    assert empty.status == "missing"


def test_engine_cache_comes_from_the_config(tmp_path: Path) -> None:
    config = site_yaml(tmp_path, engine_cache=str(tmp_path / "my-engines"))
    checks = by_name(json.loads(run_doctor("--json", "-c", str(config)).stdout))
    assert checks["engine_cache"]["details"]["folder"] == str(tmp_path / "my-engines")
    assert checks["disk"]["details"]["folders"]["engine_cache"]["folder"] == str(tmp_path / "my-engines")


def test_jetson_release_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n"
    )
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr(doctor, "JETSON_RELEASE", release)
    monkeypatch.setattr(doctor, "JETSON_MODEL", model)
    gpu = doctor.check_gpu(DoctorInput.from_config(None, None, MODEL))
    assert gpu.details["l4t"] == "36.4.3"
    assert gpu.details["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert gpu.summary.startswith("NVIDIA Jetson AGX Orin Developer Kit, L4T 36.4.3")
    if not any(Path(d).exists() for d in NVIDIA_DEVICES):  # e.g. a container started without the runtime
        assert gpu.status == "warn"
        assert "nvidia runtime" in gpu.summary


#: What nvidia-smi printed on an H200 box (driver 570), for the parsing test below: this machine has no GPU.
NVIDIA_SMI = """#!/bin/sh
case "$1" in
  --query-gpu=*) echo "NVIDIA H200, 570.124.06, 143771, 9.0" ;;
  *) echo "| NVIDIA-SMI 570.124.06   Driver Version: 570.124.06   CUDA Version: 12.8 |" ;;
esac
"""


def test_nvidia_smi_output_is_parsed_into_gpu_and_cuda_rows(tmp_path: Path) -> None:
    """Recorded nvidia-smi output stands in for a GPU this CI machine lacks; the real tool runs in
    scripts/gpu-check.sh on a GPU box."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(NVIDIA_SMI)
    smi.chmod(0o755)
    done = run_doctor("--json", env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    checks = by_name(json.loads(done.stdout))
    if Path(doctor.JETSON_RELEASE).exists():
        pytest.skip("a Jetson reports its module instead")
    assert checks["gpu"]["status"] == "ok"
    assert checks["gpu"]["details"]["gpus"] == [
        {
            "name": "NVIDIA H200",
            "driver": "570.124.06",
            "memory_mib": 143771,
            "compute_capability": "9.0",
            "source": "nvidia-smi",
        }
    ]
    assert checks["gpu"]["summary"] == "NVIDIA H200 (143771 MiB, driver 570.124.06)"
    assert checks["cuda"]["status"] == "ok"
    assert checks["cuda"]["details"]["driver_cuda"] == "12.8"
