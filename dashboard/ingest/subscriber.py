"""The MQTT subscriber: MQTT 5, a persistent session under a fixed client id, QoS 1, and a message is
acknowledged only after its transaction committed, so a crash or restart loses nothing the broker queued."""

from __future__ import annotations

import logging
import ssl
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dashboard.context import AppContext
from dashboard.ingest.control import ControlChannel
from dashboard.ingest.handlers import Dispatcher

log = logging.getLogger(__name__)

# Storage failures (database down, disk full) are retried this many times before the message is left
# unacknowledged and the connection is reopened, so the broker delivers it again.
_STORE_RETRIES = (0.2, 1.0, 3.0)


class Ingest:
    """Owns the paho client and its network thread; `start` connects in the background, `stop` disconnects."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        settings = ctx.settings.mqtt
        self.mqtt5 = settings.protocol == "5"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if self.mqtt5 else mqtt.MQTTv311,
            # MQTT 3.1.1 keeps the session through clean_session; MQTT 5 through clean_start + expiry.
            clean_session=None if self.mqtt5 else False,
            manual_ack=True,
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            self.client.username_pw_set(settings.username, password)
        if settings.tls is not None:
            context = ssl.create_default_context(
                cafile=str(settings.tls.ca_file) if settings.tls.ca_file else None
            )
            if settings.tls.cert_file:
                context.load_cert_chain(
                    str(settings.tls.cert_file), str(settings.tls.key_file) if settings.tls.key_file else None
                )
            if settings.tls.insecure:
                context.check_hostname = False
            self.client.tls_set_context(context)
        self.client.reconnect_delay_set(1, 30)
        self.control = ControlChannel(
            self.client,
            prefix=settings.prefix,
            client_id=settings.client_id,
            timeout_s=settings.control_timeout_s,
            mqtt5=self.mqtt5,
        )
        self.dispatcher = Dispatcher(ctx, on_reply=self.control.on_reply)
        self.subscribed = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def connected(self) -> bool:
        """Tell whether the broker connection is up."""
        return self.control.connected.is_set()

    def start(self) -> None:
        """Connect in the background (a broker that is down now is retried, never fatal)."""
        settings = self.ctx.settings.mqtt
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = settings.session_expiry_s
            self.client.connect_async(
                settings.host, settings.port, settings.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(settings.host, settings.port, settings.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        """Disconnect cleanly (the session and its queue stay on the broker) and stop the thread."""
        self.client.disconnect()
        self.client.loop_stop()
        self.control.connected.clear()
        self.ctx.metrics.connected.set(0)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        settings = self.ctx.settings.mqtt
        if reason.is_failure:
            log.warning("MQTT broker %s:%s refused the connection: %s", settings.host, settings.port, reason)
            return
        log.info(
            "connected to MQTT broker %s:%s (session present: %s)",
            settings.host,
            settings.port,
            flags.session_present,
        )
        self.control.connected.set()
        self.ctx.metrics.connected.set(1)
        # Subscribing again on a resumed session is harmless and covers a broker that lost it.
        client.subscribe(f"{settings.prefix}/+/#", qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.control.connected.clear()
        self.subscribed.clear()
        self.ctx.metrics.connected.set(0)
        if reason.is_failure:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = bytes(message.payload)
        for attempt, delay in enumerate((*_STORE_RETRIES, None)):
            try:
                self.dispatcher.handle(message.topic, payload)
                break
            except Exception:
                if delay is None:
                    # Unacknowledged: after the reconnect the broker sends it again.
                    log.exception(
                        "could not store the message on %s; reconnecting to get it again", message.topic
                    )
                    self.ctx.metrics.rejected.labels("storage", "error").inc()
                    client.reconnect()
                    return
                log.warning("storing the message on %s failed (try %d); retrying", message.topic, attempt + 1)
                time.sleep(delay)
        if message.qos > 0:
            client.ack(message.mid, message.qos)
