"""`sitesentry dataset|train|eval|export`: the training commands. Arguments in, work handed off.

Nothing heavy is imported here at module level: each command imports what it uses, so `sitesentry run`
on an edge box never loads torch or ultralytics.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from edge.config.models import TilingConfig
    from training.datasets.model import ClassMapping, Dataset, Problem
    from training.evaluate import EvalReport

console = Console(stderr=True, soft_wrap=True)
stdout = Console(soft_wrap=True)

#: Exceptions that mean "bad input": printed as one line, exit code 2.
_BAD_INPUT = (ValueError, FileNotFoundError, FileExistsError)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn bad-input exceptions into one red line and exit code 2."""
    try:
        yield
    except _BAD_INPUT as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _logging() -> None:
    from edge.telemetry import setup_logging

    setup_logging("INFO")


def _fresh_dir(path: Path) -> Path:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(
            f"{path}: already exists and is not empty; choose a new folder for this version"
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def _mapping(path: Path | None) -> ClassMapping | None:
    from training.datasets.model import ClassMapping

    return ClassMapping.load(path) if path is not None else None


def _print_problems(problems: list[Problem], limit: int = 10) -> None:
    for problem in problems[:limit]:
        console.print(f"  [yellow]{problem}[/]", highlight=False, soft_wrap=True)
    if len(problems) > limit:
        console.print(f"  ... and {len(problems) - limit} more", highlight=False)


def _write_problems(folder: Path, problems: list[Problem]) -> Path:
    path = folder / "problems.txt"
    path.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8")
    return path


def _split_counts(dataset: Dataset) -> str:
    from collections import Counter

    counts = Counter(img.split or "unsplit" for img in dataset.images)
    return ", ".join(f"{split} {n}" for split, n in sorted(counts.items()))


# ---------------------------------------------------------------- dataset


def dataset_import(
    sources: Annotated[
        list[Path], typer.Argument(help="Exports to import: data.yaml, .json, .xml, a folder or zip.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the canonical YOLO dataset.")],
    fmt: Annotated[str, typer.Option("--format", help="auto, yolo, coco, cvat or labelstudio.")] = "auto",
    mapping: Annotated[
        Path | None, typer.Option(help="Class-mapping YAML (source class: canonical).")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="Image folder, when the export holds labels only.")
    ] = None,
    merge: Annotated[
        Path | None, typer.Option(help="An existing canonical data.yaml to merge the new labels into.")
    ] = None,
    valid: Annotated[
        float, typer.Option(help="Share of source groups for validation (unsplit images).")
    ] = 0.1,
    test: Annotated[float, typer.Option(help="Share of source groups for test (unsplit images).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the group split.")] = 0,
    resplit: Annotated[
        bool, typer.Option(help="Ignore the sources' own splits and split everything.")
    ] = False,
    copy: Annotated[bool, typer.Option(help="Copy images instead of symlinking them.")] = False,
) -> None:
    """Import exports onto the canonical classes, split without leakage, and write a YOLO dataset.

    Over 60 lines mostly because of its typer options; the body calls the training.datasets steps in order.
    """
    _logging()
    with _one_line_errors():
        from training.datasets.model import Dataset
        from training.datasets.sources import read_source, unpack
        from training.datasets.split import assign_missing_splits, remove_leaks, split_by_group
        from training.datasets.yolo import read_yolo, write_yolo

        out = _fresh_dir(out)
        class_mapping = _mapping(mapping)
        merged = Dataset()
        if merge is not None:
            merged = read_yolo(merge)
        for source in sources:
            if source.suffix.lower() == ".zip":
                source = unpack(source, out / "sources" / source.stem)
            part = read_source(source, fmt, class_mapping, images)
            merged.images.extend(part.images)
            merged.problems.extend(part.problems)
        if not merged.images:
            # Say why before failing: every problem, on screen and in problems.txt of the output folder.
            _print_problems(merged.problems)
            problems_file = _write_problems(out, merged.problems)
            raise ValueError(
                f"no images were imported; {len(merged.problems)} problem(s) above, listed in {problems_file}"
            )
        split = (
            split_by_group(merged, valid, test, seed)
            if resplit
            else assign_missing_splits(merged, valid, test, seed)
        )
        final = remove_leaks(split)
        data_yaml = write_yolo(final, out, link_images=not copy)
        problems_file = _write_problems(out, final.problems)
    _print_problems(final.problems)
    boxes = sum(len(img.boxes) for img in final.images)
    stdout.print(
        f"imported {len(final.images)} images ({_split_counts(final)}) with {boxes} boxes into {data_yaml}; "
        f"{len(final.problems)} problem(s) listed in {problems_file}",
        highlight=False,
        soft_wrap=True,
    )


