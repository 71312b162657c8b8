"""The `sitesentry` command: parses arguments and hands off to the stages; no logic of its own."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from importlib import import_module
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from edge.config import ConfigError, load_config
from edge.config.loader import missing_camera_files, missing_files
from edge.config.models import SiteConfig
from edge.mqtt.cli import register as register_mqtt_commands
from edge.telemetry import redact, setup_logging
from training.cli import register as register_training_commands

app = typer.Typer(
    help="SiteSentry: construction-site safety on the edge.", no_args_is_help=True, add_completion=False
)
config_app = typer.Typer(
    help="Check site configuration files and print their JSON Schema.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
camera_app = typer.Typer(help="Check how a camera's view suits the detector.", no_args_is_help=True)
app.add_typer(camera_app, name="camera")
console = Console(stderr=True)
register_mqtt_commands(app)  # broker, alerts tail, mqtt schemas
register_training_commands(app)  # dataset, train, eval, export: they import torch/ultralytics only when run
try:
    app.add_typer(import_module("dashboard.cli").app, name="dashboard")  # its commands import the web stack
except ImportError as exc:  # Python 3.10 (the dashboard needs 3.11): the edge runs; `dashboard` says why not
    _no_dashboard = str(exc)

    @app.command(
        "dashboard",
        help="The site dashboard (not available on this Python).",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def dashboard_unavailable() -> None:
        say("error: ", "bold red", _no_dashboard)
        raise typer.Exit(2)


log = logging.getLogger("sitesentry")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO_ROOT / "samples" / "site.yaml"
#: Config errors printed at most; a generated file can hold thousands of the same mistake.
MAX_ERRORS_SHOWN = 20


def say(label: str, style: str, message: str) -> None:
    """Print one redacted line to stderr, taken literally: `[...]` in a path or message is not markup."""
    console.print(Text.assemble((label, style), redact(message)), highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear error line and return the exit to raise."""
    say("error: ", "bold red", message)
    return typer.Exit(code)


def load_or_exit(path: Path) -> SiteConfig:
    """Load a config, its paths checked, or exit non-zero after printing one line per error."""
    try:
        return load_config(path, check_paths=True)
    except ConfigError as exc:
        lines = exc.lines()
        for line in lines[:MAX_ERRORS_SHOWN]:
            say("error: ", "bold red", line)
        if len(lines) > MAX_ERRORS_SHOWN:
            say("error: ", "bold red", f"{exc.source}: and {len(lines) - MAX_ERRORS_SHOWN} more errors")
        raise typer.Exit(2) from None


@config_app.command("check")
def config_check(file: Annotated[Path, typer.Argument(help="Site YAML file.")]) -> None:
    """Validate a site config and print every error with its location."""
    config = load_or_exit(file)
    missing = missing_camera_files(config) + alarm_problems(config)
    for warning in missing_files(config):
        say("warning: ", "yellow", warning)
    if missing:
        for line in missing:
            say("error: ", "bold red", f"{file}: {line}")
        raise typer.Exit(2)
    cams = ", ".join(c.id for c in config.cameras)
    typer.echo(f"{file}: OK (site {config.site.id}, cameras: {cams})")


def alarm_problems(config: SiteConfig) -> list[str]:
    """Build the alarm hook as `run` will (programs found, sound files there, speech rendered and cached), so
    `config check` says what would stop `run`."""
    if config.alarms is None:
        return []
    from edge.alarms import AlarmHook, AlarmHookError

    try:
        AlarmHook(config.alarms).close()
    except AlarmHookError as exc:
        return [str(exc)]
    return []


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of the site config (for editor completion)."""
    typer.echo(json.dumps(SiteConfig.model_json_schema(), indent=2))


@camera_app.command("check")
def camera_check(
    file: Annotated[Path, typer.Argument(help="Site YAML file.")],
    camera: Annotated[str | None, typer.Option(help="Camera id (needed when the site has several).")] = None,
    frames: Annotated[int, typer.Option(min=1, max=500, help="Frames to sample.")] = 20,
    preview: Annotated[
        Path | None, typer.Option(help="Write a PNG: zones, anchor points, judged and unjudged persons.")
    ] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the report here.")] = None,
) -> None:
    """Sample a camera's frames, measure how tall workers appear to the detector at its setting and the
    alternatives, and recommend an input size or tiling (cameras[].detect) with the snippet to paste."""
    from edge.camera_check import CheckError, check_camera, render_report
    from edge.detections import ModelError, create_detector
    from edge.frames.sources import SourceError, quiet_video_backends

    setup_logging("WARNING")
    quiet_video_backends()
    site = load_or_exit(file)
    try:
        detector = create_detector(site.model)
        report = check_camera(detector, site, camera, frames, preview)
    except (CheckError, ModelError, SourceError, OSError) as exc:
        raise fail(str(exc)) from None
    typer.echo(render_report(report))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site YAML file.")],
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    log_json: Annotated[bool, typer.Option(help="Log JSON lines.")] = False,
) -> None:
    """Run every camera until SIGINT/SIGTERM, then shut down cleanly (flushing evidence)."""
    from edge.runtime import Runtime

    site = load_or_exit(config)
    setup_logging(log_level, log_json, timezone=site.site.timezone)
    stop = _stop_on_signals()
    try:
        runtime = Runtime.build(site)
    except (ConfigError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    try:
        runtime.start()
        runtime.app.wait(stop)
        unplayable = runtime.app.unplayable_cameras()
    except (ValueError, OSError) as exc:  # e.g. the metrics port is taken
        raise fail(str(exc)) from None
    finally:
        runtime.stop()
    if unplayable and not stop.is_set():  # every camera ended or cannot play: nothing left to watch
        reasons = "; ".join(f"camera {cid}: {reason}" for cid, reason in unplayable.items())
        raise fail(f"no camera left to run: {reasons}", code=1)


@app.command()
def demo(
    config: Annotated[Path, typer.Option("--config", "-c", help="Site YAML file.")] = DEMO_CONFIG,
    seconds: Annotated[float, typer.Option(help="Stop after this many seconds (0: until Ctrl-C).")] = 0,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "WARNING",
    dashboard_port: Annotated[
        int, typer.Option(help="Port of the site dashboard on 127.0.0.1 (a free one if taken; 0: none).")
    ] = 8080,
) -> None:
    """Run the pipeline on the sample video with an embedded broker and the site dashboard; show violations
    live and print the dashboard's URL and a demo login."""
    from edge.demo import run_demo

    site = load_or_exit(config)
    setup_logging(log_level, timezone=site.site.timezone)
    stop = _stop_on_signals()
    try:
        run_demo(site, stop, seconds=seconds, dashboard_port=dashboard_port or None)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None


