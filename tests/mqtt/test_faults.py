"""The fault suite: a real Mosquitto (persistence on), real edge processes (fault_child.py) and a
deduplicating subscriber with a persistent MQTT 5 session at QoS 1, through broker outages, SIGKILLed
edges, both at once, a full disk and a flood of hostile control commands.

Each scenario checks what a dashboard and a siren need: no event lost, every event ended, every alarm
target ending `off`, nothing delivered twice once deduplicated on message_id. With SITESENTRY_FAULTS_JSON
set, each scenario appends its figures there (docs/benchmarks/faults.md is written from them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from mqtt_fixtures import MOSQUITTO, Collector, Mosquitto, Received, control_properties

from contract.liveness import liveness
from contract.payloads import EdgeStatusMessage, HeartbeatMessage

CHILD = Path(__file__).with_name("fault_child.py")
REPO = Path(__file__).resolve().parents[2]
ROOT = "sitesentry/test-site"
CONTROL = f"{ROOT}/edges/edge-1/control"
OWN_REPLY = f"{CONTROL}/reply/ops-console"


class Edge:
    """A fault_child process: its STARTED lines are the events it committed."""

    def __init__(self, port: int, outbox: Path, log: Path, *args: str) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), "--port", str(port), "--outbox", str(outbox), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log.open("a"),
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._cond:
                self.lines.append(line.strip())
                self._cond.notify_all()

    def wait_line(self, prefix: str, timeout: float = 30.0) -> str:
        """Wait for a line of the child's output starting with `prefix`."""
        with self._cond:
            found = self._cond.wait_for(lambda: any(line.startswith(prefix) for line in self.lines), timeout)
            assert found, f"no {prefix} from the edge; its log:\n{self.log.read_text()[-3000:]}"
            return next(line for line in self.lines if line.startswith(prefix))

    @property
    def started(self) -> set[str]:
        """Event ids the edge reported committed (a SIGKILL can come between commit and report)."""
        with self._cond:
            return {line.split()[1] for line in self.lines if line.startswith("STARTED ")}

    def pause(self) -> None:
        """Stop opening events; open ones end on their own."""
        self.process.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        """SIGKILL: the crash the edge must clean up after."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> dict[str, Any]:
        """Stop cleanly (ends open events, drains); return the publisher's figures."""
        self.process.send_signal(signal.SIGTERM)
        stats = json.loads(self.wait_line("STATS ", 60).split(" ", 1)[1])
        self.process.wait(30)
        return dict(stats)


@dataclass
class Figures:
    """What a deduplicating consumer saw."""

    committed: int = 0  # STARTs the edge reported committed
    events: int = 0  # distinct event ids received
    lost: int = 0  # committed but never received
    unended: int = 0  # received without an END
    reopened: int = 0  # a START or UPDATE after the END
    double_starts: int = 0  # events with two STARTs of different message ids (written twice)
    recovered_ends: int = 0  # ENDs with end_reason edge_restarted
    messages: int = 0  # event messages after dedupe
    raw_duplicates: int = 0  # deliveries of a message_id already seen (QoS 1 retries)
    clips_announced: int = 0
    clips_written: int = 0
    clips_retracted: int = 0
    clips_unresolved: int = 0  # still "recording" in the event's last message
    alarm_targets: int = 0
    alarm_messages: int = 0
    alarms_left_on: list[str] = field(default_factory=list)


def consumer(port: int) -> Collector:
    """A dashboard-and-siren subscriber: persistent MQTT 5 session, QoS 1, events, alarms, edge state."""
    return Collector(
        "127.0.0.1",
        port,
        [
            f"{ROOT}/cameras/+/events",
            f"{ROOT}/alarms/#",
            f"{ROOT}/edges/+/status",
            f"{ROOT}/edges/+/heartbeat",
        ],
        persistent=True,
    ).start()


