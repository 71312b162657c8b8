"""AlertPublisher: the facade the edge uses for everything it sends over MQTT (events, status, snapshots,
alarms, heartbeats) and the control commands it takes. It builds the units below and wires them together;
it holds no delivery logic of its own.

- link.py          the broker connection: paho client, connect/disconnect callbacks, MQTT 5 -> 3.1.1
- pump.py          the outbox pump: send window, PUBACK settlement, resend after reconnect or switch
- event_writer.py  events and the journal of open events into the outbox; closing what a crash left open
- retained.py      edge status, camera status, zones, snapshots, alarm state: latest-only, resent on connect
- heartbeat.py     heartbeat figures and timer
- control_channel.py  control commands: receive, check, queue, run, reply
- metrics.py       Prometheus metrics, counters for stats(), rate-limited log lines

Threads: paho's network thread (connect, reconnect with backoff, callbacks), a pump thread that moves outbox
rows to paho and settles acknowledgements (`mqtt-outbox`), a control worker (`mqtt-control`), and a
heartbeat timer (`mqtt-heartbeat`). Callers never wait on the network: publish_event returns once the event
is committed to the outbox.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from prometheus_client import CollectorRegistry

from contract.payloads import CameraZonesMessage, HeartbeatStats, QueueFigures
from contract.topics import Topics
from edge import __version__
from edge.alarms import AlarmHook
from edge.config.models import MqttConfig, SiteSection
from edge.dataflow import EvidenceRef, SafetyEvent
from edge.mqtt.alarm_state import AlarmBoard
from edge.mqtt.connection import tls_context
from edge.mqtt.control import ControlCallback, ControlHandler
from edge.mqtt.control_channel import ControlChannel
from edge.mqtt.event_writer import EventWriter
from edge.mqtt.evidence_push import EvidencePusher
from edge.mqtt.heartbeat import Heartbeat
from edge.mqtt.journal import ClipLookup
from edge.mqtt.link import BrokerLink
from edge.mqtt.metrics import PublisherMetrics, Tally
from edge.mqtt.outbox import Outbox, OutboxMessage
from edge.mqtt.payloads import ModelLike, event_message
from edge.mqtt.pump import OutboxPump
from edge.mqtt.retained import EdgeStatus, RetainedState, SnapshotSlots

log = logging.getLogger(__name__)


class AlertPublisher:
    """Publishes one edge box's alerts: at-least-once events through the outbox, retained status, snapshots,
    alarms, heartbeats, and control commands from authorised clients.

    Over 250 lines because it is the facade: the edge's one entry point to MQTT, each public method a
    documented delegation to one unit, plus the constructor that wires them; the work is in the units."""

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
        """Build the units and wire them together: this is the MQTT side's composition root. It is long
        because each unit gets its collaborators spelled out by keyword, in the order they depend on each
        other (outbox, evidence, connection, control, heartbeat, retained state, events, pump); it holds no
        logic."""
        self._edge = site.edge_id
        self._site = site.id
        self._model = model
        self._topics = topics = Topics(config.prefix, site.id)
        self._client_id = config.client_id or f"sitesentry-{site.id}-{site.edge_id}"
        zone = ZoneInfo(site.timezone)
        self._clock = clock or (lambda: datetime.now(zone))
        self._alarm_hook = alarm_hook
        self._metrics = metrics = PublisherMetrics(registry)
        self._tally = tally = Tally(log)
        if config.tls is not None:
            tls_context(config.tls)  # fail here, naming the setting, rather than on every reconnect
        self._outbox = Outbox(
            config.outbox, config.outbox_max_messages, fsync=config.outbox_fsync, on_drop=self._on_drop
        )
        metrics.outbox_pending.set_function(lambda: len(self._outbox))
        self._alarm_ttl_s = config.alarm_ttl_s
        alarms = AlarmBoard(self._outbox, self._clock, config.alarm_ttl_s)
        # Evidence files to the dashboard in chunks through this outbox (edge/mqtt/evidence_push.py).
        self._evidence = self._evidence_pusher(config, site, evidence_folder, registry)
        handler = self._control_handler(config, site, on_control)

        self._stopping = threading.Event()
        self._edge_status = EdgeStatus(
            topics, site.id, site.edge_id, self._clock, version, config.heartbeat_s
        )
        # The one condition of the publisher: connection state, pump work and snapshot slots.
        self._cond = threading.Condition()
        self._link = link = BrokerLink(
            config,
            self._client_id,
            cond=self._cond,
            will=self._edge_status.will,
            on_up=self._on_connected,
            stopping=self._stopping,
            metrics=metrics,
            tally=tally,
        )
        self._control: ControlChannel | None = None
        if handler is not None:
            self._control = ControlChannel(
                handler,
                topic=topics.control(site.edge_id),
                reply_to=topics.control_reply(site.edge_id),
                link=link,
                metrics=metrics,
                tally=tally,
            )
            link.on_message = self._control.receive
        self._heartbeat = Heartbeat(
            topic=topics.heartbeat(site.edge_id),
            site=site.id,
            edge=site.edge_id,
            interval_s=config.heartbeat_s,
            clock=self._clock,
            outbox=self._outbox,
            link=link,
            tally=tally,
            stats_source=stats_source,
            own_queues=self._evidence_queue,
        )
        snapshots = SnapshotSlots(self._cond, metrics)
        self._retained = RetainedState(
            topics, site.id, site.edge_id, self._clock, link, alarms, snapshots, metrics, tally
        )
        self._writer = EventWriter(
            self._outbox, topics, self._clock, link, on_added=self._outbox_added, metrics=metrics, tally=tally
        )
        self._pump = OutboxPump(
            self._outbox,
            link,
            snapshots,
            window=config.inflight_window,
            resync=lambda client: self._retained.resend(client, self._heartbeat.publish),
            housekeeping=self._writer.flush_journal,
            metrics=metrics,
            tally=tally,
        )
        link.on_publish = self._pump.acknowledged

        self._threads: list[threading.Thread] = []
        self._started = False
        self._stopped = False

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def topics(self) -> Topics:
        """The topic tree this publisher writes to."""
        return self._topics

    @property
    def connected(self) -> bool:
        """True while the broker has accepted our connection."""
        return self._link.connected

    @property
    def pending(self) -> int:
        """Messages in the outbox that the broker has not acknowledged yet."""
        return len(self._outbox)

    @property
    def last_error(self) -> str | None:
        """Why the broker connection is not up, as one line; None once connected."""
        return self._link.last_error

    def start(self) -> None:
        """Connect in the background (Last Will set, `online` published on connect); returns at once."""
        if self._started:
            return
        self._started = True
        self._heartbeat.restart_clock()
        self.close_left_open()
        self._spawn("mqtt-outbox", self._pump.run)
        if self._control is not None:
            self._spawn("mqtt-control", self._control.run)
        self._spawn("mqtt-heartbeat", lambda: self._heartbeat.run(self._stopping))
        self._spawn("mqtt-alarm-refresh", self._refresh_alarms)
        if self._evidence is not None:
            self._evidence.start()
        self._link.start()
        log.info(
            "publishing alerts to MQTT broker %s:%d as %s (MQTT %s, outbox %s with %d waiting)",
            self._link.host,
            self._link.port,
            self._client_id,
            self._link.protocol,
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
        self._writer.write(message)

    def close_left_open(self, clips: ClipLookup | None = None) -> int:
        """Close what a crash left open (see journal.py): an END (edge_restarted) for each open event and
        its alarm off, a repeated END retracting each clip announced but never written; return how many
        events were closed. Runs once; `start` calls it when the app has not (then no clip counts as
        written)."""
        return self._writer.close_left_open(clips, self.publish_alarm)

    def publish_camera_status(self, camera_id: str, status: str, detail: str | None = None) -> None:
        """Publish a camera's stream status, retained; sent again after every reconnect."""
        self._retained.camera_status(camera_id, status, detail)

    def publish_camera_zones(self, message: CameraZonesMessage) -> None:
        """Publish the danger zones a camera applies now, retained; sent again after every reconnect."""
        self._retained.camera_zones(message)

    def publish_snapshot(self, camera_id: str, jpeg: bytes) -> None:
        """Publish a camera's latest annotated JPEG, retained; a newer one replaces one not yet sent."""
        self._retained.snapshot(camera_id, jpeg)

    def push_evidence(self, camera_id: str, ref: EvidenceRef) -> None:
        """Queue a written snapshot or clip to be sent in chunks on `.../edges/<edge>/evidence` if enabled."""
        if self._evidence is not None:
            self._evidence.push(camera_id, ref)

    def publish_alarm(self, event: SafetyEvent) -> None:
        """Switch sirens near the zone or camera: the local hook at once, and the target's alarm state
        over MQTT, retained and sent again after each reconnect, so sirens end in the state the edge holds."""
        if self._alarm_hook is not None:
            self._alarm_hook.trigger(event)
        self._retained.alarm(event)

    def heartbeat(self, stats: Mapping[str, Any] | HeartbeatStats | None = None) -> None:
        """Publish a heartbeat now with these camera and queue figures (see HeartbeatStats) plus our own."""
        self._heartbeat.publish(stats)

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the broker accepts us; False on timeout (see `last_error` for why)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._link.connected, timeout)

    def wait_delivered(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything in the outbox; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._outbox) == 0, timeout)

    def stats(self) -> dict[str, Any]:
        """Counters for the dashboard, tests and benchmarks."""
        counts = self._tally.snapshot()
        control = dict(self._control.handler.counts) if self._control is not None else {}
        return {
            "connected": self._link.connected,
            "protocol": self._link.protocol,
            "last_error": self._link.last_error,
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
                    lambda: not self._link.connected or len(self._outbox) == 0, max(0.0, timeout * 0.6)
                )
            connected, client = self._link.current()
            if connected:
                info = client.publish(
                    self._edge_status.topic,
                    self._edge_status.payload("offline", "stopped"),
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
            self._pump.stop()
            if self._control is not None:
                self._control.close()
            for thread in self._threads:
                thread.join(max(0.1, deadline - time.monotonic()))
        self._writer.flush_journal()
        left = len(self._outbox)
        self._outbox.close()
        log.info("MQTT publisher stopped; %d message(s) stay in the outbox for the next start", left)

    # -- wiring ----------------------------------------------------------------------------------------------

    def _evidence_pusher(
        self, config: MqttConfig, site: SiteSection, folder: Path | None, registry: CollectorRegistry | None
    ) -> EvidencePusher | None:
        if folder is None or not config.push_evidence:
            return None
        return EvidencePusher(
            self._outbox,
            folder=folder,
            topic=self._topics.evidence(site.edge_id),
            site=site.id,
            edge=site.edge_id,
            backlog_bytes=int(config.evidence_backlog_mb * 1e6),
            on_added=self._outbox_added,
            registry=registry,
            fsync=config.outbox_fsync,
        )

    def _control_handler(
        self, config: MqttConfig, site: SiteSection, on_control: ControlCallback | None
    ) -> ControlHandler | None:
        if on_control is not None and config.control_clients:
            return ControlHandler(
                site=site.id,
                edge=site.edge_id,
                allowed_clients=config.control_clients,
                callback=on_control,
                clock=self._clock,
                max_bytes=config.control_max_bytes,
            )
        if on_control is not None:
            log.info("MQTT control commands are off: mqtt.control_clients is empty")
        return None

    def _on_connected(self, client: mqtt.Client) -> None:
        """On every accepted connection (network thread): subscribe to control, say `online`."""
        if self._control is not None:
            client.subscribe(self._control.topic, qos=1)
        client.publish(self._edge_status.topic, self._edge_status.payload("online", None), qos=1, retain=True)

    def _refresh_alarms(self) -> None:
        """Timer thread: `on` alarm states go out again before their expiry (mqtt.alarm_ttl_s) runs out."""
        while not self._stopping.wait(self._alarm_ttl_s / 4):
            self._retained.refresh_alarms()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _outbox_added(self, row_id: int) -> None:
        """Wake the pump for a row written to the outbox (events, evidence chunks)."""
        self._pump.added(row_id)

    def _evidence_queue(self) -> dict[str, QueueFigures]:
        return {"evidence_push": self._evidence.figures()} if self._evidence is not None else {}

    def _on_drop(self, message: OutboxMessage) -> None:
        self._metrics.dropped.labels(message.kind).inc()
        self._tally.count("dropped")