def dataset_validate(
    data: Annotated[Path, typer.Argument(help="The dataset's data.yaml.")],
    mapping: Annotated[
        Path | None, typer.Option(help="Class-mapping YAML, for a non-canonical dataset.")
    ] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the full report here.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any problem is found.")] = False,
) -> None:
    """Report bad rows, unreadable or empty files, duplicate images, class counts and image sizes."""
    _logging()
    with _one_line_errors():
        from training.datasets.validate import validate
        from training.datasets.yolo import read_yolo

        report = validate(read_yolo(data, _mapping(mapping)))
    table = Table(title=f"{data}: boxes per class")
    table.add_column("split")
    names = list(report.images_per_class)
    for name in names:
        table.add_column(name, justify="right")
    for split, counts in report.boxes_per_class.items():
        table.add_row(split, *(str(counts[n]) for n in names))
    table.add_row("images with class", *(str(report.images_per_class[n]) for n in names))
    stdout.print(table)
    sizes = ", ".join(f"{size} x{n}" for size, n in list(report.image_sizes.items())[:5])
    stdout.print(f"image sizes (most common): {sizes or 'none readable'}", highlight=False)
    _print_problems(report.problems, limit=20)
    if json_file is not None:
        json_file.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    per_split = ", ".join(f"{k} {v}" for k, v in report.images_per_split.items())
    stdout.print(
        f"{data}: {report.images} images ({per_split}), "
        f"{report.boxes} boxes, {report.images_without_boxes} without boxes, "
        f"{len(report.duplicates)} duplicate set(s), {len(report.problems)} problem(s)",
        highlight=False,
        soft_wrap=True,
    )
    if strict and report.problems:
        raise typer.Exit(1)


def dataset_split(
    data: Annotated[Path, typer.Argument(help="The dataset's data.yaml (canonical classes).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the re-split dataset.")],
    valid: Annotated[float, typer.Option(help="Share of source groups for validation.")] = 0.1,
    test: Annotated[float, typer.Option(help="Share of source groups for test.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the group split.")] = 0,
    copy: Annotated[bool, typer.Option(help="Copy images instead of symlinking them.")] = False,
) -> None:
    """Re-split a dataset by source group: variants of one photo and frames of one video stay together."""
    _logging()
    with _one_line_errors():
        from training.datasets.split import split_by_group
        from training.datasets.yolo import read_yolo, write_yolo

        out = _fresh_dir(out)
        dataset = split_by_group(read_yolo(data), valid, test, seed)
        data_yaml = write_yolo(dataset, out, link_images=not copy)
        _write_problems(out, dataset.problems)
    groups = len({img.group for img in dataset.images})
    stdout.print(
        f"split {len(dataset.images)} images from {groups} groups ({_split_counts(dataset)}) into {data_yaml}"
    )