def figures(messages: list[Received], committed: set[str]) -> Figures:
    """Deduplicate on message_id and judge events, clips and alarms."""
    fig = Figures(committed=len(committed))
    seen: set[str] = set()
    per_event: dict[str, list[dict[str, Any]]] = {}
    alarms: dict[str, dict[str, Any]] = {}
    for m in messages:
        if m.topic.endswith("/events"):
            data = m.json()
            if data["message_id"] in seen:
                fig.raw_duplicates += 1
                continue
            seen.add(data["message_id"])
            per_event.setdefault(data["event_id"], []).append(data)
        elif "/alarms/" in m.topic:
            fig.alarm_messages += 1
            alarms[m.topic] = m.json()
    fig.events = len(per_event)
    fig.messages = len(seen)
    fig.lost = len(committed - per_event.keys())
    for history in per_event.values():
        types = [h["type"] for h in history]
        fig.double_starts += types.count("start") > 1
        if "end" not in types:
            fig.unended += 1
        else:
            fig.reopened += any(t != "end" for t in types[types.index("end") :])
        fig.recovered_ends += any(h.get("end_reason") == "edge_restarted" for h in history)
        first_clips = {e["path"] for h in history[:1] for e in h["evidence"] if e["kind"] == "clip"}
        last_clips = {e["path"]: e["sha256"] for e in history[-1]["evidence"] if e["kind"] == "clip"}
        fig.clips_announced += len(first_clips)
        fig.clips_written += sum(1 for p in first_clips if last_clips.get(p))
        fig.clips_retracted += len(first_clips - last_clips.keys())
        fig.clips_unresolved += sum(1 for sha in last_clips.values() if sha is None)
    fig.alarm_targets = len(alarms)
    fig.alarms_left_on = sorted(
        t.rsplit("/", 2)[-2] + "/" + t.rsplit("/", 1)[1] for t, a in alarms.items() if a["state"] != "off"
    )
    return fig


def settle(sub: Collector, committed: set[str], timeout: float = 45.0) -> Figures:
    """Wait until every received event has ended and every alarm is off (or time runs out)."""

    def done(ms: list[Received]) -> bool:
        fig = figures(ms, committed)
        return fig.lost == 0 and fig.unended == 0 and not fig.alarms_left_on and fig.clips_unresolved == 0

    sub.wait_for(done, timeout)
    with sub._cond:
        return figures(list(sub.messages), committed)


def assert_sound(fig: Figures) -> None:
    """What every fault must leave: nothing lost or open, sirens off, nothing twice after dedupe."""
    assert fig.committed > 0 and fig.events >= fig.committed
    assert fig.lost == 0, fig
    assert fig.unended == 0, fig
    assert fig.reopened == 0, fig
    assert fig.double_starts == 0, fig
    assert fig.alarms_left_on == [], fig
    assert fig.clips_unresolved == 0, fig


def record(name: str, fig: Figures, **extra: Any) -> None:
    """Append a scenario's figures to $SITESENTRY_FAULTS_JSON, if set."""
    out = os.environ.get("SITESENTRY_FAULTS_JSON")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps({"scenario": name, **asdict(fig), **extra}) + "\n")


