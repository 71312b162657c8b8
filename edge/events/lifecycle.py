"""Debounce raw violations into events with one id from start to end, with cooldown and flood control."""

from __future__ import annotations

import logging
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo

from edge.config.models import RulesConfig
from edge.dataflow import Phase, Rule, SafetyEvent, Violation

log = logging.getLogger(__name__)

Key = tuple[int, Rule, str | None]
Box = tuple[float, float, float, float]

#: A new track whose box overlaps a lost or just-ended event of the same rule this much is the same person.
SAME_PERSON_IOU = 0.3


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two xyxy boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Candidate:
    first_seen: float
    seen: deque[tuple[float, bool]] = field(default_factory=deque)


@dataclass
class _Active:
    event_id: uuid.UUID
    started_at: float
    last_seen: float
    last_update: float
    peak_confidence: float
    violation: Violation
    frame_seq: int


@dataclass
class LifecycleStats:
    """Counts of what the debouncer decided, for metrics and tests."""

    started: int = 0
    ended: int = 0
    suppressed_cooldown: int = 0
    suppressed_rate: int = 0
    relinked: int = 0
    # Flood control by rule: shown in the heartbeat and metrics, so a suppressed alert is never silent.
    suppressed_rate_by_rule: Counter[Rule] = field(default_factory=Counter)


