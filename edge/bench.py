"""`sitesentry bench`: stage latency and end-to-end fps for 1, 4 and 8 cameras per backend and precision,
memory, and ultralytics' track() as reference (PyTorch, the same ONNX file, its own OpenVINO INT8 export)."""

from __future__ import annotations

import os
import platform
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.config.models import (
    CameraConfig,
    DetectConfig,
    EvidenceConfig,
    MetricsConfig,
    ModelConfig,
    RulesConfig,
    SiteConfig,
    SiteSection,
    ZoneConfig,
)
from edge.dataflow import Frame, Phase
from edge.detections import create_detector
from edge.events.evidence import EvidenceRecorder
from edge.labels import CLASS_NAMES
from edge.pipeline import CameraPipeline

#: Detector input long side of the end-to-end runs: the model's own training size.
BENCH_INPUT = 416
BENCH_ZONE = ZoneConfig(id="bench-zone", polygon=[(0.05, 0.5), (0.6, 0.5), (0.6, 0.98), (0.05, 0.98)])
#: Where the ultralytics OpenVINO INT8 reference takes its calibration images when none are given: the
#: training images our own INT8 calibration set is drawn from.
DEFAULT_CALIBRATION = (
    Path(__file__).resolve().parents[1].parent / "shared/datasets/construction-site-safety/train/images"
)
#: Calibration images for both INT8 exports (NNCF's default subset size; ours uses the same count).
CALIBRATION_IMAGES = 300


@dataclass(frozen=True)
class BenchBackend:
    """One detector configuration to measure: backend type, precision label and model file."""

    backend: str
    precision: str
    model: Path

    @property
    def label(self) -> str:
        """A short name for tables and ratios, e.g. `openvino-int8`."""
        return f"{self.backend}-{self.precision}"


def available_backends(model: Path) -> list[BenchBackend]:
    """Every backend and precision this box can run for `model`: OpenVINO INT8 (the `-int8.xml` beside it)
    and FP32 when openvino is installed, and ONNX Runtime FP32."""
    import importlib.util

    found = []
    if importlib.util.find_spec("openvino") is not None:
        int8 = model.with_name(f"{model.stem}-int8.xml")
        if int8.is_file():
            found.append(BenchBackend("openvino", "int8", int8))
        found.append(BenchBackend("openvino", "fp32", model))
    found.append(BenchBackend("onnxrt", "fp32", model))
    return found


def _percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values or [0.0])
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p95_ms": round(float(np.percentile(arr, 95)), 3),
    }


def _read_frames(video: Path, count: int) -> tuple[list[np.ndarray], list[float]]:
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise ValueError(f"{video}: not a readable video")
    frames: list[np.ndarray] = []
    decode_ms: list[float] = []
    while len(frames) < count:
        t0 = time.perf_counter()
        ok, image = capture.read()
        if not ok:
            if not frames:
                raise ValueError(f"{video}: no frames could be decoded")
            capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        decode_ms.append((time.perf_counter() - t0) * 1e3)
        frames.append(image)
    capture.release()
    return frames, decode_ms


