"""One camera's rules applied to one frame: tracked persons in, raw (not yet debounced) violations out."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import numpy as np

from edge.config.models import CameraConfig, RulesConfig, ZoneConfig
from edge.dataflow import Detections, Frame, Rule, Track, Violation
from edge.detections.resolution import DetectPlan
from edge.violations.ppe import assign_ppe
from edge.violations.ppe_evidence import PPEEvidence, TrackPPE, Verdict
from edge.violations.schedule import is_active
from edge.violations.zones import Zone

log = logging.getLogger(__name__)

PPE_RULES = {"helmet": Rule.NO_HELMET, "vest": Rule.NO_VEST}
PPE_ITEMS = tuple(PPE_RULES)


def effective_rules(camera: CameraConfig, site_rules: RulesConfig) -> RulesConfig:
    """Merge a camera's overrides onto the site-wide rules."""
    overrides = {k: v for k, v in camera.rules.model_dump(exclude_none=True).items()}
    if "schedules" in overrides:
        overrides["schedules"] = camera.rules.schedules
    return site_rules.model_copy(update=overrides)


class RuleEngine:
    """PPE and zone rules for one camera; rules can be switched off at run time (control topic).

    PPE is judged per tracked person over time (edge/violations/ppe_evidence.py), never from one frame.
    """

    def __init__(self, camera: CameraConfig, site_rules: RulesConfig) -> None:
        self.camera_id = camera.id
        self.rules = effective_rules(camera, site_rules)
        self.zones = [Zone(z) for z in camera.zones]
        self.disabled: set[Rule] = set()
        self.evidence = PPEEvidence(self.rules)
        #: Each track's PPE judgement in the latest frame (track id -> item -> judgement), for reports.
        self.ppe: dict[int, dict[str, TrackPPE]] = {}
        if "missing_when_unseen" in site_rules.model_fields_set | camera.rules.model_fields_set:
            log.warning(
                "camera %s: rules.missing_when_unseen only changes single-photo evaluation now; alerts are"
                " judged per tracked person over time (rules.ppe_window_s, ppe_min_absent_share, ...)",
                camera.id,
            )

    def set_zones(self, zones: list[ZoneConfig]) -> None:
        """Replace the zones (zone editor); people inside a zone that keeps its id keep their dwell time."""
        timers = {zone.config.id: zone.dwell_timers for zone in self.zones}
        self.zones = [Zone(z, timers.get(z.id, {})) for z in zones]

    def evaluate(
        self,
        frame: Frame,
        detections: Detections,
        tracks: tuple[Track, ...],
        now: datetime,
        plan: DetectPlan | None = None,
    ) -> tuple[Violation, ...]:
        """Return every rule broken in this frame; `now` is the frame's capture time in site time, `plan`
        how the frame was detected (persons' heights at the model input; frame pixels without it)."""
        if not tracks:
            self.ppe = self.evidence.update(frame.captured_at, (), (), ())
            for zone in self.zones:
                zone.dwelling(tracks, *frame.size, frame.captured_at)
            return ()
        width, height = frame.size
        persons = np.array([t.xyxy for t in tracks], np.float32)
        heights = plan.heights_at_input(persons) if plan is not None else None
        confidence = np.array([t.confidence for t in tracks])
        statuses = assign_ppe(persons, detections, self.rules, confidence, heights)
        required = dict.fromkeys([*self.rules.require, *(i for z in self.zones for i in z.config.require)])
        self.ppe = ppe = self.evidence.update(frame.captured_at, tracks, statuses, required)
        out: list[Violation] = []
        site_active = is_active(self.rules.schedules, now)
        if site_active:
            for item in self.rules.require:
                out.extend(self._ppe_violations(item, None, tracks, ppe, range(len(tracks))))
        for zone in self.zones:
            dwelling = zone.dwelling(tracks, width, height, frame.captured_at)
            if not is_active(zone.config.schedules, now):
                continue
            inside = [i for i, d in enumerate(dwelling) if d]
            if zone.config.entry_forbidden and Rule.ZONE_ENTRY not in self.disabled:
                for i in inside:
                    t = tracks[i]
                    out.append(
                        Violation(
                            self.camera_id, t.track_id, Rule.ZONE_ENTRY, zone.config.id, t.confidence, t.xyxy
                        )
                    )
            for item in zone.config.require:
                if site_active and item in self.rules.require:
                    continue  # already required everywhere in view right now; one event, not two
                out.extend(self._ppe_violations(item, zone.config.id, tracks, ppe, inside))
        return tuple(out)

    def _ppe_violations(
        self,
        item: str,
        zone: str | None,
        tracks: tuple[Track, ...],
        ppe: dict[int, dict[str, TrackPPE]],
        which: Iterable[int],
    ) -> list[Violation]:
        """A violation for each track whose evidence over the window says the item is missing."""
        rule = PPE_RULES[item]
        if rule in self.disabled:
            return []
        out = []
        for i in which:
            t = tracks[i]
            judged = ppe[t.track_id][item]
            if judged.verdict is not Verdict.MISSING:
                continue
            evidence = (judged.evidence_box,) if judged.evidence_box else ()
            out.append(Violation(self.camera_id, t.track_id, rule, zone, judged.confidence, t.xyxy, evidence))
        return out
