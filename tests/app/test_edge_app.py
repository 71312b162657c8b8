"""The whole edge pipeline on the sample video with the shipped model: events, evidence, control, shutdown."""

import json
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from prometheus_client import generate_latest

from contract.payloads import HeartbeatStats
from edge.app import EdgeApp
from edge.config import load_config
from edge.dataflow import Phase, Rule, SafetyEvent
from edge.frames.health import CameraStatus

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path):
    site = load_config(REPO / "samples" / "site.yaml")
    # Unpaced, the file runs on its own timeline (dwell, debounce and the PPE window in media seconds),
    # so what is found does not depend on how fast this machine analyses it.
    cameras = [
        site.cameras[0].model_copy(update={"realtime": False, "loop": False, "fps": 2}),
        site.cameras[0].model_copy(update={"id": "broken", "source": str(tmp_path / "missing.mp4")}),
    ]
    return site.model_copy(
        update={
            "cameras": cameras,
            "evidence": site.evidence.model_copy(
                update={"folder": tmp_path / "evidence", "pre_s": 1, "post_s": 1}
            ),
            "rules": site.rules.model_copy(update={"debounce_s": 0.3, "max_new_events_per_min": 1000}),
            "hard_examples": site.hard_examples.model_copy(
                update={"enabled": True, "folder": tmp_path / "queue", "min_interval_s": 0}
            ),
        }
    )


