"""Whether a rule or zone is active now, from schedules in the site's time zone."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from edge.config.models import WEEKDAYS, Schedule


def is_active(schedules: Sequence[Schedule], now: datetime) -> bool:
    """Return True when no schedule is set, or when `now` (timezone-aware, site time) falls in any window.

    A window whose start is after its end runs past midnight and belongs to the day it starts on.
    """
    if not schedules:
        return True
    t = now.timetz().replace(tzinfo=None)
    today = WEEKDAYS[now.weekday()]
    yesterday = WEEKDAYS[(now - timedelta(days=1)).weekday()]
    for schedule in schedules:
        if schedule.start <= schedule.end:
            if today in schedule.days and schedule.start <= t <= schedule.end:
                return True
        else:  # overnight window, e.g. 22:00-06:00
            if today in schedule.days and t >= schedule.start:
                return True
            if yesterday in schedule.days and t <= schedule.end:
                return True
    return False
