"""Real brokers and a real subscriber for the MQTT tests: Mosquitto on free loopback ports, TLS certificates
made with openssl, and a paho subscriber that records what it receives."""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.models import MqttConfig, SiteSection, TlsConfig
from edge.dataflow import EvidenceRef, Phase, Rule, SafetyEvent
from edge.mqtt.broker import free_port

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")
OPENSSL = shutil.which("openssl")

EDGE_USER, EDGE_PASSWORD = "edge", "edge-pw-7Hq2"
OPS_USER, OPS_PASSWORD = "ops", "ops-pw-K9x4"


def wait_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """Wait until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass(frozen=True)
class Certs:
    """A test CA, a server certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_certs(folder: Path) -> Certs:
    """Generate the certificates with openssl (EC keys: fast on a small CI machine)."""
    assert OPENSSL is not None
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([OPENSSL, *args], cwd=folder, check=True, capture_output=True)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=SiteSentry test CA",
    )
    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "other.key",
        "-out",
        "other-ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=Other CA",
    )
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "edge-1")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
        )
    return Certs(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.crt",
    )


class Mosquitto:
    """Debian's mosquitto with its own conf in a temp folder: a password-protected plain listener and a TLS
    listener on free 127.0.0.1 ports, persistence on, so a restart keeps sessions and queued messages;
    `extra_lines` are appended to its conf (a bridge to another broker)."""

    def __init__(
        self,
        folder: Path,
        certs: Certs | None = None,
        *,
        acl: str | None = None,
        users: dict[str, str] | None = None,
        extra_lines: list[str] | None = None,
    ) -> None:
        assert MOSQUITTO is not None and MOSQUITTO_PASSWD is not None
        self.folder = folder
        self.certs = certs
        self.port = free_port()
        self.tls_port = free_port() if certs is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)
        passwd = folder / "passwd"
        passwd.touch()
        for user, password in (users or {EDGE_USER: EDGE_PASSWORD, OPS_USER: OPS_PASSWORD}).items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), user, password], check=True)
        auth = ["allow_anonymous false", f"password_file {passwd}"]
        if acl is not None:
            (folder / "acl").write_text(acl)
            auth.append(f"acl_file {folder / 'acl'}")
        lines = [
            "per_listener_settings true",
            f"user {getpass.getuser()}",
            "persistence true",
            f"persistence_location {folder}/",
            "max_queued_messages 100000",
            f"log_dest file {folder / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            f"listener {self.port} 127.0.0.1",
            *auth,
        ]
        if certs is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                *auth,
                f"cafile {certs.ca}",
                f"certfile {certs.server_cert}",
                f"keyfile {certs.server_key}",
                "require_certificate false",
            ]
        # Last, because a bridge's `connection` section runs to the end of the file.
        lines += extra_lines or []
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        """Start the broker and wait until its listeners accept connections."""
        assert MOSQUITTO is not None
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        for port in ports:
            if not wait_port("127.0.0.1", port):
                self.stop()
                raise RuntimeError(f"mosquitto did not start on {port}: {self.log()}")
        return self

    def stop(self) -> None:
        """Stop gracefully (SIGTERM): mosquitto writes its persistence file on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def log(self) -> str:
        """Return mosquitto's log so far."""
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def config(self, *, tls: bool = False, **overrides: Any) -> MqttConfig:
        """An MqttConfig for the edge user on the plain (or TLS) listener."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.tls_port if tls else self.port,
            "username": EDGE_USER,
            "password": EDGE_PASSWORD,
        }
        if tls:
            assert self.certs is not None
            values["tls"] = TlsConfig(ca_file=self.certs.ca)
        values.update(overrides)
        return MqttConfig(**values)


@dataclass
class Received:
    """One message as a subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool
    properties: Any
    at: float

    def json(self) -> Any:
        """Return the payload parsed as JSON."""
        return json.loads(self.payload)


@dataclass
class Collector:
    """A real paho subscriber that records every message; re-subscribes after reconnecting."""

    host: str
    port: int
    topics: list[str]
    protocol: str = "5"
    username: str | None = OPS_USER
    password: str | None = OPS_PASSWORD
    persistent: bool = False
    client_id: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:10]}")
    ca_file: Path | None = None
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        v5 = self.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            **({} if v5 else {"clean_session": not self.persistent}),
        )
        if self.username:
            self.client.username_pw_set(self.username, self.password)
        if self.ca_file:
            self.client.tls_set_context(ssl.create_default_context(cafile=str(self.ca_file)))
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Received(
                    message.topic,
                    bytes(message.payload),
                    bool(message.retain),
                    message.properties,
                    time.time(),
                )
            )
            self._cond.notify_all()

    def start(self) -> Collector:
        """Connect, subscribe, and wait until the broker confirmed the subscription."""
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if self.persistent:
                props.SessionExpiryInterval = 3600
            self.client.connect(self.host, self.port, 30, clean_start=not self.persistent, properties=props)
        else:
            self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        assert self._subscribed.wait(10), "subscription not confirmed"
        return self

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> bool:
        """Wait until predicate(messages) holds."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self.messages), timeout)

    def on(self, suffix: str) -> list[Received]:
        """Messages whose topic ends with `suffix`."""
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(suffix)]


def site(site_id: str = "test-site", edge_id: str = "edge-1") -> SiteSection:
    """A site section for tests."""
    return SiteSection(id=site_id, name="Test site", timezone="Asia/Hong_Kong", edge_id=edge_id)


def make_event(
    *,
    camera: str = "gate",
    phase: Phase = Phase.START,
    event_id: uuid.UUID | None = None,
    rule: Rule = Rule.NO_HELMET,
    zone: str | None = None,
    seq: int = 0,
    site_id: str = "test-site",
) -> SafetyEvent:
    """A SafetyEvent as the events stage makes them."""
    started = datetime(2025, 6, 2, 9, 30, tzinfo=timezone.utc) + timedelta(seconds=seq)
    return SafetyEvent(
        event_id=event_id or uuid.uuid4(),
        phase=phase,
        site_id=site_id,
        camera_id=camera,
        rule=rule,
        zone=zone,
        track_id=7,
        started_at=started,
        ended_at=started + timedelta(seconds=4) if phase is Phase.END else None,
        peak_confidence=0.87,
        boxes=((0.1, 0.2, 0.3, 0.9), (0.12, 0.2, 0.2, 0.3)),
        frame_seq=seq,
        evidence=(
            EvidenceRef("snapshot", f"{camera}/snap-{seq}.jpg", "a" * 64),
            EvidenceRef("clip", f"{camera}/clip-{seq}.mp4", None),
        ),
    )


def control_properties(
    sender: str | None, response_topic: str | None, correlation: bytes | None
) -> Properties:
    """PUBLISH properties of a control command."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if sender is not None:
        props.UserProperty = ("client_id", sender)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def schema_errors(name: str, payload: bytes) -> list[str]:
    """Validate a payload against the committed JSON Schema `docs/schemas/<name>.json`; return the errors."""
    from jsonschema import Draft202012Validator

    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(json.loads(payload))
    ]
