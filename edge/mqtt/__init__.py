"""MQTT alerts: topics, payload models (JSON Schemas come from them), the durable outbox and the publisher."""

from edge.mqtt.control import ControlResult
from edge.mqtt.payloads import ControlCommand, HeartbeatStats, ModelInfo
from edge.mqtt.publisher import AlertPublisher
from edge.mqtt.topics import Topics

__all__ = ["AlertPublisher", "ControlCommand", "ControlResult", "HeartbeatStats", "ModelInfo", "Topics"]
