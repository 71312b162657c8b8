"""Build paho clients from MqttConfig (credentials, TLS, session); turn connection failures into one line."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.config.models import MqttConfig, TlsConfig
from edge.telemetry import redact

PROTOCOLS: dict[str, MQTTProtocolVersion] = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
UNSUPPORTED_PROTOCOL = 132  # CONNACK reason paho reports when a 3.1.1-only broker refuses MQTT 5


class MqttConfigError(ValueError):
    """MQTT settings that cannot work (a missing CA file, an unreadable key); the message names it."""


class MqttConnectError(RuntimeError):
    """The broker could not be reached or refused us; the message is one line without credentials."""

    unanswered = False  # the broker ignored or refused the protocol version: another one may work
    unreachable = False  # nothing answered at that address (yet): a broker still starting may come up


class _DebugOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """paho's own log lines, all at debug level: its socket errors would repeat our one clear line."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Log at debug level whatever level paho asked for."""
        super().log(logging.DEBUG, msg, *args, **kwargs)


_PAHO_LOG: Any = _DebugOnly(logging.getLogger("edge.mqtt.paho"), {})


class ReportingClient(mqtt.Client):
    """paho's client, also telling why a (re)connection attempt failed: paho's own loop swallows the error."""

    connect_error_callback: Callable[[BaseException], None] | None = None
    connect_opened_callback: Callable[[], None] | None = None

    def reconnect(self) -> MQTTErrorCode:
        """Open the connection as paho does, reporting an OSError (TCP, DNS, TLS) before re-raising it."""
        try:
            rc = super().reconnect()
        except OSError as exc:
            if self.connect_error_callback is not None:
                self.connect_error_callback(exc)
            raise
        if self.connect_opened_callback is not None:
            self.connect_opened_callback()
        return rc


def mqtt_properties(packet_type: int) -> Properties:
    """Return an empty MQTT 5 property set for a packet type (paho's constructor is untyped)."""
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def broker_address(config: MqttConfig) -> tuple[str, int]:
    """Return (host, port); an unset host means the embedded broker on 127.0.0.1."""
    return (config.host or "127.0.0.1", config.port)


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """Build the client TLS context: the CA bundle, an optional client certificate, TLS 1.2 or newer."""
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise MqttConfigError(
            f"mqtt.tls.ca_file {tls.ca_file}: cannot load the CA bundle ({_reason(exc)})"
        ) from None
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise MqttConfigError(
                f"mqtt.tls.cert_file {tls.cert_file}: cannot load the certificate or key ({_reason(exc)})"
            ) from None
    elif tls.key_file is not None:
        raise MqttConfigError("mqtt.tls.key_file is set without mqtt.tls.cert_file")
    if tls.insecure:
        context.check_hostname = False
    return context


def new_client(
    config: MqttConfig,
    client_id: str,
    *,
    protocol: str,
    persistent: bool,
    session_expiry_s: int = 0,
    will: tuple[str, bytes] | None = None,
    max_inflight: int = 20,
) -> ReportingClient:
    """Return a paho client set up for `config` (not yet connected); `connect_async` parameters are stored."""
    version = PROTOCOLS[protocol]
    if version == mqtt.MQTTv5:
        client = ReportingClient(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version)
    else:
        client = ReportingClient(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=version, clean_session=not persistent
        )
    client.enable_logger(_PAHO_LOG)
    if config.username is not None:
        password = config.password.get_secret_value() if config.password is not None else None
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        client.tls_set_context(tls_context(config.tls))
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.max_inflight_messages_set(max_inflight)
    host, port = broker_address(config)
    if version == mqtt.MQTTv5:
        properties = mqtt_properties(PacketTypes.CONNECT)
        if persistent:
            properties.SessionExpiryInterval = session_expiry_s
        client.connect_async(
            host, port, config.keepalive_s, clean_start=not persistent, properties=properties
        )
    else:
        client.connect_async(host, port, config.keepalive_s)
    return client


