"""`sitesentry dashboard serve` stops on Ctrl-C even while a browser keeps a live page's event stream open."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from edge.mqtt.broker import free_port

pytest.importorskip("fastapi", reason="needs the dashboard extra")


def test_serve_stops_on_sigint_while_a_live_page_stream_is_open(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "SITESENTRY_DASHBOARD_DATA_DIR": str(tmp_path / "dashboard"),
        "SITESENTRY_DASHBOARD_MQTT__PORT": str(free_port()),  # no broker there: ingest retries quietly
        "SITESENTRY_DASHBOARD_SECURE_COOKIES": "false",  # plain HTTP on loopback
    }
    secret = tmp_path / "pw"
    secret.write_text("site-admin-pw-1\n")
    cli = [sys.executable, "-m", "edge.cli", "dashboard"]
    added = subprocess.run(
        [*cli, "user", "add", "wong", "--role", "admin", "--site", "*", "--password-file", str(secret)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 60
        while True:
            try:
                if client.get("/api/health").status_code in (200, 503):
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        login = client.post("/api/auth/login", json={"username": "wong", "password": "site-admin-pw-1"})
        assert login.status_code == 200, login.text
        opened = threading.Event()

        def watch_live_page() -> None:
            try:
                with client.stream("GET", "/live/stream", timeout=None) as stream:
                    assert stream.status_code == 200
                    opened.set()
                    for _ in stream.iter_lines():
                        pass
            except httpx.TransportError:
                pass  # the server went away: what a browser sees too

        threading.Thread(target=watch_live_page, daemon=True).start()
        assert opened.wait(20), "the live stream did not open"
        stopped_at = time.monotonic()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=20)  # uvicorn alone would wait for the stream for ever
        took = time.monotonic() - stopped_at
        output = server.stdout.read() if server.stdout else ""
        # uvicorn re-raises the signal once it has shut down: 130 (128 + SIGINT) is a clean Ctrl-C exit.
        assert server.returncode in (0, 130, -signal.SIGINT), output
        assert "Application shutdown complete" in output, output
        assert "Traceback" not in output and "ERROR" not in output, output
        # Logged with times and loggers: the dashboard's own lines too (they used to go nowhere).
        assert re.search(
            rf"^\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{{4}} INFO dashboard: dashboard on http://127\.0\.0\.1:{port}/$",
            output,
            re.M,
        ), output
        assert re.search(
            r'INFO uvicorn\.access: 127\.0\.0\.1:\d+ - "GET /api/health HTTP/1\.1" 200', output
        ), output
        assert took < 4, f"took {took:.1f} s: the open stream held the shutdown up"
    finally:
        if server.poll() is None:
            server.kill()
