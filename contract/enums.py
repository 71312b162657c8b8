"""Enums whose values travel in MQTT payloads and are shown (translated) on the dashboard."""

from __future__ import annotations

import sys
from enum import Enum

if sys.version_info >= (3, 11):  # noqa: UP036 (the edge must run on 3.10)
    from enum import StrEnum
else:  # Python 3.10 (JetPack 6): the same behaviour, str() and format() give the value

    class StrEnum(str, Enum):  # noqa: UP042
        """An Enum whose members are strings and print as their value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return format(str(self.value), spec)


class Rule(StrEnum):
    """What a violation is about; the names appear in MQTT payloads and the dashboard."""

    NO_HELMET = "no_helmet"
    NO_VEST = "no_vest"
    ZONE_ENTRY = "zone_entry"


class Phase(StrEnum):
    """Where an event is in its life: consumers dedupe on event_id and close on END."""

    START = "start"
    UPDATE = "update"
    END = "end"


class CameraStatus(StrEnum):
    """Where a camera stream stands; the values appear in MQTT status messages and metrics."""

    STARTING = "starting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    DISABLED = "disabled"
    ENDED = "ended"  # a non-looping video file reached its end