def stage_latency(model: Path, video: Path, frames: int, backend: str = "onnxrt") -> dict[str, Any]:
    """Time every stage of one camera's pipeline over real frames, evidence included."""
    images, decode_ms = _read_frames(video, frames)
    detector = create_detector(ModelConfig(type=backend, path=model, providers=["cpu"]))  # type: ignore[arg-type]
    assert detector.info.names == CLASS_NAMES  # create_detector refuses any other class set
    camera = CameraConfig(id="bench", source=str(video), zones=[BENCH_ZONE])
    rules = RulesConfig(debounce_s=0.4)
    tz = __import__("zoneinfo").ZoneInfo("Asia/Hong_Kong")
    pipeline = CameraPipeline("bench", camera, rules, tz)
    stages: dict[str, list[float]] = {
        s: [] for s in ("preprocess", "inference", "postprocess", "tracking", "rules", "evidence")
    }
    events = 0
    with tempfile.TemporaryDirectory() as tmp:
        evidence = EvidenceRecorder(EvidenceConfig(folder=Path(tmp)), zones={"bench": camera.zones}, tz=tz)
        evidence.start()
        start = time.time()
        for i, image in enumerate(images):
            t0 = time.perf_counter()
            blob, boxes = detector.preprocess([image])
            t1 = time.perf_counter()
            output = detector.infer(blob)
            t2 = time.perf_counter()
            (detections,) = detector.postprocess(output, boxes)
            t3 = time.perf_counter()
            frame = Frame("bench", i, start + i / 5.0, image)  # as if captured at the default 5 fps
            result = pipeline.step(frame, detections)
            t4 = time.perf_counter()
            evidence.observe(result)
            for event in result.events:
                if event.phase is Phase.START:
                    evidence.record(event, result)
                    events += 1
            t5 = time.perf_counter()
            for name, value in zip(stages, ((t1 - t0), (t2 - t1), (t3 - t2)), strict=False):
                stages[name].append(value * 1e3)
            stages["tracking"].append(result.stage_ms["tracking"])
            stages["rules"].append(result.stage_ms["rules"])
            stages["evidence"].append((t5 - t4) * 1e3)
        evidence.stop()
    out = {"decode": _percentiles(decode_ms)} | {name: _percentiles(v) for name, v in stages.items()}
    inference_p50 = out["inference"]["p50_ms"]
    overhead = sum(out[s]["p50_ms"] for s in ("preprocess", "postprocess", "tracking", "rules", "evidence"))
    # The measure: everything outside (video) decoding and inference, so post-processing counts.
    return {
        "stages": out,
        "overhead_share_of_inference_p50": round(overhead / inference_p50, 4) if inference_p50 else None,
        "events_started": events,
        "frames": len(images),
        "model_input": list(detector.info.imgsz),
    }


