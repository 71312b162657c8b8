"""The dashboard benchmark runs end to end on tiny sizes (no timings are asserted: see docs/benchmarks/)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from dashboard import bench


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists(),
    reason="mosquitto is not installed",
)
def test_the_bench_runs_on_tiny_sizes(tmp_path: Path) -> None:
    # PostgreSQL (with the alert list over a generated history) only where CI provides one.
    backends = ("sqlite", "postgresql") if os.environ.get("SITESENTRY_TEST_PG_URL") else ("sqlite",)
    out = tmp_path / "dashboard.json"
    args = ["--json", str(out), "--events", "20", "--latency-samples", "3", "--list-rows", "3000"]
    args += ["--repeats", "2", *[f"--backend={name}" for name in backends]]
    assert bench.main(args) == 0
    report = json.loads(out.read_text())
    assert set(report["backends"]) == set(backends)
    for result in report["backends"].values():
        assert result["ingest"]["messages"] == 40 and result["ingest"]["messages_per_s"] > 0
        assert result["latency"]["samples"] == 3 and result["latency"]["p95_ms"] > 0
        assert 0 < result["memory"]["rss_mb"] <= result["memory"]["peak_rss_mb"]
    if "postgresql" in backends:
        listing = report["backends"]["postgresql"]["alert_list"]
        assert listing["rows"] == 3000 and len(listing["variants"]) >= 5
