"""`sitesentry config check` and `run --config` on broken and hostile files: one line each, no traceback.

Also the CLI's error printing: literal text (no rich markup), secrets hidden but messages about them intact,
and `run` on a camera whose file is a photo, not a video.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from edge.cli import app
from edge.mqtt.broker import free_port
from edge.telemetry import redact

REPO = Path(__file__).resolve().parents[2]


def sample(tmp_path: Path) -> dict:
    """samples/site.yaml with every path inside tmp_path or absolute."""
    data = yaml.safe_load((REPO / "samples" / "site.yaml").read_text(encoding="utf-8"))
    data["cameras"][0]["source"] = str(REPO / "samples" / "vtest.mp4")
    data["model"]["path"] = str(REPO / "models" / "ppe-yolo" / "model.onnx")
    data["evidence"]["folder"] = str(tmp_path / "evidence")
    data["mqtt"]["outbox"] = str(tmp_path / "outbox.sqlite3")
    return data


def write_yaml(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


HOSTILE: dict[str, tuple[bytes, str]] = {
    "alias bomb": (alias_bomb().encode(), "line 1: aliases expand to more than"),
    "recursive alias": (b"a: &a [*a]\n", "line 1: a[0]: an alias refers to a value that contains it"),
    "deep nesting": (b"site: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "nest"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00", "line 1: not UTF-8 text"),
    "latin-1": ("site:\n  name: café\n".encode("latin-1"), "line 2: not UTF-8 text (byte 0xe9)"),
    "duplicate key": (b"site: {id: a, name: A}\nsite: {id: b, name: B}\n", "line 2: site: duplicate key"),
    "nan fps": (
        b"site: {id: a, name: A}\ncameras: [{id: c, source: usb:0, fps: .nan}]\n",
        "line 2: cameras[0].fps: must be a finite number, not nan",
    ),
    "no cameras": (
        b"site: {id: a, name: A}\ncameras: []\n",
        "line 2: cameras: at least one camera is needed",
    ),
    "markup in a key": (
        b"site: {id: a, name: A}\ncameras: [{id: c, source: 'usb:0'}]\n'[/bold]': 1\n",
        "line 3: [/bold]: Extra inputs are not permitted",
    ),
}


def only_error_line(output: str, path: Path) -> str:
    """The single line a refused config prints; fail when there are more, or a traceback."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) >= 1 and all(line.startswith(f"error: {path}: ") for line in lines), output
    return lines[0]


@pytest.mark.parametrize("name", list(HOSTILE))
def test_config_check_refuses_hostile_files_in_one_line_each(tmp_path: Path, name: str) -> None:
    content, expected = HOSTILE[name]
    path = tmp_path / "site.yaml"
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert expected in only_error_line(result.output, path)


@pytest.mark.parametrize("name", ["alias bomb", "deep nesting", "binary"])
def test_run_refuses_hostile_files_with_one_line_and_no_traceback(tmp_path: Path, name: str) -> None:
    content, expected = HOSTILE[name]
    path = tmp_path / "site.yaml"
    path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,  # no hang: the limits stop it long before
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    line = only_error_line(proc.stderr, path)
    assert expected in line and len(proc.stderr.splitlines()) == 1, proc.stderr


def test_config_check_refuses_paths_this_machine_cannot_use(tmp_path: Path) -> None:
    data = sample(tmp_path)
    data["mqtt"].update(host="broker.local", tls={"ca_file": str(tmp_path / "ca.pem")})
    (tmp_path / "evidence").write_text("a file where the evidence folder should be")
    (tmp_path / "outbox.sqlite3").mkdir()
    path = write_yaml(tmp_path, data)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    only_error_line(result.output, path)
    assert f"evidence.folder: {tmp_path / 'evidence'} is a file, not a folder" in result.output
    assert f"mqtt.outbox: {tmp_path / 'outbox.sqlite3'} is a folder" in result.output
    assert f"mqtt.tls.ca_file: {tmp_path / 'ca.pem'} does not exist" in result.output


def test_config_check_passes_a_usable_config(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, sample(tmp_path))
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: OK (site demo-site, cameras: gate)" in result.output


