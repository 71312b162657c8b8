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
