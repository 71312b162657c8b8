"""AlertPublisher: events through the durable outbox to the broker; status, snapshots, alarms, control.

Threads: paho's network thread (connect, reconnect with backoff, callbacks), a pump thread that moves outbox
rows to paho and settles acknowledgements, a control worker, and a heartbeat timer. Callers never wait on the
network: publish_event returns once the event is committed to the outbox.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as MetricCounter
from pydantic import ValidationError

from contract.payloads import (
    SCHEMA_VERSION,
    CameraStatusMessage,
    CameraZonesMessage,
    ControlCommand,
    EdgeStatusMessage,
    EventMessage,
    HeartbeatMessage,
    HeartbeatStats,
    OutboxFigures,
    QueueFigures,
)
from contract.topics import Topics
from edge import __version__
from edge.alarms import AlarmHook
from edge.config.models import MqttConfig, SiteSection
from edge.dataflow import EvidenceRef, Phase, SafetyEvent
from edge.frames.health import CameraStatus
from edge.mqtt.alarm_state import AlarmBoard
from edge.mqtt.connection import (
    UNSUPPORTED_PROTOCOL,
    ReportingClient,
    broker_address,
    describe_exception,
    describe_refusal,
    mqtt_properties,
    new_client,
    tls_context,
)
from edge.mqtt.control import (
    ControlCallback,
    ControlHandler,
    ControlOutcome,
    ControlRequest,
    ReplyLimiter,
    reply_topic,
)
from edge.mqtt.evidence_push import EvidencePusher
from edge.mqtt.journal import KEY_PREFIX as JOURNAL_PREFIX
from edge.mqtt.journal import ClipLookup, clip_lookup, event_of, journal_change, recovery_message
from edge.mqtt.outbox import Outbox, OutboxError, OutboxMessage
from edge.mqtt.payloads import ModelLike, event_message
from edge.telemetry import redact

log = logging.getLogger(__name__)

_WARN_EVERY_S = 10.0
_OK = (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)  # NO_CONN: paho keeps a QoS 1 message and sends it later


class _Metrics:
    """The publisher's Prometheus metrics; left unregistered when no registry is given."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.connected = Gauge(
            "sitesentry_mqtt_connected", "1 while the broker connection is up.", registry=r
        )
        self.outbox_pending = Gauge(
            "sitesentry_mqtt_outbox_pending", "Alert messages waiting in the outbox.", registry=r
        )
        self.written = MetricCounter(
            "sitesentry_mqtt_events_written", "Event messages written to the outbox.", ["phase"], registry=r
        )
        self.delivered = MetricCounter(
            "sitesentry_mqtt_messages_delivered", "Outbox messages acknowledged by the broker.", registry=r
        )
        self.refused = MetricCounter(
            "sitesentry_mqtt_messages_refused",
            "Outbox messages the broker refused in its PUBACK.",
            registry=r,
        )
        self.dropped = MetricCounter(
            "sitesentry_mqtt_outbox_dropped",
            "Messages dropped because the outbox was full.",
            ["kind"],
            registry=r,
        )
        self.unbuffered = MetricCounter(
            "sitesentry_mqtt_outbox_write_failures",
            "Events that could not be written to the outbox.",
            registry=r,
        )
        self.reconnects = MetricCounter(
            "sitesentry_mqtt_reconnects", "Connections to the broker after the first one.", registry=r
        )
        self.alarms = MetricCounter(
            "sitesentry_mqtt_alarms", "Alarm commands by outcome.", ["result"], registry=r
        )
        self.snapshots = MetricCounter(
            "sitesentry_mqtt_snapshots",
            "Snapshots sent, or replaced by a newer one before sending.",
            ["result"],
            registry=r,
        )
        self.control = MetricCounter(
            "sitesentry_mqtt_control_commands", "Control messages by outcome.", ["result"], registry=r
        )