def dataset_extract_frames(
    video: Annotated[Path, typer.Argument(help="The labelled video file.")],
    labels: Annotated[
        Path,
        typer.Option(
            help="CVAT-for-video annotations.xml (or its folder), or a folder of per-frame YOLO files."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the frames (YOLO layout).")],
    fps: Annotated[float, typer.Option(help="Frames kept per second of video.")] = 1.0,
    mapping: Annotated[
        Path | None, typer.Option(help="Class-mapping YAML (source class: canonical).")
    ] = None,
) -> None:
    """Extract labelled frames from a video at a chosen rate, named so one video stays in one split."""
    _logging()
    with _one_line_errors():
        from training.datasets.video import cvat_video_labels, extract_frames, yolo_frame_labels

        if not video.is_file():
            raise FileNotFoundError(f"{video}: no such video file")
        out = _fresh_dir(out)
        class_mapping = _mapping(mapping)
        is_cvat = labels.suffix.lower() == ".xml" or (labels / "annotations.xml").is_file()
        frame_labels = (cvat_video_labels if is_cvat else yolo_frame_labels)(labels, class_mapping)
        dataset = extract_frames(video, frame_labels, out, fps)
        problems_file = _write_problems(out, dataset.problems)
    _print_problems(dataset.problems)
    boxes = sum(len(img.boxes) for img in dataset.images)
    stdout.print(
        f"extracted {len(dataset.images)} frames with {boxes} boxes into {out / 'data.yaml'}; "
        f"{len(dataset.problems)} problem(s) listed in {problems_file}",
        highlight=False,
        soft_wrap=True,
    )


def dataset_export_queue(
    queue: Annotated[Path, typer.Argument(help="The edge's hard-example queue folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the labelling batch.")],
    fmt: Annotated[str, typer.Option("--format", help="cvat (images + annotations.xml) or yolo.")] = "cvat",
    reason: Annotated[
        list[str] | None, typer.Option(help="Only these reasons: low_confidence, violation, false_alarm.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many frames (false alarms first).")] = None,
    keep: Annotated[bool, typer.Option(help="Leave exported frames in the queue.")] = False,
) -> None:
    """Write a labelling batch from the hard-example queue, pre-filled with the model's predictions."""
    _logging()
    with _one_line_errors():
        from training.datasets.queue import export_queue

        out = _fresh_dir(out)
        dataset = export_queue(queue, out, fmt, set(reason) if reason else None, limit, move=not keep)
    stdout.print(
        f"wrote a {fmt} labelling batch of {len(dataset.images)} frames to {out}"
        + ("" if keep else f"; exported frames moved to {queue / 'exported' / out.name}"),
        highlight=False,
        soft_wrap=True,
    )


# ---------------------------------------------------------------- train / eval / export


def train_command(
    data: Annotated[Path | None, typer.Option(help="Canonical data.yaml (not needed with --resume).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML of TrainConfig fields; options given here win.")
    ] = None,
    base: Annotated[str | None, typer.Option(help="Start weights: a .pt file or a packaged name.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Training image size.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    freeze: Annotated[int | None, typer.Option(help="Layers frozen (0: none).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, or a CUDA device index such as 0.")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Folder holding training runs [runs/train].")] = None,
    name: Annotated[str | None, typer.Option(help="Run name, a folder under --out-dir [ppe].")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run from its last checkpoint.")] = False,
) -> None:
    """Train a detector with ultralytics, offline; the full run configuration is saved with the run."""
    _logging()
    with _one_line_errors():
        import yaml

        from training.train import TrainConfig, train

        if resume:
            where = TrainConfig(data=str(data or ""))
            run_dir = train(
                TrainConfig(data=where.data, out_dir=str(out_dir or where.out_dir), name=name or where.name),
                resume=True,
            )
        else:
            fields = yaml.safe_load(config.read_text(encoding="utf-8")) if config else {}
            if not isinstance(fields, dict):
                raise ValueError(f"{config}: expected a mapping of TrainConfig fields")
            given = {"data": data, "base": base, "epochs": epochs, "imgsz": imgsz, "batch": batch}
            given |= {"freeze": freeze, "device": device, "out_dir": out_dir, "name": name}
            fields |= {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None}
            if "data" not in fields:
                raise ValueError("--data is required (or `data:` in --config) unless --resume is given")
            try:
                train_config = TrainConfig(**fields)
            except TypeError as exc:
                raise ValueError(f"{config}: {exc}") from None
            run_dir = train(train_config)
    stdout.print(f"training run in {run_dir}: weights in {run_dir / 'weights'}, configuration in run.json")


def eval_command(
    model: Annotated[
        Path | None,
        typer.Option(
            help="The model to evaluate: ONNX, or an OpenVINO IR .xml (INT8). With --video: default the "
            "--config's model (else the shipped one)."
        ),
    ] = None,
    data: Annotated[Path | None, typer.Option(help="The dataset's data.yaml (photos).")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the full report here.")] = None,
    split: Annotated[str, typer.Option(help="val, test or train.")] = "val",
    config: Annotated[
        Path | None, typer.Option(help="Site YAML: its model thresholds and rules are used.")
    ] = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for PR-curve and confusion-matrix PNGs.")] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Class-mapping YAML, for a non-canonical dataset.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Evaluate only the first N images.")] = None,
    tiling: Annotated[
        str | None,
        typer.Option(
            help="Detect as a tiled camera does: ROWSxCOLS slices plus the full frame, e.g. 2x2 "
            "(overlap from the site config's first tiled camera, else 0.2)."
        ),
    ] = None,
    detect_input: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="With --video: the detector input's long side (auto, or px: a multiple of 32), as a "
            "camera's `detect.input`, instead of the camera's.",
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(
            help="Evaluate an ONNX --model through a native TensorRT engine of this precision: fp16, int8 "
            "(needs --calibration) or fp32; built into the engine cache on first use (NVIDIA GPU)."
        ),
    ] = None,
    calibration: Annotated[
        Path | None, typer.Option(help="INT8 calibration set (`export --calibration`), for --engine int8.")
    ] = None,
    engine_cache: Annotated[Path | None, typer.Option(help="TensorRT engine cache folder.")] = None,
    video: Annotated[
        Path | None,
        typer.Option(
            help="A labelled video: run the camera pipeline on it and score its alerts (needs --truth)."
        ),
    ] = None,
    truth: Annotated[Path | None, typer.Option(help="The video's truth YAML (docs/video-eval.md).")] = None,
    camera: Annotated[
        str | None, typer.Option(help="With --video: the --config camera whose settings are used [first].")
    ] = None,
    fps: Annotated[
        float | None, typer.Option(help="With --video: frames analysed per second, instead of the camera's.")
    ] = None,
    max_s: Annotated[
        float | None, typer.Option("--max-s", help="With --video: stop after this many seconds of video.")
    ] = None,
    view_scale: Annotated[
        float | None,
        typer.Option(
            "--view-scale",
            help="With --video: play it as a wider view of the same scene, each frame shrunk by this factor"
            " onto a grey frame of its own size (workers that many times smaller), labels moved with it.",
        ),
    ] = None,
) -> None:
    """Evaluate a model on labelled photos (--data: AP, P/R, violations per person) or on labelled video
    (--video and --truth: the alerts the camera pipeline raises against what happened).

    Over 60 lines mostly because of its typer options; the video path is _eval_video, the photo path
    builds the model settings and calls training.evaluate.evaluate.
    """
    _logging()
    if video is not None or truth is not None:
        _eval_video(
            video, truth, config, camera, fps, max_s, model, tiling, detect_input, json_file, view_scale
        )
        return
    with _one_line_errors():
        if model is None or data is None:
            raise ValueError(
                "give --model and --data (labelled photos), or --video and --truth (labelled video)"
            )
        video_only = {"--camera": camera, "--fps": fps, "--max-s": max_s, "--view-scale": view_scale}
        if given := [name for name, value in video_only.items() if value is not None]:
            raise ValueError(f"{', '.join(given)}: only with --video and --truth")
        from rich.progress import Progress

        from edge.config.models import ModelConfig, RulesConfig
        from edge.config.models import TilingConfig as Tiling
        from training.evaluate import evaluate

        model_config, rules = ModelConfig(), RulesConfig()
        overlap = Tiling().overlap
        if config is not None:
            from edge.config import load_config

            site = load_config(config)
            model_config, rules = site.model, site.rules
            grids = [c.detect.tiling for c in site.cameras if not isinstance(c.detect.tiling, str)]
            overlap = grids[0].overlap if grids else overlap
        slices = _tiling(tiling, overlap) if tiling is not None else None
        if engine is not None:
            changes = {"type": "tensorrt", "engine_precision": engine, "calibration": calibration}
            if engine_cache is not None:
                changes["engine_cache"] = engine_cache
            model_config = ModelConfig.model_validate({**model_config.model_dump(), **changes})
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating", total=None)
            report = evaluate(
                model, data, split, model_config, rules, _mapping(mapping), plots, limit=limit,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                tiling=slices,
            )  # fmt: skip
    _print_eval(report)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")


def _eval_video(
    video: Path | None,
    truth: Path | None,
    config: Path | None,
    camera_id: str | None,
    fps: float | None,
    max_s: float | None,
    model: Path | None,
    tiling: str | None,
    detect_input: str | None,
    json_file: Path | None,
    view_scale: float | None = None,
) -> None:
    """`sitesentry eval --video V --truth T`: the camera pipeline on a labelled video, scored."""
    with _one_line_errors():
        from rich.progress import Progress

        from edge.config.models import CameraConfig, ModelConfig, RulesConfig, TileGrid
        from training.video_eval import evaluate_video

        if video is None or truth is None:
            raise ValueError("--video and --truth go together: the video, and its truth YAML")
        model_config, rules, camera = ModelConfig(), RulesConfig(), CameraConfig(id="eval", source=str(video))
        site_tz = {}
        if config is not None:
            from zoneinfo import ZoneInfo

            from edge.config import load_config

            site = load_config(config)
            model_config, rules = site.model, site.rules
            site_tz = {"tz": ZoneInfo(site.site.timezone)}
            cameras = {c.id: c for c in site.cameras}
            if camera_id is not None and camera_id not in cameras:
                raise ValueError(f"--camera {camera_id!r}: not in {config} (cameras: {', '.join(cameras)})")
            camera = cameras[camera_id] if camera_id is not None else site.cameras[0]
        elif camera_id is not None:
            raise ValueError("--camera needs --config")
        if model is not None:
            model_config = model_config.model_copy(update={"path": model})
        if view_scale is not None and not 0.05 <= view_scale <= 1:
            raise ValueError(f"--view-scale {view_scale:g}: must be from 0.05 to 1 (1: the video as it is)")
        if fps is not None:
            if not 0 < fps <= 60:
                raise ValueError(f"--fps {fps:g}: must be above 0 and at most 60 (the camera fps range)")
            camera = camera.model_copy(update={"fps": fps})
        if tiling is not None:
            grid = _tiling(tiling, camera.tiling.overlap)
            slices = TileGrid(rows=grid.rows, cols=grid.cols, overlap=grid.overlap)
            camera = camera.model_copy(update={"detect": camera.detect.model_copy(update={"tiling": slices})})
        if detect_input is not None:
            size = _detect_input(detect_input)
            camera = camera.model_copy(update={"detect": camera.detect.model_copy(update={"input": size})})
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("playing the video through the pipeline", total=max_s)
            report = evaluate_video(
                video, truth, camera, rules, model_config, max_s,
                progress=lambda t: progress.update(task, completed=t), view_scale=view_scale, **site_tz,
            )  # fmt: skip
    _print_video_eval(report)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _print_video_eval(report: dict[str, Any]) -> None:
    settings = report["settings"]
    stdout.print(
        f"{report['video']}: {report['duration_s']:g} s, {report['analysed_frames']} frames analysed "
        f"({report['analysed_fps']:g} fps; camera fps {settings['camera_fps']:g}), detected at "
        f"{settings['detected_at']}; {report['wall_s']:g} s",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="labelled violations (matching: docs/video-eval.md)")
    for column in ("rule", "labelled", "caught", "missed", "alert after (mean / max s)"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    rows = {"zone_entry": report["zone_entries"]} | report["ppe"]
    for rule, o in rows.items():
        delay = o["time_to_alert_s"]
        late = "-" if delay["mean"] is None else f"{delay['mean']:.2f} / {delay['max']:.2f}"
        short = o["missed_shorter_than_debounce"]
        missed = f"{o['missed']} ({short} brief)" if short else str(o["missed"])
        table.add_row(rule, str(o["labelled"]), str(o["caught"]), missed, late)
    stdout.print(table)
    fa, ev, persons = report["false_alerts"], report["events"], report["persons_per_frame"]
    by_rule = ", ".join(f"{r} {n}" for r, n in fa["by_rule"].items())
    stdout.print(
        f"false alerts: {fa['count']} ({by_rule}) = {fa['per_camera_hour']:g} per camera-hour; events "
        f"{ev['started']}: {ev['caught']} caught, {ev['duplicates']} duplicate, {ev['on_unknown']} on a "
        f"person labelled unknown, {ev['in_ignored_stretch']} in an ignored stretch; "
        f"{ev['suppressed_by_flood_control']} suppressed by flood control",
        highlight=False,
        soft_wrap=True,
    )
    for item, u in report["undetermined"].items():
        if item == "source" or u["undetermined_share"] is None:
            continue
        stdout.print(
            f"{item}: of {u['labelled_person_s']:g} labelled person-seconds, {u['judged_share']:.0%} judged, "
            f"{u['undetermined_share']:.0%} undetermined, {u['not_detected_share']:.0%} not detected",
            highlight=False,
        )
    stdout.print(
        f"persons per frame: labelled {persons['labelled']:g}, detected {persons['detected']:g}, tracked "
        f"{persons['tracked']:g}, paired with a labelled person {persons['paired']:g}",
        highlight=False,
    )


def _detect_input(text: str) -> int | str:
    """Parse --input (auto or a long side in px) as a camera's `detect.input`, refusing bad values clearly."""
    from pydantic import ValidationError

    from edge.config.models import DetectConfig

    value: int | str = int(text) if text.strip().isdigit() else text.strip()
    try:
        return DetectConfig(input=value).input
    except ValidationError as exc:
        raise ValueError(f"--input {text!r}: {exc.errors()[0]['msg']}") from None


def _tiling(text: str, overlap: float) -> TilingConfig:
    """Parse --tiling ROWSxCOLS into an enabled TilingConfig, refusing anything else clearly."""
    from pydantic import ValidationError

    from edge.config.models import TilingConfig

    rows, sep, cols = text.lower().partition("x")
    if not (sep and rows.strip().isdigit() and cols.strip().isdigit()):
        raise ValueError(f"--tiling {text!r}: expected ROWSxCOLS, e.g. 2x2")
    try:
        return TilingConfig(enabled=True, rows=int(rows), cols=int(cols), overlap=overlap)
    except ValidationError as exc:
        raise ValueError(f"--tiling {text!r}: {exc.errors()[0]['msg']}") from None


def _class_table(report: EvalReport) -> Table:
    """The per-class table of an evaluation: instances, AP, precision, recall and threshold, then all."""
    table = Table(title=f"{report.model} on {report.data} ({report.split}, {report.images} images)")
    for column in ("class", "instances", "AP50", "AP50-95", "P", "R", "threshold"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for c in report.classes:
        ap50 = "-" if c.ap50 is None else f"{c.ap50:.3f}"
        ap = "-" if c.ap50_95 is None else f"{c.ap50_95:.3f}"
        table.add_row(
            c.name,
            str(c.instances),
            ap50,
            ap,
            f"{c.precision:.3f}",
            f"{c.recall:.3f}",
            f"{report.thresholds[c.name]:g}",
        )
    table.add_row(
        "all",
        "",
        f"{report.map50:.3f}",
        f"{report.map50_95:.3f}",
        f"{report.precision:.3f}",
        f"{report.recall:.3f}",
        "",
    )
    return table


def _violations_table(report: EvalReport) -> Table:
    """The per-rule violation table of an evaluation, each rule followed by its person-size bands."""
    violations = Table(title="violations per labelled person (same association as the rules)")
    for column in ("rule", "positives", "undetermined", "TP", "FP", "FN", "precision", "recall"):
        violations.add_column(column, justify="left" if column == "rule" else "right")
    for v in report.violations:
        counts = (v.positives, v.undetermined, v.true_positives, v.false_positives, v.false_negatives)
        violations.add_row(v.rule, *(str(n) for n in counts), f"{v.precision:.3f}", f"{v.recall:.3f}")
        for band in v.by_size:
            if band.max_px is None:
                span = f">={band.min_px:g}"
            else:
                span = f"<{band.max_px:g}" if band.min_px == 0 else f"{band.min_px:g}-{band.max_px:g}"
            figures = (band.positives, "", band.true_positives, band.false_positives, band.false_negatives)
            violations.add_row(
                f"  {band.band} {span}",
                *(str(n) for n in figures),
                f"{band.precision:.3f}",
                f"{band.recall:.3f}",
            )
    return violations


def _print_eval(report: EvalReport) -> None:
    """Print an evaluation: per-class and violation tables, threshold sweeps, notes and the headline."""
    stdout.print(_class_table(report))
    stdout.print(_violations_table(report))
    stdout.print("  (small / medium / large: person height in model-input pixels)", highlight=False)
    for sweep in report.sweeps:
        classes = " and ".join(sweep.classes)
        if sweep.best is not None:
            b = sweep.best
            line = f"best recall at precision >= {sweep.target_precision:g}"
        elif sweep.balanced is not None:
            b = sweep.balanced
            line = f"no thresholds reach precision {sweep.target_precision:g}; best F1"
        else:
            stdout.print(f"{sweep.rule}: nothing flagged at any threshold", highlight=False)
            continue
        stdout.print(
            f"{sweep.rule}: {line}: person {b.person_threshold:g}, {classes} {b.threshold:g} give "
            f"precision {b.precision:.3f}, recall {b.recall:.3f}",
            highlight=False,
            soft_wrap=True,
        )
    for note in report.notes:
        console.print(f"  [yellow]{note}[/]", highlight=False, soft_wrap=True)
    stdout.print(
        f"mAP50 {report.map50:.3f}, mAP50-95 {report.map50_95:.3f}, "
        f"{report.ms_per_image:.0f} ms/image; persons {report.persons}"
        + (f"; plots: {', '.join(report.plots)}" if report.plots else ""),
        highlight=False,
        soft_wrap=True,
    )


def _run_record(weights: Path) -> dict[str, Any]:
    """The run.json saved by `sitesentry train` beside runs/<name>/weights/, if there is one."""
    record = weights.resolve().parent.parent / "run.json"
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else {}


def export_command(
    weights: Annotated[
        Path, typer.Option(help="Trained ultralytics weights (.pt); with --format engine, the ONNX model.")
    ],
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Where to write the ONNX model (.pt); with --format engine, the cache folder."
        ),
    ] = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx: export .pt weights to ONNX (needs the train extra). engine: build this box's "
            "TensorRT engine from an ONNX file into the engine cache (no torch needed); prints its key.",
        ),
    ] = "onnx",
    precision: Annotated[
        str, typer.Option(help="Engine precision: fp16, int8 (Q/DQ on --calibration) or fp32.")
    ] = "fp16",
    max_batch: Annotated[int, typer.Option(help="Engine's largest batch (cameras per inference).")] = 4,
    imgsz: Annotated[int | None, typer.Option(help="Input size; default: the training run's.")] = None,
    dynamic: Annotated[bool, typer.Option(help="Dynamic batch axis (else fixed --batch).")] = False,
    batch: Annotated[int, typer.Option(help="Fixed batch size, without --dynamic.")] = 1,
    half: Annotated[bool, typer.Option(help="FP16 weights (inputs and outputs stay FP32).")] = False,
    name: Annotated[str, typer.Option(help="Model name stored in the metadata.")] = "ppe-yolo",
    version: Annotated[str, typer.Option(help="Model version stored in the metadata.")] = "0.1.0",
    data: Annotated[Path | None, typer.Option(help="Training data.yaml, hashed into the metadata.")] = None,
    metrics: Annotated[Path | None, typer.Option(help="`sitesentry eval --json` report to store.")] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(help="Also write an INT8 calibration image set here (--format engine: read it)."),
    ] = None,
    calibration_count: Annotated[int, typer.Option(help="Images in the calibration set.")] = 300,
    engine: Annotated[
        bool, typer.Option(help="Also build this box's TensorRT engine into the cache (NVIDIA GPU only).")
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            help="Also write an INT8 OpenVINO IR beside the ONNX (<name>-int8.xml), quantized by NNCF on the "
            "--calibration set (written first when --data is given and the set is missing). With .onnx "
            "--weights: quantize that file only."
        ),
    ] = False,
) -> None:
    """Export to ONNX with SiteSentry metadata; optionally INT8 (calibration set, OpenVINO IR, TensorRT).

    Over 60 lines mostly because of its typer options; the body picks the steps that apply and runs them
    in order, the engine and INT8 builds being helpers.
    """
    _logging()
    with _one_line_errors():
        from training.evaluate import headline

        if fmt not in ("onnx", "engine"):
            raise ValueError(f"--format {fmt!r}: expected onnx or engine")
        if fmt == "engine":  # before the training imports: an edge box has no torch
            if weights.suffix != ".onnx":
                raise ValueError(f"{weights}: --format engine builds from an ONNX file; export ONNX first")
            _export_engine(weights, precision, max_batch, out_file, calibration)
            return
        from training.export import export_onnx, write_calibration_set
        from training.train import dataset_hash

        if weights.suffix == ".onnx":  # already exported: only the INT8 step applies
            if not int8:
                raise ValueError(f"{weights}: an ONNX file is already exported; pass .pt weights, or --int8")
            if calibration is None:
                raise ValueError("--int8 needs --calibration (the folder `--calibration` wrote)")
            _export_int8(weights, calibration, None, calibration_count)
            return
        if out_file is None:
            raise ValueError("--out is needed to export .pt weights")
        record = _run_record(weights)
        data = data or (Path(record["config"]["data"]) if record.get("config", {}).get("data") else None)
        data_hash = (
            dataset_hash(data) if data is not None and data.is_file() else record.get("data_hash", "unknown")
        )
        summary = {}
        if metrics is not None:
            summary = headline(json.loads(metrics.read_text(encoding="utf-8")))
        size = imgsz or int(record.get("config", {}).get("imgsz", 416))
        metadata = {
            "model_name": name,
            "model_version": version,
            "training_data_hash": data_hash,
            "metrics": summary,
        }
        onnx_path = export_onnx(weights, out_file, size, dynamic, half, metadata, batch=batch)
        stdout.print(f"exported {onnx_path} (imgsz {size}, {'dynamic' if dynamic else f'batch {batch}'}, "
                  f"{'fp16' if half else 'fp32'}, data {str(data_hash)[:12]})", highlight=False)  # fmt: skip
        if calibration is not None:
            if data is None:
                raise ValueError("--calibration needs --data (or a run.json naming the training data)")
            from training.datasets.yolo import read_yolo

            if not (int8 and (calibration / "calibration.txt").is_file()):
                listing = write_calibration_set(read_yolo(data), calibration, calibration_count)
                stdout.print(f"wrote INT8 calibration images listed in {listing}", highlight=False)
        if int8:
            if calibration is None:
                raise ValueError("--int8 needs --calibration (and --data to write the set)")
            _export_int8(onnx_path, calibration, data, calibration_count)
        if engine:
            from edge.detections.base import ModelError

            try:
                _export_engine(onnx_path, precision, max_batch, None, calibration)
            except ModelError as exc:  # the ONNX file is written; the engine is built on the box later
                stdout.print(f"TensorRT engine skipped: {exc}", highlight=False, soft_wrap=True)


