"""Danger zones (anchor point in polygon, dwell) and schedules in the site's time zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

from edge.config.models import Schedule, ZoneConfig
from edge.dataflow import Track
from edge.violations.schedule import is_active
from edge.violations.zones import Zone

HK = ZoneInfo("Asia/Hong_Kong")
SQUARE = [(0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (0.0, 1.0)]


def test_feet_inside_zone_counts_even_when_head_is_outside():
    zone = Zone(ZoneConfig(id="pit", polygon=SQUARE))
    # Person standing with feet at y=0.6 (inside) and head at y=0.2 (outside) in a 100x100 frame.
    inside = zone.inside((Track(1, (10, 20, 30, 60), 0.9), Track(2, (60, 20, 80, 60), 0.9)), 100, 100)
    assert list(inside) == [True, False]


def test_a_person_cut_by_the_bottom_edge_is_inside_a_zone_drawn_to_that_edge():
    zone = Zone(ZoneConfig(id="pit", polygon=SQUARE))
    # The box is clipped to the frame, so the feet anchor lies exactly on the zone's bottom border (y = 1.0).
    assert list(zone.inside((Track(1, (10, 40, 30, 100), 0.9),), 100, 100)) == [True]


def test_center_anchor_changes_the_decision():
    zone = Zone(ZoneConfig(id="pit", polygon=SQUARE, anchor="center"))
    assert list(zone.inside((Track(1, (10, 20, 30, 60), 0.9),), 100, 100)) == [False]


def test_dwell_time_must_pass_before_entry_counts():
    zone = Zone(ZoneConfig(id="pit", polygon=SQUARE, min_dwell_s=2.0))
    track = (Track(7, (10, 60, 30, 90), 0.9),)
    assert zone.dwelling(track, 100, 100, now=100.0) == [False]
    assert zone.dwelling(track, 100, 100, now=101.0) == [False]
    assert zone.dwelling(track, 100, 100, now=102.0) == [True]
    # Leaving resets the timer.
    assert zone.dwelling((Track(7, (60, 10, 80, 40), 0.9),), 100, 100, now=103.0) == [False]
    assert zone.dwelling(track, 100, 100, now=104.0) == [False]


def test_working_hours_schedule():
    hours = [Schedule(days=["mon", "tue", "wed", "thu", "fri"], start="07:00", end="19:00")]
    assert is_active(hours, datetime(2026, 11, 23, 8, 0, tzinfo=HK))  # Monday morning
    assert not is_active(hours, datetime(2026, 11, 23, 20, 0, tzinfo=HK))  # Monday evening
    assert not is_active(hours, datetime(2026, 11, 22, 8, 0, tzinfo=HK))  # Sunday
    assert is_active([], datetime(2026, 11, 22, 3, 0, tzinfo=HK))


def test_overnight_schedule_belongs_to_the_day_it_starts():
    night = [Schedule(days=["fri"], start="22:00", end="06:00")]
    assert is_active(night, datetime(2026, 11, 27, 23, 0, tzinfo=HK))  # Friday 23:00
    assert is_active(night, datetime(2026, 11, 28, 5, 0, tzinfo=HK))  # Saturday 05:00
    assert not is_active(night, datetime(2026, 11, 27, 5, 0, tzinfo=HK))  # Friday 05:00 (Thursday's night)
