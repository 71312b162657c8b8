"""MQTT settings proposed for MqttConfig, read from it by name so they take effect once merged there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MqttExtras(BaseModel):
    """Delivery settings beyond MqttConfig's; each is read from MqttConfig once it has that field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    session_expiry_s: int = Field(
        86_400,
        ge=0,
        le=4_294_967_295,
        description="MQTT 5 session expiry: how long the broker keeps our session and queued messages while "
        "we are away.",
    )
    inflight_window: int = Field(
        16,
        ge=1,
        le=1000,
        description="Outbox messages published but not yet acknowledged, at most (kept 4 below the broker's "
        "receive maximum, 20 by default in Mosquitto).",
    )
    outbox_fsync: bool = Field(
        True, description="Sync each outbox write to disk (survives power cuts); False survives crashes only."
    )
    alarm_ttl_s: int = Field(
        60,
        ge=1,
        description="MQTT 5 message expiry of alarm commands, so a siren never sounds for a stale alert.",
    )
    reconnect_min_s: float = Field(0.5, gt=0, description="First wait before reconnecting to the broker.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnection attempts.")
    control_max_bytes: int = Field(
        4096, ge=256, description="Control messages larger than this are rejected."
    )

    @classmethod
    def of(cls, config: Any) -> MqttExtras:
        """Collect the fields MqttConfig already has; the rest keep their defaults."""
        return cls.model_validate(
            {name: getattr(config, name) for name in cls.model_fields if hasattr(config, name)}
        )


def tls_min_version(tls: Any) -> Literal["1.2", "1.3"]:
    """Return the proposed TlsConfig.min_version, '1.2' until it exists."""
    value = getattr(tls, "min_version", "1.2")
    if value not in ("1.2", "1.3"):
        raise ValueError(f"mqtt.tls.min_version: {value!r} is not '1.2' or '1.3'")
    return "1.3" if value == "1.3" else "1.2"
