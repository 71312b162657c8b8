"""`sitesentry alerts tail`: subscribe to a site's topics and print each message as one readable line."""

from __future__ import annotations

import json
import queue
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.markup import escape

from contract.payloads import (
    AlarmMessage,
    CameraStatusMessage,
    ControlCommand,
    ControlReply,
    EdgeStatusMessage,
    EventMessage,
    HeartbeatMessage,
)
from contract.topics import ParsedTopic, TopicKind, parse_topic
from edge.config.models import MqttConfig
from edge.mqtt.connection import MqttConnectError, open_client

_MODELS: dict[TopicKind, type[BaseModel]] = {
    TopicKind.EVENTS: EventMessage,
    TopicKind.CAMERA_STATUS: CameraStatusMessage,
    TopicKind.EDGE_STATUS: EdgeStatusMessage,
    TopicKind.HEARTBEAT: HeartbeatMessage,
    TopicKind.ALARM: AlarmMessage,
    TopicKind.CONTROL: ControlCommand,
    TopicKind.CONTROL_REPLY: ControlReply,
}
_PHASE_STYLE = {"start": "bold red", "update": "yellow", "end": "green"}
_STATE_STYLE = {"online": "green", "offline": "red", "reconnecting": "yellow", "starting": "cyan"}


@dataclass(frozen=True, slots=True)
class TailMessage:
    """One received message, decoded when it is one of ours."""

    topic: str
    parsed: ParsedTopic | None
    payload: bytes
    retained: bool
    model: BaseModel | None  # None: a snapshot, a foreign topic, or an invalid payload
    error: str | None  # why the payload did not match its schema


def decode(prefix: str, topic: str, payload: bytes, retained: bool = False) -> TailMessage:
    """Match a message to its payload model; a payload that does not fit is kept with the reason."""
    parsed = parse_topic(prefix, topic)
    model_type = _MODELS.get(parsed.kind) if parsed else None
    if model_type is None:
        return TailMessage(topic, parsed, payload, retained, None, None)
    try:
        return TailMessage(topic, parsed, payload, retained, model_type.model_validate_json(payload), None)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in err["loc"]) or "payload"
        return TailMessage(topic, parsed, payload, retained, None, f"{where}: {err['msg']}")


def _clock(at: datetime | None) -> str:
    return at.strftime("%H:%M:%S") if at is not None else "--:--:--"


def render(message: TailMessage) -> str:
    """Return one line of rich markup for a message."""
    p, m = message.parsed, message.model
    retained = " [dim](retained)[/]" if message.retained else ""
    if p is None:
        return f"[dim]{escape(message.topic)}: {len(message.payload)} bytes[/]"
    if message.error is not None:
        return f"[bold magenta]INVALID[/] {escape(message.topic)}: {escape(message.error)}"
    if p.kind is TopicKind.SNAPSHOT:
        size = len(message.payload) / 1024
        return f"--:--:-- [cyan]SNAPSHOT[/] {p.site}/{p.camera}: {size:.1f} kB JPEG{retained}"
    if isinstance(m, EventMessage):
        style = _PHASE_STYLE.get(m.type, "white")
        zone = f" zone={m.zone}" if m.zone else ""
        files = " ".join(f"{e.kind}{'✓' if e.sha256 else '…'}" for e in m.evidence)
        duration = f" {(m.ended_at - m.started_at).total_seconds():.0f}s" if m.ended_at else ""
        return (
            f"{_clock(m.emitted_at)} [{style}]{m.type.upper():<6}[/] [bold]{m.rule}[/] {m.site}/{m.camera}"
            f"{zone} track={m.track_id} conf={m.confidence:.2f}{duration} event={str(m.event_id)[:8]} "
            f"{escape(files)}"
        )
    if isinstance(m, EdgeStatusMessage):
        style = _STATE_STYLE.get(m.state, "white")
        reason = f" ({escape(m.reason)})" if m.reason else ""
        return f"{_clock(m.at)} [bold]EDGE[/]   {m.site}/{m.edge} [{style}]{m.state}[/]{reason}{retained}"
    if isinstance(m, CameraStatusMessage):
        style = _STATE_STYLE.get(m.state, "white")
        detail = f" ({escape(m.detail)})" if m.detail else ""
        return f"{_clock(m.at)} [bold]CAMERA[/] {m.site}/{m.camera} [{style}]{m.state}[/]{detail}{retained}"
    if isinstance(m, HeartbeatMessage):
        cams = ", ".join(
            f"{cam} {fig.fps:.1f} fps"
            + ("" if fig.latency_ms_p95 is None else f" p95 {fig.latency_ms_p95:.0f} ms")
            for cam, fig in m.cameras.items()
        )
        figures = f"; {escape(cams)}" if cams else ""
        return (
            f"{_clock(m.at)} [dim]HEARTBEAT {m.site}/{m.edge} up {m.uptime_s:.0f}s, "
            f"outbox {m.outbox.pending} waiting, {m.reconnects} reconnects{figures}[/]"
        )
    if isinstance(m, AlarmMessage):
        style = "bold white on red" if m.action == "on" else "green"
        where = f"{p.target_kind}/{p.target}"
        return f"{_clock(m.at)} [{style}]ALARM {m.action.upper()}[/] {where}: {escape(m.message)}"
    if isinstance(m, ControlCommand):
        target = " ".join(
            part for part in (m.rule and f"rule {m.rule}", m.camera and f"camera {m.camera}") if part
        )
        return f"--:--:-- [blue]CONTROL[/] -> {p.site}/{p.edge}: {m.action} {target} (request {m.request_id})"
    if isinstance(m, ControlReply):
        style = "green" if m.status == "ok" else "red"
        return (
            f"{_clock(m.at)} [blue]REPLY[/]  {m.site}/{m.edge} [{style}]{m.status}[/]: {escape(m.message)} "
            f"(request {escape(m.request_id or '?')})"
        )
    return escape(message.topic)


