"""PPE judged per tracked person over time: each frame's sighting of helmet and vest is evidence, weighed
over a window, and only a track whose evidence says the item is missing raises a violation.

One frame is a poor witness on a real site camera: at 40-70 px a helmet is found in some frames and a
"bare head" in others, and a worker turned away shows neither. So every frame adds one observation per
tracked person and required item: the item seen, its absence seen (a bare head, a no_vest torso), or not
visible (nothing found in the region, the region outside the frame, the person too small). `decide` weighs
a track's observations in the last `rules.ppe_window_s` seconds: missing only when confident absence
fills a large enough share of the window and clearly outweighs every sighting of the item; worn when the
item is seen at least as often as its absence; otherwise undetermined, which is counted, never alerted.
Tracks are forgotten (and their verdicts counted) once unseen for a whole window.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from contract.enums import StrEnum
from edge.config.models import RulesConfig
from edge.dataflow import Track
from edge.violations.ppe import Box, PPEStatus

#: A person box whose top is this close to the frame's top edge may have its head cut off.
EDGE_PX = 1.0


class Seen(StrEnum):
    """What one frame showed of one PPE item on one person."""

    ITEM = "item"  # a helmet / vest box was assigned to the person
    ABSENCE = "absence"  # a bare head / no_vest box was assigned
    UNSEEN = "unseen"  # region in view, nothing found: occluded, turned away, or missed by the detector
    OUT_OF_VIEW = "out_of_view"  # the region is cut off by the frame edge
    TOO_SMALL = "too_small"  # the person is shorter than rules.min_person_px


class Verdict(StrEnum):
    """A track's PPE state for one item, from its evidence over the window."""

    WORN = "worn"
    MISSING = "missing"
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class Observation:
    """One frame's sighting of one item on one tracked person."""

    at: float  # capture time, seconds
    seen: Seen
    confidence: float  # the deciding box's confidence (0 when nothing was found)


@dataclass(frozen=True, slots=True)
class EvidenceRule:
    """The decision parameters (from RulesConfig: ppe_window_s, ppe_min_absent_share, ...)."""

    window_s: float
    min_absent_share: float
    absent_confidence: float
    dominance: float

    @classmethod
    def from_rules(cls, rules: RulesConfig) -> EvidenceRule:
        """Take the parameters from (effective) rules."""
        return cls(
            rules.ppe_window_s,
            rules.ppe_min_absent_share,
            rules.ppe_absent_confidence,
            rules.ppe_absent_dominance,
        )


def decide(observations: Sequence[Observation], observed_for_s: float, rule: EvidenceRule) -> Verdict:
    """Weigh one track's observations of one item in the window; observed_for_s: how long it is tracked."""
    if not observations:
        return Verdict.UNDETERMINED
    items = sum(o.seen is Seen.ITEM for o in observations)
    absences = sum(o.seen is Seen.ABSENCE for o in observations)
    confident = sum(o.seen is Seen.ABSENCE and o.confidence >= rule.absent_confidence for o in observations)
    # A full window first: a person who just appeared has not shown enough to be accused. Every sighting of
    # the item counts against "missing", whatever its confidence: a helmet found now and then is a helmet.
    if (
        observed_for_s >= rule.window_s - 1e-6
        and confident >= rule.min_absent_share * len(observations)
        and confident >= rule.dominance * items
    ):
        return Verdict.MISSING
    if items and items >= absences:
        return Verdict.WORN
    return Verdict.UNDETERMINED


def observe(status: PPEStatus, item: str, person_xyxy: Box, at: float) -> Observation:
    """Turn one frame's assignment for one person into an observation of one item."""
    if not status.judged:
        return Observation(at, Seen.TOO_SMALL, 0.0)
    box = status.head_box if item == "helmet" else status.torso_box
    if box is None:
        cut = item == "helmet" and person_xyxy[1] <= EDGE_PX
        return Observation(at, Seen.OUT_OF_VIEW if cut else Seen.UNSEEN, 0.0)
    missing = status.helmet_missing if item == "helmet" else status.vest_missing
    confidence = status.helmet_confidence if item == "helmet" else status.vest_confidence
    return Observation(at, Seen.ABSENCE if missing else Seen.ITEM, float(confidence))


@dataclass(frozen=True, slots=True)
class TrackPPE:
    """One track's judgement of one item in the current frame."""

    verdict: Verdict
    confidence: float  # mean confidence of the confident absence sightings in the window (0 if none)
    evidence_box: Box | None  # the latest absence box, moved with the person's box to where they are now