def _export_engine(
    onnx_path: Path, precision: str, max_batch: int, cache: Path | None, calibration: Path | None
) -> None:
    """Build (or find) this box's TensorRT engine for an ONNX file and print where it is and its key."""
    from edge.config.models import ModelConfig
    from edge.detections.engine_cache import key_path
    from edge.detections.tensorrt_backend import ensure_engine
    from edge.labels import CLASS_NAMES

    settings = ModelConfig.model_validate(  # the same validation as model.* in a site config
        {"type": "tensorrt", "path": onnx_path, "engine_precision": precision, "max_batch": max_batch,
         "engine_cache": cache, "calibration": calibration}
    )  # fmt: skip
    detector = ensure_engine(
        settings.path, settings.engine_precision, settings.max_batch, settings.engine_cache,
        settings.calibration, CLASS_NAMES,
    )  # fmt: skip
    detector.close()
    stdout.print(f"TensorRT engine {detector.engine_file}", highlight=False, soft_wrap=True)
    stdout.print(f"cache key {detector.key.describe()}", highlight=False, soft_wrap=True)
    stdout.print(f"key file {key_path(detector.engine_file)}", highlight=False, soft_wrap=True)


def _export_int8(onnx_path: Path, calibration: Path, data: Path | None, count: int) -> None:
    """Quantize to the INT8 IR beside the ONNX file; with --data, evaluate it into <stem>.metrics.json."""
    from training.export import int8_path, quantize_int8

    xml = quantize_int8(onnx_path, calibration / "calibration.txt", int8_path(onnx_path), subset_size=count)
    stdout.print(f"wrote INT8 OpenVINO IR {xml} (+ {xml.with_suffix('.bin').name})", highlight=False)
    if data is not None:
        from training.evaluate import evaluate

        report = evaluate(xml, data)
        metrics = xml.with_name(f"{xml.stem}.metrics.json")
        metrics.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
        stdout.print(f"INT8 mAP50 {report.map50:.3f} ({report.split} split) -> {metrics}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the dataset, train, eval and export commands to the `sitesentry` app."""
    dataset = typer.Typer(help="Import, validate, split and export labelled data.", no_args_is_help=True)
    dataset.command("import")(dataset_import)
    dataset.command("validate")(dataset_validate)
    dataset.command("split")(dataset_split)
    dataset.command("extract-frames")(dataset_extract_frames)
    dataset.command("export-queue")(dataset_export_queue)
    app.add_typer(dataset, name="dataset")
    app.command("train")(train_command)
    app.command("eval")(eval_command)
    app.command("export")(export_command)
