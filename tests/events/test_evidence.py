"""Evidence recorder on real video frames: snapshot at once, clip from the ring buffer, failures counted."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from edge.config.models import EvidenceConfig, ZoneConfig
from edge.dataflow import (
    Detections,
    EvidenceRef,
    Frame,
    FrameResult,
    Phase,
    Rule,
    SafetyEvent,
    Track,
    Violation,
)
from edge.events.evidence import EvidenceRecorder

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
PHOTOS = Path(__file__).resolve().parents[2].parent / "shared/datasets/construction-site-safety/valid"
HK = ZoneInfo("Asia/Hong_Kong")
FPS = 10.0
T0 = 1_717_200_000.0  # 2024-06-01 08:00:00+08:00
PERSON = (300.0, 120.0, 420.0, 460.0)
ZONES = {"gate": [ZoneConfig(id="crane", polygon=[(0.05, 0.55), (0.45, 0.55), (0.45, 0.98), (0.05, 0.98)])]}


def _synthetic_frames(count: int) -> list[np.ndarray]:
    """Textured frames with a moving block, for machines without opencv-doc's vtest.avi."""
    rng = np.random.default_rng(7)
    background = cv2.GaussianBlur(rng.integers(0, 255, (576, 768, 3), np.uint8), (0, 0), 3)
    frames = []
    for i in range(count):
        frame = background.copy()
        cv2.rectangle(frame, (20 + 12 * i, 200), (120 + 12 * i, 420), (40, 90, 200), cv2.FILLED)
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Fifty consecutive frames of OpenCV's pedestrian sample video (768x576)."""
    if not VTEST.is_file():
        return _synthetic_frames(50)
    capture = cv2.VideoCapture(str(VTEST))
    images = []
    while len(images) < 50:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    assert len(images) == 50, f"{VTEST} has fewer than 50 frames"
    return images


def result_at(i: int, image: np.ndarray, violating: bool = True) -> FrameResult:
    """Frame i of camera 'gate' at FPS, with one tracked person who lacks a helmet."""
    track = Track(1, PERSON, 0.9)
    violations = (Violation("gate", 1, Rule.NO_HELMET, None, 0.8, PERSON),) if violating else ()
    return FrameResult(Frame("gate", i, T0 + i / FPS, image), Detections.empty(), (track,), violations, ())


def feed(rec: EvidenceRecorder, frames: list[np.ndarray], start: int, stop: int) -> None:
    """Show the recorder frames start..stop-1 of camera 'gate', as the pipeline would."""
    for i in range(start, stop):
        rec.observe(result_at(i, frames[i]))


def event_at(i: int, phase: Phase = Phase.START) -> SafetyEvent:
    return SafetyEvent(
        event_id=uuid.uuid4(),
        phase=phase,
        site_id="demo-site",
        camera_id="gate",
        rule=Rule.NO_HELMET,
        zone=None,
        track_id=1,
        started_at=datetime.fromtimestamp(T0 + i / FPS, HK),
        ended_at=None,
        peak_confidence=0.8,
        boxes=((PERSON[0] / 768, PERSON[1] / 576, PERSON[2] / 768, PERSON[3] / 576),),
        frame_seq=i,
    )


