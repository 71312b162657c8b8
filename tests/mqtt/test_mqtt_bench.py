"""The benchmark runs end to end on a small load and reports every figure (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.mqtt.bench import main, run_mqtt_bench


@pytest.mark.slow
def test_the_benchmark_reports_latency_throughput_and_replay() -> None:
    results = run_mqtt_bench(latency_events=30, latency_rate_hz=200, throughput_events=60, replay_events=120)
    assert results["latency"]["events"] == 30
    assert 0 < results["latency"]["p50_ms"] <= results["latency"]["p95_ms"] <= results["latency"]["max_ms"]
    assert results["throughput"]["events_per_s"] > 0
    assert results["replay"]["queued_in_outbox"] == 120
    assert results["replay"]["seconds_to_acknowledged"] is not None


def test_the_committed_benchmark_results_cover_the_targets() -> None:
    committed = json.loads((Path(__file__).resolve().parents[2] / "docs/benchmarks/mqtt.json").read_text())
    assert committed["replay"]["events"] == 10_000
    assert {"p50_ms", "p95_ms", "target_p95_ms"} <= set(committed["latency"])
    assert committed["setup"]["qos"] == 1


@pytest.mark.slow
def test_the_benchmark_command_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "mqtt.json"
    args = ["--json", str(out), "--broker", "embedded", "--latency-events", "10", "--throughput-events", "20"]
    assert main([*args, "--replay-events", "20"]) == 0
    assert json.loads(out.read_text())["setup"]["broker"] == "embedded"
