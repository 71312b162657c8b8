"""The site dashboard beside `sitesentry demo`: same process, embedded broker, SQLite, a demo login.

The edge never needs the dashboard; the demo starts one so a new user sees alerts arrive in a browser.
The dashboard is imported only here and only when the `dashboard` extra is installed.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config.models import SiteConfig

log = logging.getLogger(__name__)

DEMO_USER = "demo"


@dataclass
class DemoDashboard:
    """A running dashboard: where to open it, how to log in, and how to stop it."""

    url: str
    username: str
    password: str
    server: Any  # dashboard.app.DashboardServer
    thread: threading.Thread

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to finish and wait for it (ingest stops with the app's lifespan)."""
        self.server.stop()
        self.thread.join(timeout)


def _port(host: str, wanted: int) -> int:
    """Return `wanted` if it is free on `host`, else a free port (a second demo, or 8080 taken)."""
    with socket.socket() as sock:
        try:
            sock.bind((host, wanted))
            return wanted
        except OSError:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])


def start_dashboard(config: SiteConfig, data_dir: Path, port: int = 8080) -> DemoDashboard:
    """Start the dashboard on 127.0.0.1 reading the demo's broker; raise ImportError without the extra."""
    from dashboard.app import DashboardServer, create_app
    from dashboard.auth.service import create_user, set_password
    from dashboard.settings import DashboardSettings
    from dashboard.storage.migrate import upgrade
    from dashboard.storage.models import Role, User

    mqtt = config.mqtt
    settings = DashboardSettings.model_validate(
        {
            "data_dir": data_dir,
            "secure_cookies": False,  # plain HTTP on the loopback address
            "time_zone": config.site.timezone,
            "mqtt": {
                "host": mqtt.host,
                "port": mqtt.port,
                "username": mqtt.username,
                "password": mqtt.password.get_secret_value() if mqtt.password else None,
                "prefix": mqtt.prefix,
                "protocol": mqtt.protocol,
                "client_id": f"sitesentry-dashboard-demo-{config.site.id}",
            },
        }
    )
    app = create_app(settings)
    ctx = app.state.ctx
    upgrade(ctx.db.engine)
    # A fresh password each run: the demo's database outlives the run, an old printed password must not.
    password = secrets.token_urlsafe(9)
    with ctx.db.session() as db:
        user = db.query(User).filter_by(username=DEMO_USER).one_or_none()
        if user is None:
            create_user(db, DEMO_USER, password, Role.ADMIN, sites=["*"], display_name="Demo safety manager")
        else:
            set_password(db, user, password)
    port = _port("127.0.0.1", port)
    server = DashboardServer(app, host="127.0.0.1", port=port, log_level="warning")
    thread = threading.Thread(target=server.run, name="dashboard", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise OSError(f"the dashboard did not start on 127.0.0.1:{port}")
    return DemoDashboard(f"http://127.0.0.1:{port}/", DEMO_USER, password, server, thread)
