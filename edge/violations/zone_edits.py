"""Danger zones edited at run time by the dashboard's zone editor (`set_zones`): checked, merged onto the
camera's configured zones, applied without a restart, and kept across restarts in an override file.

Only danger zones (`entry_forbidden: true`) are edited this way: a camera's PPE-only zones stay as the YAML
has them, and an edited zone may not take one of their ids. A danger zone edited in place keeps its other
settings (anchor, minimum dwell, schedules, extra PPE); a new one gets the defaults.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from contract.payloads import SCHEMA_VERSION, CameraZonesMessage, ZonePolygon
from edge.config.loader import format_location
from edge.config.models import SiteConfig, ZoneConfig

log = logging.getLogger(__name__)

#: The override file's name, in the folder of the MQTT outbox (the edge's data folder).
OVERRIDE_FILE = "zones-override.json"


class ZoneEditError(ValueError):
    """A zone edit that cannot be applied; the message says why, for the reply to the dashboard."""


class _CameraOverride(BaseModel):
    """One camera's danger zones as last set from the dashboard."""

    model_config = ConfigDict(extra="forbid")

    zones: list[ZonePolygon]
    at: datetime


class OverrideFile(BaseModel):
    """The override file: per camera id, the danger zones that replace the YAML's."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = 1
    cameras: dict[str, _CameraOverride]


def danger_zones(zones: Sequence[ZoneConfig]) -> list[ZonePolygon]:
    """Return a camera's danger zones as the zone editor sees them (PPE-only zones left out)."""
    return [
        ZonePolygon(id=z.id, name=z.name, polygon=[(x, y) for x, y in z.polygon])
        for z in zones
        if z.entry_forbidden
    ]


def merge_zones(current: Sequence[ZoneConfig], edited: Sequence[ZonePolygon]) -> list[ZoneConfig]:
    """Return the camera's zones with its danger zones replaced by `edited`; ZoneEditError says why not."""
    ppe_only = [z for z in current if not z.entry_forbidden]
    ppe_ids = {z.id for z in ppe_only}
    previous = {z.id: z for z in current if z.entry_forbidden}
    seen: set[str] = set()
    merged = list(ppe_only)
    for i, zone in enumerate(edited):
        where = f"zones[{i}] ({zone.id})"
        if zone.id in ppe_ids:
            raise ZoneEditError(
                f"{where}: the id is taken by a PPE-only zone of this camera, which set_zones leaves alone"
            )
        if zone.id in seen:
            raise ZoneEditError(f"{where}: the id is used twice")
        seen.add(zone.id)
        base = previous.get(zone.id)
        values = base.model_dump() if base is not None else {}
        values.update(id=zone.id, name=zone.name, polygon=list(zone.polygon), entry_forbidden=True)
        try:
            merged.append(ZoneConfig.model_validate(values))
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            reason = str(err["msg"]).removeprefix("Value error, ")
            raise ZoneEditError(f"{where}: {format_location(tuple(err['loc']))}: {reason}") from None
    return merged


def load_overrides(path: Path) -> dict[str, list[ZonePolygon]]:
    """Read the override file: camera id -> danger zones; {} when there is none or it cannot be used."""
    return {camera: override.zones for camera, override in _read(path).items()}


def _read(path: Path) -> dict[str, _CameraOverride]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.error("zone overrides %s cannot be read (%s); using the zones of the config file", path, exc)
        return {}
    try:
        data = OverrideFile.model_validate_json(text)
    except ValidationError as exc:
        log.error(
            "zone overrides %s are not valid (%s); using the zones of the config file",
            path,
            exc.errors(include_url=False)[0]["msg"],
        )
        return {}
    return dict(data.cameras)


