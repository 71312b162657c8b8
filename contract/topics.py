"""The MQTT topic tree, built in one place; fixed words between ids so an id never collides with a level."""

from __future__ import annotations

import re
from dataclasses import dataclass

from contract.enums import StrEnum
from contract.ids import check_id as _check_id
from contract.ids import is_id

_PREFIX = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class TopicKind(StrEnum):
    """What a topic carries; `alerts tail` and the dashboard dispatch on it."""

    EVENTS = "events"
    CAMERA_STATUS = "camera_status"
    SNAPSHOT = "snapshot"
    EDGE_STATUS = "edge_status"
    HEARTBEAT = "heartbeat"
    ALARM = "alarm"
    CONTROL = "control"
    CONTROL_REPLY = "control_reply"
    EVIDENCE = "evidence"
    ZONES = "zones"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A topic taken apart: which site, and the camera, edge or alarm target it is about."""

    kind: TopicKind
    site: str
    camera: str | None = None
    edge: str | None = None
    target_kind: str | None = None  # alarms: "zones" or "cameras"
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic of one site under a configurable prefix; ids are checked so they hold no wildcards."""

    prefix: str
    site: str

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(
                f"topic prefix {self.prefix!r}: levels of letters, digits, '_' or '-' separated by '/'"
            )
        _check_id(self.site, "site id")

    @property
    def root(self) -> str:
        """Return `<prefix>/<site>`, the level every topic of this site starts with."""
        return f"{self.prefix}/{self.site}"

    def events(self, camera: str) -> str:
        """Violation start, update and end messages of one camera."""
        return f"{self.root}/cameras/{_check_id(camera, 'camera id')}/events"

    def camera_status(self, camera: str) -> str:
        """Retained stream status of one camera."""
        return f"{self.root}/cameras/{_check_id(camera, 'camera id')}/status"

    def snapshot(self, camera: str) -> str:
        """Retained latest view of one camera (JPEG: heads blurred, camera id and time drawn)."""
        return f"{self.root}/cameras/{_check_id(camera, 'camera id')}/snapshot"

    def edge_status(self, edge: str) -> str:
        """Retained online/offline of one edge box; offline is its Last Will."""
        return f"{self.root}/edges/{_check_id(edge, 'edge id')}/status"

    def heartbeat(self, edge: str) -> str:
        """Periodic fps, latency and queue figures of one edge box."""
        return f"{self.root}/edges/{_check_id(edge, 'edge id')}/heartbeat"

    def control(self, edge: str) -> str:
        """Commands that enable or disable a rule or camera on one edge box."""
        return f"{self.root}/edges/{_check_id(edge, 'edge id')}/control"

    def control_reply(self, edge: str, client: str | None = None) -> str:
        """Where replies go: `.../control/reply` when a command names no MQTT 5 response topic, else the
        sender's own `.../control/reply/<client>` (whatever response topic it named)."""
        base = f"{self.root}/edges/{_check_id(edge, 'edge id')}/control/reply"
        return base if client is None else f"{base}/{_check_id(client, 'control client id')}"

    def evidence(self, edge: str) -> str:
        """Chunks of evidence files (snapshots, clips) pushed by one edge box to the dashboard."""
        return f"{self.root}/edges/{_check_id(edge, 'edge id')}/evidence"

    def zones(self, camera: str) -> str:
        """Retained danger-zone polygons one camera applies now (the dashboard's zone editor reads it)."""
        return f"{self.root}/cameras/{_check_id(camera, 'camera id')}/zones"

    def alarm_zone(self, zone: str) -> str:
        """Alarm commands for sirens, beacons or speakers at a danger zone."""
        return f"{self.root}/alarms/zones/{_check_id(zone, 'zone id')}"

    def alarm_camera(self, camera: str) -> str:
        """Alarm commands for sirens, beacons or speakers near a camera (PPE violations)."""
        return f"{self.root}/alarms/cameras/{_check_id(camera, 'camera id')}"

    def all_events(self) -> str:
        """Subscription filter for the events of every camera of the site."""
        return f"{self.root}/cameras/+/events"

    def everything(self) -> str:
        """Subscription filter for every message of the site."""
        return f"{self.root}/#"

    def parse(self, topic: str) -> ParsedTopic | None:
        """Take a topic of this prefix apart; None when it is not one of ours."""
        return parse_topic(self.prefix, topic)


def parse_topic(prefix: str, topic: str) -> ParsedTopic | None:
    """Take a topic under `prefix` apart (any site); None when it is not one of ours."""
    if not topic.startswith(prefix + "/"):
        return None
    levels = topic[len(prefix) + 1 :].split("/")
    if len(levels) < 3 or not is_id(levels[0]):
        return None
    site, section, rest = levels[0], levels[1], levels[2:]
    if not is_id(rest[0]):
        return None
    if section == "cameras" and len(rest) == 2:
        kinds = {
            "events": TopicKind.EVENTS,
            "status": TopicKind.CAMERA_STATUS,
            "snapshot": TopicKind.SNAPSHOT,
            "zones": TopicKind.ZONES,
        }
        kind = kinds.get(rest[1])
        return ParsedTopic(kind, site, camera=rest[0]) if kind else None
    if section == "edges":
        tail = "/".join(rest[1:])
        edge_kinds = {
            "status": TopicKind.EDGE_STATUS,
            "heartbeat": TopicKind.HEARTBEAT,
            "control": TopicKind.CONTROL,
            "control/reply": TopicKind.CONTROL_REPLY,
            "evidence": TopicKind.EVIDENCE,
        }
        kind = edge_kinds.get(tail)
        if kind is None and len(rest) == 4 and rest[1:3] == ["control", "reply"] and is_id(rest[3]):
            kind = TopicKind.CONTROL_REPLY  # a sender's own reply topic
        return ParsedTopic(kind, site, edge=rest[0]) if kind else None
    if section == "alarms" and len(rest) == 2 and rest[0] in ("zones", "cameras") and is_id(rest[1]):
        camera = rest[1] if rest[0] == "cameras" else None
        return ParsedTopic(TopicKind.ALARM, site, camera=camera, target_kind=rest[0], target=rest[1])
    return None
