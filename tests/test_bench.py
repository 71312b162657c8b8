"""`sitesentry bench` measures every stage on real frames (structure only: numbers are not asserted)."""

from pathlib import Path

import pytest

from edge.bench import BenchBackend, run_bench

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_reports_every_stage_and_both_camera_counts():
    results = run_bench(
        video=REPO / "samples" / "vtest.mp4",
        model=REPO / "models" / "ppe-yolo" / "model.onnx",
        frames=6,
        reference=False,
        e2e_seconds=2.0,
        mqtt=False,
        repeats=2,
        backends=[BenchBackend("onnxrt", "fp32", REPO / "models" / "ppe-yolo" / "model.onnx")],
        cameras=(1, 4),
    )
    stages = results["pipeline"]["stages"]
    expected = {"decode", "preprocess", "inference", "postprocess", "tracking", "rules", "evidence"}
    assert set(stages) == expected
    assert all(stages[s]["p95_ms"] >= stages[s]["p50_ms"] >= 0 for s in expected)
    assert stages["inference"]["p50_ms"] > 0
    assert [r["cameras"] for r in results["end_to_end"]] == [1, 4]
    assert all(r["frames"] > 0 for r in results["end_to_end"])
    # The bench zone makes every walker an event: their clips are written or, past the backlog, skipped.
    assert all(r["clips_written"] + r["clips_skipped_backlog"] > 0 for r in results["end_to_end"])
    assert len(results["end_to_end"][0]["runs_fps"]) == 2
    assert results["peak_rss_mb"] > 0
    assert [(b["backend"], b["precision"]) for b in results["backends"]] == [("onnxrt", "fp32")]


def test_bench_refuses_a_missing_video(tmp_path):
    with pytest.raises(ValueError, match="video not found"):
        run_bench(video=tmp_path / "none.mp4", model=REPO / "models" / "ppe-yolo" / "model.onnx")
