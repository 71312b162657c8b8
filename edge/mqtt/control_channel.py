"""Control commands on the wire: receive on the control topic, check at once, queue what is valid for one
worker thread, publish the replies. What a command means and whether it is allowed is control.py's.

Guarantees:
- Checked on paho's network thread as it arrives: rejections never queue, so junk cannot make a real
  command wait or be turned away as `busy`; at most 64 valid commands wait, more are dropped (`busy`).
- Error replies are rate-limited (20 at once, then 5 a second; `reply_suppressed` beyond); unauthorised
  senders get no reply at all (control.py decides).
- Replies go only to the edge's own reply topic or the sender's `<reply>/<client_id>` (never where a
  response topic points elsewhere), QoS 1, with the correlation data echoed over MQTT 5.
- Every outcome is counted in `sitesentry_mqtt_control_commands_total{result}`; a callback that raises is
  logged and the worker goes on.
"""

from __future__ import annotations

import logging
import queue

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

from contract.payloads import ControlCommand
from edge.mqtt.connection import mqtt_properties
from edge.mqtt.control import ControlHandler, ControlOutcome, ControlRequest, ReplyLimiter, reply_topic
from edge.mqtt.link import BrokerLink
from edge.mqtt.metrics import PublisherMetrics, Tally

# The facade's logger: the split into modules leaves operators' log filters as they were.
log = logging.getLogger("edge.mqtt.publisher")


class ControlChannel:
    """Receive -> check -> queue -> run -> reply for one edge's control topic; `run` is the worker's body."""

    def __init__(
        self,
        handler: ControlHandler,
        *,
        topic: str,
        reply_to: str,
        link: BrokerLink,
        metrics: PublisherMetrics,
        tally: Tally,
    ) -> None:
        self.handler = handler
        self.topic = topic
        self._reply_to = reply_to
        self._link = link
        self._metrics = metrics
        self._tally = tally
        self._reply_limiter = ReplyLimiter()
        # Only commands that passed the checks wait here, so junk cannot crowd out real ones.
        self._queue: queue.Queue[tuple[ControlRequest, ControlCommand] | None] = queue.Queue(maxsize=64)

    def receive(self, message: mqtt.MQTTMessage) -> None:
        """Check a message from the broker (network thread); queue it if valid, else reply or ignore it."""
        if message.topic != self.topic:
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
            mqtt5=self._link.protocol == "5",
        )
        # Checked here, on the network thread: rejections never queue, so a flood of junk cannot make
        # real commands wait or be turned away as busy.
        checked = self.handler.check(request)
        if isinstance(checked, ControlOutcome):
            self._metrics.control.labels(checked.result).inc()
            if checked.reply is not None:
                if self._reply_limiter.allow():
                    self._reply(request, checked.reply.model_dump_json().encode())
                else:
                    self._metrics.control.labels("reply_suppressed").inc()
                    self._tally.count("control_replies_suppressed")
            return
        try:
            self._queue.put_nowait((request, checked))
        except queue.Full:
            self._metrics.control.labels("busy").inc()
            self._tally.count("control_busy")
            self._tally.warn("control", "control command dropped: too many commands waiting")

    def run(self) -> None:
        """Run queued commands until `close`."""
        while (item := self._queue.get()) is not None:
            request, command = item
            try:
                outcome = self.handler.run(command, request)
                self._metrics.control.labels(outcome.result).inc()
                if outcome.reply is not None:
                    self._reply(request, outcome.reply.model_dump_json().encode())
            except Exception:
                log.exception("MQTT control: unexpected error while handling a command")

    def close(self) -> None:
        """Ask the worker to end after the commands already queued."""
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass

    def _reply(self, request: ControlRequest, payload: bytes) -> None:
        properties = None
        if request.mqtt5:
            properties = mqtt_properties(PacketTypes.PUBLISH)
            if request.correlation_data is not None:
                properties.CorrelationData = request.correlation_data
        _, client = self._link.current()
        topic = reply_topic(self._reply_to, request)
        if request.response_topic is not None and request.response_topic != topic:
            self._tally.count("control_reply_topic_replaced")
            self._tally.warn(
                "reply",
                f"control reply: response topic {request.response_topic!r} ignored; replying on {topic}",
            )
        client.publish(topic, payload, qos=1, properties=properties)
