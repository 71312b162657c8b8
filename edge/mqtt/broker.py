"""The embedded MQTT broker (amqtt, MQTT 3.1.1) for the demo and for sites without a broker: loopback only."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from amqtt.broker import Broker

from edge.config.models import MqttConfig
from edge.telemetry import bind_problem

log = logging.getLogger(__name__)


class EmbeddedBrokerError(ValueError):
    """The embedded broker could not start or stop (message says where and why).

    `cannot_bind` marks a port that is taken or an address this box lacks: the message names the setting.
    """

    cannot_bind = False


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class _RetainOncePerSubscription(Broker):
    """amqtt, except that a client gets retained messages only for filters it subscribed to itself.

    amqtt 0.12.1 also replays, on every connect, the retained messages of every filter any client holds:
    a new client then sees each retained message twice (once more when it subscribes) and some for topics
    it never asked for.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        holders = self._subscriptions.get(subscription[0], [])
        if any(holder is session for holder, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)


class EmbeddedBroker:
    """An amqtt broker on its own thread and event loop; start() returns once it listens, stop() once closed.

    It keeps sessions and retained messages in memory only, and speaks MQTT 3.1.1 (the publisher falls back
    to it). Anonymous clients are accepted, which is why it binds to loopback by default.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 1883, keys: tuple[str, str] = ("mqtt.host", "mqtt.port")
    ) -> None:
        self.host = host
        self.port = port if port else free_port(host)
        self._keys = keys  # the settings of host and port, for the error when it cannot listen there
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        """Start listening on host:port; raise EmbeddedBrokerError if the port is taken or startup fails."""
        if self._thread is not None:
            return self
        self._check_bindable()
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"mqtt-broker-{self.port}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise EmbeddedBrokerError(
                f"embedded MQTT broker on {self.host}:{self.port} did not start in {timeout} s"
            )
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            cause = self._error.__cause__ or self._error
            raise EmbeddedBrokerError(
                f"cannot start the embedded MQTT broker on {self.host}:{self.port}: {cause}"
            )
        log.info("embedded MQTT broker (amqtt, MQTT 3.1.1) listening on %s:%d", self.host, self.port)
        return self

    def _check_bindable(self) -> None:
        """Try the address first: amqtt would log a traceback for a taken port before we could say which."""
        with socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            try:
                sock.bind((self.host, self.port))
            except OSError as exc:
                what = "start the embedded MQTT broker"
                problem = bind_problem(exc, what, (self.host, self.port), self._keys, " (0: any free one)")
                error = EmbeddedBrokerError(
                    str(problem or f"cannot {what} on {self.host}:{self.port}: {exc}")
                )
                error.cannot_bind = problem is not None
                raise error from None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop

        async def boot() -> Broker:
            broker = _RetainOncePerSubscription(self._config(), loop=loop)
            await broker.start()
            return broker

        try:
            self._broker = loop.run_until_complete(boot())
        except Exception as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and the listener; the port is free again when this returns."""
        thread, loop, broker = self._thread, self._loop, self._broker
        if thread is None or loop is None:
            return
        try:
            if broker is not None:
                asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout)
        except Exception as exc:
            log.warning("embedded MQTT broker did not shut down cleanly: %s", exc)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._thread = self._loop = self._broker = None
        log.info("embedded MQTT broker on %s:%d stopped", self.host, self.port)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_broker(config: MqttConfig) -> tuple[MqttConfig, EmbeddedBroker | None]:
    """Start the embedded broker when no broker is configured; return the config to connect with, and it."""
    if config.host is not None:
        return config, None
    try:
        broker = EmbeddedBroker("127.0.0.1", config.port).start()
    except EmbeddedBrokerError as exc:
        # Port taken (often a system Mosquitto on 1883): a demo should still run, on a free port.
        log.warning("%s; using a free port instead", exc)
        broker = EmbeddedBroker("127.0.0.1", 0).start()
    # amqtt speaks 3.1.1 only: saying so up front spares a refused MQTT 5 attempt on every start.
    return config.model_copy(update={"host": "127.0.0.1", "port": broker.port, "protocol": "3.1.1"}), broker
