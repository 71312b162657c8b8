"""`sitesentry demo` as the README's first command runs it: embedded broker, edge, dashboard, one login."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_cli_run import site_file

from edge.mqtt.broker import free_port

pytest.importorskip("fastapi", reason="needs the dashboard extra")

_LINE = re.compile(r"Dashboard: (http://127\.0\.0\.1:\d+)/\s+login: (\S+) / (\S+)")


def _wait_for_line(proc: subprocess.Popen[str], timeout: float) -> re.Match[str]:
    """Read the demo's output until it prints the dashboard line (it comes before the live table)."""
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if selector.select(timeout=1):
            line = proc.stdout.readline()
            seen.append(line)
            if match := _LINE.search(line):
                return match
    raise AssertionError(f"no dashboard line from the demo: {''.join(seen)[-2000:]}")


def _poll(check, timeout: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.5)
    raise AssertionError("timed out")


@pytest.mark.slow
def test_demo_serves_the_dashboard_with_live_alerts_evidence_and_zone_edits(tmp_path: Path) -> None:
    config = site_file(tmp_path, free_port())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge.cli",
            "demo",
            "--config",
            str(config),
            "--seconds",
            "150",
            "--dashboard-port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        url, user, password = _wait_for_line(proc, 120).groups()
        client = httpx.Client(base_url=url, timeout=10)
        assert client.get("/api/events").status_code == 401  # nothing without a login
        login = client.post("/api/auth/login", json={"username": user, "password": password})
        assert login.status_code == 200, login.text
        csrf = login.json()["csrf_token"]

        def event_with_snapshot() -> dict | None:  # type: ignore[type-arg]
            for item in client.get("/api/events", params={"limit": 50}).json()["items"]:
                detail = client.get(f"/api/events/{item['id']}").json()
                if any(e["kind"] == "snapshot" and e.get("url") for e in detail.get("evidence", [])):
                    return detail  # type: ignore[no-any-return]
            return None

        event = _poll(event_with_snapshot, 90)
        snapshot = next(e for e in event["evidence"] if e["kind"] == "snapshot")
        image = client.get(snapshot["url"])
        assert image.status_code == 200 and image.content[:2] == b"\xff\xd8"  # a JPEG, pushed over MQTT

        # The zone editor's path: the edge behind the embedded (MQTT 3.1.1) broker applies and answers.
        zones = {"zones": [{"id": "pit", "name": "Pit", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.5]]}]}
        reply = client.put("/api/cameras/demo-site/gate/zones", json=zones, headers={"X-CSRF-Token": csrf})
        assert reply.status_code == 200 and reply.json()["status"] == "applied", reply.text
        current = _poll(
            lambda: (
                (z := client.get("/api/cameras/demo-site/gate/zones").json())["zones"][0]["id"] == "pit" and z
            ),
            15,
        )
        assert current["zones"][0]["polygon"][2] == [0.4, 0.5]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
    assert "demo finished" in out
