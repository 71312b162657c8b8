"""`sitesentry demo`: the sample video through the whole pipeline, events shown live in the terminal."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from edge.config.models import SiteConfig
from edge.dataflow import FrameResult, Phase, SafetyEvent
from edge.runtime import Runtime

if TYPE_CHECKING:
    from edge.demo_dashboard import DemoDashboard

log = logging.getLogger(__name__)

RULE_TEXT = {"no_helmet": "no helmet", "no_vest": "no vest", "zone_entry": "in danger zone"}


class DemoView:
    """Keeps recent events and per-camera figures and renders them as rich tables."""

    def __init__(self, runtime: Runtime, keep: int = 12, dashboard: str = "") -> None:
        self.runtime = runtime
        self.dashboard = dashboard
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
        for col in ("camera", "status", "fps", "open events", "held back (flood control)"):
            cams.add_column(col)
        flooded = []
        for cid, c in stats["cameras"].items():
            held = c.get("held_back_last_min", 0)
            held_text = f"[bold yellow]{held} in the last minute[/]" if held else "-"
            cams.add_row(cid, c["status"], f"{c['fps']:.1f}", str(c["open_events"]), held_text)
            if held:
                flooded.append(f"{held} alert(s) held back on camera {cid} in the last minute")
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
        if flooded:  # never silent: the table above stops growing while alerts are held back
            footer += (
                f"[bold yellow]Flood control: {'; '.join(flooded)}[/] (more new PPE alerts than "
                f"rules.max_new_events_per_min = {self.runtime.config.rules.max_new_events_per_min}; "
                "danger zone entries are never held back)\n"
            )
        if self.dashboard:
            footer += f"{self.dashboard}\n"
        return Group(cams, events, footer)


def _with_local_control(config: SiteConfig) -> SiteConfig:
    """Let the demo's dashboard steer the edge through the embedded broker (3.1.1, loopback only)."""
    if config.mqtt.host is not None or "*" in config.mqtt.control_clients:
        return config
    mqtt = config.mqtt.model_copy(update={"control_clients": [*config.mqtt.control_clients, "*"]})
    return config.model_copy(update={"mqtt": mqtt})


def with_free_metrics_port(config: SiteConfig) -> SiteConfig:
    """A second demo on this box takes a free metrics port, as it does for its broker and dashboard."""
    metrics = config.metrics
    if not metrics.enabled or metrics.port == 0:
        return config
    with socket.socket(socket.AF_INET6 if ":" in metrics.host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server does
        try:
            sock.bind((metrics.host, metrics.port))
            return config
        except OSError:
            pass
    log.warning("metrics.port %d is taken (another SiteSentry?); the demo uses a free port", metrics.port)
    return config.model_copy(update={"metrics": metrics.model_copy(update={"port": 0})})


def run_demo(
    config: SiteConfig, stop: threading.Event, seconds: float = 0, dashboard_port: int | None = 8080
) -> None:
    """Run until Ctrl-C (or for `seconds`), drawing the live view, then shut down cleanly.

    With the `dashboard` extra installed and `dashboard_port` set, the site dashboard runs beside it.
    """
    console = Console()
    config = with_free_metrics_port(config)
    runtime = Runtime.build(_with_local_control(config) if dashboard_port else config)
    board = None
    line = ""
    runtime.start()
    try:
        if dashboard_port:
            board, line = _start_dashboard(runtime, dashboard_port)
        console.print(line, highlight=False)
        view = DemoView(runtime, dashboard=line)
        runtime.app.on_event = view.on_event
        runtime.app.on_result = view.on_result
        deadline = time.time() + seconds if seconds > 0 else None
        with Live(view.render(), console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set() and (deadline is None or time.time() < deadline):
                live.update(view.render())
                stop.wait(0.5)
    finally:
        if board is not None:
            board.stop()
        runtime.stop()
    console.print(
        f"demo finished: {view.counts['start']} violation(s) started, {view.counts['end']} ended; "
        f"evidence in {config.evidence.folder}"
    )


def _start_dashboard(runtime: Runtime, port: int) -> tuple[DemoDashboard | None, str]:
    """Start the dashboard on the demo's broker; without the extra, say how to get it."""
    try:
        from edge.demo_dashboard import start_dashboard

        board = start_dashboard(runtime.config, runtime.config.mqtt.outbox.parent / "dashboard", port)
    except ImportError as exc:
        # A missing package (no `dashboard` extra) or the dashboard's own refusal on Python 3.10.
        return None, f"Dashboard: not started: {exc} (needs Python 3.11+ and pip install -e '.[dashboard]')"
    return board, f"Dashboard: {board.url}   login: {board.username} / {board.password}"
