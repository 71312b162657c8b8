"""Sweep rule settings on a labelled video: the detector runs once per analysed frame, each setting replays
tracker -> rules -> events on those same detections and is scored as `sitesentry eval --video` scores it.

    .venv/bin/python scripts/sweep-video-rules.py ../shared/videos/hardhat-workers.mp4 \\
        samples/truth/hardhat-workers.yaml --fps 5 \\
        --grid ppe_window_s=1,2,3 --grid ppe_min_absent_share=0.3,0.5,0.7 \\
        [--set debounce_s=1] [--json out.json]

`--set` fixes a rules field for every run, `--grid` multiplies runs (every combination). `--cache FILE.npz`
keeps the detections between invocations (same video, model and fps only). Prints one row per setting:
PPE violations labelled / caught / missed, time to alert, false PPE alerts (count and per camera-hour),
events on persons labelled unknown, and the share of judgeable person-time left undetermined.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, cast

import numpy as np
import yaml

from edge.config.models import CameraConfig, ModelConfig, RulesConfig
from edge.dataflow import Detections
from edge.detections import create_detector
from edge.detections.base import Detector
from training.video_eval import run_video, score
from training.video_truth import load_truth


class ReplayDetector:
    """The real detector, run once per distinct frame; later runs of the same frame get the same boxes."""

    def __init__(self, detector: Detector, cache: Path | None) -> None:
        self.detector = detector
        self.info = detector.info
        self.cache = cache
        self.boxes: dict[str, Detections] = {}
        self.added = 0  # frames detected since the cache was last written
        if cache is not None and cache.is_file():
            with np.load(cache) as stored:
                for key in {k.split("/")[0] for k in stored.files}:
                    self.boxes[key] = Detections(
                        stored[f"{key}/xyxy"], stored[f"{key}/confidence"], stored[f"{key}/class_id"]
                    )

    def detect(self, image: np.ndarray) -> Detections:
        """Detections of this frame, from the cache when it was seen before."""
        key = hashlib.blake2b(image.tobytes(), digest_size=12).hexdigest()
        if key not in self.boxes:
            self.boxes[key] = self.detector.detect(image)
            self.added += 1
        return self.boxes[key]

    def save(self) -> None:
        """Write the cache (when one was asked for)."""
        if self.cache is None or not self.added:
            return
        arrays = {}
        for key, d in self.boxes.items():
            arrays[f"{key}/xyxy"], arrays[f"{key}/confidence"] = d.xyxy, d.confidence
            arrays[f"{key}/class_id"] = d.class_id
        np.savez_compressed(self.cache, **arrays)  # type: ignore[arg-type]
        self.added = 0


def _value(text: str) -> Any:
    return yaml.safe_load(text)  # 1 -> int, 0.5 -> float, false -> bool, [a, b] -> list


def _pairs(items: list[str], multi: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: {item!r}: expected key=value")
        out[key] = [_value(v) for v in value.split(",")] if multi else _value(value)
    return out


def row(setting: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run that the sweep table shows."""
    ppe = report["ppe"]
    labelled = sum(v["labelled"] for v in ppe.values())
    caught = sum(v["caught"] for v in ppe.values())
    delays = [d for v in ppe.values() for d in v["time_to_alert_s"]["each"]]
    by_rule = report["false_alerts"]["by_rule"]
    false_ppe = sum(n for rule, n in by_rule.items() if rule != "zone_entry")
    hours = report.get("scored_s", report["duration_s"]) / 3600
    undetermined = [v["undetermined_share"] for v in report["undetermined"].values() if isinstance(v, dict)]
    return {
        **setting,
        "labelled": labelled,
        "caught": caught,
        "missed": labelled - caught,
        "by_rule_caught": {r: v["caught"] for r, v in ppe.items()},
        "tta_mean_s": round(float(np.mean(delays)), 2) if delays else None,
        "false_ppe": false_ppe,
        "false_ppe_per_h": round(false_ppe / hours, 1) if hours else None,
        "false_by_rule": {r: n for r, n in by_rule.items() if r != "zone_entry"},
        "on_unknown": report["events"]["on_unknown"],
        "undetermined": [u for u in undetermined if u is not None],
    }


def main() -> None:
    """Parse arguments, run the sweep, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", type=Path)
    parser.add_argument("truth", type=Path)
    parser.add_argument("--fps", type=float, default=5.0, help="camera fps (frames analysed per second)")
    parser.add_argument("--set", action="append", default=[], help="rules field=value for every run")
    parser.add_argument("--grid", action="append", default=[], help="rules field=v1,v2,... to sweep")
    parser.add_argument("--cache", type=Path, help="keep detections in this .npz between invocations")
    parser.add_argument("--json", type=Path, help="write every row and report here")
    args = parser.parse_args()

    truth = load_truth(args.truth)
    model = ModelConfig()
    detector = ReplayDetector(create_detector(model), args.cache)
    camera = CameraConfig(id="eval", source=str(args.video), fps=args.fps, zones=list(truth.zones))
    fixed = _pairs(args.set, multi=False)
    grid = _pairs(args.grid, multi=True)
    rows, reports = [], []
    for combo in itertools.product(*grid.values()) if grid else [()]:
        setting = dict(zip(grid, combo, strict=True))
        rules = RulesConfig(**(fixed | setting))
        # run_video only calls detect() and reads info: the replaying stand-in is enough for it.
        run = run_video(args.video, camera, rules, model, cast(Detector, detector), truth)
        report = score(truth, run, rules.require)
        rows.append(row(setting, report))
        reports.append(report)
        print(json.dumps(rows[-1]), flush=True)
        detector.save()
    if args.json is not None:
        args.json.write_text(json.dumps({"fixed": fixed, "rows": rows, "reports": reports}, indent=1) + "\n")


if __name__ == "__main__":
    main()