def end_to_end_fps(
    model: Path,
    video: Path,
    cameras: int,
    seconds: float,
    backend: str = "onnxrt",
    model_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the real app (reader threads, batching, rules, evidence) on N copies of the video, unpaced.

    `model_settings` adds model.* keys (scripts/gpu-check.py: max_batch, engine_cache, engine_precision).

    Over 60 lines because the site config is spelled out here, with why each bench setting differs from a
    site's; the measurement itself is the short start, sleep and count after it.
    """
    from edge.app import EdgeApp

    with tempfile.TemporaryDirectory() as tmp:
        config = SiteConfig(
            site=SiteSection(id="bench", name="bench"),
            cameras=[
                CameraConfig(
                    id=f"cam{i}",
                    source=str(video),
                    fps=60,
                    realtime=False,
                    loop=True,
                    zones=[BENCH_ZONE],
                    # The model's own size, as stage_latency and the ultralytics references (imgsz) run;
                    # other input sizes: `bench --resolution`.
                    detect=DetectConfig(input=BENCH_INPUT),
                )
                for i in range(cameras)
            ],
            model=ModelConfig.model_validate(
                {"type": backend, "path": model, "providers": ["cpu"], **(model_settings or {})}
            ),
            # As stage_latency: a short debounce, so a walker becomes an event within the few seconds of
            # video a short or loaded run gets through (unpaced, video time moves with the frames analysed).
            rules=RulesConfig(debounce_s=0.4),
            evidence=EvidenceConfig(folder=Path(tmp) / "evidence"),
            metrics=MetricsConfig(enabled=False),
        )
        processed = {"n": 0}
        lock = threading.Lock()

        def count(_result: object) -> None:
            with lock:
                processed["n"] += 1

        app = EdgeApp(config, on_result=count)
        app.start()
        time.sleep(min(3.0, seconds / 3))  # let readers connect and the loop warm up
        with lock:
            processed["n"] = 0
        t0 = time.perf_counter()
        time.sleep(seconds)
        with lock:
            n = processed["n"]
        elapsed = time.perf_counter() - t0
        app.stop()

    def clip_count(metric: str, **labels: str) -> int:
        return int(app.registry.get_sample_value(metric, {"kind": "clip", **labels}) or 0)

    return {
        "cameras": cameras,
        "frames": n,
        "seconds": round(elapsed, 2),
        "fps_total": round(n / elapsed, 2),
        "fps_per_camera": round(n / elapsed / cameras, 2),
        # Over the whole run, warm-up and the flush at stop included: how much clip encoding the fps paid for.
        "clips_written": clip_count("sitesentry_evidence_written_total"),
        "clips_skipped_backlog": clip_count("sitesentry_evidence_failures_total", reason="backlog"),
    }


def ultralytics_reference(
    source: Path, video: Path, frames: int, imgsz: int, repeats: int = 1
) -> dict[str, Any]:
    """Time ultralytics' own track() (ByteTrack) reading the same video, with .pt or .onnx weights.

    Ultralytics decodes the video itself, as ours does, so both figures are end to end. With repeats > 1
    the run is repeated and the median rate reported.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    from ultralytics import YOLO

    model = YOLO(str(source), task="detect")
    args: dict[str, Any] = {
        "imgsz": imgsz,
        "persist": True,
        "verbose": False,
        "tracker": "bytetrack.yaml",
        "conf": 0.3,
    }
    warmup = 3  # the first calls allocate; they are not timed
    rates = []
    for _ in range(max(1, repeats)):
        seen, t0 = 0, time.perf_counter()
        for _result in model.track(source=str(video), stream=True, **args):
            seen += 1
            if seen == warmup:
                t0 = time.perf_counter()
            if seen == warmup + frames:
                break
        timed = seen - warmup
        if timed <= 0:
            raise ValueError(f"{video}: ultralytics read only {seen} frame(s)")
        rates.append(round(timed / (time.perf_counter() - t0), 2))
    return {
        "weights": source.name,
        "frames": timed,
        "fps": float(np.median(rates)),
        "runs_fps": rates,
    }


def ultralytics_openvino_int8(weights: Path, calibration: Path, imgsz: int, out_dir: Path) -> Path:
    """Export `weights` with ultralytics' own OpenVINO INT8 path (format=openvino, int8=True, its NNCF
    settings) calibrated on about CALIBRATION_IMAGES images of `calibration`; return the model folder."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    import shutil

    from ultralytics import YOLO

    images = sorted(p for p in calibration.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        raise ValueError(f"{calibration}: no calibration images")
    # Links to evenly spaced images in a folder of their own: ultralytics would otherwise read the labels
    # beside them (in another class set) and write its label cache into the dataset.
    linked = out_dir / "calibration" / "images"
    linked.mkdir(parents=True)
    step = max(1, len(images) // CALIBRATION_IMAGES)
    for image in images[::step][:CALIBRATION_IMAGES]:
        (linked / image.name).symlink_to(image.resolve())
    data = out_dir / "calibration.yaml"
    names = ", ".join(f"{i}: {n}" for i, n in enumerate(CLASS_NAMES))
    yaml_text = f"path: {linked.parent}\ntrain: images\nval: images\nnames: {{{names}}}\n"
    data.write_text(yaml_text, encoding="utf-8")
    staged = out_dir / weights.name  # ultralytics writes beside its weights: keep models/ untouched
    shutil.copyfile(weights, staged)
    exported = YOLO(str(staged)).export(
        format="openvino",
        int8=True,
        data=str(data),
        imgsz=imgsz,
        device="cpu",
    )
    return Path(exported)


def _backend_run(
    spec: BenchBackend, video: Path, frames: int, cameras: tuple[int, ...], seconds: float, repeats: int
) -> dict[str, Any]:
    """Stage latency and end-to-end fps for one backend; the 1-camera run is repeated, its median kept."""
    pipeline = stage_latency(spec.model, video, frames, spec.backend)
    runs = []
    for n in cameras:
        if n == 1:
            single = [end_to_end_fps(spec.model, video, 1, seconds, spec.backend) for _ in range(repeats)]
            median = sorted(single, key=lambda r: r["fps_total"])[len(single) // 2]
            runs.append(median | {"runs_fps": [r["fps_total"] for r in single]})
        else:
            runs.append(end_to_end_fps(spec.model, video, n, seconds, spec.backend))
    return {
        "backend": spec.backend,
        "precision": spec.precision,
        "model": str(spec.model),
        "pipeline": pipeline,
        "end_to_end": runs,
    }


def run_bench(
    video: Path,
    model: Path,
    frames: int = 150,
    reference: bool = True,
    weights: Path | None = None,
    e2e_seconds: float = 20.0,
    mqtt: bool = True,
    repeats: int = 3,
    backends: list[BenchBackend] | None = None,
    cameras: tuple[int, ...] = (1, 4, 8),
    calibration: Path | None = None,
) -> dict[str, Any]:
    """Run every measurement and return one JSON-ready dict.

    Each backend (default: every one this box has, see available_backends) gets stage latency and
    end-to-end runs for each camera count; the first is also reported at the top level. The one-camera
    runs and each ultralytics reference are repeated `repeats` times and their medians compared, so one
    noisy run on a shared machine does not decide a ratio.

    One function on purpose: it reads top to bottom as the report it builds, each optional part (MQTT, the
    ultralytics references and their INT8 export) a guarded block that adds its own keys.
    """
    if not video.is_file():
        raise ValueError(f"{video}: video not found")
    if not model.is_file():
        raise ValueError(f"{model}: model not found")
    cv2.setNumThreads(1)
    backends = backends or available_backends(model)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
        "model": str(model),
        "video": video.name,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    measured = [_backend_run(b, video, frames, cameras, e2e_seconds, max(1, repeats)) for b in backends]
    results["pipeline"] = measured[0]["pipeline"]
    results["end_to_end"] = measured[0]["end_to_end"]
    results["backends"] = measured
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if mqtt:
        from edge.mqtt.bench import run_mqtt_bench

        results["mqtt"] = run_mqtt_bench()
    if reference:
        try:
            import ultralytics  # noqa: F401
        except ImportError:
            results["ultralytics"] = "skipped: the train extra (ultralytics, torch) is not installed"
        else:
            imgsz = results["pipeline"]["model_input"][0]
            refs = []
            pt = weights or model.with_suffix(".pt")
            if pt.is_file():
                refs.append(ultralytics_reference(pt, video, frames, imgsz, repeats))
            refs.append(ultralytics_reference(model, video, frames, imgsz, repeats))
            calibration = calibration or DEFAULT_CALIBRATION
            notes = []
            if not pt.is_file():
                notes.append("ultralytics OpenVINO INT8 skipped: no .pt weights to export")
            elif not calibration.is_dir():
                notes.append(f"ultralytics OpenVINO INT8 skipped: no calibration images at {calibration}")
            else:
                with tempfile.TemporaryDirectory(prefix="sitesentry-bench-") as tmp:
                    exported = ultralytics_openvino_int8(pt, calibration, imgsz, Path(tmp))
                    refs.append(ultralytics_reference(exported, video, frames, imgsz, repeats))
            results["ultralytics"] = refs
            if notes:
                results["ultralytics_notes"] = notes
            results["speedup_vs_ultralytics"] = {
                run["backend"] + "-" + run["precision"]: {
                    r["weights"]: round(run["end_to_end"][0]["fps_total"] / r["fps"], 2) for r in refs
                }
                for run in measured
                if run["end_to_end"] and run["end_to_end"][0]["cameras"] == 1
            }
    return results
