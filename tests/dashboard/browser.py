"""Real components for the browser tests of the dashboard pages: a uvicorn server on a free loopback port
with a SQLite database, Mosquitto, an edge-like publisher speaking the MQTT contract with real JPEG and
MP4 evidence, and Debian's Chromium driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "mqtt"))

from mqtt_fixtures import (  # noqa: E402
    EDGE_PASSWORD,
    EDGE_USER,
    MOSQUITTO,
    MOSQUITTO_PASSWD,
    OPS_PASSWORD,
    OPS_USER,
    Mosquitto,
    wait_port,
)

from contract.evidence import file_chunks  # noqa: E402
from contract.topics import Topics  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
SAMPLE_VIDEO = REPO / "samples" / "vtest.mp4"
PREFIX = "sitesentry"


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def needs_browser_stack() -> None:
    """Skip when Chromium or Mosquitto is missing (scripts/setup.sh --dev installs both)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt install chromium)")
    if MOSQUITTO is None or MOSQUITTO_PASSWD is None:
        pytest.skip("mosquitto is not installed (apt install mosquitto)")


# ---------------------------------------------------------------------------------------------------
# The dashboard under test


@dataclass
class Dashboard:
    """A dashboard app served by uvicorn on its own thread."""

    app: Any
    url: str
    server: Any
    thread: threading.Thread

    @property
    def ctx(self) -> Any:
        """Return the running app's context (settings, database, hub)."""
        return self.app.state.ctx

    def stop(self) -> None:
        """Ask the server to exit (live streams first, as on Ctrl-C) and wait for it."""
        self.server.stop()
        self.thread.join(15)


def start_dashboard(data_dir: Path, broker: Mosquitto | None, **overrides: Any) -> Dashboard:
    """Build the app with `create_app` and serve it on a free port; wait until it answers."""
    from dashboard.app import DashboardServer, create_app
    from dashboard.settings import DashboardSettings

    values: dict[str, Any] = {
        "data_dir": data_dir,
        "secure_cookies": False,  # plain HTTP on loopback
        "ingest_enabled": broker is not None,
        "retention_days": 30,
    }
    if broker is not None:
        values["mqtt"] = {
            "host": "127.0.0.1",
            "port": broker.port,
            "username": OPS_USER,
            "password": OPS_PASSWORD,
            "control_timeout_s": 20,
        }
    values.update(overrides)
    app = create_app(DashboardSettings.model_validate(values), run_retention=False)
    port = free_port()
    server = DashboardServer(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.05)
    assert wait_port("127.0.0.1", port)
    return Dashboard(app=app, url=f"http://127.0.0.1:{port}", server=server, thread=thread)


def add_user(dashboard: Dashboard, username: str, password: str, role: str, **kwargs: Any) -> None:
    """Create a user through the auth service (as `sitesentry dashboard user add` does)."""
    from dashboard.auth import service
    from dashboard.storage.models import Role

    with dashboard.ctx.db.session() as db:
        service.create_user(db, username, password, Role(role), **kwargs)


# ---------------------------------------------------------------------------------------------------
# Evidence: real pictures from the sample video


def sample_frames(count: int, start: int = 0, step: int = 1) -> list[np.ndarray]:
    """Return `count` BGR frames of samples/vtest.mp4 (people walking: a realistic camera view)."""
    capture = cv2.VideoCapture(str(SAMPLE_VIDEO))
    frames: list[np.ndarray] = []
    index = 0
    try:
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            if index >= start and (index - start) % step == 0:
                frames.append(frame)
            index += 1
    finally:
        capture.release()
    assert frames, f"cannot read {SAMPLE_VIDEO}"
    return frames


def jpeg(frame: np.ndarray) -> bytes:
    """Encode a frame as JPEG."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return data.tobytes()


def mp4(frames: list[np.ndarray], fps: int = 10) -> bytes:
    """Encode frames as a small H.264 MP4 (yuv420p, faststart), as the edge writes its clips."""
    import av

    # faststart moves the index to the front (a browser can play before the whole file is in), which
    # needs a real file: the muxer rewrites it at the end.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        _encode(av, path, frames, fps)
        return path.read_bytes()


def _encode(av: Any, path: Path, frames: list[np.ndarray], fps: int) -> None:
    """Write `frames` to `path` as H.264."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "30"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------------------------------------------
# An edge-like publisher: the contract's messages, as an edge box sends them


