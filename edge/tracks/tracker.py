"""Stable person ids from ByteTrack (the `trackers` package), behind a small interface."""

from __future__ import annotations

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from edge.dataflow import Detections, Track
from edge.labels import PERSON


class PersonTracker:
    """Track the `person` boxes of one camera; other classes are associated to persons by the rules."""

    def __init__(
        self,
        frame_rate: float,
        lost_track_s: float = 2.0,
        activation_confidence: float = 0.4,
        high_confidence: float = 0.4,
        min_consecutive_frames: int = 1,
    ) -> None:
        self._tracker = ByteTrackTracker(
            lost_track_buffer=max(1, round(lost_track_s * frame_rate)),
            frame_rate=frame_rate,
            track_activation_threshold=activation_confidence,
            minimum_consecutive_frames=min_consecutive_frames,
            high_conf_det_threshold=high_confidence,
        )
        self._id_offset = 0
        self._max_id = -1

    def update(self, detections: Detections) -> tuple[Track, ...]:
        """Feed one frame's detections; return the confirmed person tracks in this frame."""
        persons = detections.of(PERSON)
        sv_detections = sv.Detections(
            xyxy=persons.xyxy.astype(np.float32),
            confidence=persons.confidence.astype(np.float32),
            class_id=persons.class_id.astype(int),
        )
        # Fixed-rate mode: with timestamps, trackers 2.6 dropped every track at 0.5 s frame gaps (2 fps).
        tracked = self._tracker.update(sv_detections)
        if tracked.tracker_id is None or tracked.confidence is None:
            return ()
        tracks = []
        for xyxy, confidence, track_id in zip(
            tracked.xyxy, tracked.confidence, tracked.tracker_id, strict=True
        ):
            if track_id < 0:  # not yet confirmed
                continue
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            unique_id = int(track_id) + self._id_offset  # the debouncer and zones key their state on it
            self._max_id = max(self._max_id, unique_id)
            tracks.append(Track(unique_id, (x1, y1, x2, y2), float(confidence)))
        return tuple(tracks)

    def reset(self) -> None:
        """Forget every track, e.g. after a camera reconnects; ids keep rising so none is ever reused."""
        self._id_offset = self._max_id + 1
        self._tracker.reset()