@app.command()
def detect(
    source: Annotated[Path, typer.Argument(help="An image or a video file.")],
    out: Annotated[Path | None, typer.Option(help="Output file (default: <name>.annotated.<ext>).")] = None,
    model: Annotated[Path, typer.Option(help="Detector ONNX model.")] = REPO_ROOT
    / "models/ppe-yolo/model.onnx",
    confidence: Annotated[float, typer.Option(help="Minimum confidence.")] = 0.3,
) -> None:
    """Write an annotated copy of an image or video, for a quick look at what the model sees."""
    from edge.detect import annotate_file
    from edge.detections.base import ModelError
    from edge.detections.onnxrt import OnnxDetector

    try:
        detector = OnnxDetector(model, default_confidence=confidence)
        written, counts = annotate_file(detector, source, out)
    except (ModelError, ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    summary = ", ".join(f"{n} {name}" for name, n in counts.items()) or "nothing"
    typer.echo(f"{written}: {summary}")


@app.command()
def bench(
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write the results here.")] = None,
    video: Annotated[Path, typer.Option(help="Video to run on.")] = REPO_ROOT / "samples/vtest.mp4",
    model: Annotated[Path, typer.Option(help="Detector ONNX model.")] = REPO_ROOT
    / "models/ppe-yolo/model.onnx",
    frames: Annotated[
        int | None, typer.Option(help="Frames per measurement (default 150; with --resolution 12 per view).")
    ] = None,
    resolution: Annotated[
        bool,
        typer.Option(
            help="Only measure detection options (416, 640, frame size, 2x2 tiles, auto) on --video and "
            "../shared/videos/hardhat-workers.mp4 when present: cost and persons found per option."
        ),
    ] = False,
    reference: Annotated[
        bool, typer.Option(help="Also time ultralytics track() (needs the train extra).")
    ] = True,
    weights: Annotated[
        Path | None, typer.Option(help="PyTorch weights for the ultralytics reference.")
    ] = None,
    mqtt: Annotated[bool, typer.Option(help="Also measure alert delivery through outbox and broker.")] = True,
    repeats: Annotated[
        int, typer.Option(min=1, help="Runs of the 1-camera and reference timings; medians are compared.")
    ] = 3,
) -> None:
    """Measure per-stage latency, end-to-end fps for 1 and 4 cameras, memory, and ultralytics as reference."""
    from edge.bench import run_bench

    setup_logging("WARNING")
    try:
        if resolution:
            from edge.resolution_bench import run_resolution_bench

            shared_dir = os.environ.get("SITESENTRY_SHARED") or REPO_ROOT.parent / "shared"
            shared = Path(shared_dir) / "videos/hardhat-workers.mp4"
            videos = [video] + ([shared] if shared.is_file() else [])
            results = run_resolution_bench(videos, model, frames or 12)
        else:
            results = run_bench(
                video=video,
                model=model,
                frames=frames or 150,
                reference=reference,
                weights=weights,
                mqtt=mqtt,
                repeats=repeats,
            )
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    text = json.dumps(results, indent=2)
    typer.echo(text)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(text + "\n", encoding="utf-8")


@app.command()
def doctor(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Site YAML file (default: built-in defaults).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Report what this box can run (GPU, CUDA, TensorRT, ONNX Runtime, OpenVINO, decoders, engine cache,
    free disk) and which backend `model.type: auto` would choose, and why."""
    from rich.table import Table

    from edge.doctor import DoctorInput, run_checks, to_json

    site = None
    if config is not None:
        try:
            site = load_config(config)  # paths are reported by the checks, not refused
        except ConfigError as exc:
            for line in exc.lines()[:MAX_ERRORS_SHOWN]:
                say("error: ", "bold red", line)
            raise typer.Exit(2) from None
    checks = run_checks(DoctorInput.from_config(site, config, REPO_ROOT / "models/ppe-yolo/model.onnx"))
    if as_json:
        typer.echo(json.dumps(to_json(checks), indent=2))
        return
    styles = {"ok": "green", "warn": "yellow", "missing": "dim"}
    table = Table("check", "status", "detail", title="sitesentry doctor", show_lines=False)
    for check in checks:
        table.add_row(check.name, Text(check.status, styles[check.status]), Text(check.summary))
    Console().print(table)


def main() -> None:
    """Entry point for `python -m edge`."""
    app()


if __name__ == "__main__":
    main()
