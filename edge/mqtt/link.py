"""The publisher's broker connection: one paho client at a time, its connect/disconnect callbacks, and the
switch between MQTT 5 and 3.1.1.

Owns: the paho client (rebuilt on a protocol switch), the protocol in use, whether the broker has accepted
us, and `last_error` (why not, as one line without credentials).

Guarantees:
- A client is marked connected only after the broker accepted its CONNECT; a refusal is logged once as one
  line (the same failure on every retry goes to debug level).
- A broker that refuses MQTT 5 (reason 132) is retried with 3.1.1; with `mqtt.protocol: "5"` a broker that
  never answers is retried with the other protocol until one has worked once.
- The switch itself happens on the caller of `switch()` (the pump thread): paho cannot stop its own loop.
- State below is guarded by `cond`, the publisher's one condition (paho callbacks take it; nobody calls into
  paho while holding it); every change of it notifies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config.models import MqttConfig
from edge.mqtt.connection import (
    UNSUPPORTED_PROTOCOL,
    ReportingClient,
    broker_address,
    describe_exception,
    describe_refusal,
    new_client,
)
from edge.mqtt.metrics import PublisherMetrics, Tally

# The facade's logger: the split into modules leaves operators' log filters as they were.
log = logging.getLogger("edge.mqtt.publisher")

OnPublish = Callable[[int, "ReasonCode | None"], None]
OnMessage = Callable[[mqtt.MQTTMessage], None]


class BrokerLink:
    """One broker connection with reconnects (paho's backoff) and protocol fallback; see the module doc."""

    def __init__(
        self,
        config: MqttConfig,
        client_id: str,
        *,
        cond: threading.Condition,
        will: Callable[[], tuple[str, bytes]],
        on_up: Callable[[mqtt.Client], None],
        stopping: threading.Event,
        metrics: PublisherMetrics,
        tally: Tally,
    ) -> None:
        self._config = config
        self._client_id = client_id
        self.host, self.port = broker_address(config)
        self.cond = cond
        self._will = will
        self._on_up = on_up
        self._stopping = stopping
        self._metrics = metrics
        self._tally = tally
        #: Set before start(): the PUBACK handler (called with paho's message lock held) and messages.
        self.on_publish: OnPublish | None = None
        self.on_message: OnMessage | None = None
        # Guarded by cond.
        self.protocol = config.protocol
        self.connected = False
        self.generation = 0  # bumped with every new paho client: it holds nothing of the old one's
        self.switch_requested = False
        self.connects = 0  # accepted connections so far; the pump resends retained state on each
        self.receive_maximum: int | None = None  # the broker's, from its CONNACK
        self._awaiting_connack = False
        self.client = self._new_client()
        # Network thread only.
        self._ever_connected = False
        self.last_error: str | None = None

    def current(self) -> tuple[bool, ReportingClient]:
        """Return (connected, client) as one consistent pair."""
        with self.cond:
            return self.connected, self.client

    def start(self) -> None:
        """Start paho's network thread: it connects and reconnects in the background."""
        self.client.loop_start()

    def switch(self) -> None:
        """Replace the client with one for the other protocol (after a switch was requested)."""
        with self.cond:
            old = self.client
        old.loop_stop()
        with self.cond:
            self.protocol = "3.1.1" if self.protocol == "5" else "5"
            self.client = self._new_client()
            self.switch_requested = False
            self.generation += 1
            client = self.client
        client.loop_start()

    def _new_client(self) -> ReportingClient:
        client = new_client(
            self._config,
            self._client_id,
            protocol=self.protocol,
            persistent=True,
            session_expiry_s=self._config.session_expiry_s,
            will=self._will(),
            # Room for status, alarm and reply messages beside the outbox window; brokers often allow 20.
            max_inflight=self._config.inflight_window + 4,
        )
        client.connect_error_callback = self._on_connect_error
        client.connect_opened_callback = self._on_connect_opened
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        # paho types the delays as int; fractions work and keep reconnects after short outages quick.
        client.reconnect_delay_set(self._config.reconnect_min_s, self._config.reconnect_max_s)  # type: ignore[arg-type]
        return client

    # -- paho callbacks (network thread) ---------------------------------------------------------------------

    def _note_error(self, message: str) -> None:
        repeated = message == self.last_error
        self.last_error = message
        # The same failure on every retry would flood the log: say it once, then at debug level.
        (log.debug if repeated else log.error)(message)

    def _on_connect_opened(self) -> None:
        with self.cond:
            self._awaiting_connack = True

    def _on_connect_error(self, exc: BaseException) -> None:
        self._note_error(describe_exception(self.host, self.port, exc, tls=self._config.tls is not None))
        with self.cond:
            self._awaiting_connack = False

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        with self.cond:
            self._awaiting_connack = False
        if reason.is_failure:
            if reason.value == UNSUPPORTED_PROTOCOL and self.protocol == "5":
                log.info("MQTT broker %s:%d refused MQTT 5; using MQTT 3.1.1", self.host, self.port)
                self._request_switch(client)
                return
            self._note_error(
                describe_refusal(
                    self.host, self.port, reason, sent_credentials=self._config.username is not None
                )
            )
            return
        receive_maximum = getattr(props, "ReceiveMaximum", None)
        if self._ever_connected:
            self._tally.count("reconnects")
            self._metrics.reconnects.inc()
        self._ever_connected = True
        self.last_error = None
        log.info(
            "connected to MQTT broker %s:%d (MQTT %s, %s session)",
            self.host,
            self.port,
            self.protocol,
            "resumed" if flags.session_present else "new",
        )
        self._on_up(client)
        self._metrics.connected.set(1)
        with self.cond:
            self.connected = True
            self.receive_maximum = int(receive_maximum) if receive_maximum else None
            self.connects += 1
            self.cond.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Properties | None
    ) -> None:
        with self.cond:
            was_connected, self.connected = self.connected, False
            unanswered, self._awaiting_connack = self._awaiting_connack, False
            self.cond.notify_all()
        self._metrics.connected.set(0)
        if self._stopping.is_set() or self.switch_requested:
            return
        if was_connected:
            log.warning(
                "lost the connection to MQTT broker %s:%d (%s); alerts wait in the outbox until it is back",
                self.host,
                self.port,
                "connection dropped" if reason.value == 128 else str(reason).lower(),
            )
        elif unanswered:
            self._note_error(
                f"MQTT broker {self.host}:{self.port} closed the connection without answering "
                "(a TLS listener? check mqtt.tls)"
            )
            if self._config.protocol == "5" and not self._ever_connected:
                # Some 3.1.1-only brokers (amqtt) never answer an MQTT 5 CONNECT: until one protocol works,
                # alternate between them.
                other = "3.1.1" if self.protocol == "5" else "5"
                log.info("trying MQTT %s with broker %s:%d", other, self.host, self.port)
                self._request_switch(client)

    def _request_switch(self, client: mqtt.Client) -> None:
        with self.cond:
            self.switch_requested = True
            self.cond.notify_all()
        client.disconnect()  # ends this network loop; the pump starts a client for the other protocol

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode | None,
        props: Properties | None,
    ) -> None:
        if self.on_publish is not None:
            self.on_publish(mid, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self.on_message is not None:
            self.on_message(message)
