"""Run one camera for py-spy: OpenVINO INT8, evidence on, samples/vtest.mp4 unpaced with an fps cap of 5.

    py-spy record --nonblocking --format raw -r 50 -o after.raw -- \
        .venv/bin/python scripts/profile-one-camera.py 20

Prints the frames analysed per second and the reader's counters (read, skipped, grabbed only) as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from edge.app import EdgeApp
from edge.bench import BENCH_ZONE
from edge.config.models import (
    CameraConfig,
    EvidenceConfig,
    MetricsConfig,
    ModelConfig,
    SiteConfig,
    SiteSection,
)

REPO = Path(__file__).resolve().parent.parent


def main(seconds: float) -> None:
    """Warm up 3 s, then count analysed frames for `seconds`."""
    video, model = REPO / "samples" / "vtest.mp4", REPO / "models" / "ppe-yolo" / "model-int8.xml"
    with tempfile.TemporaryDirectory() as tmp:
        camera = CameraConfig(
            id="cam0", source=str(video), fps=5, realtime=False, loop=True, zones=[BENCH_ZONE]
        )
        config = SiteConfig(
            site=SiteSection(id="p", name="p"),
            cameras=[camera],
            model=ModelConfig(type="openvino", path=model, providers=["cpu"]),
            evidence=EvidenceConfig(folder=Path(tmp) / "ev"),
            metrics=MetricsConfig(enabled=False),
        )
        count = {"n": 0}
        app = EdgeApp(config, on_result=lambda _r: count.__setitem__("n", count["n"] + 1))
        app.start()
        time.sleep(3)
        count["n"] = 0
        start = time.perf_counter()
        time.sleep(seconds)
        fps = count["n"] / (time.perf_counter() - start)
        app.stop()
        health = app.cameras["cam0"].reader.health.snapshot()
    print(
        json.dumps(
            {
                "fps": round(fps, 2),
                "read": health.frames_read,
                "skipped": health.frames_skipped,
                "grabbed_only": health.frames_grabbed_only,
            }
        )
    )


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20.0)