def as_json(message: TailMessage) -> str:
    """Return one JSON line for a message (`--json`): topic, kind, retained and the payload."""
    body: Any
    if message.model is not None:
        body = json.loads(message.model.model_dump_json())
    elif message.parsed is not None and message.parsed.kind is TopicKind.SNAPSHOT:
        body = {"jpeg_bytes": len(message.payload)}
    else:
        body = message.payload.decode("utf-8", "replace")
    return json.dumps(
        {
            "topic": message.topic,
            "kind": str(message.parsed.kind) if message.parsed else None,
            "retained": message.retained,
            "error": message.error,
            "payload": body,
        },
        ensure_ascii=False,
    )


def open_waiting(
    config: MqttConfig,
    client_id: str,
    *,
    waiting: Callable[[str], None] | None = None,
    timeout_s: float | None = None,
    retry_s: float = 1.0,
    **callbacks: Any,
) -> mqtt.Client | None:
    """Connect, retrying while nothing answers at the broker's address; None on Ctrl-C while waiting.

    A refusal (credentials, TLS) is raised at once: waiting would not change it. After `timeout_s` the
    last unreachable error is raised with how long we waited.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    told = False
    try:
        while True:
            try:
                return open_client(config, client_id, **callbacks)
            except MqttConnectError as exc:
                if not exc.unreachable:
                    raise
                if deadline is not None and time.monotonic() + retry_s > deadline:
                    raise MqttConnectError(f"{exc}; gave up after waiting {timeout_s:g} s") from None
                if not told and waiting is not None:
                    waiting(str(exc))
                    told = True
            time.sleep(retry_s)
    except KeyboardInterrupt:
        return None


def tail(
    config: MqttConfig,
    site: str | None,
    console: Console,
    *,
    raw_json: bool = False,
    count: int | None = None,
    seconds: float | None = None,
    connected: Callable[[], None] | None = None,
    waiting: Callable[[str], None] | None = None,
    wait_s: float | None = None,
) -> int:
    """Subscribe to a site's topics (every site when `site` is None) and print messages as they arrive.

    A broker that is not up yet is waited for (`waiting` hears why, once), for `wait_s` at most (None:
    until Ctrl-C). Stops after `count` messages or `seconds`, else at Ctrl-C; returns how many were
    printed. Raises MqttConnectError (one clear line) if the broker refuses us or never came up in time.
    """
    inbox: queue.Queue[TailMessage] = queue.Queue()
    topic_filter = f"{config.prefix}/{site or '+'}/#"

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(topic_filter, qos=1)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        inbox.put(decode(config.prefix, msg.topic, bytes(msg.payload), bool(msg.retain)))

    client = open_waiting(
        config,
        f"sitesentry-tail-{uuid.uuid4().hex[:8]}",
        waiting=waiting,
        timeout_s=wait_s,
        on_connect=on_connect,
        on_message=on_message,
    )
    if client is None:  # Ctrl-C while waiting for the broker
        return 0
    if connected is not None:
        connected()
    printed = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while count is None or printed < count:
            wait = 0.5 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                message = inbox.get(timeout=min(wait, 0.5))
            except queue.Empty:
                continue
            if raw_json:
                console.print(as_json(message), markup=False, highlight=False, soft_wrap=True)
            else:
                console.print(render(message), highlight=False, soft_wrap=True)
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    return printed