class ClipSink:
    """Collects on_clip_ready calls so a test can wait for the writer thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[SafetyEvent, EvidenceRef]] = []
        self.done = threading.Event()

    def __call__(self, event: SafetyEvent, ref: EvidenceRef) -> None:
        self.calls.append((event, ref))
        self.done.set()


def recorder(
    folder: Path, sink: ClipSink | None = None, **overrides: object
) -> tuple[EvidenceRecorder, CollectorRegistry]:
    registry = CollectorRegistry()
    config = EvidenceConfig.model_validate({"folder": folder, "pre_s": 1.0, "post_s": 1.0, **overrides})
    return EvidenceRecorder(config, zones=ZONES, tz=HK, registry=registry, on_clip_ready=sink), registry


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} does not open"
    fps = capture.get(cv2.CAP_PROP_FPS)
    images = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    return images, fps


def refs_by_kind(event: SafetyEvent) -> dict[str, EvidenceRef]:
    return {ref.kind: ref for ref in event.evidence}


def test_start_event_gets_a_snapshot_on_disk_at_once(tmp_path: Path, frames: list[np.ndarray]) -> None:
    rec, registry = recorder(tmp_path)
    result = result_at(20, frames[20])
    event = event_at(20)

    recorded = rec.record(event, result)

    refs = refs_by_kind(recorded)
    assert recorded.event_id == event.event_id and set(refs) == {"snapshot", "clip"}
    assert refs["snapshot"].path == f"gate/2024-06-01/{event.event_id}.jpg"
    # Nothing buffered before the trigger: the clip starts on the event's own frame.
    assert refs["clip"] == EvidenceRef("clip", f"gate/2024-06-01/{event.event_id}.mp4", None, 0.0)
    data = (tmp_path / refs["snapshot"].path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == refs["snapshot"].sha256
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == frames[20].shape
    # The violating person's box edge is red (JPEG shifts colours a little).
    x1, y1, _, y2 = (int(v) for v in PERSON)
    edge = image[y1 + 100 : y2 - 10, x1].astype(int)
    reddish = (edge[:, 2] > 180) & (edge[:, 1] < 80) & (edge[:, 0] < 80)
    assert reddish.mean() > 0.8
    assert registry.get_sample_value("sitesentry_evidence_written_total", {"kind": "snapshot"}) == 1
    rec.stop()


def test_each_event_starting_on_one_frame_gets_its_own_snapshot_highlighting_its_person(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    other = (80.0, 120.0, 200.0, 460.0)
    tracks = (Track(1, PERSON, 0.9), Track(2, other, 0.9))
    violations = (
        Violation("gate", 1, Rule.NO_HELMET, None, 0.8, PERSON),
        Violation("gate", 2, Rule.NO_VEST, None, 0.7, other),
    )
    result = FrameResult(Frame("gate", 20, T0 + 2.0, frames[20]), Detections.empty(), tracks, violations, ())
    rec, _ = recorder(tmp_path, clip=False)
    helmet = rec.record(event_at(20), result)
    vest = rec.record(
        replace(
            event_at(20),
            track_id=2,
            rule=Rule.NO_VEST,
            boxes=((other[0] / 768, other[1] / 576, other[2] / 768, other[3] / 576),),
        ),
        result,
    )

    def red_share(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
        x1, y1, _, y2 = (int(v) for v in box)
        edge = image[y1 + 150 : y2 - 10, x1 + 1].astype(int)  # below the blurred head, clear of the tags
        return float(((edge[:, 2] > 180) & (edge[:, 1] < 80) & (edge[:, 0] < 80)).mean())

    stored = [(tmp_path / refs_by_kind(e)["snapshot"].path).read_bytes() for e in (helmet, vest)]
    assert stored[0] != stored[1]
    first, second = (cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR) for d in stored)
    assert red_share(first, PERSON) > 0.8 and red_share(first, other) < 0.1
    assert red_share(second, other) > 0.8 and red_share(second, PERSON) < 0.1
    # The MQTT snapshot of an event is the same JPEG as its file: encoded once.
    assert rec.snapshot_jpeg(result, vest) == stored[1]
    rec.stop()


@pytest.mark.parametrize("phase", [Phase.UPDATE, Phase.END])
def test_update_and_end_events_pass_through_without_files(
    tmp_path: Path, frames: list[np.ndarray], phase: Phase
) -> None:
    rec, _ = recorder(tmp_path)
    event = event_at(5, phase)
    assert rec.record(event, result_at(5, frames[5])) is event
    assert rec.pending_clips == 0 and not any(tmp_path.iterdir())


def test_clip_spans_pre_and_post_seconds_at_the_observed_rate(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    sink = ClipSink()
    rec, registry = recorder(tmp_path, sink)
    rec.start()
    feed(rec, frames, 0, 20)
    trigger = result_at(20, frames[20])
    rec.observe(trigger)
    recorded = rec.record(event_at(20), trigger)
    assert rec.pending_clips == 1
    feed(rec, frames, 21, 40)

    assert sink.done.wait(60), "clip never reported ready"
    rec.stop()

    [(event, ref)] = sink.calls
    assert event.event_id == recorded.event_id and ref.path == refs_by_kind(recorded)["clip"].path
    path = tmp_path / ref.path
    assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
    images, fps = read_video(path)
    # 1 s before (frames 10-19), the trigger, 1 s after (21-30) at 10 fps.
    assert 20 <= len(images) <= 22
    assert fps == pytest.approx(FPS, abs=0.5)
    assert images[0].shape == frames[0].shape
    # The clip opens on the frame pre_s before the event: find the source frame it matches best.
    lower = slice(300, None)  # below the caption and the label

    def distance(i: int) -> float:
        return float(np.mean(cv2.absdiff(images[0][lower], frames[i][lower])))

    assert min(range(40), key=distance) in (9, 10, 11)
    assert rec.pending_clips == 0
    assert registry.get_sample_value("sitesentry_evidence_written_total", {"kind": "clip"}) == 1


def test_a_camera_analysed_faster_than_clip_fps_records_clips_at_clip_fps(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    # The camera runs at 10 frames/s (for tracking); evidence needs only 5: every other frame is kept,
    # before and after the event, and the clip still spans pre_s + post_s in real time.
    sink = ClipSink()
    rec, _ = recorder(tmp_path, sink, clip_fps=5.0)
    rec.start()
    feed(rec, frames, 0, 20)
    trigger = result_at(20, frames[20])
    rec.observe(trigger)
    rec.record(event_at(20), trigger)
    feed(rec, frames, 21, 40)
    assert sink.done.wait(60), "clip never reported ready"
    rec.stop()
    [(_, ref)] = sink.calls
    images, fps = read_video(tmp_path / ref.path)
    assert 10 <= len(images) <= 12  # 2 s at 5 frames/s, not the 21 frames the camera delivered
    assert fps == pytest.approx(5.0, abs=0.3)
    lower = slice(300, None)
    sources = [
        min(range(40), key=lambda i: float(np.mean(cv2.absdiff(image[lower], frames[i][lower]))))
        for image in images
    ]
    assert sources[0] in (9, 10, 11) and sources[-1] in (29, 30, 31)
    assert all(b - a == 2 for a, b in zip(sources, sources[1:], strict=False))


@pytest.mark.parametrize(("codec", "decoded_as"), [("h264", "h264"), ("mp4v", "mpeg4")])
def test_clips_are_browser_playable_h264_or_mp4v_on_request(
    tmp_path: Path, frames: list[np.ndarray], codec: str, decoded_as: str
) -> None:
    import av

    sink = ClipSink()
    rec, _ = recorder(tmp_path, sink, clip_codec=codec)
    rec.start()
    feed(rec, frames, 0, 10)
    recorded = rec.record(event_at(10), result_at(10, frames[10]))
    feed(rec, frames, 10, 25)
    assert sink.done.wait(60), "clip never reported ready"
    rec.stop()

    path = tmp_path / refs_by_kind(recorded)["clip"].path
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == decoded_as
        assert (stream.codec_context.width, stream.codec_context.height) == (768, 576)
        if codec == "h264":
            assert stream.codec_context.pix_fmt == "yuv420p"  # what browsers decode
    data = path.read_bytes()
    if codec == "h264":
        assert data.index(b"moov") < data.index(b"mdat")  # index first: plays while it downloads
    images, fps = read_video(path)
    assert len(images) == 21 and fps == pytest.approx(FPS, abs=0.5)


def test_events_starting_while_a_clip_records_share_it_and_extend_its_end(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    sink = ClipSink()
    rec, registry = recorder(tmp_path, sink)
    rec.start()
    feed(rec, frames, 0, 20)
    first, second, third = event_at(20), event_at(20), event_at(25)
    trigger = result_at(20, frames[20])
    rec.observe(trigger)
    refs = [rec.record(first, trigger), rec.record(second, trigger)]  # two rules, one frame
    feed(rec, frames, 21, 26)
    refs.append(rec.record(third, result_at(25, frames[25])))  # 0.5 s later, still inside the post-roll
    paths = {refs_by_kind(r)["clip"].path for r in refs}
    assert paths == {f"gate/2024-06-01/{first.event_id}.mp4"} and rec.pending_clips == 1
    # Each event says where in the shared clip it starts: the clip opens at frame 10.
    assert [refs_by_kind(r)["clip"].offset_s for r in refs] == [1.0, 1.0, 1.5]
    # Snapshots stay one per event, with the same picture when events start on the same frame.
    snaps = [refs_by_kind(r)["snapshot"] for r in refs]
    assert len({s.path for s in snaps}) == 3 and snaps[0].sha256 == snaps[1].sha256
    feed(rec, frames, 26, 50)
    rec.stop()

    assert sorted(str(e.event_id) for e, _ in sink.calls) == sorted(str(e.event_id) for e in refs)
    assert len({ref.sha256 for _, ref in sink.calls}) == 1
    assert {str(e.event_id): ref.offset_s for e, ref in sink.calls}[str(third.event_id)] == 1.5
    images, _ = read_video(tmp_path / paths.pop())
    # Frames 10-35: 1 s before the first event to 1 s after the last one.
    assert 25 <= len(images) <= 27
    assert registry.get_sample_value("sitesentry_evidence_written_total", {"kind": "clip"}) == 1


def test_an_event_past_the_clip_length_cap_gets_a_clip_of_its_own(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    sink = ClipSink()
    rec, registry = recorder(tmp_path, sink, clip_max_s=2.5)
    feed(rec, frames, 0, 20)
    first = rec.record(event_at(20), result_at(20, frames[20]))
    feed(rec, frames, 20, 26)
    # Joining would make the clip run from frame 10 to frame 36: 2.6 s, over the 2.5 s cap.
    second = rec.record(event_at(26), result_at(26, frames[26]))
    feed(rec, frames, 26, 45)
    rec.stop()

    assert refs_by_kind(first)["clip"].path != refs_by_kind(second)["clip"].path
    assert registry.get_sample_value("sitesentry_evidence_written_total", {"kind": "clip"}) == 2
    assert len(sink.calls) == 2


def test_a_full_clip_backlog_skips_new_clips_and_counts_them(
    tmp_path: Path, frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    sink = ClipSink()
    rec, registry = recorder(tmp_path, sink, max_pending_clips=2, post_s=0.5)
    feed(rec, frames, 0, 5)
    # Writer not started, so clips pile up; each event starts past the previous clip's end.
    with caplog.at_level(logging.WARNING, logger="edge.events.evidence"):
        recorded = [rec.record(event_at(i), result_at(i, frames[i])) for i in (5, 15, 25)]
    assert [set(refs_by_kind(r)) for r in recorded] == [{"snapshot", "clip"}] * 2 + [{"snapshot"}]
    assert rec.pending_clips == 2
    assert (
        registry.get_sample_value("sitesentry_evidence_failures_total", {"kind": "clip", "reason": "backlog"})
        == 1
    )
    assert any("max_pending_clips" in r.getMessage() for r in caplog.records)
    feed(rec, frames, 5, 35)
    rec.stop()
    assert rec.pending_clips == 0 and len(sink.calls) == 2


def test_clips_holding_too_many_frames_in_memory_skip_new_ones(
    tmp_path: Path, frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    frame_mb = frames[0].nbytes / 1e6
    # Room for about six frames: the first clip's pre-roll (five frames) and trigger fill it.
    rec, registry = recorder(tmp_path, max_pending_mb=6 * frame_mb, post_s=0.5)
    feed(rec, frames, 0, 5)
    with caplog.at_level(logging.WARNING, logger="edge.events.evidence"):
        first = rec.record(event_at(5), result_at(5, frames[5]))
        feed(rec, frames, 5, 15)
        second = rec.record(event_at(15), result_at(15, frames[15]))
    assert "clip" in refs_by_kind(first) and "clip" not in refs_by_kind(second)
    assert registry.get_sample_value("sitesentry_evidence_pending_clip_bytes") >= 6 * frames[0].nbytes
    assert (
        registry.get_sample_value("sitesentry_evidence_failures_total", {"kind": "clip", "reason": "backlog"})
        == 1
    )
    assert any("max_pending_mb" in r.getMessage() for r in caplog.records)
    rec.stop()
    assert registry.get_sample_value("sitesentry_evidence_pending_clip_bytes") == 0


def test_clip_writer_runs_at_lower_priority_than_detection(tmp_path: Path, frames: list[np.ndarray]) -> None:
    """The encoder thread yields the CPU to inference, which runs at the process's own priority."""
    seen: dict[str, int] = {}

    def note_priority(event: SafetyEvent, ref: EvidenceRef) -> None:
        seen["writer"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    registry = CollectorRegistry()
    config = EvidenceConfig(folder=tmp_path, pre_s=0.2, post_s=0.2, writer_nice=5)
    rec = EvidenceRecorder(config, zones=ZONES, tz=HK, registry=registry, on_clip_ready=note_priority)
    rec.start()
    feed(rec, frames, 0, 3)
    rec.record(event_at(2), result_at(2, frames[2]))
    feed(rec, frames, 3, 8)
    rec.stop()
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen["writer"] == min(19, own + 5)


@pytest.mark.parametrize("started", [True, False], ids=["writer-running", "writer-never-started"])
def test_stop_flushes_a_clip_still_collecting(
    tmp_path: Path, frames: list[np.ndarray], started: bool
) -> None:
    sink = ClipSink()
    rec, _ = recorder(tmp_path, sink, pre_s=0.5, post_s=5.0)
    if started:
        rec.start()
    feed(rec, frames, 0, 10)
    recorded = rec.record(event_at(10), result_at(10, frames[10]))
    feed(rec, frames, 11, 14)
    assert rec.pending_clips == 1

    rec.stop(timeout=30)

    assert rec.pending_clips == 0 and len(sink.calls) == 1
    images, _ = read_video(tmp_path / refs_by_kind(recorded)["clip"].path)
    assert len(images) == 9  # frames 5..13: half a second before, the trigger, what came after


def test_clip_of_a_camera_gone_quiet_is_written_after_its_deadline(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    now = [T0]
    sink = ClipSink()
    registry = CollectorRegistry()
    config = EvidenceConfig(folder=tmp_path, pre_s=1.0, post_s=1.0)
    rec = EvidenceRecorder(
        config, zones=ZONES, tz=HK, registry=registry, on_clip_ready=sink, clock=lambda: now[0]
    )
    rec.start()
    feed(rec, frames, 0, 5)
    rec.record(event_at(5), result_at(5, frames[5]))
    assert not sink.done.wait(0.6)  # the deadline has not passed on the injected clock

    now[0] += 10.0
    assert sink.done.wait(30), "quiet camera's clip was never written"
    assert len(read_video(tmp_path / sink.calls[0][1].path)[0]) == 6
    rec.stop()


def test_ring_buffer_keeps_only_pre_seconds(tmp_path: Path, frames: list[np.ndarray]) -> None:
    rec, _ = recorder(tmp_path, pre_s=1.0)
    feed(rec, frames, 0, 50)
    assert rec.buffered("gate") in (10, 11)

    no_clips, _ = recorder(tmp_path, clip=False)
    feed(no_clips, frames, 0, 50)
    assert no_clips.buffered("gate") == 0


def test_unwritable_folder_is_counted_and_logged_once_never_raised(
    tmp_path: Path, frames: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file where the evidence folder's parent should be")
    sink = ClipSink()
    rec, registry = recorder(blocker / "evidence", sink)
    rec.start()

    with caplog.at_level(logging.WARNING, logger="edge.events.evidence"):
        first = rec.record(event_at(3), result_at(3, frames[3]))
        second = rec.record(event_at(40), result_at(40, frames[40]))  # past the first clip: a clip of its own
        rec.stop(timeout=30)

    for recorded in (first, second):
        assert set(refs_by_kind(recorded)) == {"clip"}  # no snapshot ref for a file that does not exist
    assert (
        registry.get_sample_value(
            "sitesentry_evidence_failures_total", {"kind": "snapshot", "reason": "bad_path"}
        )
        == 2
    )
    assert (
        registry.get_sample_value(
            "sitesentry_evidence_failures_total", {"kind": "clip", "reason": "bad_path"}
        )
        == 2
    )
    assert registry.get_sample_value("sitesentry_evidence_written_total", {"kind": "snapshot"}) in (None, 0)
    assert sink.calls == [] and rec.pending_clips == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("snapshot" in m for m in warnings) == 1 and sum("clip" in m for m in warnings) == 1


def test_blur_heads_hides_the_face_in_the_snapshot(tmp_path: Path) -> None:
    if not (PHOTOS / "images").is_dir():
        pytest.skip(f"construction-site-safety photos not found at {PHOTOS}")

    def sharpness(gray: np.ndarray) -> float:
        return float(cv2.Laplacian(gray[inner], cv2.CV_64F).var())

    def decoded(jpeg: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)

    # The first validation photo (by name) with a detailed bare head (NO-Hardhat, class 2) of 40+ px.
    for label_file in sorted((PHOTOS / "labels").glob("*.txt")):
        image = cv2.imread(str(PHOTOS / "images" / f"{label_file.stem}.jpg"))
        height, width = image.shape[:2]
        for line in label_file.read_text().splitlines():
            cls, cx, cy, bw, bh = (float(v) for v in line.split())
            x1, y1 = int((cx - bw / 2) * width), int((cy - bh / 2) * height)
            x2, y2 = int((cx + bw / 2) * width), int((cy + bh / 2) * height)
            dx, dy = (x2 - x1) // 4, (y2 - y1) // 4
            inner = (slice(y1 + dy, y2 - dy), slice(x1 + dx, x2 - dx))
            if (
                cls == 2
                and min(x2 - x1, y2 - y1) >= 40
                and sharpness(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)) > 50
            ):
                break
        else:
            continue
        break
    else:
        pytest.skip("no validation photo with a detailed bare head of 40+ px")
    det = Detections(
        np.array([[x1, y1, x2, y2]], np.float32), np.array([0.8], np.float32), np.array([2], np.int32)
    )
    result = FrameResult(Frame("gate", 1, T0, image), det, (), (), ())

    plain, _ = recorder(tmp_path / "plain", blur_heads=False)
    blurred, _ = recorder(tmp_path / "blurred", blur_heads=True)
    assert sharpness(decoded(blurred.snapshot_jpeg(result))) < 0.1 * sharpness(
        decoded(plain.snapshot_jpeg(result))
    )

    recorded = blurred.record(event_at(1), result)
    stored = (tmp_path / "blurred" / refs_by_kind(recorded)["snapshot"].path).read_bytes()
    assert stored == blurred.snapshot_jpeg(result, recorded)


def test_full_disk_is_counted_as_disk_full_and_the_pipeline_carries_on(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("/dev/full (a device that answers every write with ENOSPC) is missing")
    rec, registry = recorder(tmp_path, clip=False)
    event = event_at(3)
    # The recorder writes `<id>.part.jpg` first; pointing that name at /dev/full gives a real ENOSPC.
    partial = tmp_path / "gate/2024-06-01" / f"{event.event_id}.part.jpg"
    partial.parent.mkdir(parents=True)
    partial.symlink_to("/dev/full")

    recorded = rec.record(event, result_at(3, frames[3]))

    assert recorded.evidence == ()
    assert (
        registry.get_sample_value(
            "sitesentry_evidence_failures_total", {"kind": "snapshot", "reason": "disk_full"}
        )
        == 1
    )
    assert not partial.exists() and not any(partial.parent.iterdir())
    # Space is back: the next event is stored normally.
    follow_up = rec.record(event_at(4), result_at(4, frames[4]))
    assert (tmp_path / refs_by_kind(follow_up)["snapshot"].path).is_file()


def test_a_recording_clip_encodes_frames_as_they_arrive_instead_of_holding_them(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    sink = ClipSink()
    rec, registry = recorder(tmp_path, sink, pre_s=1.0, post_s=2.5)
    rec.start()
    feed(rec, frames, 0, 20)
    recorded = rec.record(event_at(20), result_at(20, frames[20]))
    feed(rec, frames, 20, 40)  # the clip records until frame 45

    def held() -> float:
        return registry.get_sample_value("sitesentry_evidence_pending_clip_bytes")

    deadline = time.monotonic() + 30
    while held() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held() == 0, "the writer kept the recording clip's frames in memory"
    assert rec.pending_clips == 1 and not sink.calls  # still recording: its 30 frames are on disk already
    assert not (tmp_path / refs_by_kind(recorded)["clip"].path).exists()  # only the .part file so far

    feed(rec, frames, 40, 50)
    assert sink.done.wait(60), "clip never reported ready"
    rec.stop()
    images, fps = read_video(tmp_path / sink.calls[0][1].path)
    assert len(images) == 36 and fps == pytest.approx(FPS, abs=0.5)  # frames 10..45
    assert not list(tmp_path.rglob("*.part.mp4"))
