"""Zone edits from the dashboard: merged onto the configured zones, checked, and kept in an override file."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from contract.payloads import ZonePolygon
from edge.config import load_config
from edge.config.models import CameraConfig, RulesConfig, ZoneConfig
from edge.violations.engine import RuleEngine
from edge.violations.zone_edits import ZoneEditError, apply_overrides, danger_zones, merge_zones

REPO = Path(__file__).resolve().parents[2]
SQUARE = [(0.1, 0.1), (0.6, 0.1), (0.6, 0.6), (0.1, 0.6)]
CRANE = ZoneConfig(id="crane", polygon=SQUARE, min_dwell_s=2.0, anchor="center")
HOIST = ZoneConfig(id="hoist", polygon=SQUARE, entry_forbidden=False, require=["helmet"])


def test_danger_zones_are_replaced_and_ppe_only_zones_left_alone() -> None:
    edited = [
        ZonePolygon(id="crane", polygon=[(0.2, 0.2), (0.9, 0.2), (0.9, 0.9)]),
        ZonePolygon(id="pit", name="Open pit", polygon=SQUARE),
    ]
    merged = {z.id: z for z in merge_zones([CRANE, HOIST], edited)}
    assert merged["hoist"] == HOIST
    assert merged["crane"].polygon == [(0.2, 0.2), (0.9, 0.2), (0.9, 0.9)]
    assert (merged["crane"].min_dwell_s, merged["crane"].anchor) == (2.0, "center"), "edited in place"
    assert (merged["pit"].min_dwell_s, merged["pit"].entry_forbidden, merged["pit"].name) == (
        0.0,
        True,
        "Open pit",
    )
    assert [z.id for z in danger_zones(list(merged.values()))] == ["crane", "pit"]
    assert [z.id for z in merge_zones([CRANE, HOIST], [])] == ["hoist"], "an empty list removes danger zones"


@pytest.mark.parametrize(
    ("zone", "reason"),
    [
        (
            ZonePolygon(id="x", polygon=[(0.1, 0.1), (0.9, 0.9), (0.9, 0.1), (0.1, 0.9)]),
            "must not cross itself",
        ),
        (ZonePolygon(id="x", polygon=[(0.1, 0.1), (0.5, 0.5), (0.9, 0.9)]), "must not cross itself"),
        (ZonePolygon(id="hoist", polygon=SQUARE), "taken by a PPE-only zone"),
    ],
)
def test_an_invalid_edit_is_refused_with_its_reason(zone: ZonePolygon, reason: str) -> None:
    with pytest.raises(ZoneEditError, match=reason) as info:
        merge_zones([CRANE, HOIST], [ZonePolygon(id="ok", polygon=SQUARE), zone])
    assert str(info.value).startswith(f"zones[1] ({zone.id})")


def test_people_inside_a_redrawn_zone_keep_their_dwell_time() -> None:
    engine = RuleEngine(CameraConfig(id="gate", source="x.mp4", zones=[CRANE, HOIST]), RulesConfig())
    engine.zones[0].dwell_timers[7] = 100.0
    engine.set_zones(merge_zones([CRANE, HOIST], [ZonePolygon(id="crane", polygon=SQUARE)]))
    assert {z.config.id: z.dwell_timers for z in engine.zones} == {"hoist": {}, "crane": {7: 100.0}}


def test_a_broken_override_file_is_reported_and_the_config_files_zones_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(REPO / "samples" / "site.yaml")
    path = tmp_path / "zones-override.json"
    path.write_text('{"schema_version": 1, "cameras": {"gate": {"zones": [{"id": "x"}]}}}')
    with caplog.at_level(logging.ERROR):
        assert apply_overrides(config, path) == config
    assert "are not valid" in caplog.text and "using the zones of the config file" in caplog.text
