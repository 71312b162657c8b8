"""The MQTT subscriber: MQTT 5, a persistent session under a fixed client id, QoS 1, and a message is
acknowledged only after its transaction committed, so a crash or restart loses nothing the broker queued.

paho's network thread only puts messages on a bounded queue; one ingest thread takes what has arrived (up
to `batch_max`), checks each message, stores the good ones in one transaction, and acknowledges them after
the commit, in the order they came. One thread keeps the order of an event's messages (START before END).
When the batch's transaction fails, its messages are stored one by one (with retries), so one bad row
cannot hold back the rest; only those that still fail stay unacknowledged, and the connection is reopened
so the broker delivers them again.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dashboard.context import AppContext
from dashboard.ingest.control import ControlChannel
from dashboard.ingest.handlers import Dispatcher, Prepared

log = logging.getLogger(__name__)

T = TypeVar("T")

# Storage failures (database down, disk full) are retried this many times before the message is left
# unacknowledged and the connection is reopened, so the broker delivers it again.
_STORE_RETRIES = (0.2, 1.0, 3.0)

#: Most messages stored in one transaction: large enough that commits stop dominating, small enough that a
#: batch commits within a few hundred milliseconds on a busy machine.
BATCH_MAX = 200
#: Messages received and not yet stored. With MQTT 5 it is also the Receive Maximum we ask the broker for
#: (how many unacknowledged messages it sends us), so a full queue means the broker waits, not that a
#: message is dropped; at most 400 evidence chunks (about 100 MB) in memory.
QUEUE_SIZE = 400


@dataclass(frozen=True, slots=True)
class _Received:
    """A message taken off paho's thread, with the connection it came on (acks go only to that one)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int


