"""The GPU check behind scripts/gpu-check.sh: one short, bounded run on an NVIDIA box (see that script).

Each step runs as a subprocess with its own timeout, inside one overall budget, so a crash or a hang in
TensorRT costs one step, not the report. The report (docs/benchmarks/gpu-check.json) is rewritten after
every step: each step has a status (ok, failed, skipped), its seconds and a one-line detail. Only the
standard library is imported here; the measuring modes (`--timing`, `--bench`) run in subprocesses too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ppe-yolo" / "model.onnx"
CAMERAS = (1, 4, 8, 16)
MAX_BATCH = 16  # one FP16 engine serves the parity test, the TensorRT timing and every camera count
PACKAGES = {  # module -> what pip installs when it is missing
    "tensorrt": "tensorrt-cu12>=10.3,<11",
    "cuda.bindings": "cuda-python>=12.3,<13",
}


class Check:
    """The run: its report, the steps' budget, and the subprocess runner."""

    def __init__(self, out: Path, work: Path, budget_s: float) -> None:
        self.out, self.work = out, work
        self.deadline = time.monotonic() + budget_s
        self.python = sys.executable
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        self.report: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "arch": platform.machine(),
            },
            "commit": _git_commit(),
            "budget_s": budget_s,
            "gpu": {"present": False},
            "steps": {},
            "results": {},
        }

    def left(self) -> float:
        """Seconds left in the budget."""
        return self.deadline - time.monotonic()

    def record(self, step: str, status: str, detail: str, seconds: float = 0.0, **extra: Any) -> None:
        """Set one step's outcome and rewrite the report."""
        self.report["steps"][step] = {"status": status, "seconds": round(seconds, 1), "detail": detail[:500]}
        self.report["steps"][step].update(extra)
        print(f"[gpu-check] {step}: {status} ({seconds:.0f} s) {detail[:200]}", flush=True)
        self.save()

    def save(self) -> None:
        """Write the report (atomically: a killed run leaves the last complete one)."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.out)

    def run(
        self, step: str, command: list[str], timeout: float, env: dict[str, str] | None = None
    ) -> str | None:
        """Run a step's command within min(timeout, budget left); record it; return stdout when it passed."""
        limit = min(timeout, self.left())
        if limit < 5:
            self.record(step, "skipped", "out of time (the run's budget is spent)")
            return None
        t0 = time.monotonic()
        try:
            done = subprocess.run(
                command,
                cwd=REPO,
                env={**self.env, **(env or {})},
                capture_output=True,
                text=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            self.record(step, "failed", f"timed out after {limit:.0f} s", time.monotonic() - t0)
            return None
        seconds = time.monotonic() - t0
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).strip().splitlines() if ln.strip()]
            errors = [ln for ln in lines if "error" in ln.lower()] or lines
            self.record(step, "failed", f"exit {done.returncode}: {(errors or [''])[-1].strip()}", seconds)
            return None
        self.record(step, "ok", _last_line(done.stdout), seconds)
        return done.stdout


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def probe_gpu() -> dict[str, Any]:
    """nvidia-smi's view of GPU 0, or the device files (Jetson has no nvidia-smi query), or nothing."""
    smi = shutil.which("nvidia-smi")
    if smi:
        fields = "name,driver_version,memory.total,uuid,compute_cap"
        try:
            line = (
                subprocess.run(
                    [smi, f"--query-gpu={fields}", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                )
                .stdout.strip()
                .splitlines()
            )
        except (OSError, subprocess.SubprocessError):
            line = []
        if line:
            values = [v.strip() for v in line[0].split(",")]
            return {"present": True, **dict(zip(fields.split(","), values, strict=False))}
    for device in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu"):
        if Path(device).exists():
            return {"present": True, "device": device}
    return {"present": False}


def data_paths() -> tuple[Path, Path]:
    """The shared dataset and the benchmark video (the repo's sample video when the shared one is absent)."""
    shared = Path(os.environ.get("SITESENTRY_SHARED", REPO.parent / "shared"))
    video = shared / "videos" / "hardhat-workers.mp4"
    return (
        shared / "datasets" / "construction-site-safety",
        video if video.is_file() else REPO / "samples" / "vtest.mp4",
    )


def install(check: Check) -> None:
    """Install missing packages from the wheels folder (offline), else from the registry; record which."""
    probe = "import importlib.util as u, sys; sys.exit(0 if u.find_spec(sys.argv[1].split('.')[0]) else 1)"
    missing = [
        m for m in PACKAGES if subprocess.run([check.python, "-c", probe, m], env=check.env).returncode
    ]
    if not missing:
        check.record("install", "ok", "tensorrt and cuda-python already installed")
        return
    if os.environ.get("GPU_CHECK_NO_INSTALL") == "1":
        check.record("install", "skipped", f"GPU_CHECK_NO_INSTALL=1; missing: {', '.join(missing)}")
        return
    wheels = Path(os.environ.get("GPU_CHECK_WHEELS", REPO / ".whl"))
    target = check.work / "site"
    if wheels.is_dir() and list(wheels.glob("*.whl")):
        command = [
            check.python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-deps",
            "--target",
            str(target),
        ]
        command += [str(w) for w in sorted(wheels.glob("*.whl"))]
    else:
        command = [check.python, "-m", "pip", "install", "-q", "--target", str(target)]
        command += [PACKAGES[m] for m in missing]
    if check.run("install", command, 240) is not None:
        check.env["PYTHONPATH"] = os.pathsep.join([str(target), check.env["PYTHONPATH"]])


def libraries(check: Check) -> dict[str, Any]:
    """What the backend selection sees on this box, and the backend `auto` picks."""
    code = (
        "import json, dataclasses; from edge.config.models import ModelConfig;"
        "from edge.detections.select import probe_host, choose_backend;"
        "f = probe_host(libraries=True); b = choose_backend(ModelConfig(), f);"
        "print(json.dumps({'facts': dataclasses.asdict(f), 'auto': list(b)}))"
    )
    out = check.run("libraries", [check.python, "-c", code], 60)
    return json.loads(_last_line(out)) if out else {}


def dataset(check: Check, source: Path) -> tuple[Path | None, Path | None]:
    """Import the shared dataset (about 10 s: links, not copies) and write the INT8 calibration set."""
    data = check.work / "css" / "data.yaml"
    if not data.is_file():
        if not source.is_dir():
            check.record("dataset", "skipped", f"no dataset at {source} (set SITESENTRY_SHARED)")
            return None, None
        shutil.rmtree(data.parent, ignore_errors=True)
        mapping = REPO / "training" / "mappings" / "construction-site-safety.yaml"
        command = [
            check.python,
            "-m",
            "edge.cli",
            "dataset",
            "import",
            str(source),
            "--mapping",
            str(mapping),
        ]
        if check.run("dataset", command + ["--out", str(data.parent)], 120) is None:
            return None, None
    else:
        check.record("dataset", "ok", f"reused {data}")
    calibration = check.work / "calibration"
    count = os.environ.get("GPU_CHECK_CALIBRATION_COUNT", "300")
    if not (calibration / "calibration.txt").is_file():
        code = (
            "import sys; from pathlib import Path; from training.datasets.yolo import read_yolo;"
            "from training.export import write_calibration_set;"
            "print(write_calibration_set(read_yolo(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])))"
        )
        if (
            check.run("calibration", [check.python, "-c", code, str(data), str(calibration), count], 60)
            is None
        ):
            return data, None
    return data, calibration


def evaluate(check: Check, step: str, data: Path, extra: list[str]) -> float | None:
    """`sitesentry eval` on the valid split; returns mAP50."""
    report = check.work / f"{step}.json"
    command = [check.python, "-m", "edge.cli", "eval", "--model", str(MODEL), "--data", str(data)]
    if check.run(step, command + ["--json", str(report)] + extra, 240) is None or not report.is_file():
        return None
    figures = json.loads(report.read_text(encoding="utf-8"))
    check.report["steps"][step]["map50"] = figures.get("map50")
    check.report["steps"][step]["ms_per_image"] = figures.get("ms_per_image")
    return figures.get("map50")


def main() -> int:
    """Run every step in order within the budget; always leave the report."""
    work = Path(os.environ.get("GPU_CHECK_WORK", "/tmp/sitesentry-gpu-check"))
    work.mkdir(parents=True, exist_ok=True)
    out = Path(os.environ.get("GPU_CHECK_OUT", REPO / "docs" / "benchmarks" / "gpu-check.json"))
    check = Check(out, work, float(os.environ.get("GPU_CHECK_BUDGET_S", "450")))
    cache = work / "engines"
    source, video = data_paths()
    check.report["gpu"] = gpu = probe_gpu()
    gpu_steps = (
        "install",
        "libraries",
        "engine_fp16",
        "parity",
        "eval_fp16",
        "eval_int8",
        "trt_timing",
        "bench",
    )
    force = os.environ.get("GPU_CHECK_FORCE") == "1"
    if not gpu["present"] and not force:
        check.record("gpu", "skipped", "no NVIDIA GPU on this machine (no nvidia-smi GPU, no /dev/nvidia0)")
        check.report["libraries"] = libraries(check)  # what auto picks here, and why TensorRT is not used
        for step in gpu_steps[2:]:
            check.record(step, "skipped", "no NVIDIA GPU")
        check.record("install", "skipped", "no NVIDIA GPU")
        if os.environ.get("GPU_CHECK_CPU_STEPS") == "1":  # prove the CPU-side plumbing
            data, _ = dataset(check, source)
            if data is not None:
                evaluate(check, "eval_fp32", data, [])
        check.save()
        return 0
    if gpu["present"]:
        check.record(
            "gpu", "ok", f"{gpu.get('name', gpu.get('device'))} driver {gpu.get('driver_version', '?')}"
        )
    else:
        check.record("gpu", "failed", "no NVIDIA GPU; GPU_CHECK_FORCE=1 runs every step anyway")
    install(check)
    check.report["libraries"] = libraries(check)
    built = check.run(
        "engine_fp16",
        [check.python, "-m", "edge.cli", "export", "--format", "engine", "--weights", str(MODEL),
         "--precision", "fp16", "--max-batch", str(MAX_BATCH), "--out", str(cache)],
        240,
    )  # fmt: skip
    if built:
        engine = re.search(r"^TensorRT engine (\S+)", built, re.M)
        key = re.search(r"^cache key (.+)$", built, re.M)
        check.report["steps"]["engine_fp16"].update(
            engine=engine.group(1) if engine else None, key=key.group(1) if key else None
        )
    data, calibration = dataset(check, source)
    env = {"SITESENTRY_ENGINE_CACHE": str(cache), "SITESENTRY_MAX_BATCH": str(MAX_BATCH)}
    tests = check.run(
        "parity",
        [check.python, "-m", "pytest", "-q", "-rs", "-m", "gpu", "-k", "matches_onnx_runtime",
         "-p", "no:cacheprovider", "tests/detections/test_tensorrt.py"],
        180,
        env,
    )  # fmt: skip
    if tests is not None and " passed" not in _last_line(tests):  # skipped: say why, it is no pass
        reasons = [ln for ln in tests.splitlines() if ln.startswith("SKIPPED")]
        check.record("parity", "failed", f"no test passed: {(reasons or [_last_line(tests)])[0]}")
    if data is not None:
        fp32 = evaluate(check, "eval_fp32", data, [])
        fp16 = evaluate(check, "eval_fp16", data, ["--engine", "fp16", "--engine-cache", str(cache)])
        int8 = None
        if calibration is not None:
            extra = ["--engine", "int8", "--calibration", str(calibration), "--engine-cache", str(cache)]
            int8 = evaluate(check, "eval_int8", data, extra)
        else:
            check.record("eval_int8", "skipped", "no calibration set")
        if fp32 is not None:
            deltas = {"fp16": fp16, "int8": int8}
            check.report["results"]["map50"] = {"fp32": fp32, "fp16": fp16, "int8": int8} | {
                f"{k}_minus_fp32_points": None if v is None else round((v - fp32) * 100, 2)
                for k, v in deltas.items()
            }
    else:
        for step in ("eval_fp32", "eval_fp16", "eval_int8"):
            check.record(step, "skipped", "no dataset")
    timing_out = check.run(
        "trt_timing", [check.python, str(Path(__file__)), "--timing", str(cache), str(video)], 120
    )
    timing = json.loads(_last_line(timing_out)) if timing_out else None
    bench_out = check.run(
        "bench", [check.python, str(Path(__file__)), "--bench", str(cache), str(video)], 200
    )
    bench = json.loads(_last_line(bench_out)) if bench_out else None
    check.report["results"]["tensorrt_timing"] = timing
    check.report["results"]["end_to_end"] = bench
    if timing and bench:
        check.report["results"]["end_to_end_vs_tensorrt"] = compare(timing, bench)
    check.save()
    return 0


def compare(timing: dict[str, Any], bench: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """End-to-end frames/s against the engine's own images/s at the same batch (the target: within 10 %
    at one camera; 16 cameras at the configured 5 frames/s each)."""
    rows = []
    for run in bench:
        engine = next((t for t in timing["batches"] if t["batch"] == min(run["cameras"], MAX_BATCH)), None)
        if engine is None or not engine.get("images_per_s"):
            continue
        rows.append(
            {
                "cameras": run["cameras"],
                "end_to_end_fps": run["fps_total"],
                "engine_images_per_s": engine["images_per_s"],
                "share_of_engine": round(run["fps_total"] / engine["images_per_s"], 3),
                "fps_per_camera": run["fps_per_camera"],
            }
        )
    return rows


# ---------------------------------------------------------------- measuring modes (run as subprocesses)


def timing_mode(cache: Path, video: Path) -> dict[str, Any]:
    """TensorRT's own timing of the FP16 engine at the pipeline's input shape: trtexec when present,
    else the TensorRT API (execute_async_v3 on the engine's stream, no host copies) in a timed loop."""
    import cv2
    import numpy as np

    from edge.detections.tensorrt_backend import TensorRtDetector
    from edge.labels import CLASS_NAMES

    detector = TensorRtDetector(MODEL, "fp16", MAX_BATCH, cache, expected_names=CLASS_NAMES)
    ok, frame = cv2.VideoCapture(str(video)).read()
    if not ok:
        raise SystemExit(f"{video}: no frame")
    h, w = detector.input_size([frame])
    trtexec = shutil.which("trtexec") or "/usr/src/tensorrt/bin/trtexec"
    batches = []
    for batch in CAMERAS:
        shape = (batch, 3, h, w)
        dims = "x".join(map(str, shape))
        if Path(trtexec).is_file():
            done = subprocess.run(
                [trtexec, f"--loadEngine={detector.engine_file}", f"--shapes={detector._input}:{dims}",
                 "--duration=3", "--warmUp=500", "--noDataTransfers"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            mean = re.search(
                r"GPU Compute Time: min = [\d.]+ ms, max = [\d.]+ ms, mean = ([\d.]+) ms", done.stdout
            )
            ms = float(mean.group(1)) if mean else None
            source = "trtexec"
        else:
            cudart, context, stream = detector._cudart, detector._context, detector._stream
            context.set_input_shape(detector._input, shape)
            for _ in range(20):
                context.execute_async_v3(int(stream))
            cudart.cudaStreamSynchronize(stream)
            runs = 200 if batch <= 4 else 100
            t0 = time.perf_counter()
            for _ in range(runs):
                context.execute_async_v3(int(stream))
            cudart.cudaStreamSynchronize(stream)
            ms = (time.perf_counter() - t0) * 1e3 / runs
            source = "tensorrt api"
        blob = np.zeros(shape, np.float32)  # with host copies, as the pipeline calls it
        detector.infer(blob)
        t0 = time.perf_counter()
        for _ in range(50):
            detector.infer(blob)
        with_copies = (time.perf_counter() - t0) * 1e3 / 50
        batches.append(
            {
                "batch": batch,
                "input": [h, w],
                "gpu_ms": None if ms is None else round(ms, 3),
                "images_per_s": None if not ms else round(batch * 1e3 / ms, 1),
                "infer_with_copies_ms": round(with_copies, 3),
                "source": source,
            }
        )
    return {"engine": str(detector.engine_file), "batches": batches}


def bench_mode(cache: Path, video: Path) -> list[dict[str, Any]]:
    """The real app (readers, batching, tracking, rules, evidence) on 1/4/8/16 copies of the video."""
    from edge.bench import end_to_end_fps

    settings = {"max_batch": MAX_BATCH, "engine_cache": str(cache), "engine_precision": "fp16"}
    seconds = float(os.environ.get("GPU_CHECK_BENCH_S", "8"))
    return [end_to_end_fps(MODEL, video, n, seconds, "tensorrt", settings) for n in CAMERAS]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timing", nargs=2, metavar=("CACHE", "VIDEO"))
    parser.add_argument("--bench", nargs=2, metavar=("CACHE", "VIDEO"))
    args = parser.parse_args()
    if args.timing:
        print(json.dumps(timing_mode(Path(args.timing[0]), Path(args.timing[1]))))
    elif args.bench:
        print(json.dumps(bench_mode(Path(args.bench[0]), Path(args.bench[1]))))
    else:
        sys.exit(main())
