"""Composition root for `run` and `demo`: broker (embedded when none is configured), alerts, app, metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry

from contract.payloads import ControlCommand
from edge.alarms import AlarmHook
from edge.app import EdgeApp
from edge.config.models import SiteConfig
from edge.dataflow import Rule
from edge.detections import create_detector
from edge.mqtt.broker import EmbeddedBroker, ensure_broker
from edge.mqtt.control import ControlResult
from edge.mqtt.journal import clip_lookup
from edge.mqtt.publisher import AlertPublisher
from edge.telemetry import serve_metrics
from edge.violations.zone_edits import OVERRIDE_FILE, ZoneEditError, ZoneEditor, apply_overrides

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything `sitesentry run` starts, so stop() can take it down in the right order."""

    config: SiteConfig
    app: EdgeApp
    publisher: AlertPublisher
    broker: EmbeddedBroker | None
    alarm_hook: AlarmHook | None
    registry: CollectorRegistry
    metrics_port: int | None = None
    zone_editor: ZoneEditor | None = None

    @property
    def broker_url(self) -> str:
        """Where alerts go, for display."""
        kind = "embedded broker " if self.broker is not None else ""
        return f"{kind}mqtt://{self.config.mqtt.host}:{self.config.mqtt.port}"

    @classmethod
    def build(cls, config: SiteConfig) -> Runtime:
        """Create every stage; starts an embedded broker on 127.0.0.1 when the config names none."""
        registry = CollectorRegistry()
        detector = create_detector(config.model)  # first: a bad model file should fail before anything starts
        mqtt, broker = ensure_broker(config.mqtt)
        if broker is not None:
            log.info("no MQTT broker configured: started the embedded broker on 127.0.0.1:%d", broker.port)
        config = config.model_copy(update={"mqtt": mqtt})
        # Danger zones set from the dashboard's zone editor, saved beside the outbox, replace the YAML's.
        zones_path = config.mqtt.outbox.parent / OVERRIDE_FILE
        config = apply_overrides(config, zones_path)
        editors: dict[str, ZoneEditor] = {}
        alarm_hook = AlarmHook(config.alarms) if config.alarms is not None else None
        holder: dict[str, EdgeApp] = {}
        publisher = AlertPublisher(
            config.mqtt,
            config.site,
            detector.info,
            registry=registry,
            on_control=lambda command: apply_control(holder["app"], command, editors.get("zones")),
            alarm_hook=alarm_hook,
            stats_source=lambda: holder["app"].heartbeat_stats() if "app" in holder else {},
            evidence_folder=config.evidence.folder,
        )
        app = EdgeApp(
            config,
            detector=detector,
            alerts=publisher,
            registry=registry,
            on_evidence=publisher.push_evidence,
        )
        holder["app"] = app
        # Flood control holding alerts back is news: an early heartbeat carries the count to the dashboard.
        app.on_flood = lambda: publisher.heartbeat(app.heartbeat_stats())
        # Before anything new is published: close the events a crash left open, retract unwritten clips.
        publisher.close_left_open(clip_lookup(config.evidence.folder))
        zone = ZoneInfo(config.site.timezone)
        editors["zones"] = ZoneEditor(
            app,
            path=zones_path,
            site=config.site.id,
            edge=config.site.edge_id,
            clock=lambda: datetime.now(zone),
            publish=publisher.publish_camera_zones,
        )
        return cls(config, app, publisher, broker, alarm_hook, registry, zone_editor=editors["zones"])

    def start(self) -> None:
        """Start metrics, then the app (which starts alerts, evidence and cameras)."""
        if self.config.metrics.enabled:
            self.metrics_port = serve_metrics(
                self.registry, self.config.metrics.host, self.config.metrics.port
            )
            log.info("metrics on http://%s:%d/metrics", self.config.metrics.host, self.metrics_port)
        self.app.start()
        if self.zone_editor is not None:
            self.zone_editor.publish_all()  # retained: the zone editor starts from what is applied

    def stop(self) -> None:
        """Stop the app (ending events, flushing evidence and alerts), then the alarm hook and the broker."""
        self.app.stop()
        if self.alarm_hook is not None:
            self.alarm_hook.close()
        if self.broker is not None:
            self.broker.stop()


def apply_control(app: EdgeApp, command: ControlCommand, zones: ZoneEditor | None = None) -> ControlResult:
    """Carry out an authorised control command: switch a rule (on one camera or all) or a camera, keep
    a false alarm's frames for relabelling, or replace a camera's danger zones."""
    if command.action == "set_zones":
        assert command.camera is not None and command.zones is not None  # the payload model requires both
        if zones is None:
            return ControlResult(False, "zone editing is not available on this edge")
        try:
            return ControlResult(True, zones.apply(command.camera, command.zones).reply)
        except ZoneEditError as exc:
            return ControlResult(False, str(exc))
    if command.action == "false_alarm":
        assert command.event_id is not None  # the payload model requires it for this action
        if app.hard_examples is None:
            return ControlResult(
                False, "false alarm not kept: the hard-example queue is off (hard_examples.enabled)"
            )
        marked = app.hard_examples.mark_false_alarm(command.event_id, command.note)
        if not marked:
            return ControlResult(False, f"no queued frame for event {command.event_id}")
        return ControlResult(True, f"event {command.event_id}: {marked} frame(s) kept as a false alarm")
    enabled = command.action == "enable"
    try:
        if command.rule is not None:
            app.set_rule_enabled(Rule(command.rule), enabled, command.camera)
            where = f" on camera {command.camera}" if command.camera else ""
            return ControlResult(True, f"rule {command.rule} {command.action}d{where}")
        assert command.camera is not None  # the payload model requires a rule or a camera
        app.set_camera_enabled(command.camera, enabled)
        return ControlResult(True, f"camera {command.camera} {command.action}d")
    except KeyError as exc:
        return ControlResult(False, str(exc.args[0]) if exc.args else str(exc))