class Ingest:
    """Owns the paho client and its network thread; `start` connects in the background, `stop` disconnects."""

    def __init__(self, ctx: AppContext, *, batch_max: int = BATCH_MAX, queue_size: int = QUEUE_SIZE) -> None:
        self.ctx = ctx
        self.batch_max = batch_max
        self.queue_size = queue_size
        # Drop policy: none. A full queue blocks paho's thread (the broker then holds the rest), since every
        # message stays unacknowledged until it is stored.
        self._queue: queue.Queue[_Received] = queue.Queue(queue_size)
        self._accepting = threading.Event()
        self._worker_stop = threading.Event()
        self._worker: threading.Thread | None = None
        # Counts connections; a message is acknowledged only on the connection it came on, because after
        # a reconnect the broker sends every unacknowledged message again anyway.
        self._connection = 0
        self._connection_lock = threading.Lock()
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
        """Start the ingest thread and connect in the background (a broker that is down is retried)."""
        settings = self.ctx.settings.mqtt
        self._accepting.set()
        self._worker_stop.clear()
        self._worker = threading.Thread(target=self._run, name="dashboard-ingest", daemon=True)
        self._worker.start()
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = settings.session_expiry_s
            props.ReceiveMaximum = self.queue_size
            self.client.connect_async(
                settings.host, settings.port, settings.keepalive_s, clean_start=False, properties=props
            )
        else:
            self.client.connect_async(settings.host, settings.port, settings.keepalive_s)
        self.client.loop_start()

    def stop(self, *, drain: bool = True, timeout_s: float = 30.0) -> None:
        """Store and acknowledge what was received (unless `drain` is False, as in a crash), then disconnect
        cleanly (the session and its queue stay on the broker) and stop the threads.

        Messages arriving meanwhile, and those left in the queue, stay unacknowledged: the broker delivers
        them again on the next connection."""
        self._accepting.clear()
        if drain:
            deadline = time.monotonic() + timeout_s
            while self._queue.unfinished_tasks and time.monotonic() < deadline:
                time.sleep(0.01)
        self._worker_stop.set()
        if self._worker is not None:
            self._worker.join(timeout_s)
            self._worker = None
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
        with self._connection_lock:
            self._connection += 1
        self.control.connected.set()
        self.ctx.metrics.connected.set(1)
        # Subscribing again on a resumed session is harmless and covers a broker that lost it.
        client.subscribe(f"{settings.prefix}/+/#", qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with self._connection_lock:
            self._connection += 1
        self.control.connected.clear()
        self.subscribed.clear()
        self.ctx.metrics.connected.set(0)
        if reason.is_failure:
            log.warning("MQTT connection lost (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        received = _Received(
            message.topic, bytes(message.payload), message.mid, message.qos, self._connection
        )
        while self._accepting.is_set():
            try:
                self._queue.put(received, timeout=0.2)
                return
            except queue.Full:
                continue
        # Stopping: left unacknowledged, so the broker sends it again on the next connection.

    def _run(self) -> None:
        """The ingest thread: take what has arrived, up to batch_max messages, and store it as one batch."""
        while True:
            try:
                batch = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                if self._worker_stop.is_set():
                    return
                continue
            # Whatever else is already waiting joins the batch: under load batches grow by themselves,
            # and a lone alert is stored at once.
            while len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._handle(batch)
            except Exception:  # the thread must survive anything; the messages stay unacknowledged
                log.exception("ingest of a batch of %d messages failed", len(batch))
                self._reconnect()
            finally:
                for _ in batch:
                    self._queue.task_done()
            if self._worker_stop.is_set():
                return

    def _handle(self, batch: list[_Received]) -> None:
        """Check, store and acknowledge one batch; what could not be stored stays unacknowledged."""
        failed: set[int] = set()  # positions in the batch
        prepared: list[tuple[int, Prepared]] = []
        for position, received in enumerate(batch):
            # Checked before the transaction: a bad payload is refused alone and never fails the batch.
            item = self._retrying(
                received.topic, partial(self.dispatcher.prepare, received.topic, received.payload)
            )
            if item is None:
                failed.add(position)
            elif isinstance(item, Prepared):
                prepared.append((position, item))
        if prepared:
            try:
                self.dispatcher.store([item for _, item in prepared])
            except Exception:
                log.warning(
                    "storing a batch of %d messages failed; storing them one by one",
                    len(prepared),
                    exc_info=True,
                )
                for position, item in prepared:
                    topic = batch[position].topic
                    if self._retrying(topic, partial(self.dispatcher.store, [item]), not failed) is None:
                        failed.add(position)
        self._ack([received for position, received in enumerate(batch) if position not in failed])
        if failed:
            # Unacknowledged: after the reconnect the broker sends them again.
            log.error("could not store %d messages; reconnecting to get them again", len(failed))
            self._reconnect()

    def _retrying(self, topic: str, action: Callable[[], T], patient: bool = True) -> T | None:
        """Run `action`, retrying storage failures after the delays of _STORE_RETRIES (only once when not
        `patient`: the database is likely down, and the rest of the batch should not wait for each);
        None when it still fails."""
        delays = (*_STORE_RETRIES, None) if patient else (None,)
        for attempt, delay in enumerate(delays):
            try:
                return action()
            except Exception:
                if delay is None:
                    log.exception("could not store the message on %s", topic)
                    self.ctx.metrics.rejected.labels("storage", "error").inc()
                    return None
                log.warning("storing the message on %s failed (try %d); retrying", topic, attempt + 1)
                time.sleep(delay)
        return None

    def _ack(self, done: list[_Received]) -> None:
        """Acknowledge stored messages, in the order they came, on the connection they came on."""
        with self._connection_lock:
            for received in done:
                if received.qos > 0 and received.connection == self._connection:
                    self.client.ack(received.mid, received.qos)

    def _reconnect(self) -> None:
        """Drop the connection so that paho reconnects and the broker delivers unacknowledged messages again.

        Called from the ingest thread: shutting the socket down makes paho's own thread see a lost
        connection and reconnect as usual (socket.socket's method: an SSL socket's would unwrap it under
        that thread's feet)."""
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: paho is reconnecting anyway
