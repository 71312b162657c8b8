"""Dashboard benchmark: ingest rate (SQLite and PostgreSQL), MQTT-to-browser latency over the live SSE stream,
alert-list page times with a million events in PostgreSQL, and the dashboard process's memory.

    .venv/bin/python -m dashboard.bench --json docs/benchmarks/dashboard.json

Everything runs for real: a Mosquitto broker on a free loopback port, the dashboard as its own process
(uvicorn serving `create_app`, ingest included), messages published with paho as an edge would, pages
fetched over HTTP with a signed-in session. PostgreSQL comes from `--pg-url`, SITESENTRY_TEST_PG_URL, or a
throwaway cluster started with scripts/test-postgres.sh; each run uses a database of its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from fastapi import FastAPI
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from contract.payloads import SCHEMA_VERSION, EventMessage
from dashboard.auth import service
from dashboard.auth.deps import SESSION_COOKIE
from dashboard.storage.db import Database
from dashboard.storage.events import encode_cursor
from dashboard.storage.models import EventMessageRow, Role

log = logging.getLogger("dashboard.bench")

REPO = Path(__file__).resolve().parents[1]
PREFIX = "sitesentry"
SITE, EDGE = "bench-site", "edge-1"
USER, PASSWORD = "bench", "bench-password-1"


def app_from_env() -> FastAPI:
    """The app the benchmark serves: settings from SITESENTRY_DASHBOARD_* (uvicorn --factory calls this)."""
    from dashboard.app import create_app
    from dashboard.settings import load_settings

    # Retention off: a sweep at start would be timed along with ingest.
    return create_app(load_settings(), run_retention=False)


def _free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    """Return the q-th percentile (0..100) by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# ---------------------------------------------------------------------------------------------------
# The moving parts: broker, PostgreSQL database, dashboard process


@contextmanager
def mosquitto(folder: Path) -> Iterator[int]:
    """Run Mosquitto on a free loopback port (anonymous, no persistence: a benchmark, not a site)."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "persistence false",
                # The dashboard may be busy storing while a burst arrives: queue it all, drop nothing.
                "max_queued_messages 0",
                "max_queued_bytes 0",
                f"log_dest file {folder / 'mosquitto.log'}",
            ]
        )
        + "\n"
    )
    process = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """Yield the URL of a fresh database (dropped afterwards) in the cluster at `url`, or in a throwaway
    cluster started with scripts/test-postgres.sh when `url` is None."""
    started: str | None = None
    if not url:
        out = subprocess.run(
            ["bash", str(REPO / "scripts" / "test-postgres.sh"), "start"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        exports = dict(line.removeprefix("export ").split("=", 1) for line in out.split())
        url, started = exports["SITESENTRY_TEST_PG_URL"], exports["SITESENTRY_TEST_PG_DIR"]
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
        if started:
            subprocess.run(["bash", str(REPO / "scripts" / "test-postgres.sh"), "stop", started], check=False)


@dataclass
class Server:
    """The dashboard as its own process, as `sitesentry dashboard serve` would run it."""

    process: subprocess.Popen[bytes]
    port: int
    db: Database
    cookie: str = ""

    @property
    def base(self) -> str:
        """Return the server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def rss_mb(self) -> dict[str, float]:
        """Return the process's resident memory now and at its peak (VmRSS, VmHWM), in MB."""
        fields: dict[str, float] = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
        return {"rss_mb": round(fields["VmRSS"], 1), "peak_rss_mb": round(fields["VmHWM"], 1)}


