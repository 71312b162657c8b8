"""Dashboard settings: one pydantic model, loaded from a YAML file and overridden by environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from contract.ids import ID_PATTERN

#: Environment variables that override settings: SITESENTRY_DASHBOARD_<FIELD>, nested with `__`
#: (SITESENTRY_DASHBOARD_MQTT__HOST).
ENV_PREFIX = "SITESENTRY_DASHBOARD_"


class Strict(BaseModel):
    """Base of every settings section: unknown keys are errors, so a typo never turns into a default."""

    model_config = ConfigDict(extra="forbid")


class MqttTls(Strict):
    """TLS towards the broker."""

    ca_file: Path | None = Field(None, description="CA bundle that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="Client certificate, when the broker requires one.")
    key_file: Path | None = Field(None, description="Key of the client certificate.")
    insecure: bool = Field(False, description="Skip the host name check (test setups only).")


class MqttSettings(Strict):
    """The broker the edges publish to; the dashboard subscribes with a persistent MQTT 5 session."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 for TLS).")
    username: str | None = Field(None, description="Broker account (the `ops` account of docs/mqtt.md).")
    password: SecretStr | None = Field(
        None, description="Broker password; prefer SITESENTRY_DASHBOARD_MQTT__PASSWORD to a file."
    )
    tls: MqttTls | None = Field(None, description="TLS settings; null for a plain connection.")
    client_id: str = Field(
        "sitesentry-dashboard",
        pattern=ID_PATTERN,
        description="Fixed client id: the broker keeps this session's queue while the dashboard restarts. "
        "Edges accept control commands only from client ids listed in their `mqtt.control_clients`.",
    )
    prefix: str = Field(
        "sitesentry",
        pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Topic prefix, as `mqtt.prefix` of the edges.",
    )
    session_expiry_s: int = Field(
        7 * 86400, ge=0, description="How long the broker keeps our session and queue while we are away."
    )
    keepalive_s: int = Field(30, ge=5, description="MQTT keepalive.")
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description="MQTT protocol. 3.1.1 for brokers without MQTT 5 (the demo's embedded broker): the "
        "session still persists (clean session off), and control replies come on the edge's shared "
        "`.../control/reply` topic, which the edge uses only with `mqtt.control_clients: [\"*\"]`.",
    )
    control_timeout_s: float = Field(
        10.0, gt=0, le=120, description="How long a control command (set_zones) waits for the edge's reply."
    )


class DashboardSettings(Strict):
    """Everything the dashboard process needs; `load_settings` fills it from YAML and the environment."""

    data_dir: Path = Field(Path("var/dashboard"), description="Folder for the database and working files.")
    database_url: str = Field(
        "",
        description="SQLAlchemy URL; empty: sqlite:///<data_dir>/dashboard.db. "
        "PostgreSQL: postgresql+psycopg://user:password@host/dbname.",
    )
    evidence_dir: Path = Field(
        Path(""), description="Where evidence files and snapshots are stored; empty: <data_dir>/evidence."
    )
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    ingest_enabled: bool = Field(
        True, description="Subscribe to the broker at start (off: serve the database only, e.g. in tests)."
    )
    retention_days: int = Field(
        90, ge=1, description="Events and evidence older than this are deleted (PDPO: keep it short)."
    )
    retention_interval_s: int = Field(3600, ge=60, description="How often the retention sweep runs.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged by `dashboard serve` (its own lines and uvicorn's)."
    )
    session_hours: float = Field(12.0, gt=0, description="Lifetime of a login session.")
    secure_cookies: bool = Field(
        True, description="Mark cookies Secure (HTTPS only); turn off only for plain-HTTP test setups."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user name within login_window_s before logins are refused."
    )
    login_max_failures_per_ip: int = Field(
        20,
        ge=1,
        description="Failed logins per client address within login_window_s (higher: a site office "
        "often shares one address).",
    )
    login_window_s: int = Field(900, ge=60, description="Window for counting failed logins.")
    time_zone: str = Field("Asia/Hong_Kong", description="Site time zone for statistics and exports.")
    operator_name: str = Field(
        "",
        max_length=200,
        description="Who operates the cameras (the data user under the PDPO, e.g. the main contractor), as "
        "printed on the CCTV notice and shown on the privacy page; empty leaves a line to fill in by hand.",
    )
    privacy_contact: str = Field(
        "",
        max_length=200,
        description="Where people send questions and data access or correction requests (phone, e-mail or "
        "address), on the CCTV notice and the privacy page; empty leaves a line to fill in by hand.",
    )
    bind_host: str = Field("127.0.0.1", description="Address `serve` listens on.")
    bind_port: int = Field(8080, ge=1, le=65535, description="Port `serve` listens on.")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For is believed (for the audit log).",
    )

    @model_validator(mode="after")
    def _fill_paths(self) -> DashboardSettings:
        # Paths that default to places under data_dir are resolved once, here, so nothing else guesses.
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'dashboard.db'}"
        if self.evidence_dir == Path(""):
            self.evidence_dir = self.data_dir / "evidence"
        return self

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """Return the site time zone."""
        return ZoneInfo(self.time_zone)

    @property
    def scratch_dir(self) -> Path:
        """Return the folder where evidence chunks are reassembled before they are verified."""
        return self.data_dir / "incoming"


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """Turn SITESENTRY_DASHBOARD_A__B=v into {"a": {"b": v}}."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        path = key[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` over `base`."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> DashboardSettings:
    """Read settings from a YAML file (optional), then apply SITESENTRY_DASHBOARD_* environment variables."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        data = loaded
    data = _merge(data, _env_overrides(os.environ if env is None else env))
    return DashboardSettings.model_validate(data)
