"""A scripted edge process for the fault suite: the real AlertPublisher (outbox, journal, alarm state,
control) fed with violations the way the app feeds it, at a steady rate, so the tests can kill it, its
broker and its disk.

    python tests/mqtt/fault_child.py --port P --outbox FILE [--evidence DIR] [--rate 5] [--hold 3]
        [--quiet] [--heartbeat 1] [--control ops-console] [--clip-bytes N] [--min-free-mb M]

Every `1/rate` seconds a person starts a violation on camera gate or yard (every third one in a danger
zone), with an update each second and an end after `hold` seconds; START and END switch its alarm. With
--evidence each START names a snapshot and a clip, the clip is written `clip_delay` later and announced
in an update (or a repeated END), or retracted when it cannot be written, as the app does. --quiet opens
no new events (a restarted edge that only cleans up). Prints `STARTED <event_id>` once a START is
committed, `READY` once connected; SIGUSR1 stops opening events; SIGTERM ends every open event, drains
and prints `STATS <json>`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from mqtt_fixtures import EDGE_PASSWORD, EDGE_USER, site

from edge.config.models import MqttConfig
from edge.dataflow import EvidenceRef, Phase, Rule, SafetyEvent
from edge.events.retention import GB, RetentionSweeper
from edge.mqtt import AlertPublisher, ControlCommand, ControlResult, ModelInfo
from edge.mqtt.journal import clip_lookup

CAMERAS = ("gate", "yard")
ZONES = ("crane", "pit")


@dataclass
class Open:
    """A violation in progress."""

    event: SafetyEvent
    ends_at: float
    next_update: float
    clip_at: float | None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--outbox", type=Path, required=True)
    parser.add_argument("--evidence", type=Path)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--clip-delay", type=float, default=1.0)
    parser.add_argument("--clip-bytes", type=int, default=32 * 1024)
    parser.add_argument("--min-free-mb", type=float, default=0.0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--control", action="append", default=[])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    config = MqttConfig(
        host="127.0.0.1",
        port=args.port,
        username=EDGE_USER,
        password=EDGE_PASSWORD,
        outbox=args.outbox,
        keepalive_s=5,
        heartbeat_s=args.heartbeat,
        reconnect_max_s=1.0,
        control_clients=args.control,
    )
    controls: list[str] = []

    def on_control(command: ControlCommand) -> ControlResult:
        controls.append(command.request_id)
        return ControlResult(True, f"{command.action}d")

    publisher = AlertPublisher(
        config, site(), ModelInfo("ppe-yolo", "1"), on_control=on_control if args.control else None
    )
    publisher.close_left_open(clip_lookup(args.evidence))
    sweeper = None
    if args.evidence is not None and args.min_free_mb:
        sweeper = RetentionSweeper(args.evidence, 30, args.min_free_mb * 1e6 / GB)
        sweeper.start(interval_s=600)
    publisher.start()
    opening = threading.Event()
    if not args.quiet:
        opening.set()
    stopping = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: opening.clear())
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    if publisher.wait_connected(20):
        print("READY", flush=True)

    lock = threading.Lock()
    live: dict[uuid.UUID, Open] = {}
    n = 0
    next_start = time.monotonic()
    clip_failures = 0

    def emit(event: SafetyEvent) -> None:
        publisher.publish_event(event)
        if event.phase in (Phase.START, Phase.END):
            publisher.publish_alarm(event)

    while not stopping.is_set():
        now = time.monotonic()
        if opening.is_set() and now >= next_start:
            next_start += 1.0 / args.rate
            zone = ZONES[n % 2] if n % 3 == 0 else None
            camera = CAMERAS[n % 2]
            event_id = uuid.uuid4()
            evidence: tuple[EvidenceRef, ...] = ()
            if args.evidence is not None:
                day = datetime.now(timezone.utc).date().isoformat()
                evidence = (
                    EvidenceRef("snapshot", f"{camera}/{day}/{event_id}.jpg", "a" * 64),
                    EvidenceRef("clip", f"{camera}/{day}/{event_id}.mp4", None, 3.0),
                )
            started = datetime.now(timezone.utc)
            event = SafetyEvent(
                event_id=event_id,
                phase=Phase.START,
                site_id="test-site",
                camera_id=camera,
                rule=Rule.ZONE_ENTRY if zone else Rule.NO_HELMET,
                zone=zone,
                track_id=n,
                started_at=started,
                ended_at=None,
                peak_confidence=0.8,
                boxes=((0.1, 0.2, 0.3, 0.9),),
                frame_seq=n,
                evidence=evidence,
            )
            emit(event)
            print(f"STARTED {event_id}", flush=True)
            clip_at = now + args.clip_delay if evidence else None
            with lock:
                live[event_id] = Open(event, now + args.hold, now + 1.0, clip_at)
            n += 1
        for event_id, item in list(live.items()):
            if item.clip_at is not None and now >= item.clip_at:
                item.clip_at = None
                ok, refs = write_clip(publisher, args, item.event)
                item.event = replace(item.event, evidence=refs)  # later phases carry what is true now
                clip_failures += not ok
            if now >= item.ends_at:
                end = replace(
                    item.event,
                    phase=Phase.END,
                    ended_at=datetime.now(timezone.utc),
                    end_reason="cleared",
                )
                item.event = end
                emit(end)
                del live[event_id]
                if item.clip_at is not None:  # the clip finishes after the end: a repeated END follows
                    ok, _ = write_clip(publisher, args, end)
                    clip_failures += not ok
            elif now >= item.next_update:
                item.next_update = now + 1.0
                item.event = replace(item.event, phase=Phase.UPDATE)
                emit(item.event)
        time.sleep(0.02)

    for item in live.values():  # a clean stop ends every open event
        emit(replace(item.event, phase=Phase.END, ended_at=datetime.now(timezone.utc), end_reason="stopped"))
    drained = publisher.wait_delivered(30)
    stats = publisher.stats() | {"drained": drained, "controls": controls, "clip_failures": clip_failures}
    publisher.stop()
    if sweeper is not None:
        sweeper.stop()
    print(f"STATS {json.dumps(stats, default=str)}", flush=True)
    return 0


def write_clip(
    publisher: AlertPublisher, args: argparse.Namespace, event: SafetyEvent
) -> tuple[bool, tuple[EvidenceRef, ...]]:
    """Write the event's clip and announce its checksum, or retract it when the disk refuses, as the app
    does (EdgeApp._clip_ready / _clip_failed); return whether it was written and the evidence now."""
    clip = next(r for r in event.evidence if r.kind == "clip")
    path = args.evidence / clip.path
    data = os.urandom(args.clip_bytes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        path.unlink(missing_ok=True)
        refs = tuple(r for r in event.evidence if r.kind != "clip")
        publisher.publish_event(replace(event, phase=_later(event), evidence=refs))
        return False, refs
    written = replace(clip, sha256=hashlib.sha256(data).hexdigest())
    refs = tuple(r for r in event.evidence if r.kind != "clip") + (written,)
    publisher.publish_event(replace(event, phase=_later(event), evidence=refs))
    return True, refs


def _later(event: SafetyEvent) -> Phase:
    return Phase.END if event.phase is Phase.END else Phase.UPDATE


if __name__ == "__main__":
    sys.exit(main())
