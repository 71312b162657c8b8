"""MQTT alert benchmark: latency to a subscriber, sustained throughput, and outbox replay after an outage.

    python -m edge.mqtt.bench --json docs/benchmarks/mqtt.json

Everything runs on loopback: a Mosquitto started for the run (or the embedded amqtt broker when Mosquitto is
not installed), an AlertPublisher with its real SQLite outbox, and a paho subscriber in the same process, so
send and receive times come from one clock.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge import __version__
from edge.config.models import MqttConfig, SiteSection
from edge.dataflow import EvidenceRef, Phase, Rule, SafetyEvent
from edge.mqtt.broker import EmbeddedBroker, free_port
from edge.mqtt.payloads import ModelInfo
from edge.mqtt.publisher import AlertPublisher

log = logging.getLogger(__name__)

BrokerKind = Literal["auto", "mosquitto", "embedded"]
LATENCY_TARGET_P95_MS = 50.0
REPLAY_TARGET_S = 30.0
_SITE = SiteSection(id="bench", name="Benchmark", timezone="UTC", edge_id="edge-1")


@dataclass(frozen=True)
class _Broker:
    kind: str
    port: int
    protocol: Literal["5", "3.1.1"]
    version: str


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


@contextmanager
def _broker(kind: BrokerKind, folder: Path) -> Iterator[_Broker]:
    binary = _mosquitto_binary()
    if kind == "mosquitto" and binary is None:
        raise RuntimeError("mosquitto is not installed (apt install mosquitto), use --broker embedded")
    if kind in ("auto", "mosquitto") and binary is not None:
        port = free_port()
        conf = folder / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n")
        process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait_port(port)
            banner = subprocess.run([binary, "-h"], capture_output=True, text=True).stdout.splitlines()
            yield _Broker("mosquitto", port, "5", banner[0] if banner else "mosquitto")
        finally:
            process.terminate()
            process.wait(10)
        return
    with EmbeddedBroker("127.0.0.1", 0) as embedded:
        yield _Broker("embedded", embedded.port, "3.1.1", f"amqtt {_version_of('amqtt')}")


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the benchmark broker did not listen on 127.0.0.1:{port}")


def _version_of(package: str) -> str:
    try:
        return package_version(package)
    except PackageNotFoundError:
        return "unknown"


class _Subscriber:
    """Records when each event id first arrives, and how many messages arrived in all."""

    def __init__(self, broker: _Broker) -> None:
        v5 = broker.protocol == "5"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-sub-{uuid.uuid4().hex[:8]}",
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        )
        self._port = broker.port
        self._cond = threading.Condition()
        self.first_seen: dict[str, float] = {}
        self.received = 0
        subscribed = threading.Event()
        self._subscribed = subscribed
        self._client.on_connect = lambda c, u, f, r, p: c.subscribe(
            "sitesentry/bench/cameras/+/events", qos=1
        )
        self._client.on_subscribe = lambda *args: subscribed.set()
        self._client.on_message = self._on_message

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        event_id = json.loads(message.payload)["event_id"]
        with self._cond:
            self.received += 1
            self.first_seen.setdefault(event_id, now)
            self._cond.notify_all()

    def start(self) -> _Subscriber:
        self._client.connect("127.0.0.1", self._port, 30)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("the benchmark subscriber could not subscribe")
        return self

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.first_seen) >= count, timeout)

    def reset(self) -> None:
        with self._cond:
            self.first_seen.clear()
            self.received = 0

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _event(n: int) -> SafetyEvent:
    started = datetime(2025, 6, 2, 9, 0, tzinfo=timezone.utc) + timedelta(seconds=n)
    camera = f"cam-{n % 4}"
    return SafetyEvent(
        event_id=uuid.uuid4(),
        phase=Phase.START,
        site_id="bench",
        camera_id=camera,
        rule=(Rule.NO_HELMET, Rule.NO_VEST, Rule.ZONE_ENTRY)[n % 3],
        zone="crane" if n % 3 == 2 else None,
        track_id=n,
        started_at=started,
        ended_at=None,
        peak_confidence=0.8,
        boxes=((0.1, 0.2, 0.3, 0.9), (0.12, 0.2, 0.2, 0.3)),
        frame_seq=n,
        evidence=(EvidenceRef("snapshot", f"{camera}/{n}.jpg", "0" * 64),),
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _publisher(broker: _Broker, outbox: Path) -> AlertPublisher:
    config = MqttConfig.model_validate(
        {"host": "127.0.0.1", "port": broker.port, "protocol": broker.protocol, "outbox": outbox}
    )
    return AlertPublisher(config, _SITE, ModelInfo("bench-model", "1"))


def _measure_latency(pub: AlertPublisher, sub: _Subscriber, events: int, rate_hz: float) -> dict[str, Any]:
    sent: dict[str, float] = {}
    interval = 1.0 / rate_hz
    next_at = time.perf_counter()
    for n in range(events):
        event = _event(n)
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))
        sent[str(event.event_id)] = time.perf_counter()
        pub.publish_event(event)
    if not sub.wait_for(events, 60):
        raise RuntimeError(f"latency run: only {len(sub.first_seen)} of {events} events arrived")
    latencies = [(sub.first_seen[eid] - t) * 1000 for eid, t in sent.items()]
    p95 = _percentile(latencies, 0.95)
    return {
        "events": events,
        "rate_hz": rate_hz,
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(p95, 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
        "target_p95_ms": LATENCY_TARGET_P95_MS,
        "meets_target": p95 < LATENCY_TARGET_P95_MS,
    }


def _measure_throughput(pub: AlertPublisher, sub: _Subscriber, events: int) -> dict[str, Any]:
    batch = [_event(n) for n in range(events)]
    start = time.perf_counter()
    for event in batch:
        pub.publish_event(event)
    written = time.perf_counter()
    if not sub.wait_for(events, 120):
        raise RuntimeError(f"throughput run: only {len(sub.first_seen)} of {events} events arrived")
    done = max(sub.first_seen.values())
    return {
        "events": events,
        "seconds": round(done - start, 3),
        "events_per_s": round(events / (done - start), 1),
        "outbox_writes_per_s": round(events / (written - start), 1),
    }


def _measure_replay(broker: _Broker, sub: _Subscriber, outbox: Path, events: int) -> dict[str, Any]:
    # The outage: the publisher is not connected while events pile up in its outbox.
    pub = _publisher(broker, outbox)
    fill_start = time.perf_counter()
    for n in range(events):
        pub.publish_event(_event(n))
    fill_s = time.perf_counter() - fill_start
    queued = pub.pending
    start = time.perf_counter()
    pub.start()  # the link is back
    if not sub.wait_for(events, 300):
        raise RuntimeError(f"replay: only {len(sub.first_seen)} of {events} events arrived")
    done = max(sub.first_seen.values()) - start
    acked = pub.wait_delivered(60)
    acked_s = time.perf_counter() - start
    pub.stop()
    return {
        "events": events,
        "queued_in_outbox": queued,
        "outbox_fill_s": round(fill_s, 3),
        "seconds_to_subscriber": round(done, 3),
        "seconds_to_acknowledged": round(acked_s, 3) if acked else None,
        "events_per_s": round(events / done, 1),
        "target_s": REPLAY_TARGET_S,
        "meets_target": done < REPLAY_TARGET_S,
    }


def run_mqtt_bench(
    *,
    latency_events: int = 500,
    latency_rate_hz: float = 50.0,
    throughput_events: int = 3000,
    replay_events: int = 10_000,
    broker: BrokerKind = "auto",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the three measurements on loopback and return the results as a JSON-ready dict."""
    say = progress or (lambda text: log.info("%s", text))
    extras = MqttConfig()
    with tempfile.TemporaryDirectory(prefix="sitesentry-mqtt-bench-") as tmp, _broker(broker, Path(tmp)) as b:
        folder = Path(tmp)
        sub = _Subscriber(b).start()
        try:
            pub = _publisher(b, folder / "live.sqlite3")
            pub.start()
            if not pub.wait_connected(20):
                raise RuntimeError(f"benchmark publisher could not connect: {pub.last_error}")
            say(f"latency: {latency_events} events at {latency_rate_hz:g}/s via {b.version}")
            latency = _measure_latency(pub, sub, latency_events, latency_rate_hz)
            sub.reset()
            say(f"throughput: {throughput_events} events as fast as possible")
            throughput = _measure_throughput(pub, sub, throughput_events)
            pub.stop()
            sub.reset()
            say(f"replay: {replay_events} events queued during an outage")
            replay = _measure_replay(b, sub, folder / "replay.sqlite3", replay_events)
        finally:
            sub.stop()
    return {
        "benchmark": "mqtt",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "versions": {"sitesentry": __version__, "paho-mqtt": _version_of("paho-mqtt"), "broker": b.version},
        "setup": {
            "broker": b.kind,
            "protocol": b.protocol,
            "qos": 1,
            "inflight_window": extras.inflight_window,
            "outbox_fsync": extras.outbox_fsync,
            "network": "loopback",
            "latency_is": "publish_event() call to the subscriber's on_message, one process, one clock",
        },
        "latency": latency,
        "throughput": throughput,
        "replay": replay,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark, print a summary, optionally write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto")
    parser.add_argument("--latency-events", type=int, default=500)
    parser.add_argument("--throughput-events", type=int, default=3000)
    parser.add_argument("--replay-events", type=int, default=10_000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)
    results = run_mqtt_bench(
        latency_events=args.latency_events,
        throughput_events=args.throughput_events,
        replay_events=args.replay_events,
        broker=args.broker,
        progress=lambda text: console.print(f"[dim]{text}[/]"),
    )
    lat, thr, rep = results["latency"], results["throughput"], results["replay"]
    console.print(
        f"latency p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms (target < {lat['target_p95_ms']:g}); "
        f"throughput {thr['events_per_s']} events/s; replay of {rep['events']} in "
        f"{rep['seconds_to_subscriber']} s ({rep['events_per_s']} events/s, target < {rep['target_s']:g} s)"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