class Recorder:
    """Collects what the app emits, as a real consumer would."""

    def __init__(self) -> None:
        self.events: list[SafetyEvent] = []
        self.statuses: list[tuple[str, str]] = []
        self.snapshots: dict[str, bytes] = {}
        self.alarms: list[SafetyEvent] = []
        self.frames = 0
        self.lock = threading.Lock()

    def start(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...

    def publish_event(self, event: SafetyEvent) -> None:
        with self.lock:
            self.events.append(event)

    def publish_alarm(self, event: SafetyEvent) -> None:
        with self.lock:
            self.alarms.append(event)

    def count_frame(self, _result: object) -> None:
        with self.lock:
            self.frames += 1

    def publish_camera_status(self, camera_id: str, status: str, detail: str | None) -> None:
        with self.lock:
            self.statuses.append((camera_id, status))

    def publish_snapshot(self, camera_id: str, jpeg: bytes) -> None:
        self.snapshots[camera_id] = jpeg


def run_until_ended(app: EdgeApp, camera: str, limit_s: float = 300) -> None:
    """Run until the camera's file has ended and its last frame is analysed, then stop cleanly."""
    deadline = time.monotonic() + limit_s
    runtime = app.cameras[camera]

    def done() -> bool:
        ended = runtime.reader.status is CameraStatus.ENDED and runtime.reader.newest_seq <= runtime.last_seq
        return ended or time.monotonic() > deadline

    app.start()
    app.wait(threading.Event(), until=done)
    app.stop()


@pytest.mark.slow
def test_sample_video_gives_real_violations_with_evidence_and_one_broken_camera_does_not_stop_it(config):
    sink = Recorder()
    app = EdgeApp(config, alerts=sink)
    run_until_ended(app, "gate")
    starts = [e for e in sink.events if e.phase is Phase.START]
    ends = [e for e in sink.events if e.phase is Phase.END]
    assert len(starts) >= 3, "the sample video has people without vests in it"
    # Its pedestrians wear neither helmets nor vests, but the shipped model takes most of their small
    # heads for helmets: judged per track over time that is never a missing helmet (docs/rules.md), while
    # their torsos are confidently seen without vests.
    assert {e.rule for e in starts} >= {Rule.NO_VEST, Rule.ZONE_ENTRY}
    # Every started event ends (at the latest on shutdown), with the same id and a duration.
    assert {e.event_id for e in starts} == {e.event_id for e in ends}
    assert all(e.duration_s is not None and e.duration_s >= 0 for e in ends)
    # Nothing reopens a closed event: after an END only a repeated END (carrying the clip) may follow.
    for event_id in {e.event_id for e in ends}:
        phases = [e.phase for e in sink.events if e.event_id == event_id]
        after_end = phases[phases.index(Phase.END) :]
        assert set(after_end) == {Phase.END}, phases
    # Sirens: switched on when a violation starts and off when it ends.
    assert {e.event_id for e in sink.alarms if e.phase is Phase.START} == {e.event_id for e in starts}
    assert {e.event_id for e in sink.alarms if e.phase is Phase.END} == {e.event_id for e in starts}
    # Evidence: a snapshot on disk whose checksum matches, and a clip that opens.
    folder = config.evidence.folder
    for event in starts:
        snapshot = next(r for r in event.evidence if r.kind == "snapshot")
        image = cv2.imread(str(folder / snapshot.path))
        assert image is not None and image.shape[:2] == (480, 640)
    clips = [r for e in sink.events for r in e.evidence if r.kind == "clip" and r.sha256]
    assert clips, "clips are announced in an update once written"
    # Every clip opens; an event in the video's first second has little pre-roll, so look at the longest.
    frame_counts = []
    for clip in clips:
        capture = cv2.VideoCapture(str(folder / clip.path))
        assert capture.isOpened(), clip.path
        frame_counts.append(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    assert max(frame_counts) > 3, frame_counts
    assert "gate" in sink.snapshots and sink.snapshots["gate"][:2] == b"\xff\xd8"
    # The broken camera was reported and retried; the good one reached the end of its file.
    assert ("broken", "reconnecting") in sink.statuses or ("broken", "offline") in sink.statuses
    assert ("gate", "ended") in sink.statuses
    # Frames with violations were queued for labelling, with the model's boxes as YOLO labels.
    queued = [json.loads(p.read_text()) for p in (config.hard_examples.folder).rglob("*.json")]
    assert any(item["reason"] == "violation" for item in queued)
    metrics = generate_latest(app.registry).decode()
    assert 'sitesentry_stage_seconds_count{camera="gate",stage="inference"}' in metrics
    # PPE evidence is counted per tracked person: persons now, and ended tracks by verdict (heartbeat too).
    assert 'sitesentry_ppe_persons{camera="gate",item="helmet",verdict="undetermined"}' in metrics
    assert 'sitesentry_ppe_tracks_total{camera="gate",item="vest",verdict="missing"}' in metrics
    figures = HeartbeatStats.model_validate(app.heartbeat_stats()).cameras["gate"]
    assert figures.ppe_tracks["vest"]["missing"] >= 1


def test_rules_disabled_at_run_time_start_no_new_events(config):
    camera = config.cameras[0].model_copy(update={"loop": True})
    one_camera = config.model_copy(update={"cameras": [camera]})
    sink = Recorder()
    app = EdgeApp(one_camera, alerts=sink, on_result=sink.count_frame)
    app.start()
    deadline = time.monotonic() + 120
    while not any(e.phase is Phase.START for e in list(sink.events)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert any(e.phase is Phase.START for e in sink.events), "violations fire while the rules are on"
    for rule in Rule:
        app.set_rule_enabled(rule, False)
    time.sleep(0.5)  # a frame already in flight may still carry a start
    with sink.lock:
        seen, frames_then = len(sink.events), sink.frames
    time.sleep(8)
    app.stop()
    later_starts = [e for e in sink.events[seen:] if e.phase is Phase.START]
    assert sink.frames > frames_then + 5, "frames kept being analysed"
    assert later_starts == []
    with pytest.raises(KeyError, match="unknown camera 'nope'"):
        app.set_camera_enabled("nope", False)


def test_control_commands_switch_rules_and_cameras_of_the_real_app(config):
    from contract.payloads import ControlCommand
    from edge.runtime import apply_control

    app = EdgeApp(config.model_copy(update={"cameras": config.cameras[:1]}), alerts=Recorder())
    engine = app.cameras["gate"].pipeline.engine
    result = apply_control(
        app, ControlCommand(request_id="r1", action="disable", rule="no_vest", camera="gate")
    )
    assert result.ok and Rule.NO_VEST in engine.disabled
    assert apply_control(app, ControlCommand(request_id="r2", action="enable", rule="no_vest")).ok
    assert Rule.NO_VEST not in engine.disabled
    assert apply_control(app, ControlCommand(request_id="r3", action="disable", camera="gate")).ok
    assert app.cameras["gate"].paused
    refused = apply_control(app, ControlCommand(request_id="r4", action="disable", camera="crane-cam"))
    assert not refused.ok and "unknown camera 'crane-cam'" in refused.message


def test_a_false_alarm_command_keeps_the_events_frames_for_relabelling(config):
    import uuid

    from contract.payloads import ControlCommand
    from edge.dataflow import Frame
    from edge.runtime import apply_control

    app = EdgeApp(config.model_copy(update={"cameras": config.cameras[:1]}), alerts=Recorder())
    capture = cv2.VideoCapture(str(REPO / "samples" / "vtest.mp4"))
    ok, image = capture.read()
    capture.release()
    assert ok and app.hard_examples is not None
    event_id = uuid.uuid4()
    detections = app.detector.detect(image)
    app.hard_examples.add(Frame("gate", 0, time.time(), image), detections, "violation", event_id)

    command = ControlCommand(request_id="fa-1", action="false_alarm", event_id=event_id, note="a shadow")
    result = apply_control(app, command)
    assert result.ok and "1 frame(s)" in result.message
    [sidecar] = (config.hard_examples.folder).glob("*.json")
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    assert (record["reason"], record["false_alarm"], record["note"]) == ("false_alarm", True, "a shadow")

    unknown = apply_control(
        app, ControlCommand(request_id="fa-2", action="false_alarm", event_id=uuid.uuid4())
    )
    assert not unknown.ok and "no queued frame" in unknown.message
    queue_off = EdgeApp(
        config.model_copy(
            update={
                "cameras": config.cameras[:1],
                "hard_examples": config.hard_examples.model_copy(update={"enabled": False}),
            }
        ),
        alerts=Recorder(),
    )
    off = apply_control(queue_off, command)
    assert not off.ok and "hard-example queue is off" in off.message
    with pytest.raises(ValueError, match="needs `event_id`"):
        ControlCommand(request_id="fa-3", action="false_alarm")


def test_a_stopped_app_is_freed_with_its_model_and_frames(config):
    """Nothing global keeps an app alive: a process that builds apps one after another (the benchmark,
    a supervisor restarting one) must not keep every old detector and frame buffer in memory."""
    import gc
    import weakref

    app = EdgeApp(config.model_copy(update={"cameras": config.cameras[:1]}), alerts=Recorder())
    app.start()
    time.sleep(1.0)
    app.stop()
    freed = weakref.ref(app)
    del app
    gc.collect()
    assert freed() is None, [type(r).__name__ for r in gc.get_referrers(freed())]


def test_each_event_snapshot_is_encoded_once_and_the_mqtt_snapshot_is_the_cameras_view(config, monkeypatch):
    one_camera = config.model_copy(
        update={
            "cameras": [config.cameras[0]],
            "hard_examples": config.hard_examples.model_copy(update={"enabled": False}),
        }
    )
    encoded: list[bytes] = []
    real_imencode = cv2.imencode

    def counting_imencode(ext, image, params=()):
        ok, data = real_imencode(ext, image, params)
        if sys._getframe(1).f_globals["__name__"] == "edge.events.evidence":
            encoded.append(data.tobytes())
        return ok, data

    monkeypatch.setattr(cv2, "imencode", counting_imencode)
    sink = Recorder()
    published: list[bytes] = []
    sink.publish_snapshot = lambda camera_id, jpeg: published.append(jpeg)  # type: ignore[method-assign]
    start_frames: list[int] = []

    def note_starts(result):
        if any(e.phase is Phase.START for e in result.events):
            start_frames.append(result.frame.seq)

    app = EdgeApp(one_camera, alerts=sink, on_result=note_starts)
    app.start()
    deadline = time.monotonic() + 120
    while not start_frames and time.monotonic() < deadline:
        time.sleep(0.1)
    app.stop()
    assert start_frames, "the sample video has violations"
    starts = [e for e in sink.events if e.phase is Phase.START]
    files = {
        (one_camera.evidence.folder / r.path).read_bytes()
        for e in starts
        for r in e.evidence
        if r.kind == "snapshot"
    }
    # One JPEG per starting event (its own person highlighted, so events starting on one frame differ),
    # encoded once for its evidence file (which also goes to the dashboard as evidence).
    event_jpegs = [data for data in encoded if data in files]
    assert len(event_jpegs) == len(set(event_jpegs)) == len(files) == len(starts)
    # The camera's MQTT snapshot is its view instead, sent at the first frame and as the events started:
    # never an event's annotated snapshot, and once per frame however many events start on it.
    assert published and set(published).isdisjoint(files)
    assert set(published) <= set(encoded) and len(published) <= 1 + len(set(start_frames))


@pytest.mark.slow
def test_a_camera_without_violations_still_sends_its_view_blurred_and_unannotated(config, tmp_path):
    """The dashboard's camera tile and zone editor need the view before any violation happens."""
    from edge.annotate import blur_regions, draw_view, head_boxes

    quiet = config.model_copy(
        update={
            "cameras": [config.cameras[0].model_copy(update={"zones": []})],
            "rules": config.rules.model_copy(update={"require": []}),
            "evidence": config.evidence.model_copy(update={"view_every_s": 3600}),
        }
    )
    sink = Recorder()
    first: list = []
    app = EdgeApp(quiet, alerts=sink, on_result=first.append)
    app.start()
    app.wait(threading.Event(), until=lambda: len(first) >= 10)
    app.stop()
    assert sink.events == [] and "gate" in sink.snapshots
    view = cv2.imdecode(np.frombuffer(sink.snapshots["gate"], np.uint8), cv2.IMREAD_COLOR)
    result = first[0]
    heads = head_boxes(result)
    assert len(heads) > 0, "the sample video has people in its first frame"
    blurred = blur_regions(result.frame.image, heads)
    expected = draw_view(blurred, "gate", result.frame.captured_at, app.tz)
    # The first frame's view, heads blurred, nothing drawn but the caption (JPEG noise aside).
    assert view.shape == expected.shape
    assert np.abs(view.astype(int) - expected.astype(int)).mean() < 3
    assert np.abs(blurred.astype(int) - result.frame.image.astype(int)).max() > 40, "heads were blurred"