def test_a_missing_secret_names_its_variable_unredacted(tmp_path: Path) -> None:
    data = sample(tmp_path)
    data["mqtt"].update(host="broker.local", password="${SITESENTRY_TEST_UNSET_PW}")
    path = write_yaml(tmp_path, data)
    result = CliRunner().invoke(app, ["config", "check", str(path)], env={"SITESENTRY_TEST_UNSET_PW": None})
    assert result.exit_code == 2
    line = only_error_line(result.output, path)
    assert line.endswith("mqtt.password: environment variable SITESENTRY_TEST_UNSET_PW is not set"), line


def test_errors_with_brackets_are_printed_literally(tmp_path: Path) -> None:
    # Rich markup used to eat `[cam2]` and crash on `[/x]`; a path is text, whatever it holds.
    for name in ("shot[cam2].jpg", "shot[/x].jpg", "[bold]shot.jpg"):
        result = CliRunner().invoke(app, ["detect", str(tmp_path / name)])
        assert result.exit_code == 2
        assert "Traceback" not in result.output
        assert f"error: {tmp_path / name}: no such file" in result.output, result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:hunter2@10.0.0.5/s", "rtsp://admin:***@10.0.0.5/s"),
        ("password=hunter2 retry", "password=*** retry"),
        ("GET /live?token=abc123&fmt=mjpeg", "GET /live?token=***&fmt=mjpeg"),
        ('{"mqtt_password": "hunter 2", "port": 1883}', '{"mqtt_password": "***", "port": 1883}'),
        ("  password: hunter2", "  password: ***"),
        ("client-secret = s3cr3t;", "client-secret = ***;"),
        # Not secrets: words that contain or follow a key name are left alone.
        (
            "mqtt.password: environment variable SITESENTRY_PW is not set",
            "mqtt.password: environment variable SITESENTRY_PW is not set",
        ),
        ("environment", "environment"),
        ("passwords=3 tokenizer=bpe secretary=Ann", "passwords=3 tokenizer=bpe secretary=Ann"),
        ("mqtt.password: Field required", "mqtt.password: Field required"),
    ],
)
def test_the_redactor_hides_real_secrets_only(text: str, expected: str) -> None:
    assert redact(text) == expected


def run_with_camera_source(tmp_path: Path, source: Path) -> subprocess.CompletedProcess[str]:
    """`sitesentry run` on the sample config with its looping camera reading `source`, as a subprocess."""
    config = sample(tmp_path)
    config["cameras"][0].update(source=str(source), loop=True)
    config["mqtt"].update(port=free_port())
    config["metrics"] = {"port": 0}
    path = write_yaml(tmp_path, config)
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_run_with_only_a_photo_for_a_camera_exits_nonzero_saying_why(tmp_path: Path) -> None:
    photo = tmp_path / "gate.mp4"  # a JPEG under a video's name
    ok, data = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))
    assert ok
    photo.write_bytes(data.tobytes())
    proc = run_with_camera_source(tmp_path, photo)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: no camera left to run: camera gate: cannot play video file {photo}: "
        "not a playable video (it holds a single still image)"
    ), proc.stderr


def test_run_with_a_missing_video_file_gives_up_saying_which_camera_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "gate.mp4"
    proc = run_with_camera_source(tmp_path, missing)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"camera gate: giving up: cannot open video file {missing}: no such file" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last == f"error: no camera left to run: camera gate: cannot open video file {missing}: no such file"
    )


def test_config_check_builds_the_alarm_hook_as_run_would(tmp_path: Path) -> None:
    """A missing sound file or alarm program stops `run`: `config check` says so first, naming the key."""
    data = sample(tmp_path)
    data["alarms"] = {"sound_file": str(tmp_path / "siren.wav"), "command": ["no-such-siren-program"]}
    path = write_yaml(tmp_path, data)
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert f"alarms.sound_file {tmp_path / 'siren.wav'}: no such file" in result.output
    data["alarms"] = {"command": ["no-such-siren-program", "{zone}"]}
    result = CliRunner().invoke(app, ["config", "check", str(write_yaml(tmp_path, data))])
    assert result.exit_code == 2
    assert "alarms.command: program 'no-such-siren-program' not found" in result.output
    data["alarms"] = {"command": [sys.executable, "-c", "pass"]}
    result = CliRunner().invoke(app, ["config", "check", str(write_yaml(tmp_path, data))])
    assert result.exit_code == 0, result.output