class AlertPublisher:
    """Publishes one edge box's alerts: at-least-once events through the outbox, retained status, snapshots,
    alarms, heartbeats, and control commands from authorised clients."""

    def __init__(
        self,
        config: MqttConfig,
        site: SiteSection,
        model: ModelLike,
        registry: CollectorRegistry | None = None,
        on_control: ControlCallback | None = None,
        clock: Callable[[], datetime] | None = None,
        *,
        alarm_hook: AlarmHook | None = None,
        stats_source: Callable[[], Mapping[str, Any]] | None = None,
        version: str = __version__,
        evidence_folder: Path | None = None,
    ) -> None:
        self._config = config
        self._extras = config
        self._edge = site.edge_id
        self._site = site.id
        self._model = model
        self._topics = Topics(config.prefix, site.id)
        self._host, self._port = broker_address(config)
        self._client_id = config.client_id or f"sitesentry-{site.id}-{site.edge_id}"
        zone = ZoneInfo(site.timezone)
        self._clock = clock or (lambda: datetime.now(zone))
        self._version = version
        self._alarm_hook = alarm_hook
        self._stats_source = stats_source
        self._metrics = _Metrics(registry)
        if config.tls is not None:
            tls_context(config.tls)  # fail here, naming the setting, rather than on every reconnect
        self._outbox = Outbox(
            config.outbox, config.outbox_max_messages, fsync=self._extras.outbox_fsync, on_drop=self._on_drop
        )
        self._metrics.outbox_pending.set_function(lambda: len(self._outbox))
        self._alarms = AlarmBoard(self._outbox, self._clock)
        self._recovered = False
        self._reply_limiter = ReplyLimiter()
        self._error_counts: Counter[str] = Counter()  # errors not logged yet, by key (see _error)
        self._last_error_log: dict[str, float] = {}
        self._last_settle = time.monotonic()
        # Journal changes the outbox could not take (full disk), saved as soon as it can; see _write_event.
        self._journal_lock = threading.Lock()
        self._journal_backlog: dict[str, bytes | None] = {}
        # Evidence files to the dashboard in chunks through this outbox (edge/mqtt/evidence_push.py).
        self._evidence: EvidencePusher | None = None
        if evidence_folder is not None and config.push_evidence:
            self._evidence = EvidencePusher(
                self._outbox,
                folder=evidence_folder,
                topic=self._topics.evidence(site.edge_id),
                site=site.id,
                edge=site.edge_id,
                backlog_bytes=int(config.evidence_backlog_mb * 1e6),
                on_added=self._outbox_added,
                registry=registry,
                fsync=self._extras.outbox_fsync,
            )
        self._control: ControlHandler | None = None
        if on_control is not None and config.control_clients:
            self._control = ControlHandler(
                site=site.id,
                edge=site.edge_id,
                allowed_clients=config.control_clients,
                callback=on_control,
                clock=self._clock,
                max_bytes=self._extras.control_max_bytes,
            )
        elif on_control is not None:
            log.info("MQTT control commands are off: mqtt.control_clients is empty")
        # Only commands that passed the checks wait here, so junk cannot crowd out real ones.
        self._control_queue: queue.Queue[tuple[ControlRequest, ControlCommand] | None]
        self._control_queue = queue.Queue(maxsize=64)

        self._cond = threading.Condition()
        # Guarded by _cond (paho callbacks take it; nobody calls into paho while holding it).
        self._protocol = config.protocol
        self._connected = False
        self._awaiting_connack = False
        self._generation = 0
        self._switch_protocol = False
        self._resync = False
        self._pump_stop = False
        self._acks: deque[tuple[int, ReasonCode | None]] = deque()
        self._last_id = self._outbox.last_id()
        self._window = self._extras.inflight_window
        self._snapshots: dict[str, bytes] = {}
        self._snapshots_due: set[str] = set()
        self._snapshots_busy: set[str] = set()
        self._client = self._new_client()
        # Owned by the pump thread.
        self._pump_generation = 0
        self._in_flight: dict[int, OutboxMessage] = {}
        self._snapshot_mids: dict[int, str] = {}
        self._cursor = 0
        # Retained camera statuses, kept to publish again after each reconnect.
        self._status_lock = threading.Lock()
        self._statuses: dict[str, bytes] = {}

        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False
        self._started_at = time.monotonic()
        self._last_heartbeat = time.monotonic()
        self._heartbeat_stats = HeartbeatStats()
        self._count_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last_warning: dict[str, float] = {}
        self._ever_connected = False
        self.last_error: str | None = None

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def topics(self) -> Topics:
        """The topic tree this publisher writes to."""
        return self._topics

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._connected

    @property
    def pending(self) -> int:
        """Messages in the outbox that the broker has not acknowledged yet."""
        return len(self._outbox)

    def start(self) -> None:
        """Connect in the background (Last Will set, `online` published on connect); returns at once."""
        if self._started:
            return
        self._started = True
        self._started_at = self._last_heartbeat = time.monotonic()
        self.close_left_open()
        self._spawn("mqtt-outbox", self._run_pump)
        if self._control is not None:
            self._spawn("mqtt-control", self._run_control)
        self._spawn("mqtt-heartbeat", self._run_heartbeat)
        if self._evidence is not None:
            self._evidence.start()
        self._client.loop_start()
        log.info(
            "publishing alerts to MQTT broker %s:%d as %s (MQTT %s, outbox %s with %d waiting)",
            self._host,
            self._port,
            self._client_id,
            self._protocol,
            self._outbox.path,
            len(self._outbox),
        )

    def publish_event(self, event: SafetyEvent) -> None:
        """Commit an event message to the outbox; it is published as soon as the broker is reachable."""
        if self._stopped:
            raise RuntimeError("AlertPublisher.publish_event called after stop()")
        if event.site_id != self._site:
            raise ValueError(
                f"event {event.event_id} is for site {event.site_id!r}, this edge is {self._site!r}"
            )
        message = event_message(
            event, edge=self._edge, model=self._model, emitted_at=self._clock(), message_id=uuid.uuid4()
        )
        self._write_event(message)

    def close_left_open(self, clips: ClipLookup | None = None) -> int:
        """Close what a crash left open (see journal.py): an END (edge_restarted) for each open event and
        its alarm off, a repeated END retracting each clip announced but never written; return how many
        events were closed. Runs once; `start` calls it when the app has not (then no clip counts as
        written)."""
        if self._recovered:
            return 0
        self._recovered = True
        lookup = clips or clip_lookup(None)
        closed = 0
        for key, stored in self._outbox.state_items(JOURNAL_PREFIX):
            try:
                message = recovery_message(
                    stored, message_id=uuid.uuid4(), emitted_at=self._clock(), clips=lookup
                )
            except ValidationError:
                log.warning("journal entry %s is unreadable; dropped", key)
                self._outbox.put_state({key: None})
                continue
            self._write_event(message)
            if message.end_reason == "edge_restarted":  # it was open: its alarm was on
                self.publish_alarm(event_of(message))
                closed += 1
        if closed:
            log.warning("closed %d event(s) left open when the edge last stopped without ending them", closed)
        return closed

    def _write_event(self, message: EventMessage) -> None:
        """Commit an event message and its journal change to the outbox and wake the pump."""
        topic = self._topics.events(message.camera)
        payload = message.model_dump_json().encode()
        change = journal_change(message)
        with self._journal_lock:
            try:
                row_id = self._outbox.add(
                    topic,
                    payload,
                    qos=1,
                    kind=f"event:{message.type}",
                    key=message.camera,
                    droppable=message.type == Phase.UPDATE,
                    state=change,
                )
            except OutboxError as exc:
                # Else a restart would find the event open and end it a second time.
                self._journal_backlog.update(change)
                failed: OutboxError | None = exc
            else:
                for key in change:
                    self._journal_backlog.pop(key, None)
                failed = None
        if failed is not None:
            self._publish_unbuffered(topic, payload, message, failed)
            return
        self._metrics.written.labels(str(message.type)).inc()
        with self._cond:
            self._last_id = max(self._last_id, row_id)
            self._cond.notify_all()

    def publish_camera_status(self, camera_id: str, status: str, detail: str | None = None) -> None:
        """Publish a camera's stream status, retained; sent again after every reconnect."""
        message = CameraStatusMessage(
            schema_version=SCHEMA_VERSION,
            site=self._site,
            edge=self._edge,
            camera=camera_id,
            state=CameraStatus(status),
            detail=redact(detail) if detail else None,
            at=self._clock(),
        )
        topic = self._topics.camera_status(camera_id)
        payload = message.model_dump_json().encode()
        with self._status_lock:
            self._statuses[topic] = payload
            connected, client = self._link()
            if connected:
                client.publish(topic, payload, qos=1, retain=True)

    def publish_camera_zones(self, message: CameraZonesMessage) -> None:
        """Publish the danger zones a camera applies now, retained; sent again after every reconnect."""
        topic = self._topics.zones(message.camera)
        payload = message.model_dump_json().encode()
        with self._status_lock:  # kept with the statuses: the same latest-only, resent-on-connect rule
            self._statuses[topic] = payload
            connected, client = self._link()
            if connected:
                client.publish(topic, payload, qos=1, retain=True)

    def publish_snapshot(self, camera_id: str, jpeg: bytes) -> None:
        """Publish a camera's latest annotated JPEG, retained; a newer one replaces one not yet sent."""
        topic = self._topics.snapshot(camera_id)
        with self._cond:
            if topic in self._snapshots_due:
                self._metrics.snapshots.labels("replaced").inc()
            self._snapshots[topic] = bytes(jpeg)
            self._snapshots_due.add(topic)
            self._cond.notify_all()

    def push_evidence(self, camera_id: str, ref: EvidenceRef) -> None:
        """Queue a written snapshot or clip to be sent in chunks on `.../edges/<edge>/evidence` if enabled."""
        if self._evidence is not None:
            self._evidence.push(camera_id, ref)

    def publish_alarm(self, event: SafetyEvent) -> None:
        """Switch sirens near the zone or camera: the local hook at once, and the target's alarm state
        over MQTT, retained and sent again after each reconnect, so sirens end in the state the edge holds."""
        if self._alarm_hook is not None:
            self._alarm_hook.trigger(event)
        topic = (
            self._topics.alarm_zone(event.zone) if event.zone else self._topics.alarm_camera(event.camera_id)
        )
        connected, client = self._link()
        self._alarms.change(topic, event, self._alarm_sender(client) if connected else None)
        if connected:
            self._metrics.alarms.labels("sent").inc()
            self._count("alarms_sent")
        else:
            # Not lost: the target's state goes out when the broker is back.
            self._metrics.alarms.labels("held_offline").inc()
            self._count("alarms_held_offline")

    def _alarm_sender(self, client: ReportingClient) -> Callable[[str, bytes], None]:
        def send(topic: str, payload: bytes) -> None:
            client.publish(topic, payload, qos=1, retain=True)

        return send

    def heartbeat(self, stats: Mapping[str, Any] | HeartbeatStats | None = None) -> None:
        """Publish a heartbeat now with these camera and queue figures (see HeartbeatStats) plus our own."""
        if stats is not None:
            try:
                self._heartbeat_stats = (
                    stats if isinstance(stats, HeartbeatStats) else HeartbeatStats.model_validate(stats)
                )
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in err["loc"])
                self._warn("heartbeat", f"heartbeat figures ignored: {where}: {err['msg']}")
        self._last_heartbeat = time.monotonic()
        message = HeartbeatMessage(
            schema_version=SCHEMA_VERSION,
            site=self._site,
            edge=self._edge,
            at=self._clock(),
            uptime_s=round(time.monotonic() - self._started_at, 3),
            cameras=self._heartbeat_stats.cameras,
            queues={**self._heartbeat_stats.queues, **self._evidence_queue()},
            outbox=OutboxFigures(
                pending=len(self._outbox),
                delivered_total=self._outbox.delivered_total,
                dropped_total=self._outbox.dropped_total,
            ),
            reconnects=self._counts["reconnects"],
            interval_s=self._config.heartbeat_s,
        )
        connected, client = self._link()
        if connected:
            # Retained, so a consumer that subscribes later can tell at once how old the edge's news is.
            client.publish(
                self._topics.heartbeat(self._edge), message.model_dump_json().encode(), qos=0, retain=True
            )

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker accepts us; False on timeout (see `last_error` for why)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._connected, timeout)

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything in the outbox; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._outbox) == 0, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters for the dashboard, tests and benchmarks."""
        with self._count_lock:
            counts = dict(self._counts)
        control = dict(self._control.counts) if self._control is not None else {}
        return {
            "connected": self._connected,
            "protocol": self._protocol,
            "last_error": self.last_error,
            "outbox_pending": len(self._outbox),
            "delivered_total": self._outbox.delivered_total,
            "dropped_total": self._outbox.dropped_total,
            "control": control,
            "evidence": self._evidence.stats() if self._evidence is not None else {},
            **counts,
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what the broker takes within `timeout`, publish `offline`, disconnect, close the outbox."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        self._stopping.set()
        if self._evidence is not None:
            self._evidence.stop()  # what it has not fed to the outbox yet stays queued for the next start
        if self._started:
            with self._cond:
                # Leave time for the offline message and the disconnect after draining.
                self._cond.wait_for(
                    lambda: not self._connected or len(self._outbox) == 0, max(0.0, timeout * 0.6)
                )
            connected, client = self._link()
            if connected:
                info = client.publish(
                    self._topics.edge_status(self._edge),
                    self._edge_status("offline", "stopped"),
                    qos=1,
                    retain=True,
                )
                try:
                    info.wait_for_publish(max(0.1, deadline - time.monotonic() - 0.5))
                except (RuntimeError, ValueError):
                    log.warning(
                        "could not publish `offline` before stopping; the broker will send the Last Will"
                    )
            client.disconnect()
            client.loop_stop()
            with self._cond:
                self._pump_stop = True
                self._cond.notify_all()
            if self._control is not None:
                try:
                    self._control_queue.put(None, timeout=1.0)
                except queue.Full:
                    pass
            for thread in self._threads:
                thread.join(max(0.1, deadline - time.monotonic()))
        self._flush_journal()
        left = len(self._outbox)
        self._outbox.close()
        log.info("MQTT publisher stopped; %d message(s) stay in the outbox for the next start", left)

    # -- paho client and its callbacks (network thread) ------------------------------------------------------

    def _new_client(self) -> ReportingClient:
        client = new_client(
            self._config,
            self._client_id,
            protocol=self._protocol,
            persistent=True,
            session_expiry_s=self._extras.session_expiry_s,
            will=(
                self._topics.edge_status(self._edge),
                self._edge_status("offline", "connection lost", will=True),
            ),
            # Room for status, alarm and reply messages beside the outbox window; brokers often allow 20.
            max_inflight=self._extras.inflight_window + 4,
        )
        client.connect_error_callback = self._on_connect_error
        client.connect_opened_callback = self._on_connect_opened
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # paho types the delays as int; fractions work and keep reconnects after short outages quick.
        client.reconnect_delay_set(self._extras.reconnect_min_s, self._extras.reconnect_max_s)  # type: ignore[arg-type]
        return client

    def _edge_status(self, state: str, reason: str | None, *, will: bool = False) -> bytes:
        message = EdgeStatusMessage.model_validate(
            {
                "schema_version": SCHEMA_VERSION,
                "site": self._site,
                "edge": self._edge,
                "state": state,
                # The Last Will is written at connect time, so it cannot know when the edge will die.
                "at": None if will else self._clock(),
                "reason": reason,
                "version": self._version,
                "heartbeat_s": self._config.heartbeat_s,
            }
        )
        return message.model_dump_json().encode()

    def _link(self) -> tuple[bool, ReportingClient]:
        with self._cond:
            return self._connected, self._client

    def _on_connect_opened(self) -> None:
        with self._cond:
            self._awaiting_connack = True

    def _on_connect_error(self, exc: BaseException) -> None:
        self._note_error(describe_exception(self._host, self._port, exc, tls=self._config.tls is not None))
        with self._cond:
            self._awaiting_connack = False

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        with self._cond:
            self._awaiting_connack = False
        if reason.is_failure:
            if reason.value == UNSUPPORTED_PROTOCOL and self._protocol == "5":
                log.info("MQTT broker %s:%d refused MQTT 5; using MQTT 3.1.1", self._host, self._port)
                self._request_protocol_switch(client)
                return
            self._note_error(
                describe_refusal(
                    self._host, self._port, reason, sent_credentials=self._config.username is not None
                )
            )
            return
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        window = self._extras.inflight_window
        if receive_maximum:
            # Leave room under the broker's limit for status, alarm and reply messages.
            window = max(1, min(window, int(receive_maximum) - 4))
        if self._ever_connected:
            self._count("reconnects")
            self._metrics.reconnects.inc()
        self._ever_connected = True
        self.last_error = None
        log.info(
            "connected to MQTT broker %s:%d (MQTT %s, %s session)",
            self._host,
            self._port,
            self._protocol,
            "resumed" if flags.session_present else "new",
        )
        if self._control is not None:
            client.subscribe(self._topics.control(self._edge), qos=1)
        client.publish(
            self._topics.edge_status(self._edge), self._edge_status("online", None), qos=1, retain=True
        )
        self._metrics.connected.set(1)
        with self._cond:
            self._connected = True
            self._window = window
            self._resync = True
            self._cond.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            unanswered, self._awaiting_connack = self._awaiting_connack, False
            self._cond.notify_all()
        self._metrics.connected.set(0)
        if self._stopping.is_set() or self._switch_protocol:
            return
        if was_connected:
            log.warning(
                "lost the connection to MQTT broker %s:%d (%s); alerts wait in the outbox until it is back",
                self._host,
                self._port,
                "connection dropped" if reason.value == 128 else str(reason).lower(),
            )
        elif unanswered:
            self._note_error(
                f"MQTT broker {self._host}:{self._port} closed the connection without answering "
                "(a TLS listener? check mqtt.tls)"
            )
            if self._config.protocol == "5" and not self._ever_connected:
                # Some 3.1.1-only brokers (amqtt) never answer an MQTT 5 CONNECT: until one protocol works,
                # alternate between them.
                other = "3.1.1" if self._protocol == "5" else "5"
                log.info("trying MQTT %s with broker %s:%d", other, self._host, self._port)
                self._request_protocol_switch(client)

    def _request_protocol_switch(self, client: mqtt.Client) -> None:
        with self._cond:
            self._switch_protocol = True
            self._cond.notify_all()
        client.disconnect()  # ends this network loop; the pump starts a client for the other protocol

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode | None,
        props: Properties | None,
    ) -> None:
        # Called with paho's message lock held: only record the acknowledgement, the pump settles it.
        with self._cond:
            self._acks.append((mid, reason))
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._control is None or message.topic != self._topics.control(self._edge):
            return
        props = message.properties
        sender = response_topic = correlation = None
        if props is not None:
            sender = next((v for k, v in getattr(props, "UserProperty", []) if k == "client_id"), None)
            response_topic = getattr(props, "ResponseTopic", None)
            correlation = getattr(props, "CorrelationData", None)
        request = ControlRequest(
            payload=bytes(message.payload),
            sender=sender,
            response_topic=response_topic,
            correlation_data=correlation,
            mqtt5=self._protocol == "5",
        )
        # Checked here, on the network thread: rejections never queue, so a flood of junk cannot make
        # real commands wait or be turned away as busy.
        checked = self._control.check(request)
        if isinstance(checked, ControlOutcome):
            self._metrics.control.labels(checked.result).inc()
            if checked.reply is not None:
                if self._reply_limiter.allow():
                    self._reply(request, checked.reply.model_dump_json().encode())
                else:
                    self._metrics.control.labels("reply_suppressed").inc()
                    self._count("control_replies_suppressed")
            return
        try:
            self._control_queue.put_nowait((request, checked))
        except queue.Full:
            self._metrics.control.labels("busy").inc()
            self._count("control_busy")
            self._warn("control", "control command dropped: too many commands waiting")

    # -- pump thread -----------------------------------------------------------------------------------------

    def _pump_has_work(self) -> bool:
        if self._pump_stop or self._acks or self._switch_protocol or self._resync:
            return True
        if self._generation != self._pump_generation:
            return True
        if not self._connected:
            return False
        outbox_ready = self._last_id > self._cursor and len(self._in_flight) < self._window
        return outbox_ready or bool(self._snapshots_due - self._snapshots_busy)

    def _run_pump(self) -> None:
        while True:
            with self._cond:
                while not self._pump_has_work():
                    self._cond.wait(1.0)
                acks = list(self._acks)
                self._acks.clear()
                stop, switch, connected = self._pump_stop, self._switch_protocol, self._connected
                generation, client = self._generation, self._client
                resync, self._resync = self._resync, False
                window, last_id = self._window, self._last_id
            try:
                if generation != self._pump_generation:
                    self._forget_in_flight(generation)
                self._settle(acks)
                if stop:
                    return
                if switch:
                    self._switch()
                    continue
                if connected:
                    if resync:
                        self._resync_retained(client)
                    self._send_outbox(client, window, last_id)
                    self._send_snapshots(client)
                if time.monotonic() - self._last_settle >= 5.0:
                    self._last_settle = time.monotonic()
                    self._outbox.settle_disk()  # deletes a full disk held back, the reserve file
                    self._flush_journal()
            except Exception as exc:
                # A bug or a full disk here must not end delivery for good: log it and go round again.
                self._error("pump", f"MQTT publisher: error in the outbox pump: {exc!r}", exc_info=True)
                time.sleep(0.5)

    def _settle(self, acks: list[tuple[int, ReasonCode | None]]) -> None:
        delivered: list[int] = []
        for mid, reason in acks:
            topic = self._snapshot_mids.pop(mid, None)
            if topic is not None:
                with self._cond:
                    self._snapshots_busy.discard(topic)
                continue
            row = self._in_flight.pop(mid, None)
            if row is None:
                continue
            if reason is not None and reason.is_failure:
                self._metrics.refused.inc()
                self._count("refused")
                log.error(
                    "MQTT broker refused %s on %s (%s); removed from the outbox (check the broker's ACL)",
                    row.kind,
                    row.topic,
                    str(reason).lower(),
                )
            delivered.append(row.id)
        if delivered:
            try:
                removed = self._outbox.mark_delivered(delivered)
            except OutboxError as exc:
                # Kept aside by the outbox, never sent again by this process; deleted once there is room.
                self._error("settle", str(exc))
                removed = 0
            self._metrics.delivered.inc(removed)
            with self._cond:
                self._cond.notify_all()

    def _send_outbox(self, client: ReportingClient, window: int, last_id: int) -> None:
        free = window - len(self._in_flight)
        if free <= 0 or last_id <= self._cursor:
            return
        rows = self._outbox.pending(self._cursor, free)
        for row in rows:
            info = client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
            if info.rc not in _OK:
                self._warn(
                    "publish", f"paho did not take outbox message {row.id}: {mqtt.error_string(info.rc)}"
                )
                return
            self._in_flight[info.mid] = row
            self._cursor = row.id
        if len(rows) < free:
            # Everything up to last_id was committed before we read it, so nothing below it is left unseen.
            self._cursor = max(self._cursor, last_id)

    def _send_snapshots(self, client: ReportingClient) -> None:
        with self._cond:
            ready = {topic: self._snapshots[topic] for topic in self._snapshots_due - self._snapshots_busy}
            self._snapshots_due -= ready.keys()
            self._snapshots_busy |= ready.keys()
        for topic, jpeg in ready.items():
            info = client.publish(topic, jpeg, qos=0, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self._snapshot_mids[info.mid] = topic
                self._metrics.snapshots.labels("sent").inc()
            else:
                with self._cond:
                    self._snapshots_busy.discard(topic)
                    self._snapshots_due.add(topic)

    def _resync_retained(self, client: ReportingClient) -> None:
        with self._status_lock:
            for topic, payload in self._statuses.items():
                client.publish(topic, payload, qos=1, retain=True)
        self._alarms.send_all(self._alarm_sender(client))
        self.heartbeat()  # at once: the retained heartbeat left by a dead run would say "stale"
        self._snapshot_mids.clear()
        with self._cond:
            # Snapshots are QoS 0: one queued when the link dropped may never have left.
            self._snapshots_busy.clear()
            self._snapshots_due |= self._snapshots.keys()

    def _forget_in_flight(self, generation: int) -> None:
        # A new paho client holds nothing of the old one's: resend every stored message from the start.
        self._in_flight.clear()
        self._snapshot_mids.clear()
        self._cursor = 0
        self._pump_generation = generation

    def _switch(self) -> None:
        with self._cond:
            old = self._client
        old.loop_stop()
        with self._cond:
            self._protocol = "3.1.1" if self._protocol == "5" else "5"
            self._client = self._new_client()
            self._switch_protocol = False
            self._generation += 1
            client = self._client
        client.loop_start()

    def _publish_unbuffered(
        self, topic: str, payload: bytes, message: EventMessage, exc: OutboxError
    ) -> None:
        self._metrics.unbuffered.inc()
        self._count("outbox_write_failures")
        self._error(
            "unbuffered",
            f"{exc}; event {message.event_id} is sent without the outbox and is lost if the edge restarts "
            "first",
        )
        _, client = self._link()
        client.publish(topic, payload, qos=1)  # paho keeps it until acknowledged, in memory only

    # -- control worker and heartbeat timer ------------------------------------------------------------------

    def _run_control(self) -> None:
        assert self._control is not None
        while (item := self._control_queue.get()) is not None:
            request, command = item
            try:
                outcome = self._control.run(command, request)
                self._metrics.control.labels(outcome.result).inc()
                if outcome.reply is not None:
                    self._reply(request, outcome.reply.model_dump_json().encode())
            except Exception:
                log.exception("MQTT control: unexpected error while handling a command")

    def _reply(self, request: ControlRequest, payload: bytes) -> None:
        properties = None
        if request.mqtt5:
            properties = mqtt_properties(PacketTypes.PUBLISH)
            if request.correlation_data is not None:
                properties.CorrelationData = request.correlation_data
        _, client = self._link()
        topic = reply_topic(self._topics.control_reply(self._edge), request)
        if request.response_topic is not None and request.response_topic != topic:
            self._count("control_reply_topic_replaced")
            self._warn(
                "reply",
                f"control reply: response topic {request.response_topic!r} ignored; replying on {topic}",
            )
        client.publish(topic, payload, qos=1, properties=properties)

    def _run_heartbeat(self) -> None:
        interval = self._config.heartbeat_s
        while not self._stopping.wait(max(0.05, self._last_heartbeat + interval - time.monotonic())):
            if time.monotonic() - self._last_heartbeat < interval:
                continue  # the app published one itself in the meantime
            stats: Mapping[str, Any] | None = None
            if self._stats_source is not None:
                try:
                    stats = self._stats_source()
                except Exception:
                    log.exception("heartbeat: the stats source failed; publishing the edge's own figures")
            self.heartbeat(stats)

    # -- small helpers ---------------------------------------------------------------------------------------

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _outbox_added(self, row_id: int) -> None:
        """Wake the pump for a row written by someone else than publish_event (evidence chunks)."""
        with self._cond:
            self._last_id = max(self._last_id, row_id)
            self._cond.notify_all()

    def _evidence_queue(self) -> dict[str, QueueFigures]:
        return {"evidence_push": self._evidence.figures()} if self._evidence is not None else {}

    def _on_drop(self, message: OutboxMessage) -> None:
        self._metrics.dropped.labels(message.kind).inc()
        self._count("dropped")

    def _count(self, name: str, n: int = 1) -> None:
        with self._count_lock:
            self._counts[name] += n

    def _note_error(self, message: str) -> None:
        repeated = message == self.last_error
        self.last_error = message
        # The same failure on every retry would flood the log: say it once, then at debug level.
        (log.debug if repeated else log.error)(message)

    def _flush_journal(self) -> None:
        """Save journal changes a full disk held back; they stay queued while it still refuses."""
        with self._journal_lock:
            if not self._journal_backlog:
                return
            try:
                self._outbox.put_state(self._journal_backlog)
            except OutboxError:
                return
            self._journal_backlog.clear()

    def _error(self, key: str, message: str, *, exc_info: bool = False) -> None:
        """Log an error at most once per interval per key, with how many were not logged in between."""
        now = time.monotonic()
        with self._count_lock:
            self._error_counts[key] += 1
            if now - self._last_error_log.get(key, -_WARN_EVERY_S) < _WARN_EVERY_S:
                return
            self._last_error_log[key] = now
            repeats = self._error_counts.pop(key) - 1
        more = f" ({repeats} more like it since the last report)" if repeats else ""
        log.error("%s%s", message, more, exc_info=exc_info)

    def _warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning.get(key, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._last_warning[key] = now
            log.warning(message)
