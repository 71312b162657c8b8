"""Make ultralytics safe to run with no network: no downloads, no telemetry, a local font."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def prepare_offline(config_dir: Path | None = None) -> Path:
    """Set ultralytics' offline environment and place a local font where it looks; return the config dir.

    Must run before `ultralytics` is imported, since it reads these variables at import time.
    """
    config_dir = Path(
        config_dir or os.environ.get("YOLO_CONFIG_DIR") or Path.home() / ".config" / "sitesentry-yolo"
    )
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "true")
    font_dir = config_dir / "Ultralytics"
    font_dir.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = font_dir / name
        if not target.exists():
            shutil.copyfile(_local_font(), target)
    return config_dir


def _local_font() -> Path:
    """Find DejaVuSans.ttf shipped with matplotlib (a dependency of ultralytics)."""
    import matplotlib

    font = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not font.exists():
        raise FileNotFoundError(f"no local font found at {font}; ultralytics would try to download Arial.ttf")
    return font
