"""Composition root for `run` and `demo`: broker (embedded when none is configured), alerts, app, metrics."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from edge.app import EdgeApp
from edge.config.models import SiteConfig
from edge.dataflow import Rule
from edge.detections import create_detector
from edge.mqtt.broker import EmbeddedBroker
from edge.mqtt.control import ControlCommand, ControlResult
from edge.mqtt.payloads import ModelInfo as PayloadModelInfo
from edge.mqtt.publisher import AlertPublisher
from edge.telemetry import serve_metrics

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything `sitesentry run` starts, in start order, so stop() can reverse it."""

    config: SiteConfig
    app: EdgeApp
    publisher: AlertPublisher
    broker: EmbeddedBroker | None
    registry: CollectorRegistry
    metrics_port: int | None = None
    _heartbeat_stop: threading.Event | None = None

    @property
    def broker_url(self) -> str:
        """Where alerts go, for display."""
        return f"mqtt://{self.config.mqtt.host}:{self.config.mqtt.port}"

    @classmethod
    def build(cls, config: SiteConfig, embedded_broker: bool | None = None) -> Runtime:
        """Create every stage; starts an embedded broker when the config names none."""
        registry = CollectorRegistry()
        broker = None
        if config.mqtt.host is None or embedded_broker and config.mqtt.host is None:
            broker = EmbeddedBroker(host="127.0.0.1", port=config.mqtt.port)
            broker.start()
            log.info("no MQTT broker configured: started the embedded broker on 127.0.0.1:%d", broker.port)
            config = config.model_copy(
                update={"mqtt": config.mqtt.model_copy(update={"host": "127.0.0.1", "port": broker.port})}
            )
        detector = create_detector(config.model)
        holder: dict[str, EdgeApp] = {}

        def on_control(command: ControlCommand) -> ControlResult:
            return apply_control(holder["app"], command)

        publisher = AlertPublisher(
            config.mqtt,
            config.site,
            PayloadModelInfo(name=detector.info.name, version=detector.info.version),
            registry=registry,
            on_control=on_control,
            stats=lambda: holder["app"].stats() if "app" in holder else {},
        )
        app = EdgeApp(config, detector=detector, alerts=publisher, registry=registry)
        holder["app"] = app
        return cls(config, app, publisher, broker, registry)

    def start(self) -> None:
        """Start metrics, then the app (which starts alerts, evidence and cameras)."""
        if self.config.metrics.enabled:
            self.metrics_port = serve_metrics(
                self.registry, self.config.metrics.host, self.config.metrics.port
            )
            log.info("metrics on http://%s:%d/metrics", self.config.metrics.host, self.metrics_port)
        self.app.start()

    def stop(self) -> None:
        """Stop the app (ending events and flushing evidence and alerts), then the embedded broker."""
        self.app.stop()
        if self.broker is not None:
            self.broker.stop()


def apply_control(app: EdgeApp, command: ControlCommand) -> ControlResult:
    """Carry out an authorised control command: enable or disable a rule or a camera."""
    enabled = command.action == "enable"
    try:
        if command.target == "rule":
            app.set_rule_enabled(Rule(command.rule), enabled, command.camera)
        else:
            app.set_camera_enabled(command.camera, enabled)
    except (KeyError, ValueError) as exc:
        return ControlResult(request_id=command.request_id, ok=False, message=str(exc))
    return ControlResult(
        request_id=command.request_id, ok=True, message=f"{command.action}d {command.target}"
    )
