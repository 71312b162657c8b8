"""Retained state: what the broker keeps for late subscribers, latest-only and sent again after every
reconnect. The edge's own status (`online`, `offline`, the Last Will), camera stream statuses, the danger
zones each camera applies, the latest annotated snapshot of each camera, and alarm state per target.

None of it goes through the outbox: only the newest value per topic matters, so it is held in memory
(alarm state also in the outbox database, see alarm_state.py) and published when the broker is there.

Guarantees:
- Camera statuses and zones: QoS 1, retained; published at once when connected, and all of them again by
  `resend` after each reconnect.
- Snapshots: QoS 0, retained; one slot per camera, a newer JPEG replaces one not yet sent (counted as
  `replaced`); sent by the pump thread, and every slot again after each reconnect (QoS 0 queued when the
  link dropped may never have left).
- Alarms: QoS 1, retained; a change is sent at once when connected (`sent`), else held and sent as state on
  reconnect (`held_offline`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from contract.payloads import SCHEMA_VERSION, CameraStatusMessage, CameraZonesMessage, EdgeStatusMessage
from contract.topics import Topics
from edge.dataflow import SafetyEvent
from edge.frames.health import CameraStatus
from edge.mqtt.alarm_state import AlarmBoard
from edge.mqtt.connection import ReportingClient, mqtt_properties
from edge.mqtt.link import BrokerLink
from edge.mqtt.metrics import PublisherMetrics, Tally
from edge.telemetry import redact


class EdgeStatus:
    """The payloads of `.../edges/<edge>/status`: `online`, `offline` on a clean stop, the Last Will."""

    def __init__(
        self,
        topics: Topics,
        site: str,
        edge: str,
        clock: Callable[[], datetime],
        version: str,
        heartbeat_s: float,
    ) -> None:
        self.topic = topics.edge_status(edge)
        self._site = site
        self._edge = edge
        self._clock = clock
        self._version = version
        self._heartbeat_s = heartbeat_s

    def payload(self, state: str, reason: str | None, *, will: bool = False) -> bytes:
        """Return an edge status message as JSON bytes."""
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
                "heartbeat_s": self._heartbeat_s,
            }
        )
        return message.model_dump_json().encode()

    def will(self) -> tuple[str, bytes]:
        """Return the Last Will: (topic, `offline` for "connection lost", with no time)."""
        return self.topic, self.payload("offline", "connection lost", will=True)


class SnapshotSlots:
    """The latest JPEG per snapshot topic and which are due; slots guarded by the publisher's `cond`,
    message ids owned by the pump thread."""

    def __init__(self, cond: threading.Condition, metrics: PublisherMetrics) -> None:
        self._cond = cond
        self._metrics = metrics
        self._latest: dict[str, bytes] = {}
        self._due: set[str] = set()
        self._busy: set[str] = set()
        self._mids: dict[int, str] = {}  # pump thread only

    def put(self, topic: str, jpeg: bytes) -> None:
        """Keep a camera's newest JPEG (replacing one not sent yet) and wake the pump."""
        with self._cond:
            if topic in self._due:
                self._metrics.snapshots.labels("replaced").inc()
            self._latest[topic] = bytes(jpeg)
            self._due.add(topic)
            self._cond.notify_all()

    def has_due(self) -> bool:
        """True when a slot waits to be sent and is not in flight; call with `cond` held."""
        return bool(self._due - self._busy)

    def send(self, client: ReportingClient) -> None:
        """Publish every due slot not in flight (pump thread)."""
        with self._cond:
            ready = {topic: self._latest[topic] for topic in self._due - self._busy}
            self._due -= ready.keys()
            self._busy |= ready.keys()
        for topic, jpeg in ready.items():
            info = client.publish(topic, jpeg, qos=0, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self._mids[info.mid] = topic
                self._metrics.snapshots.labels("sent").inc()
            else:
                with self._cond:
                    self._busy.discard(topic)
                    self._due.add(topic)

    def acked(self, mid: int) -> bool:
        """Settle a message id if it was a snapshot's (pump thread); False if it was not."""
        topic = self._mids.pop(mid, None)
        if topic is None:
            return False
        with self._cond:
            self._busy.discard(topic)
        return True

    def forget(self) -> None:
        """Drop the message ids of a paho client that is gone (pump thread)."""
        self._mids.clear()

    def resend_all(self) -> None:
        """Mark every slot due again, in flight or not (pump thread, after a reconnect)."""
        self._mids.clear()
        with self._cond:
            # Snapshots are QoS 0: one queued when the link dropped may never have left.
            self._busy.clear()
            self._due |= self._latest.keys()


class RetainedState:
    """Camera statuses, zones, snapshots and alarm state, and sending all of them again on reconnect."""

    def __init__(
        self,
        topics: Topics,
        site: str,
        edge: str,
        clock: Callable[[], datetime],
        link: BrokerLink,
        alarms: AlarmBoard,
        snapshots: SnapshotSlots,
        metrics: PublisherMetrics,
        tally: Tally,
    ) -> None:
        self._topics = topics
        self._site = site
        self._edge = edge
        self._clock = clock
        self._link = link
        self._alarms = alarms
        self.snapshots = snapshots
        self._metrics = metrics
        self._tally = tally
        # Retained camera statuses and zones, kept to publish again after each reconnect.
        self._lock = threading.Lock()
        self._latest: dict[str, bytes] = {}

    def camera_status(self, camera_id: str, status: str, detail: str | None = None) -> None:
        """Publish a camera's stream status."""
        message = CameraStatusMessage(
            schema_version=SCHEMA_VERSION,
            site=self._site,
            edge=self._edge,
            camera=camera_id,
            state=CameraStatus(status),
            detail=redact(detail) if detail else None,
            at=self._clock(),
        )
        self._keep(self._topics.camera_status(camera_id), message.model_dump_json().encode())

    def camera_zones(self, message: CameraZonesMessage) -> None:
        """Publish the danger zones a camera applies now."""
        # Kept with the statuses: the same latest-only, resent-on-connect rule.
        self._keep(self._topics.zones(message.camera), message.model_dump_json().encode())

    def _keep(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._latest[topic] = payload
            connected, client = self._link.current()
            if connected:
                client.publish(topic, payload, qos=1, retain=True)

    def snapshot(self, camera_id: str, jpeg: bytes) -> None:
        """Queue a camera's latest JPEG for the pump."""
        self.snapshots.put(self._topics.snapshot(camera_id), jpeg)

    def alarm(self, event: SafetyEvent) -> None:
        """Record an alarm change at the event's zone (else camera) and send that target's new state."""
        topic = (
            self._topics.alarm_zone(event.zone) if event.zone else self._topics.alarm_camera(event.camera_id)
        )
        connected, client = self._link.current()
        self._alarms.change(
            topic, event, _alarm_sender(client, self._link.protocol == "5") if connected else None
        )
        if connected:
            self._metrics.alarms.labels("sent").inc()
            self._tally.count("alarms_sent")
        else:
            # Not lost: the target's state goes out when the broker is back.
            self._metrics.alarms.labels("held_offline").inc()
            self._tally.count("alarms_held_offline")

    def refresh_alarms(self) -> None:
        """Send `on` alarm states again before their MQTT expiry runs out (while connected over MQTT 5;
        3.1.1 has no expiry, so nothing to refresh)."""
        connected, client = self._link.current()
        if connected and self._link.protocol == "5":
            self._alarms.refresh(_alarm_sender(client, mqtt5=True))

    def resend(self, client: ReportingClient, heartbeat: Callable[[], None]) -> None:
        """Send everything again after a reconnect (pump thread); `heartbeat` publishes one at once."""
        with self._lock:
            for topic, payload in self._latest.items():
                client.publish(topic, payload, qos=1, retain=True)
        self._alarms.send_all(_alarm_sender(client, self._link.protocol == "5"))
        heartbeat()  # at once: the retained heartbeat left by a dead run would say "stale"
        self.snapshots.resend_all()


def _alarm_sender(client: ReportingClient, mqtt5: bool) -> Callable[[str, bytes, int | None], None]:
    def send(topic: str, payload: bytes, expiry_s: int | None) -> None:
        properties = None
        if mqtt5 and expiry_s is not None:  # MQTT 3.1.1 has no expiry: the state stays until replaced
            properties = mqtt_properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = expiry_s
        client.publish(topic, payload, qos=1, retain=True, properties=properties)

    return send
