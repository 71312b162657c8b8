"""Rules: which PPE belongs to which person, danger zones, schedules, and the per-frame rule engine."""
