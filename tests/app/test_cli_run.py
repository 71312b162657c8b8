"""`sitesentry run` and `sitesentry demo` as a site would use them: real processes, a real MQTT subscriber."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from edge.mqtt.broker import free_port

REPO = Path(__file__).resolve().parents[2]


def site_file(tmp_path: Path, port: int, **camera: object) -> Path:
    data = yaml.safe_load((REPO / "samples" / "site.yaml").read_text(encoding="utf-8"))
    data["cameras"][0]["source"] = str(REPO / "samples" / "vtest.mp4")
    data["cameras"][0].update(camera)
    data["model"]["path"] = str(REPO / "models" / "ppe-yolo" / "model.onnx")
    data["evidence"]["folder"] = str(tmp_path / "evidence")
    data["rules"]["max_new_events_per_min"] = 1000
    data["mqtt"].update(port=port, outbox=str(tmp_path / "outbox.sqlite3"))
    data["metrics"] = {"port": 0}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


class Subscriber:
    """A real MQTT client on the edge's broker, recording every message."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_connect = lambda c, *_: c.subscribe("sitesentry/#", qos=1)
        self.client.on_message = self._on_message
        deadline = time.monotonic() + 120  # the edge starts its broker after loading the model
        while True:
            try:
                self.client.connect("127.0.0.1", port, 30)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def events(self) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.endswith("/events")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.mark.slow
def test_run_publishes_violations_and_sigterm_ends_them_and_flushes_evidence(tmp_path):
    port = free_port()
    config = site_file(tmp_path, port, loop=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        sub = Subscriber(port)
        assert wait_for(lambda: any(e["type"] == "start" for e in sub.events()), 120), (
            "no violation published"
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out[-2000:]
    time.sleep(0.5)
    sub.close()
    events = sub.events()
    started = {e["event_id"] for e in events if e["type"] == "start"}
    ended = {e["event_id"] for e in events if e["type"] == "end"}
    assert started and started <= ended, "every started violation is ended on shutdown"
    snapshots = list((tmp_path / "evidence").rglob("*.jpg"))
    assert len(snapshots) >= len(started)
    assert not list((tmp_path / "evidence").rglob("*.part*")), "no half-written evidence after shutdown"


def test_run_with_a_bad_model_file_exits_with_one_clear_line(tmp_path):
    config = site_file(tmp_path, free_port())
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    bogus = tmp_path / "model.onnx"
    bogus.write_text("not a model")
    data["model"]["path"] = str(bogus)
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"{bogus}: not a loadable ONNX model" in proc.stderr


@pytest.mark.slow
def test_demo_runs_on_a_fresh_setup_and_reports_violations(tmp_path):
    config = site_file(tmp_path, free_port())
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "demo", "--config", str(config), "--seconds", "25"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "violation(s) started" in proc.stdout
    started = int(proc.stdout.split("demo finished: ")[1].split(" ")[0])
    assert started > 0
    assert list((tmp_path / "evidence").rglob("*.jpg"))
