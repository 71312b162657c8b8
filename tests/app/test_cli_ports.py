"""A second instance on the same box: a taken port is one line naming the port and the setting, exit 2.

Real listeners hold the ports (a plain socket, as another process would); the commands run as subprocesses.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_cli_config import sample, write_yaml

from edge.mqtt.broker import free_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port with a live listener on 127.0.0.1, like the first instance's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def sitesentry(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_run_with_the_metrics_port_taken_names_port_and_setting(tmp_path: Path, taken_port: int) -> None:
    config = sample(tmp_path)
    config["mqtt"].update(port=free_port())
    config["metrics"] = {"port": taken_port}
    proc = sitesentry("run", "--config", str(write_yaml(tmp_path, config)))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr
    assert (
        f"error: cannot serve metrics on 127.0.0.1:{taken_port}: the port is already in use (another "
        "SiteSentry on this box?); set metrics.port to a free port (0: any free one) or "
        "metrics.enabled: false"
    ) in proc.stderr.splitlines()


def test_the_embedded_broker_on_a_taken_port_names_the_option(taken_port: int) -> None:
    proc = sitesentry("broker", "--port", str(taken_port))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr
    assert proc.stderr.strip() == (
        f"error: cannot start the embedded MQTT broker on 127.0.0.1:{taken_port}: the port is already in use "
        "(another SiteSentry on this box?); set --port to a free port (0: any free one)"
    )


def test_dashboard_serve_on_a_taken_port_names_the_setting_and_serves_on_a_free_one(
    tmp_path: Path, taken_port: int
) -> None:
    pytest.importorskip("fastapi", reason="needs the dashboard extra")
    env = {
        "SITESENTRY_DASHBOARD_DATA_DIR": str(tmp_path / "dashboard"),
        "SITESENTRY_DASHBOARD_BIND_PORT": str(taken_port),
        "SITESENTRY_DASHBOARD_MQTT__PORT": str(free_port()),  # no broker there: ingest retries quietly
    }
    proc = sitesentry("dashboard", "serve", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Errno" not in proc.stderr
    assert proc.stderr.strip() == (
        f"error: cannot serve the dashboard on 127.0.0.1:{taken_port}: the port is already in use (another "
        "dashboard on this box?); set bind_port (or SITESENTRY_DASHBOARD_BIND_PORT) or --port to a free port"
    )
    # The socket handed to uvicorn serves as before when the port is free.
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "dashboard", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **env},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, server.communicate()[0]
                time.sleep(0.3)
        assert reply.status_code == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_a_second_demo_serves_metrics_on_a_free_port(tmp_path: Path, taken_port: int) -> None:
    from edge.config import load_config
    from edge.demo import with_free_metrics_port

    config = sample(tmp_path)
    config["metrics"] = {"port": taken_port}
    site = load_config(write_yaml(tmp_path, config))
    assert with_free_metrics_port(site).metrics.port == 0  # 0: the metrics server picks a free one
    free = free_port()
    site = site.model_copy(update={"metrics": site.metrics.model_copy(update={"port": free})})
    assert with_free_metrics_port(site).metrics.port == free, "a free port is kept"
