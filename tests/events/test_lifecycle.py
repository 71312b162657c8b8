"""Debounce, one event per person per violation, end with duration, cooldown and flood control."""

from zoneinfo import ZoneInfo

from edge.config.models import RulesConfig
from edge.dataflow import Phase, Rule, Violation
from edge.events.lifecycle import EventLifecycle

SIZE = (1000, 500)


def violation(track: int, box=(100, 100, 200, 400), rule=Rule.NO_HELMET, conf=0.8) -> Violation:
    return Violation("cam1", track, rule, None, conf, box)


def run(life: EventLifecycle, frames):
    """Feed (time, violations) pairs; return all events."""
    out = []
    for seq, (t, vs) in enumerate(frames):
        out.extend(life.update(tuple(vs), t, seq, SIZE))
    return out


def make(**rules) -> EventLifecycle:
    return EventLifecycle("site", "cam1", RulesConfig(**rules), ZoneInfo("Asia/Hong_Kong"))


def test_short_flicker_does_not_fire():
    life = make(debounce_s=1.0, min_share=0.6)
    events = run(life, [(0.0, [violation(1)]), (0.2, []), (0.4, []), (0.6, []), (0.8, []), (1.0, [])])
    assert events == []


def test_sustained_violation_starts_once_then_ends_with_duration():
    life = make(debounce_s=1.0, min_share=0.6, end_after_s=1.0, update_every_s=100)
    frames = [(t / 5, [violation(1, conf=0.5 + t / 100)]) for t in range(0, 26)]  # 5 s seen
    frames += [(5.2 + t / 5, []) for t in range(0, 10)]  # then gone
    events = run(life, frames)
    phases = [e.phase for e in events]
    assert phases == [Phase.START, Phase.END]
    start, end = events
    assert start.event_id == end.event_id
    assert start.started_at.timestamp() == 0.0  # the start is when it began holding, not when it fired
    assert abs(end.duration_s - 5.0) < 1e-6
    assert end.peak_confidence == 0.75
    assert start.boxes[0] == (0.1, 0.2, 0.2, 0.8)  # normalised


def test_share_of_frames_allows_detector_misses():
    life = make(debounce_s=1.0, min_share=0.6)
    pattern = [True, True, False, True, True, False, True]  # 5/7 seen
    events = run(life, [(i / 6, [violation(1)] if seen else []) for i, seen in enumerate(pattern)])
    assert [e.phase for e in events] == [Phase.START]


def test_updates_while_ongoing_share_the_event_id():
    life = make(debounce_s=0, update_every_s=1.0, end_after_s=5)
    events = run(life, [(t / 2, [violation(1)]) for t in range(0, 7)])
    assert [e.phase for e in events] == [Phase.START, Phase.UPDATE, Phase.UPDATE, Phase.UPDATE]
    assert len({e.event_id for e in events}) == 1


def test_cooldown_keeps_the_same_person_quiet():
    life = make(debounce_s=0, end_after_s=0.5, cooldown_s=10)
    frames = [
        (0.0, [violation(1)]),
        (1.0, []),
        (2.0, [violation(1)]),
        (3.0, [violation(1)]),
        (15.0, [violation(1)]),
    ]
    events = run(life, frames)
    assert [e.phase for e in events] == [Phase.START, Phase.END, Phase.START]
    assert life.stats.suppressed_cooldown == 2


def test_a_new_zone_entry_at_the_same_spot_alerts_after_the_short_zone_cooldown():
    life = make(debounce_s=0, end_after_s=0.5, cooldown_s=30, zone_entry_cooldown_s=5)

    def entry(track: int) -> Violation:
        return Violation("cam1", track, Rule.ZONE_ENTRY, "pit", 0.9, (100, 100, 200, 400))

    frames = [
        (0.0, [entry(1)]),
        (1.0, []),
        (3.0, [entry(2)]),  # another track at the same spot within 5 s: taken for the same person
        (4.0, []),
        (9.0, [entry(3)]),  # 8 s after the end: a new entry, although PPE's 30 s cooldown would still run
        (10.0, []),
    ]
    phases = [(e.phase, e.rule) for e in run(life, frames)]
    assert phases == [(Phase.START, Rule.ZONE_ENTRY), (Phase.END, Rule.ZONE_ENTRY)] * 2
    assert life.stats.suppressed_cooldown == 1


def test_track_id_switch_continues_the_same_event():
    life = make(debounce_s=0.4, min_share=0.5, end_after_s=2.0)
    frames = [(t / 5, [violation(1)]) for t in range(0, 10)]
    frames += [(2.0 + t / 5, [violation(2, box=(104, 102, 204, 402))]) for t in range(0, 10)]
    events = run(life, frames)
    assert [e.phase for e in events] == [Phase.START]
    assert life.stats.relinked == 1


def test_camera_cut_does_not_flood_events():
    life = make(debounce_s=0, max_new_events_per_min=5)
    frames = [(float(t), [violation(100 + t, box=(t * 30, 0, t * 30 + 20, 100))]) for t in range(20)]
    events = run(life, frames)
    assert sum(e.phase is Phase.START for e in events) == 5
    assert life.stats.suppressed_rate == 15
    # The live view shows how many were held back in the last minute: all 15, then none a minute on.
    assert life.suppressed_recently(19.0) == 15
    assert life.suppressed_recently(69.0) == 11  # those of t=5..8 are over a minute old
    assert life.suppressed_recently(80.0) == 0
    assert life.stats.suppressed_rate == 15, "the since-start count stays"


def test_close_all_ends_every_open_event():
    life = make(debounce_s=0)
    run(life, [(0.0, [violation(1), violation(2, box=(500, 0, 600, 300), rule=Rule.NO_VEST)])])
    ended = life.close_all(1.0, SIZE)
    assert {e.phase for e in ended} == {Phase.END} and len(ended) == 2 and life.active_count == 0


def test_flood_control_counts_by_rule_and_never_holds_back_a_danger_zone_entry():
    life = make(debounce_s=0, max_new_events_per_min=2)
    frames = []
    for t in range(6):  # a camera cut: six bare heads, then six people in the crane zone, all new tracks
        box = (t * 30, 0, t * 30 + 20, 100)
        frames.append((float(t), [violation(100 + t, box=box)]))
    for t in range(6):
        box = (t * 30, 200, t * 30 + 20, 300)
        frames.append((6.0 + t, [Violation("cam1", 200 + t, Rule.ZONE_ENTRY, "crane", 0.8, box)]))
    events = run(life, frames)
    starts = [e for e in events if e.phase is Phase.START]
    assert [e.rule for e in starts].count(Rule.NO_HELMET) == 2
    assert [e.rule for e in starts].count(Rule.ZONE_ENTRY) == 6  # every zone entry alerts
    assert life.stats.suppressed_rate_by_rule == {Rule.NO_HELMET: 4}


def test_ends_say_why_they_ended():
    life = make(debounce_s=0, end_after_s=1.0)
    events = run(life, [(0.0, [violation(1)]), (2.0, [violation(2, box=(500, 0, 600, 300))])])
    assert [(e.track_id, e.phase, e.end_reason) for e in events] == [
        (1, Phase.START, None),
        (2, Phase.START, None),
        (1, Phase.END, "cleared"),
    ]
    assert [e.end_reason for e in life.close_all(3.0, SIZE)] == ["stopped"]