def apply_overrides(config: SiteConfig, path: Path) -> SiteConfig:
    """Return the config with each camera's danger zones replaced by those saved in the override file."""
    overrides = load_overrides(path)
    if not overrides:
        return config
    cameras = []
    for camera in config.cameras:
        edited = overrides.get(camera.id)
        if edited is None:
            cameras.append(camera)
            continue
        try:
            zones = merge_zones(camera.zones, edited)
        except ZoneEditError as exc:
            log.error(
                "camera %s: zone overrides in %s not applied (%s); using the config file's",
                camera.id,
                path,
                exc,
            )
            cameras.append(camera)
            continue
        log.info(
            "camera %s: danger zones set from the dashboard (%s) replace the config file's, from %s",
            camera.id,
            ", ".join(z.id for z in edited) or "none",
            path,
        )
        cameras.append(camera.model_copy(update={"zones": zones}))
    for camera_id in overrides.keys() - {c.id for c in config.cameras}:
        log.warning(
            "zone overrides in %s name camera %s, which is not in the config; ignored", path, camera_id
        )
    return config.model_copy(update={"cameras": cameras})


class ZoneTarget(Protocol):
    """The running app as the editor needs it: each camera's zones now, and a way to replace them."""

    def camera_zones(self) -> Mapping[str, Sequence[ZoneConfig]]: ...
    def set_zones(self, camera_id: str, zones: list[ZoneConfig]) -> None: ...


@dataclass(frozen=True, slots=True)
class ZoneChange:
    """An applied edit: the message for the reply, and the retained message to publish."""

    reply: str
    published: CameraZonesMessage


class ZoneEditor:
    """Applies `set_zones`: check, save the override file, apply to the running camera, publish retained."""

    def __init__(
        self,
        target: ZoneTarget,
        *,
        path: Path,
        site: str,
        edge: str,
        clock: Callable[[], datetime],
        publish: Callable[[CameraZonesMessage], None] | None = None,
    ) -> None:
        self._target = target
        self._path = Path(path)
        self._site = site
        self._edge = edge
        self._clock = clock
        self._publish = publish
        self._lock = threading.Lock()
        self._saved = _read(self._path)  # kept whole: saving one camera's edit keeps the others'
        self._applied_at: dict[str, datetime] = {}

    def apply(self, camera_id: str, zones: Sequence[ZonePolygon]) -> ZoneChange:
        """Replace a camera's danger zones now and for later starts; ZoneEditError says why not."""
        with self._lock:
            current = self._target.camera_zones()
            if camera_id not in current:
                known = ", ".join(sorted(current)) or "none"
                raise ZoneEditError(f"unknown camera {camera_id!r} (cameras running on this edge: {known})")
            merged = merge_zones(current[camera_id], zones)
            now = self._clock()
            # Saved before it is applied: a zone that guards people must not silently revert on a restart.
            saved = dict(self._saved)
            saved[camera_id] = _CameraOverride(zones=list(zones), at=now)
            try:
                _write_atomically(self._path, OverrideFile(cameras=saved).model_dump_json(indent=2))
            except OSError as exc:
                raise ZoneEditError(f"zones not applied: cannot save {self._path} ({exc.strerror})") from None
            self._saved = saved
            self._target.set_zones(camera_id, merged)
            self._applied_at[camera_id] = now
            message = self._message(camera_id, merged, now)
        log.info(
            "camera %s: danger zones set from the dashboard: %s (saved in %s)",
            camera_id,
            ", ".join(z.id for z in zones) or "none",
            self._path,
        )
        if self._publish is not None:
            self._publish(message)
        noun = "zone" if len(zones) == 1 else "zones"
        return ZoneChange(f"applied {len(zones)} {noun} to camera {camera_id}", message)

    def publish_all(self) -> None:
        """Publish every camera's danger zones now applied (retained), as at start."""
        if self._publish is None:
            return
        now = self._clock()
        for camera_id, zones in self._target.camera_zones().items():
            self._publish(self._message(camera_id, zones, self._applied_at.setdefault(camera_id, now)))

    def _message(self, camera_id: str, zones: Sequence[ZoneConfig], at: datetime) -> CameraZonesMessage:
        return CameraZonesMessage(
            schema_version=SCHEMA_VERSION,
            site=self._site,
            edge=self._edge,
            camera=camera_id,
            zones=danger_zones(zones),
            at=at,
        )


def _write_atomically(path: Path, text: str) -> None:
    """Write to a temporary name, sync and rename, so a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
