"""Danger zones: is a person's anchor point inside a polygon, and for how long."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Polygon

from edge.config.models import ZoneConfig
from edge.dataflow import Track


def anchor_point(xyxy: tuple[float, float, float, float], anchor: str) -> tuple[float, float]:
    """Return the point of a box tested against zones: bottom_center (feet), center or top_center."""
    x1, y1, x2, y2 = xyxy
    cx = (x1 + x2) / 2
    if anchor == "bottom_center":
        return cx, y2
    if anchor == "top_center":
        return cx, y1
    return cx, (y1 + y2) / 2


@dataclass
class Zone:
    """One configured zone, prepared for fast point tests, with per-track dwell timers."""

    config: ZoneConfig
    dwell_timers: dict[int, float] = field(default_factory=dict)  # track id -> when it entered
    polygon: Polygon = field(init=False)

    def __post_init__(self) -> None:
        self.polygon = Polygon(self.config.polygon)
        shapely.prepare(self.polygon)

    def inside(self, tracks: tuple[Track, ...], width: int, height: int) -> np.ndarray:
        """Return a boolean per track: is its anchor point inside the polygon (normalised coordinates)."""
        if not tracks:
            return np.zeros(0, bool)
        points = np.array([anchor_point(t.xyxy, self.config.anchor) for t in tracks], np.float64)
        # intersects, not contains: a person cut by the frame's bottom edge has their anchor on that edge,
        # and a zone drawn to the edge must count them as inside (contains_xy is False on the boundary).
        return shapely.intersects_xy(self.polygon, points[:, 0] / width, points[:, 1] / height)

    def dwelling(self, tracks: tuple[Track, ...], width: int, height: int, now: float) -> list[bool]:
        """Return per track whether it has been inside for at least the zone's minimum dwell time."""
        flags = self.inside(tracks, width, height)
        present = set()
        out = []
        for track, inside in zip(tracks, flags, strict=True):
            if inside:
                present.add(track.track_id)
                entered = self.dwell_timers.setdefault(track.track_id, now)
                out.append(now - entered >= self.config.min_dwell_s)
            else:
                out.append(False)
        for track_id in list(self.dwell_timers):
            if track_id not in present:
                del self.dwell_timers[track_id]
        return out