@dataclass
class EvidenceStats:
    """Counts for metrics: tracked persons now, and ended tracks, by item and verdict."""

    now: Counter[tuple[str, Verdict]] = field(default_factory=Counter)
    # Ended tracks by the strongest verdict they reached: missing, else worn, else undetermined (never judged)
    ended: Counter[tuple[str, Verdict]] = field(default_factory=Counter)


@dataclass
class _TrackEvidence:
    first_seen: float
    last_seen: float
    windows: dict[str, deque[Observation]] = field(default_factory=dict)
    reached: dict[str, Verdict] = field(default_factory=dict)
    absence_box: dict[str, Box] = field(default_factory=dict)  # relative to the person box


_STRENGTH = {Verdict.UNDETERMINED: 0, Verdict.WORN: 1, Verdict.MISSING: 2}


class PPEEvidence:
    """Per camera: each track's helmet and vest observations over the window, and their verdicts."""

    def __init__(self, rules: RulesConfig) -> None:
        self.rule = EvidenceRule.from_rules(rules)
        self.stats = EvidenceStats()
        self._tracks: dict[int, _TrackEvidence] = {}

    def update(
        self, at: float, tracks: Sequence[Track], statuses: Sequence[PPEStatus], items: Iterable[str]
    ) -> dict[int, dict[str, TrackPPE]]:
        """Add this frame's observations (capture time `at`); return each track's judgement per item."""
        items = tuple(items)
        out: dict[int, dict[str, TrackPPE]] = {}
        self.stats.now.clear()
        for track, status in zip(tracks, statuses, strict=True):
            state = self._tracks.setdefault(track.track_id, _TrackEvidence(at, at))
            state.last_seen = at
            out[track.track_id] = {}
            for item in items:
                observation = observe(status, item, track.xyxy, at)
                window = state.windows.setdefault(item, deque())
                window.append(observation)
                while window[0].at < at - self.rule.window_s + 1e-9:
                    window.popleft()
                box = status.head_box if item == "helmet" else status.torso_box
                if observation.seen is Seen.ABSENCE and box is not None:
                    state.absence_box[item] = _relative(box, track.xyxy)
                verdict = decide(window, at - state.first_seen, self.rule)
                if _STRENGTH[verdict] > _STRENGTH[state.reached.get(item, Verdict.UNDETERMINED)]:
                    state.reached[item] = verdict
                out[track.track_id][item] = self._judgement(verdict, window, state, item, track.xyxy)
                self.stats.now[(item, verdict)] += 1
        self._forget(at)
        return out

    def _judgement(
        self, verdict: Verdict, window: deque[Observation], state: _TrackEvidence, item: str, person: Box
    ) -> TrackPPE:
        if verdict is not Verdict.MISSING:
            return TrackPPE(verdict, 0.0, None)
        confident = [
            o.confidence
            for o in window
            if o.seen is Seen.ABSENCE and o.confidence >= self.rule.absent_confidence
        ]
        relative = state.absence_box.get(item)
        box = _absolute(relative, person) if relative is not None else None
        return TrackPPE(verdict, sum(confident) / len(confident), box)

    def _forget(self, now: float) -> None:
        """Drop tracks unseen for a whole window (their evidence has expired), counting their verdicts."""
        for track_id in [k for k, s in self._tracks.items() if now - s.last_seen > self.rule.window_s]:
            self._end(self._tracks.pop(track_id))

    def end_all(self) -> None:
        """Forget every track (camera reconnect: ids from the old stream never come back)."""
        for state in self._tracks.values():
            self._end(state)
        self._tracks.clear()
        self.stats.now.clear()

    def _end(self, state: _TrackEvidence) -> None:
        for item in state.windows:
            self.stats.ended[(item, state.reached.get(item, Verdict.UNDETERMINED))] += 1

    def __len__(self) -> int:
        return len(self._tracks)


def _relative(box: Box, person: Box) -> Box:
    w, h = max(person[2] - person[0], 1e-6), max(person[3] - person[1], 1e-6)
    return (
        (box[0] - person[0]) / w,
        (box[1] - person[1]) / h,
        (box[2] - person[0]) / w,
        (box[3] - person[1]) / h,
    )


def _absolute(box: Box, person: Box) -> Box:
    w, h = person[2] - person[0], person[3] - person[1]
    return (person[0] + box[0] * w, person[1] + box[1] * h, person[0] + box[2] * w, person[1] + box[3] * h)
