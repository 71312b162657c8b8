"""Site configuration: pydantic models that are the validation, the docs and the JSON Schema at once."""

from edge.config.loader import ConfigError, load_config
from edge.config.models import (
    CameraConfig,
    EvidenceConfig,
    ModelConfig,
    MqttConfig,
    RulesConfig,
    Schedule,
    SiteConfig,
    SiteSection,
    ZoneConfig,
)

__all__ = [
    "CameraConfig",
    "ConfigError",
    "EvidenceConfig",
    "ModelConfig",
    "MqttConfig",
    "RulesConfig",
    "Schedule",
    "SiteConfig",
    "SiteSection",
    "ZoneConfig",
    "load_config",
]
