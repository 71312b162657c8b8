"""The demo's live view counts each violation once, although an END repeats when its clip lands later."""

import uuid
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from edge.dataflow import EvidenceRef, Phase, Rule, SafetyEvent
from edge.demo import DemoView

HK = ZoneInfo("Asia/Hong_Kong")


def test_a_repeated_end_with_its_clip_is_counted_once() -> None:
    start = SafetyEvent(
        event_id=uuid.uuid4(),
        phase=Phase.START,
        site_id="demo",
        camera_id="gate",
        rule=Rule.NO_HELMET,
        zone=None,
        track_id=3,
        started_at=datetime(2026, 1, 5, 9, 0, tzinfo=HK),
        ended_at=None,
        peak_confidence=0.8,
        boxes=((0.1, 0.1, 0.2, 0.4),),
        frame_seq=10,
    )
    end = replace(start, phase=Phase.END, ended_at=datetime(2026, 1, 5, 9, 0, 4, tzinfo=HK))
    view = DemoView(runtime=None)  # type: ignore[arg-type]  # on_event never touches the runtime
    view.on_event(start)
    view.on_event(replace(start, phase=Phase.UPDATE))
    view.on_event(end)
    view.on_event(replace(end, evidence=(EvidenceRef("clip", "gate/x.mp4", "0" * 64, 1.0),)))
    assert view.counts == {"start": 1, "end": 1}
    assert [e.phase for e in view.events] == [Phase.END, Phase.START]


def test_flood_control_is_shown_with_its_count_instead_of_a_silently_frozen_table(tmp_path) -> None:
    import io
    import time
    from pathlib import Path

    from rich.console import Console

    from edge.app import EdgeApp
    from edge.config import load_config
    from edge.dataflow import Violation
    from edge.runtime import Runtime

    site = load_config(Path(__file__).resolve().parents[2] / "samples" / "site.yaml")
    site = site.model_copy(
        update={
            "rules": site.rules.model_copy(update={"max_new_events_per_min": 2, "debounce_s": 0}),
            "evidence": site.evidence.model_copy(update={"folder": tmp_path / "evidence"}),
        }
    )
    app = EdgeApp(site)  # the real app and event lifecycle, not started: no frames needed
    lifecycle = app.cameras["gate"].pipeline.lifecycle
    now = time.time()
    for i in range(5):  # a camera cut: five bare heads at once, all new tracks
        box = (i * 100.0, 0.0, i * 100.0 + 50, 200.0)
        lifecycle.update((Violation("gate", 10 + i, Rule.NO_HELMET, None, 0.9, box),), now, i, (640, 480))
    view = DemoView(Runtime(site, app, None, None, None, app.registry))  # type: ignore[arg-type]
    console = Console(file=io.StringIO(), width=250, color_system=None)
    console.print(view.render())
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "3 in the last minute" in text  # the cameras table
    assert "Flood control: 3 alert(s) held back on camera gate in the last minute" in text
    assert "rules.max_new_events_per_min = 2" in text
