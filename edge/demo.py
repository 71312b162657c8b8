"""`sitesentry demo`: the sample video through the whole pipeline, events shown live in the terminal."""

from __future__ import annotations

import threading
import time
from collections import deque
from pathlib import Path
from uuid import UUID

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from edge.config.models import SiteConfig
from edge.dataflow import FrameResult, Phase, SafetyEvent
from edge.runtime import Runtime

RULE_TEXT = {"no_helmet": "no helmet", "no_vest": "no vest", "zone_entry": "in danger zone"}


class DemoView:
    """Keeps recent events and per-camera figures and renders them as rich tables."""

    def __init__(self, runtime: Runtime, keep: int = 12) -> None:
        self.runtime = runtime
        self.events: deque[SafetyEvent] = deque(maxlen=keep)
        self.counts = {"start": 0, "end": 0}
        self._ended: set[UUID] = set()  # an END repeats when its clip finishes later: count it once
        self.frames = 0
        self._lock = threading.Lock()

    def on_event(self, event: SafetyEvent) -> None:
        """Remember an event for display."""
        with self._lock:
            if event.phase is Phase.END:
                if event.event_id in self._ended:
                    return
                self._ended.add(event.event_id)
            if event.phase in (Phase.START, Phase.END):
                self.events.appendleft(event)
                self.counts[event.phase.value] += 1

    def on_result(self, _result: FrameResult) -> None:
        """Count processed frames."""
        self.frames += 1

    def render(self) -> Group:
        """Build the live screen: cameras, alert delivery, and the latest violations."""
        stats = self.runtime.app.stats()
        cams = Table(title="Cameras", expand=True)
        for col in ("camera", "status", "fps", "open events"):
            cams.add_column(col)
        for cid, c in stats["cameras"].items():
            cams.add_row(cid, c["status"], f"{c['fps']:.1f}", str(c["open_events"]))
        events = Table(
            title=f"Violations (started {self.counts['start']}, ended {self.counts['end']})", expand=True
        )
        for col in ("time", "phase", "camera", "violation", "zone", "track", "conf"):
            events.add_column(col, no_wrap=True)
        events.add_column("snapshot", overflow="ellipsis", no_wrap=True, max_width=24)
        with self._lock:
            for e in self.events:
                when = (e.ended_at or e.started_at).strftime("%H:%M:%S")
                snapshot = next((Path(r.path).name for r in e.evidence if r.kind == "snapshot"), "")
                phase = f"[red]{e.phase.value}[/]" if e.phase is Phase.START else f"[green]{e.phase.value}[/]"
                events.add_row(
                    when,
                    phase,
                    e.camera_id,
                    RULE_TEXT.get(e.rule.value, e.rule.value),
                    e.zone or "-",
                    str(e.track_id),
                    f"{e.peak_confidence:.2f}",
                    snapshot,
                )
        footer = (
            f"\nframes analysed: {self.frames}   evidence: {self.runtime.config.evidence.folder}   "
            f"MQTT: {self.runtime.broker_url}   (Ctrl-C to stop; `sitesentry alerts tail` shows the alerts)\n"
        )
        return Group(cams, events, footer)


def run_demo(config: SiteConfig, stop: threading.Event, seconds: float = 0) -> None:
    """Run until Ctrl-C (or for `seconds`), drawing the live view, then shut down cleanly."""
    console = Console()
    runtime = Runtime.build(config)
    view = DemoView(runtime)
    runtime.app.on_event = view.on_event
    runtime.app.on_result = view.on_result
    runtime.start()
    deadline = time.time() + seconds if seconds > 0 else None
    try:
        with Live(view.render(), console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set() and (deadline is None or time.time() < deadline):
                live.update(view.render())
                stop.wait(0.5)
    finally:
        runtime.stop()
    console.print(
        f"demo finished: {view.counts['start']} violation(s) started, {view.counts['end']} ended; "
        f"evidence in {config.evidence.folder}"
    )
