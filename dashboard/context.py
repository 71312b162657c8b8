"""What one running dashboard holds: settings, database, live hub, metrics, and the MQTT side when enabled.

Built by `create_app` and kept on `app.state.ctx`; nothing lives at module level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from dashboard.live import LiveHub
from dashboard.settings import DashboardSettings
from dashboard.storage.db import Database

if TYPE_CHECKING:
    from dashboard.ingest.control import ControlChannel
    from dashboard.ingest.metrics import IngestMetrics
    from dashboard.ingest.subscriber import Ingest


@dataclass
class AppContext:
    """The composition root's objects, shared by routes through dependencies."""

    settings: DashboardSettings
    db: Database
    hub: LiveHub
    metrics: IngestMetrics
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    ingest: Ingest | None = None

    @property
    def control(self) -> ControlChannel | None:
        """Return the channel for control commands, or None when ingest (MQTT) is off."""
        return self.ingest.control if self.ingest is not None else None