@contextmanager
def dashboard_server(data_dir: Path, database_url: str, broker_port: int) -> Iterator[Server]:
    """Start uvicorn on `create_app` with ingest on; sign a user in; stop it at the end."""
    port = _free_port()
    env = {
        **os.environ,
        "SITESENTRY_DASHBOARD_DATA_DIR": str(data_dir),
        "SITESENTRY_DASHBOARD_DATABASE_URL": database_url,
        "SITESENTRY_DASHBOARD_MQTT__HOST": "127.0.0.1",
        "SITESENTRY_DASHBOARD_MQTT__PORT": str(broker_port),
        "SITESENTRY_DASHBOARD_MQTT__CLIENT_ID": f"bench-{uuid.uuid4().hex[:8]}",
        "SITESENTRY_DASHBOARD_SECURE_COOKIES": "false",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "dashboard.bench:app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    process = subprocess.Popen(command, env=env, cwd=REPO)
    db = Database(database_url)
    try:
        _wait_port(port, 60)  # migrations run before the port opens
        with db.session() as session:
            user = service.create_user(session, USER, PASSWORD, Role.ADMIN, sites=["*"])
            token, _ = service.start_session(session, user, hours=12, ip="127.0.0.1", user_agent="bench")
        yield Server(process, port, db, token)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        db.dispose()


# ---------------------------------------------------------------------------------------------------
# An edge as far as the dashboard can tell: paho publishing contract messages


class Edge:
    """Publishes event messages at QoS 1 as an edge does, with many in flight (a backlog after an outage)."""

    def __init__(self, port: int) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-edge-{uuid.uuid4().hex[:8]}")
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        self.seq = 0

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()

    def messages(self, camera: str) -> tuple[bytes, bytes]:
        """Return a START and its END for a new violation on `camera`, as the edge would write them."""
        self.seq += 1
        started = datetime.now(UTC)
        event_id = uuid.uuid4()
        snapshot = {
            "kind": "snapshot",
            "path": f"{camera}/{started:%Y-%m-%d}/{event_id}.jpg",
            "sha256": "0" * 64,
            "offset_s": None,
        }
        clip = {"kind": "clip", "path": f"{camera}/{started:%Y-%m-%d}/{event_id}.mp4", "sha256": None}
        base: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "event_id": str(event_id),
            "rule": "no_helmet",
            "site": SITE,
            "edge": EDGE,
            "camera": camera,
            "zone": None,
            "track_id": self.seq % 1000,
            "started_at": started.isoformat(),
            "confidence": 0.8,
            "person_box": {"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.9},
            "evidence_boxes": [{"x1": 0.12, "y1": 0.2, "x2": 0.2, "y2": 0.3}],
            "model": {"name": "ppe-yolo", "version": "0.4.0"},
            "frame_seq": self.seq,
        }
        start = {
            **base,
            "message_id": str(uuid.uuid4()),
            "type": "start",
            "ended_at": None,
            "evidence": [snapshot, {**clip, "offset_s": 3.0}],
            "emitted_at": started.isoformat(),
        }
        ended = started + timedelta(seconds=4)
        end = {
            **base,
            "message_id": str(uuid.uuid4()),
            "type": "end",
            "ended_at": ended.isoformat(),
            "end_reason": "cleared",
            "evidence": [snapshot, {**clip, "sha256": "1" * 64, "offset_s": 3.0}],
            "emitted_at": ended.isoformat(),
        }
        # Checked against the contract, so the benchmark never measures rejections.
        EventMessage.model_validate(start)
        EventMessage.model_validate(end)
        return json.dumps(start).encode(), json.dumps(end).encode()

    def publish(self, camera: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish one event message at QoS 1."""
        return self.client.publish(f"{PREFIX}/{SITE}/cameras/{camera}/events", payload, qos=1)


def _stored(server: Server) -> int:
    """Return how many event messages the dashboard has stored."""
    with server.db.session() as db:
        return int(db.scalar(select(func.count()).select_from(EventMessageRow)) or 0)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    """Poll `predicate` until it holds or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def _more_than(server: Server, count: int) -> Callable[[], bool]:
    """Return a check that the dashboard has stored more than `count` event messages."""
    return lambda: _stored(server) > count


def _longer_than(items: list[float], count: int) -> Callable[[], bool]:
    """Return a check that `items` holds more than `count` entries."""
    return lambda: len(items) > count


def warm_up(server: Server, edge: Edge) -> None:
    """Publish until one event is stored: the dashboard's subscription is then in place."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        before = _stored(server)
        start, _ = edge.messages("warm-up")
        edge.publish("warm-up", start)
        try:
            _wait(_more_than(server, before), 1.0, "warm-up")
            return
        except RuntimeError:
            continue
    raise RuntimeError("the dashboard never stored a warm-up event (is ingest connected?)")


# ---------------------------------------------------------------------------------------------------
# The measurements


def measure_ingest(server: Server, edge: Edge, events: int) -> dict[str, Any]:
    """Publish `events` START+END pairs as fast as paho takes them; time until all are stored."""
    payloads = [edge.messages(f"cam-{i % 8}") for i in range(events)]
    before = _stored(server)
    target = before + 2 * events
    begin = time.perf_counter()
    for i, (start, end) in enumerate(payloads):
        edge.publish(f"cam-{i % 8}", start)
        edge.publish(f"cam-{i % 8}", end)
    published = time.perf_counter() - begin
    _wait(lambda: _stored(server) >= target, 600, "every message to be stored", poll=0.2)
    elapsed = time.perf_counter() - begin
    return {
        "events": events,
        "messages": 2 * events,
        "publish_s": round(published, 2),
        "stored_s": round(elapsed, 2),
        "messages_per_s": round(2 * events / elapsed, 1),
        "events_per_s": round(events / elapsed, 1),
    }


def measure_latency(server: Server, edge: Edge, samples: int) -> dict[str, Any]:
    """Publish one START at a time and time it until its card arrives on the live SSE stream."""
    arrivals: list[float] = []
    ready = threading.Event()
    stop = threading.Event()
    lock = threading.Condition()
    errors: list[BaseException] = []
    client = httpx.Client(base_url=server.base, cookies={SESSION_COOKIE: server.cookie}, timeout=30)

    def read() -> None:
        try:
            with client.stream("GET", "/live/stream") as response:
                response.raise_for_status()
                ready.set()
                for line in response.iter_lines():
                    if line.startswith("event: alert"):
                        with lock:
                            arrivals.append(time.perf_counter())
                            lock.notify_all()
                    if stop.is_set():
                        return
        except BaseException as exc:  # reported by the caller; the thread must not die silently
            if not stop.is_set():
                errors.append(exc)
            ready.set()

    reader = threading.Thread(target=read, name="sse-reader", daemon=True)
    reader.start()
    if not ready.wait(30) or errors:
        raise RuntimeError(f"the live stream did not open: {errors}")
    time.sleep(0.5)  # the stream's subscription to the hub is made just after the headers go out
    latencies: list[float] = []
    # The first alerts compile the card's templates and fill caches: not counted.
    for i in range(-3, samples):
        start, _ = edge.messages(f"live-{i % 4}")
        with lock:
            seen = len(arrivals)
        sent = time.perf_counter()
        edge.publish(f"live-{i % 4}", start)
        with lock:
            if not lock.wait_for(_longer_than(arrivals, seen), 10):
                raise RuntimeError(f"sample {i}: no alert on the live stream within 10 s")
            if i >= 0:
                latencies.append(arrivals[seen] - sent)
        time.sleep(0.05)  # one at a time: the latency of an alert, not of a queue
    # Hang up, as a closed tab does: one more alert wakes the reader, which then leaves the stream.
    stop.set()
    edge.publish("live-0", edge.messages("live-0")[0])
    reader.join(5)
    client.close()
    ms = [1000 * x for x in latencies]
    return {
        "samples": samples,
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "max_ms": round(max(ms), 1),
    }


#: Sites, cameras, rules and statuses of the generated history (camera k belongs to site k % 3).
BULK_SQL = """
INSERT INTO events (event_id, site, edge, camera, zone, rule, track_id, phase, started_at, ended_at,
    end_reason, confidence, person_box, evidence_boxes, anchor_x, anchor_y, model_name, model_version,
    frame_seq, last_emitted_at, status, created_at, updated_at)
SELECT md5('bulk' || i)::uuid::text,
       'site-' || (i % 12) % 3,
       'bulk-edge-' || (i % 12) % 3,
       'cam-' || i % 12,
       CASE WHEN i % 3 = 2 THEN 'zone-' || i % 5 END,
       (ARRAY['no_helmet', 'no_vest', 'zone_entry'])[1 + i % 3],
       i % 1000,
       'end',
       t,
       t + interval '6 seconds',
       'cleared',
       0.5 + (i % 50) / 100.0,
       '{"x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.9}'::json,
       '[]'::json,
       200 + i % 600,
       300 + i % 650,
       'ppe-yolo', '0.4.0', i, t + interval '6 seconds',
       (ARRAY['new', 'new', 'new', 'acknowledged', 'assigned', 'resolved', 'resolved', 'false_alarm'])
           [1 + i % 8],
       t, t
FROM (SELECT i, now() - make_interval(secs => i * 2.5 + 600) AS t FROM generate_series(1, :rows) AS i) AS g
"""

#: A stored snapshot for every generated event (the list's snapshot join has rows to find), and the
#: cameras and edges a site with that history has (the page's site list comes from them).
BULK_EXTRA_SQL = [
    """
INSERT INTO evidence_files (site, edge, camera, kind, path, sha256, size, stored_path, stored_at, created_at)
SELECT site, edge, camera, 'snapshot', camera || '/' || event_id || '.jpg', md5(event_id) || md5(event_id),
       40000, site || '/' || edge || '/' || camera || '/' || event_id || '.jpg', started_at, started_at
FROM events WHERE edge LIKE 'bulk-%'
""",
    """
INSERT INTO event_evidence (event_pk, evidence_id, offset_s)
SELECT e.id, f.id, NULL FROM events AS e
JOIN evidence_files AS f
  ON f.site = e.site AND f.edge = e.edge AND f.path = e.camera || '/' || e.event_id || '.jpg'
WHERE e.edge LIKE 'bulk-%'
""",
    """
INSERT INTO cameras (site, camera, edge, state, state_at, updated_at)
SELECT 'site-' || k % 3, 'cam-' || k, 'bulk-edge-' || k % 3, 'online', now(), now()
FROM generate_series(0, 11) AS k
""",
    """
INSERT INTO edges (site, edge, state, state_at, updated_at)
SELECT 'site-' || k, 'bulk-edge-' || k, 'online', now(), now() FROM generate_series(0, 2) AS k
""",
]


def bulk_history(server: Server, rows: int) -> dict[str, Any]:
    """Insert `rows` past events (each with a stored snapshot) straight into PostgreSQL with one
    INSERT ... SELECT over generate_series (faster than COPY: nothing crosses the wire), then ANALYZE."""
    begin = time.perf_counter()
    with server.db.engine.begin() as conn:
        conn.execute(text(BULK_SQL), {"rows": rows})
    events_s = time.perf_counter() - begin
    with server.db.engine.begin() as conn:
        for statement in BULK_EXTRA_SQL:
            conn.execute(text(statement))
    with server.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    return {
        "rows": rows,
        "events_insert_s": round(events_s, 1),
        "total_s": round(time.perf_counter() - begin, 1),
    }


def _cursor_at(server: Server, offset: int, where: str = "", params: dict[str, Any] | None = None) -> str:
    """Return the keyset cursor of the row at `offset` of a newest-first list (a deep page's position)."""
    sql = f"SELECT started_at, id FROM events {where} ORDER BY started_at DESC, id DESC OFFSET :o LIMIT 1"
    with server.db.engine.connect() as conn:
        row = conn.execute(text(sql), {"o": offset, **(params or {})}).one()
    started_at = row[0] if row[0].tzinfo else row[0].replace(tzinfo=UTC)
    return encode_cursor(started_at, int(row[1]))


def measure_alert_list(server: Server, rows: int, repeats: int) -> dict[str, Any]:
    """Time the alert list page (HTML, signed in) for first and deep keyset pages with filters."""
    deep = int(rows * 0.9)
    middle_day = (datetime.now(UTC) - timedelta(seconds=2.5 * rows / 2)).date().isoformat()
    variants: dict[str, dict[str, str]] = {
        "first page": {},
        "first page, site + rule": {"site": "site-1", "rule": "no_vest"},
        "first page, status resolved": {"status": "resolved"},
        "first page, camera + status": {"camera": "cam-7", "status": "new"},
        "first page, one day": {"since": middle_day, "until": middle_day},
        "deep page (90%)": {"after": _cursor_at(server, deep)},
        "deep page, camera": {
            "camera": "cam-5",
            "after": _cursor_at(server, deep // 12, "WHERE camera = :c", {"c": "cam-5"}),
        },
        "deep page, rule + status": {
            "rule": "zone_entry",
            "status": "resolved",
            "after": _cursor_at(
                server, deep // 24, "WHERE rule = :r AND status = :s", {"r": "zone_entry", "s": "resolved"}
            ),
        },
        "deep page, zone": {
            "zone": "zone-2",
            "after": _cursor_at(server, deep // 15, "WHERE zone = :z", {"z": "zone-2"}),
        },
    }
    results: dict[str, Any] = {}
    every: list[float] = []
    with httpx.Client(base_url=server.base, cookies={SESSION_COOKIE: server.cookie}, timeout=60) as client:
        for name, params in variants.items():
            times: list[float] = []
            for attempt in range(repeats + 2):
                begin = time.perf_counter()
                response = client.get("/alerts", params=params)
                took = 1000 * (time.perf_counter() - begin)
                response.raise_for_status()
                if "/alerts/" not in response.text:
                    raise RuntimeError(f"{name}: the page lists no alerts")
                if attempt >= 2:  # the first two warm caches and the connection pool
                    times.append(took)
            every.extend(times)
            results[name] = {
                "p50_ms": round(percentile(times, 50), 1),
                "p95_ms": round(percentile(times, 95), 1),
            }
    return {
        "rows": rows,
        "repeats": repeats,
        "p95_ms": round(percentile(every, 95), 1),
        "worst_variant_p95_ms": max(v["p95_ms"] for v in results.values()),
        "variants": results,
    }


# ---------------------------------------------------------------------------------------------------
# The run


def run_backend(
    name: str, database_url: str, work: Path, *, events: int, samples: int, list_rows: int, repeats: int
) -> dict[str, Any]:
    """Run every measurement against one database: ingest, latency, (PostgreSQL) the alert list, memory."""
    folder = work / name
    folder.mkdir(parents=True)
    result: dict[str, Any] = {"database": name}
    with mosquitto(folder) as port, dashboard_server(folder / "data", database_url, port) as server:
        edge = Edge(port)
        try:
            warm_up(server, edge)
            log.info("%s: ingest of %d events", name, events)
            result["ingest"] = measure_ingest(server, edge, events)
            log.info("%s: %s", name, result["ingest"])
            result["latency"] = measure_latency(server, edge, samples)
            log.info("%s: latency %s", name, result["latency"])
            if list_rows and name == "postgresql":
                result["bulk_insert"] = bulk_history(server, list_rows)
                log.info("%s: bulk %s", name, result["bulk_insert"])
                result["alert_list"] = measure_alert_list(server, list_rows, repeats)
                log.info("%s: alert list p95 %s ms", name, result["alert_list"]["p95_ms"])
            result["memory"] = server.rss_mb()
        finally:
            edge.close()
    return result


def machine() -> dict[str, Any]:
    """Describe where the benchmark ran."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    pg = None
    pg_bin = (
        sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if Path("/usr/lib/postgresql").exists()
        else []
    )
    if pg_bin:
        pg = subprocess.run([str(pg_bin[-1]), "--version"], capture_output=True, text=True).stdout.strip()
    mosq = subprocess.run(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], capture_output=True, text=True
    ).stdout.splitlines()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "postgresql": pg,
        "mosquitto": mosq[0] if mosq else None,
        "platform": platform.platform(),
    }


TARGETS = {
    "ingest_events_per_s_min": 500,
    "latency_p95_ms_max": 1000,
    "alert_list_p95_ms_max": 300,
    "rss_mb_max": 300,
}


def run(
    *,
    events: int = 5000,
    samples: int = 100,
    list_rows: int = 1_000_000,
    repeats: int = 20,
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
    pg_url: str | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its results (see the module docstring)."""
    report: dict[str, Any] = {
        "command": "python -m dashboard.bench " + " ".join(sys.argv[1:]),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "targets": TARGETS,
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="sitesentry-dashboard-bench-") as tmp:
        work = Path(tmp)
        for name in backends:
            if name == "sqlite":
                url = f"sqlite:///{work / 'sqlite-db' / 'dashboard.db'}"
                (work / "sqlite-db").mkdir()
                report["backends"][name] = run_backend(
                    name, url, work, events=events, samples=samples, list_rows=0, repeats=repeats
                )
            else:
                with postgres_database(pg_url or os.environ.get("SITESENTRY_TEST_PG_URL")) as url:
                    report["backends"][name] = run_backend(
                        name, url, work, events=events, samples=samples, list_rows=list_rows, repeats=repeats
                    )
    return report


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark, print the figures, write them as JSON with --json."""
    parser = argparse.ArgumentParser(prog="python -m dashboard.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--events", type=int, default=5000, help="violations (START+END) for the ingest rate")
    parser.add_argument("--latency-samples", type=int, default=100, help="alerts timed to the live stream")
    parser.add_argument("--list-rows", type=int, default=1_000_000, help="events in PostgreSQL for the list")
    parser.add_argument("--repeats", type=int, default=20, help="timed requests per alert-list variant")
    parser.add_argument("--backend", action="append", choices=["sqlite", "postgresql"], help="default: both")
    parser.add_argument(
        "--pg-url", help="PostgreSQL server (default: SITESENTRY_TEST_PG_URL or a throwaway one)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the figures
    report = run(
        events=args.events,
        samples=args.latency_samples,
        list_rows=args.list_rows,
        repeats=args.repeats,
        backends=tuple(args.backend or ("sqlite", "postgresql")),
        pg_url=args.pg_url,
    )
    text_out = json.dumps(report, indent=2)
    print(text_out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text_out + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