def describe_refusal(host: str, port: int, reason: ReasonCode, *, sent_credentials: bool) -> str:
    """One line for a CONNACK refusal, e.g. '... refused the connection: bad user name or password'."""
    where = f"MQTT broker {host}:{port} refused the connection"
    if reason.value == 134 or (reason.value == 135 and sent_credentials):
        # Mosquitto answers a wrong password with "not authorized"; with credentials sent, that is the cause.
        return f"{where}: bad user name or password (check mqtt.username and mqtt.password)"
    if reason.value == 135:
        return f"{where}: not authorized (it wants credentials: set mqtt.username and mqtt.password)"
    if reason.value == 133:
        return f"{where}: client id not valid (check mqtt.client_id)"
    return f"{where}: {str(reason).lower()}"


def describe_exception(host: str, port: int, exc: BaseException, *, tls: bool = False) -> str:
    """One line for a failure to open the connection (TCP, DNS or TLS)."""
    where = f"MQTT broker {host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or _reason(exc)
        return f"{where}: its TLS certificate is not trusted ({detail}); check mqtt.tls.ca_file"
    if isinstance(exc, ssl.SSLError):
        text = _reason(exc)
        hint = "; is this port a TLS listener?" if "wrong version" in text else ""
        return f"{where}: TLS handshake failed ({text}){hint}"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} is not reachable: connection refused (is the broker running?)"
    if isinstance(exc, ConnectionResetError) and tls:
        return f"{where} reset the connection during the TLS handshake (is this port a TLS listener?)"
    if isinstance(exc, socket.gaierror):
        return f"MQTT broker host {host!r} cannot be resolved ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return f"{where} is not reachable: timed out"
    if isinstance(exc, OSError):
        return f"{where} is not reachable: {exc.strerror or exc}"
    return f"{where}: {redact(str(exc))}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def connect_blocking(config: MqttConfig, client: mqtt.Client, timeout: float = 10.0) -> mqtt.Client:
    """Connect a client built by new_client and start paho's network thread; MqttConnectError on failure.

    Meant for short-lived tools (`alerts tail`, the benchmark, tests), where failing fast beats retrying.
    """
    host, port = broker_address(config)
    answered = threading.Event()
    outcome: dict[str, Any] = {}
    previous_connect, previous_disconnect = client.on_connect, client.on_disconnect

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        outcome["reason"] = reason
        answered.set()
        if previous_connect is not None and not reason.is_failure:
            callback: Any = previous_connect
            callback(c, userdata, flags, reason, props)

    def on_disconnect(c: mqtt.Client, userdata: Any, *args: Any) -> None:
        answered.set()  # closed before answering: no "reason" recorded

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        client.reconnect()
    except (OSError, ValueError) as exc:
        error = MqttConnectError(describe_exception(host, port, exc, tls=config.tls is not None))
        # Refused, reset, timed out, no route: worth another try. TLS and DNS failures need a fix instead.
        error.unreachable = isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError | socket.gaierror)
        raise error from None
    client.loop_start()
    answered.wait(timeout)
    client.on_connect, client.on_disconnect = previous_connect, previous_disconnect
    reason: ReasonCode | None = outcome.get("reason")
    if reason is None or reason.is_failure:
        client.disconnect()
        client.loop_stop()
        if reason is not None:
            error = MqttConnectError(
                describe_refusal(host, port, reason, sent_credentials=config.username is not None)
            )
            error.unanswered = reason.value == UNSUPPORTED_PROTOCOL
            raise error
        hint = "" if config.tls is not None else " (a TLS listener? then set mqtt.tls)"
        error = MqttConnectError(f"MQTT broker {host}:{port} did not answer the connection request{hint}")
        error.unanswered = True
        raise error
    return client


def open_client(
    config: MqttConfig, client_id: str, *, persistent: bool = False, timeout: float = 10.0, **callbacks: Any
) -> mqtt.Client:
    """Build and connect a client; a broker that refuses or ignores MQTT 5 is tried again with 3.1.1."""
    protocols = [config.protocol] if config.protocol == "3.1.1" else ["5", "3.1.1"]
    for attempt, protocol in enumerate(protocols):
        client = new_client(
            config, client_id, protocol=protocol, persistent=persistent, session_expiry_s=3600
        )
        for name, callback in callbacks.items():
            setattr(client, name, callback)
        try:
            # amqtt never answers an MQTT 5 CONNECT, so the first try waits less.
            return connect_blocking(
                config, client, min(timeout, 3.0) if attempt < len(protocols) - 1 else timeout
            )
        except MqttConnectError as exc:
            if not exc.unanswered or attempt == len(protocols) - 1:
                raise
    raise AssertionError("unreachable")
