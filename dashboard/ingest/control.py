"""Control commands from the dashboard to an edge (false alarm, set_zones), and waiting for the reply.

Commands go to `<prefix>/<site>/edges/<edge>/control` with an MQTT 5 response topic, so the edge answers
on our own `.../control/reply/<client_id>` (docs/mqtt.md), with the request id as correlation data; the
edge accepts them only from client ids in its `mqtt.control_clients`, hence the `client_id` user property.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.payloads import ControlCommand, ControlReply
from contract.topics import Topics

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

SendStatus = Literal["applied", "refused", "timeout", "sent", "not_connected"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of a command: applied/refused by the edge (with its message), timed out, or not sent."""

    status: SendStatus
    request_id: str
    message: str


def new_request_id() -> str:
    """Return a fresh request id (fits the contract's RequestId pattern)."""
    return f"dash-{uuid.uuid4().hex[:16]}"


class ControlChannel:
    """Publishes commands on the ingest's MQTT client and hands back the edge's reply by request id."""

    def __init__(
        self, client: mqtt.Client, *, prefix: str, client_id: str, timeout_s: float, mqtt5: bool = True
    ) -> None:
        self._client = client
        self._mqtt5 = mqtt5
        self._prefix = prefix
        self._client_id = client_id
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[threading.Event, list[ControlReply]]] = {}
        self.connected = threading.Event()

    def send(self, site: str, edge: str, command: ControlCommand, *, wait: bool) -> SendResult:
        """Publish `command` (QoS 1); with `wait`, block until the edge replies or the timeout passes."""
        if not self.connected.is_set():
            return SendResult(
                "not_connected", command.request_id, "the dashboard is not connected to the broker"
            )
        topics = Topics(self._prefix, site)
        # Over MQTT 3.1.1 there are no properties: the edge (control_clients "*") answers on the shared
        # reply topic, which ingest reads like any other, and the request id pairs reply and command.
        props = None
        if self._mqtt5:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = topics.control_reply(edge, self._client_id)
            props.CorrelationData = command.request_id.encode()
            props.UserProperty = ("client_id", self._client_id)
        done = threading.Event()
        replies: list[ControlReply] = []
        if wait:
            with self._lock:
                self._pending[command.request_id] = (done, replies)
        try:
            info = self._client.publish(
                topics.control(edge), command.model_dump_json(exclude_none=True), qos=1, properties=props
            )
            if info.rc != 0:
                return SendResult("not_connected", command.request_id, f"publish failed (code {info.rc})")
            if not wait:
                return SendResult("sent", command.request_id, "sent to the edge")
            if not done.wait(self._timeout):
                return SendResult(
                    "timeout", command.request_id, f"no reply from {site}/{edge} within {self._timeout:g} s"
                )
            reply = replies[0]
            return SendResult(
                "applied" if reply.status == "ok" else "refused", command.request_id, reply.message
            )
        finally:
            with self._lock:
                self._pending.pop(command.request_id, None)

    def on_reply(self, reply: ControlReply) -> None:
        """Wake the sender waiting for this reply (called by the ingest handler of control replies)."""
        if reply.request_id is None:
            return
        with self._lock:
            waiting = self._pending.get(reply.request_id)
        if waiting is not None:
            waiting[1].append(reply)
            waiting[0].set()
