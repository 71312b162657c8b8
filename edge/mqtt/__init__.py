"""MQTT alerts: topics, payload models (JSON Schemas come from them), the durable outbox and the publisher."""

from contract.payloads import ControlCommand, HeartbeatStats
from contract.topics import Topics
from edge.mqtt.control import ControlResult
from edge.mqtt.payloads import ModelInfo
from edge.mqtt.publisher import AlertPublisher

__all__ = ["AlertPublisher", "ControlCommand", "ControlResult", "HeartbeatStats", "ModelInfo", "Topics"]