@pytest.mark.slow
def test_broker_outage_with_events_and_alarms_open(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sub = consumer(mosquitto.port)
    edge = Edge(
        mosquitto.port, tmp_path / "outbox.sqlite3", tmp_path / "edge.log", "--rate", "5", "--hold", "2"
    )
    edge.wait_line("READY")
    time.sleep(2.0)
    mosquitto.stop()  # the site link goes down for a while with violations (and sirens) open
    time.sleep(6.0)
    mosquitto.start()
    time.sleep(2.0)
    edge.pause()
    fig = settle(sub, edge.started)
    stats = edge.stop()
    sub.stop()
    record("broker outage 6 s", fig, alarms_held_offline=stats.get("alarms_held_offline", 0))
    assert_sound(fig)
    assert stats.get("alarms_held_offline", 0) > 0, "the outage should have caught alarm changes"


@pytest.mark.slow
def test_edge_sigkill_with_events_open_is_cleaned_up_on_restart(mosquitto: Mosquitto, tmp_path: Path) -> None:
    sub = consumer(mosquitto.port)
    outbox, evidence = tmp_path / "outbox.sqlite3", tmp_path / "evidence"
    common = ("--evidence", str(evidence), "--clip-delay", "1.5")
    edge = Edge(mosquitto.port, outbox, tmp_path / "edge.log", *common, "--rate", "5", "--hold", "3")
    edge.wait_line("READY")
    time.sleep(3.0)
    edge.kill()
    committed = edge.started
    restarted = Edge(mosquitto.port, outbox, tmp_path / "edge.log", *common, "--quiet")
    restarted.wait_line("READY")
    fig = settle(sub, committed)
    restarted.stop()
    sub.stop()
    record("edge SIGKILL, restart", fig)
    assert_sound(fig)
    assert fig.recovered_ends >= 5, "events open at the kill end with end_reason edge_restarted"
    assert fig.clips_retracted >= 1, "clips still recording at the kill are retracted"


@pytest.mark.slow
def test_edge_and_broker_die_together_and_online_goes_stale(tmp_path: Path) -> None:
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed")
    mosquitto = Mosquitto(tmp_path / "broker")
    # A broker that crashes keeps what it saved last: save every second, as a busy site broker would soon.
    mosquitto.conf.write_text(mosquitto.conf.read_text() + "autosave_interval 1\n")
    mosquitto.start()
    outbox = tmp_path / "outbox.sqlite3"
    sub = consumer(mosquitto.port)
    # Events open at the crash were started long enough before it to be in the broker's last save; none
    # ends in the last seconds, whose END only the broker would lose (see docs/mqtt.md, Broker durability).
    edge = Edge(
        mosquitto.port, outbox, tmp_path / "edge.log", "--rate", "5", "--hold", "8", "--heartbeat", "1"
    )
    edge.wait_line("READY")
    time.sleep(2.0)
    edge.pause()
    time.sleep(1.5)  # an autosave with the edge online and its events open
    assert mosquitto.process is not None
    mosquitto.process.kill()  # together, as in a power cut: no Last Will is ever published
    mosquitto.process.wait(10)
    mosquitto.process = None
    edge.kill()
    committed = edge.started
    mosquitto.start()
    back = time.monotonic()
    mark = len(sub.messages)

    def judged(ms: list[Received]) -> str:
        ms = ms[mark:]
        status = [EdgeStatusMessage.model_validate_json(m.payload) for m in ms if m.topic.endswith("/status")]
        beats = [
            HeartbeatMessage.model_validate_json(m.payload) for m in ms if m.topic.endswith("/heartbeat")
        ]
        now = datetime.now(timezone.utc)
        return liveness(status[-1] if status else None, beats[-1] if beats else None, now)

    assert sub.wait_for(lambda ms: any(m.topic.endswith("/status") for m in ms[mark:]), 15)
    assert [m for m in sub.messages[mark:] if m.topic.endswith("/status")][0].json()["state"] == "online"
    # Whether the restored heartbeat still counts as recent here depends on how fast the broker came back
    # (3 intervals = 3 s): on a loaded machine it may already be stale, which is also right. What matters
    # is that the retained "online" alone never keeps a dead edge online:
    # Time passing, not a message, makes it stale: ask the way a dashboard's timer would.
    deadline = time.monotonic() + 15
    while judged(list(sub.messages)) != "stale" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert judged(list(sub.messages)) == "stale", "a consumer must see the stale online"
    stale_after = time.monotonic() - back
    restarted = Edge(mosquitto.port, outbox, tmp_path / "edge.log", "--quiet", "--heartbeat", "1")
    restarted.wait_line("READY")
    assert sub.wait_for(lambda ms: judged(ms) == "online", 15)
    fig = settle(sub, committed)
    restarted.stop()
    sub.stop()
    mosquitto.stop()
    record("edge and broker together", fig, stale_after_s=round(stale_after, 1))
    assert_sound(fig)
    assert fig.recovered_ends == fig.committed


@contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` at `path` (needs root, as in CI); skips the test where it cannot mount."""
    path.mkdir(parents=True, exist_ok=True)
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("a size-capped tmpfs needs root")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk (another program's log, say); return the file to delete later.

    The file is created before the edge starts writing (see the test), since a tmpfs the edge has already
    filled refuses even a new empty file; unbuffered, so closing it cannot fail on a last flush.
    """
    filler = disk / "filler.bin"
    with open(filler, "ab", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


@pytest.mark.slow
def test_a_full_disk_under_outbox_and_evidence(mosquitto: Mosquitto, tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    with small_disk(tmp_path / "disk", 24) as disk:
        outbox, evidence = disk / "outbox.sqlite3", disk / "evidence"
        args = (
            "--evidence",
            str(evidence),
            "--clip-bytes",
            "300000",
            "--min-free-mb",
            "2",
            "--clip-delay",
            "1",
        )
        (disk / "filler.bin").touch()
        sub = consumer(mosquitto.port)
        edge = Edge(mosquitto.port, outbox, log, *args, "--rate", "5", "--hold", "2")
        edge.wait_line("READY")
        time.sleep(2.0)
        filler = fill(disk)  # the disk is full; retention can free only evidence
        time.sleep(6.0)
        filler.unlink()
        time.sleep(2.0)
        stats = edge.stop()
        committed = edge.started
        restarted = Edge(mosquitto.port, outbox, log, *args, "--quiet")  # nothing delivered is sent again
        restarted.wait_line("READY")
        time.sleep(1.0)
        fig = settle(sub, committed)
        restarted.stop()
        sub.stop()
    text = log.read_text()
    errors = Counter(line.split(" ", 2)[1] for line in text.splitlines() if line.startswith("ERROR "))
    record(
        "disk full 6 s",
        fig,
        clip_failures=stats["clip_failures"],
        outbox_write_failures=stats.get("outbox_write_failures", 0),
        error_lines=sum(errors.values()),
    )
    assert_sound(fig)
    assert fig.raw_duplicates == 0, "a delivered message was sent again"
    assert stats["clip_failures"] > 0, "the disk should have refused some clips"
    # Every refused clip is retracted; so are clips still recording at the clean stop (none is left pending).
    assert fig.clips_retracted >= stats["clip_failures"]
    assert fig.recovered_ends == 0, "events ended while the disk was full must not be ended again"
    assert "cannot rollback" not in text
    assert sum(errors.values()) <= 12, errors  # rate-limited: a few lines, not one per message


@pytest.mark.slow
def test_a_flood_of_hostile_control_commands_does_not_starve_real_ones(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    sub = consumer(mosquitto.port)
    ops = Collector(
        "127.0.0.1", mosquitto.port, [f"{CONTROL}/reply/#", f"{ROOT}/cameras/+/events", f"{ROOT}/alarms/#"]
    ).start()
    edge = Edge(
        mosquitto.port,
        tmp_path / "o.sqlite3",
        tmp_path / "edge.log",
        "--control",
        "ops-console",
        "--rate",
        "5",
        "--hold",
        "2",
    )
    edge.wait_line("READY")
    time.sleep(1.0)
    attacker = Collector("127.0.0.1", mosquitto.port, ["nothing/here"]).start()
    sent_real: dict[str, float] = {}
    t0 = time.monotonic()
    infos = []
    for n in range(2000):
        kind = n % 4
        if kind in (0, 1):  # a stranger pointing replies at the edge's own topics
            payload = json.dumps({"request_id": f"x-{n}", "action": "disable", "camera": "gate"}).encode()
            props = control_properties("intruder", f"{ROOT}/cameras/gate/events", None)
        elif kind == 2:  # a known console gone haywire: junk, replies aimed at a siren
            payload = b'{"request_id": "j-%d", "action": "explode"}' % n
            props = control_properties("ops-console", f"{ROOT}/alarms/zones/crane", None)
        else:  # no client_id at all
            payload = b"\xff" * 64
            props = control_properties(None, f"{ROOT}/edges/edge-1/status", None)
        infos.append(attacker.client.publish(CONTROL, payload, qos=1, properties=props))
        if n % 100 == 50:  # real commands in the middle of the flood
            request_id = f"r-{n}"
            sent_real[request_id] = time.monotonic()
            command = json.dumps({"request_id": request_id, "action": "enable", "camera": "gate"}).encode()
            ops.client.publish(
                CONTROL, command, qos=1, properties=control_properties("ops-console", OWN_REPLY, None)
            )
        time.sleep(0.003)
    for info in infos:
        info.wait_for_publish(30)
    flood_s = time.monotonic() - t0

    def answered(ms: list[Received]) -> set[str]:
        return {m.json()["request_id"] for m in ms if m.topic == OWN_REPLY and m.json()["status"] == "ok"}

    assert ops.wait_for(lambda ms: answered(ms) >= sent_real.keys(), 30), (
        len(answered(ops.messages)),
        len(sent_real),
    )
    replies = [m for m in ops.messages if "/control/reply" in m.topic]
    junk_replies = [m for m in replies if m.json()["status"] == "error"]
    edge.pause()
    fig = settle(sub, edge.started)
    stats = edge.stop()
    attacker.stop()
    ops.stop()
    sub.stop()
    control = stats["control"]
    record(
        "2,000 hostile control commands",
        fig,
        flood_s=round(flood_s, 1),
        real_answered=len(answered(ops.messages)),
        real_sent=len(sent_real),
        junk_replies=len(junk_replies),
        busy=control.get("busy", 0),
        unauthorised=control.get("unauthorised", 0) + control.get("unsupported", 0),
        replies_suppressed=stats.get("control_replies_suppressed", 0),
    )
    assert_sound(fig)
    assert sorted(stats["controls"]) == sorted(sent_real)
    assert {m.topic for m in replies} == {OWN_REPLY}, "replies only on the sender's own reply topic"
    assert not any(str(m.json()["request_id"]).startswith("x-") for m in replies), "strangers get no reply"
    assert control.get("busy", 0) == 0
    assert len(junk_replies) <= 20 + 5 * flood_s + 5, "error replies are rate-limited"
    assert not [m for m in sub.messages if m.topic.endswith("/events") and b"request_id" in m.payload]