class EventLifecycle:
    """Per camera: turns per-frame violations into start / update / end events."""

    def __init__(self, site_id: str, camera_id: str, rules: RulesConfig, tz: tzinfo) -> None:
        self.site_id = site_id
        self.camera_id = camera_id
        self.rules = rules
        self.tz = tz
        self.stats = LifecycleStats()
        self._candidates: dict[Key, _Candidate] = {}
        self._active: dict[Key, _Active] = {}
        self._cooldown: dict[Key, tuple[float, Box]] = {}  # key -> (cooldown ends, last person box)
        self._recent_starts: deque[float] = deque()
        self._recent_suppressed: deque[float] = deque()  # times of flood-controlled starts, last minute

    @property
    def active_count(self) -> int:
        """Return how many events are open."""
        return len(self._active)

    def suppressed_recently(self, now: float, window_s: float = 60.0) -> int:
        """Return how many new events flood control held back in the `window_s` before `now`."""
        while self._recent_suppressed and self._recent_suppressed[0] < now - window_s:
            self._recent_suppressed.popleft()
        return len(self._recent_suppressed)

    def _time(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz)

    def _event(
        self, key: Key, active: _Active, phase: Phase, now: float, frame_size: tuple[int, int]
    ) -> SafetyEvent:
        v = active.violation
        w, h = frame_size
        boxes = tuple((b[0] / w, b[1] / h, b[2] / w, b[3] / h) for b in (v.person_xyxy, *v.evidence_xyxy))
        return SafetyEvent(
            event_id=active.event_id,
            phase=phase,
            site_id=self.site_id,
            camera_id=self.camera_id,
            rule=v.rule,
            zone=v.zone,
            track_id=key[0],
            started_at=self._time(active.started_at),
            ended_at=self._time(now) if phase is Phase.END else None,
            peak_confidence=round(active.peak_confidence, 4),
            boxes=tuple(tuple(round(c, 5) for c in b) for b in boxes),  # type: ignore[misc]
            frame_seq=active.frame_seq,
        )

    def update(
        self, violations: tuple[Violation, ...], now: float, frame_seq: int, frame_size: tuple[int, int]
    ) -> list[SafetyEvent]:
        """Feed one frame's violations (time `now`, epoch seconds); return the events this frame produced."""
        events: list[SafetyEvent] = []
        seen = {v.key: v for v in violations}
        window = self.rules.debounce_s

        for key, v in seen.items():
            if key in self._active:
                active = self._active[key]
                active.last_seen = now
                active.violation = v
                active.frame_seq = frame_seq
                active.peak_confidence = max(active.peak_confidence, v.confidence)
                if now - active.last_update >= self.rules.update_every_s:
                    active.last_update = now
                    events.append(self._event(key, active, Phase.UPDATE, now, frame_size))
                continue
            if self._in_cooldown(key, v, now):
                continue
            self._candidates.setdefault(key, _Candidate(first_seen=now))

        for key in list(self._candidates):
            cand = self._candidates[key]
            cand.seen.append((now, key in seen))
            while cand.seen and cand.seen[0][0] < now - window - 1e-9:
                cand.seen.popleft()
            if key not in seen and not any(s for _, s in cand.seen):
                del self._candidates[key]
                continue
            if key in seen and now - cand.first_seen >= window:
                share = sum(s for _, s in cand.seen) / len(cand.seen)
                if share >= self.rules.min_share:
                    del self._candidates[key]
                    started = self._start(key, seen[key], cand.first_seen, now, frame_seq, frame_size)
                    if started is not None:
                        events.append(started)

        for key in list(self._active):
            active = self._active[key]
            if now - active.last_seen >= self.rules.end_after_s:
                end = self._event(key, active, Phase.END, active.last_seen, frame_size)
                events.append(replace(end, end_reason="cleared"))
                del self._active[key]
                self._cooldown[key] = (active.last_seen + self._cooldown_s(key), active.violation.person_xyxy)
                self.stats.ended += 1
        self._expire_cooldowns(now)
        return events

    def _cooldown_s(self, key: Key) -> float:
        """How long the same person and rule stay quiet after an event: zone entries have their own, shorter
        one, since each new entry is a new danger (and a cooldown matched by place would silence the next
        worker stepping in at the same spot)."""
        return self.rules.zone_entry_cooldown_s if key[1] is Rule.ZONE_ENTRY else self.rules.cooldown_s

    def _in_cooldown(self, key: Key, v: Violation, now: float) -> bool:
        """Same person and rule just ended (same id, or a new id on an overlapping box): stay quiet."""
        for (track_id, rule, zone), (until, box) in self._cooldown.items():
            if now >= until or rule != key[1] or zone != key[2]:
                continue
            if track_id == key[0] or iou(box, v.person_xyxy) >= SAME_PERSON_IOU:
                self.stats.suppressed_cooldown += 1
                return True
        return False

    def _start(
        self,
        key: Key,
        v: Violation,
        first_seen: float,
        now: float,
        frame_seq: int,
        frame_size: tuple[int, int],
    ) -> SafetyEvent | None:
        # A track id switch: an open event of the same rule whose person vanished where this one stands.
        for old_key, active in list(self._active.items()):
            if (
                old_key[1:] == key[1:]
                and old_key[0] != key[0]
                and active.last_seen < now
                and iou(active.violation.person_xyxy, v.person_xyxy) >= SAME_PERSON_IOU
            ):
                del self._active[old_key]
                active.last_seen, active.violation, active.frame_seq = now, v, frame_seq
                self._active[key] = active
                self.stats.relinked += 1
                return None
        while self._recent_starts and self._recent_starts[0] < now - 60:
            self._recent_starts.popleft()
        # Flood control is for camera cuts that make PPE violations of a whole crowd at once; a person in
        # a danger zone is the violation that kills, so zone entries are never held back nor counted here.
        flood_controlled = v.rule is not Rule.ZONE_ENTRY
        if flood_controlled and len(self._recent_starts) >= self.rules.max_new_events_per_min:
            self.stats.suppressed_rate += 1
            self.stats.suppressed_rate_by_rule[v.rule] += 1
            self._recent_suppressed.append(now)
            self.suppressed_recently(now)  # keep only the last minute
            self._cooldown[key] = (now + self._cooldown_s(key), v.person_xyxy)
            if self.stats.suppressed_rate == 1 or self.stats.suppressed_rate % 100 == 0:
                log.warning(
                    "camera %s: more than %d new events in a minute; suppressing %s (%d so far: %s)",
                    self.camera_id,
                    self.rules.max_new_events_per_min,
                    v.rule,
                    self.stats.suppressed_rate,
                    ", ".join(f"{r} {n}" for r, n in sorted(self.stats.suppressed_rate_by_rule.items())),
                )
            return None
        if flood_controlled:
            self._recent_starts.append(now)
        active = _Active(uuid.uuid4(), first_seen, now, now, v.confidence, v, frame_seq)
        self._active[key] = active
        self.stats.started += 1
        return self._event(key, active, Phase.START, now, frame_size)

    def _expire_cooldowns(self, now: float) -> None:
        for key in [k for k, (until, _) in self._cooldown.items() if now >= until]:
            del self._cooldown[key]

    def close_all(self, now: float, frame_size: tuple[int, int]) -> list[SafetyEvent]:
        """End every open event (shutdown, camera disabled), so no event is left without an end."""
        events = [
            replace(self._event(k, a, Phase.END, a.last_seen, frame_size), end_reason="stopped")
            for k, a in self._active.items()
        ]
        self.stats.ended += len(events)
        self._active.clear()
        self._candidates.clear()
        return events