@dataclass
class EdgeFeed:
    """A paho client on the edge's broker account that publishes contract messages for one site."""

    port: int
    site: str = "kt-tower-b"
    edge: str = "edge-1"
    client: mqtt.Client = field(init=False)

    def __post_init__(self) -> None:
        self.topics = Topics(PREFIX, self.site)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"feed-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(EDGE_USER, EDGE_PASSWORD)
        self.client.connect("127.0.0.1", self.port, 30)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def _publish(self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(10)

    def edge_online(self, version: str = "0.1.0") -> None:
        """Publish the edge's retained `online` status."""
        body = {
            "schema_version": 1,
            "site": self.site,
            "edge": self.edge,
            "state": "online",
            "at": _now(),
            "reason": None,
            "version": version,
        }
        self._publish(self.topics.edge_status(self.edge), json.dumps(body), retain=True)

    def camera_status(self, camera: str, state: str, detail: str | None = None) -> None:
        """Publish a camera's retained stream status."""
        body = {
            "schema_version": 1,
            "site": self.site,
            "edge": self.edge,
            "camera": camera,
            "state": state,
            "detail": detail,
            "at": _now(),
        }
        self._publish(self.topics.camera_status(camera), json.dumps(body), retain=True)

    def snapshot(self, camera: str, data: bytes) -> None:
        """Publish a camera's retained latest snapshot (raw JPEG)."""
        self._publish(self.topics.snapshot(camera), data, qos=0, retain=True)

    def heartbeat(self, fps: dict[str, float], figures: dict[str, dict[str, Any]] | None = None) -> None:
        """Publish a heartbeat with per-camera fps (and any further per-camera `figures`)."""
        body = {
            "schema_version": 1,
            "site": self.site,
            "edge": self.edge,
            "at": _now(),
            "uptime_s": 120.0,
            "cameras": {
                c: {"fps": f, "latency_ms_p50": 40.0, "latency_ms_p95": 61.0, **(figures or {}).get(c, {})}
                for c, f in fps.items()
            },
            "queues": {},
            "outbox": {"pending": 0, "delivered_total": 10, "dropped_total": 0},
            "reconnects": 0,
        }
        self._publish(self.topics.heartbeat(self.edge), json.dumps(body), qos=0)

    def evidence(self, camera: str, kind: str, path: str, data: bytes) -> str:
        """Push an evidence file in chunks (as the edge's outbox does); return its sha256."""
        for chunk in file_chunks(data, site=self.site, edge=self.edge, camera=camera, kind=kind, path=path):  # type: ignore[arg-type]
            self._publish(self.topics.evidence(self.edge), chunk)
        return hashlib.sha256(data).hexdigest()

    def violation(
        self,
        *,
        camera: str,
        rule: str,
        zone: str | None = None,
        started_at: datetime | None = None,
        snapshot: bytes | None = None,
        clip: bytes | None = None,
        offset_s: float = 0.0,
        person_box: dict[str, float] | None = None,
        evidence_boxes: list[dict[str, float]] | None = None,
        phase: str = "start",
        event_id: str | None = None,
        ended_at: datetime | None = None,
        confidence: float = 0.87,
    ) -> str:
        """Publish one event message (evidence first, so the page can show it at once); return its id."""
        event_id = event_id or str(uuid.uuid4())
        started = started_at or datetime.now(UTC)
        day = started.date().isoformat()
        evidence = []
        if snapshot is not None:
            path = f"{camera}/{day}/{event_id}.jpg"
            digest = self.evidence(camera, "snapshot", path, snapshot)
            evidence.append({"kind": "snapshot", "path": path, "sha256": digest, "offset_s": None})
        if clip is not None:
            path = f"{camera}/{day}/{event_id}.mp4"
            digest = self.evidence(camera, "clip", path, clip)
            evidence.append({"kind": "clip", "path": path, "sha256": digest, "offset_s": offset_s})
        body = {
            "schema_version": 1,
            "message_id": str(uuid.uuid4()),
            "event_id": event_id,
            "type": phase,
            "rule": rule,
            "site": self.site,
            "edge": self.edge,
            "camera": camera,
            "zone": zone,
            "track_id": 7,
            "started_at": started.isoformat(),
            "ended_at": ended_at.isoformat() if ended_at else None,
            "confidence": confidence,
            "person_box": person_box or {"x1": 0.42, "y1": 0.3, "x2": 0.52, "y2": 0.8},
            "evidence_boxes": evidence_boxes
            if evidence_boxes is not None
            else [{"x1": 0.45, "y1": 0.3, "x2": 0.49, "y2": 0.37}],
            "evidence": evidence,
            "model": {"name": "ppe-yolo", "version": "0.4.0"},
            "frame_seq": 1812,
            "emitted_at": datetime.now(UTC).isoformat(),
        }
        self._publish(self.topics.events(camera), json.dumps(body))
        return event_id


def _now() -> str:
    """Return the current time as ISO 8601 with offset."""
    return datetime.now(UTC).isoformat()


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Poll `predicate` until it holds; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------------------------------
# Browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright's sync API."""
    from playwright.sync_api import sync_playwright

    needs_browser_stack()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $SITESENTRY_SCREENSHOTS, else a temporary folder."""
    folder = Path(os.environ.get("SITESENTRY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def login(page: Any, base: str, username: str, password: str) -> None:
    """Sign in through the login form and land on the live page."""
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_url(f"{base}/live**")


def recent(minutes: float) -> datetime:
    """Return a moment `minutes` ago."""
    return datetime.now(UTC) - timedelta(minutes=minutes)
