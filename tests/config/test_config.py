"""Site config validation: every error named by its path; the CLI prints them and exits non-zero."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.config import ConfigError, load_config
from edge.config.models import CameraConfig, SiteConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "site.yaml"


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def base() -> dict:
    return yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))


def test_sample_config_is_valid_and_paths_resolve_next_to_it():
    config = load_config(SAMPLE)
    assert config.site.id == "demo-site"
    assert Path(config.cameras[0].source) == REPO / "samples" / "vtest.mp4"
    assert config.model.path == REPO / "models" / "ppe-yolo" / "model.onnx"


def test_every_error_is_reported_with_its_location(tmp_path):
    data = base()
    data["cameras"].append(
        {"id": "bad cam", "source": "x.mp4", "zones": [{"id": "z", "polygon": [[0, 0], [1, 1]]}]}
    )
    data["site"]["timezone"] = "Mars/Olympus"
    data["rules"]["debounce_s"] = -1
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    errors = "\n".join(info.value.errors)
    assert "cameras[1].zones[0].polygon: needs at least 3 points" in errors
    assert "cameras[1].id:" in errors
    assert "site.timezone: unknown time zone 'Mars/Olympus'" in errors
    assert "rules.debounce_s:" in errors


def test_unknown_keys_are_errors_not_silent_defaults(tmp_path):
    data = base()
    data["rules"]["debounse_s"] = 2
    with pytest.raises(ConfigError, match=r"rules.debounse_s: Extra inputs are not permitted"):
        load_config(write(tmp_path, data))


def test_duplicate_camera_ids_are_refused(tmp_path):
    data = base()
    data["cameras"].append(dict(data["cameras"][0]))
    with pytest.raises(ConfigError, match="camera id 'gate' is used twice"):
        load_config(write(tmp_path, data))


def test_self_crossing_zone_is_refused(tmp_path):
    data = base()
    data["cameras"][0]["zones"][0]["polygon"] = [[0, 0], [1, 1], [1, 0], [0, 1]]
    with pytest.raises(ConfigError, match=r"cameras\[0\].zones\[0\].polygon: polygon must not cross itself"):
        load_config(write(tmp_path, data))


def test_secrets_come_from_the_environment(tmp_path, monkeypatch):
    data = base()
    data["mqtt"].update(host="broker.local", username="edge", password="${SITESENTRY_TEST_PW}")
    path = write(tmp_path, data)
    with pytest.raises(
        ConfigError, match="mqtt.password: environment variable SITESENTRY_TEST_PW is not set"
    ):
        load_config(path)
    monkeypatch.setenv("SITESENTRY_TEST_PW", "s3cret")
    config = load_config(path)
    assert config.mqtt.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text("site:\n  id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_config(path)


def test_cli_config_check_prints_errors_and_exits_nonzero(tmp_path):
    data = base()
    data["cameras"][0]["zones"][0]["polygon"] = [[0, 0], [1, 1]]
    data["mqtt"]["password"] = "hunter2"
    path = write(tmp_path, data)
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "cameras[0].zones[0].polygon: needs at least 3 points" in proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", str(SAMPLE)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_schema_documents_every_field():
    schema = SiteConfig.model_json_schema()
    text = json.dumps(schema)
    assert "Seconds a person must stay inside before entry counts." in text
    missing = [
        f"{name}.{field}"
        for name, definition in schema["$defs"].items()
        for field, spec in definition.get("properties", {}).items()
        if "description" not in spec
    ]
    assert missing == []


def test_an_inverted_torso_band_is_refused(tmp_path):
    data = base()
    data["rules"]["torso_region"] = [0.9, 0.1]
    with pytest.raises(ConfigError, match=r"rules.torso_region: needs 0 <= top < bottom <= 1"):
        load_config(write(tmp_path, data))


def test_config_check_refuses_a_missing_camera_file_and_warns_about_a_missing_model(tmp_path):
    data = base()
    data["cameras"][0]["source"] = "missing.mp4"
    data["model"]["path"] = "nowhere.onnx"
    path = write(tmp_path, data)
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "config", "check", str(path)], capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "OK" not in proc.stdout
    assert (
        f"error: {path}: cameras[0].source: camera 'gate': "
        f"video file {tmp_path / 'missing.mp4'} does not exist" in proc.stderr
    )
    assert f"warning: model.path: {tmp_path / 'nowhere.onnx'} does not exist" in proc.stderr


@pytest.mark.parametrize("scheme", ["http", "https", "HTTP", "rtmp", "file"])
def test_a_camera_source_the_reader_cannot_open_is_refused_naming_camera_and_key(tmp_path, scheme):
    data = base()
    data["cameras"][0]["source"] = f"{scheme}://admin:hunter2@10.0.0.12/video.mjpg"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, data))
    (line,) = caught.value.errors
    assert re.fullmatch(
        rf"line \d+: cameras\[0\]\.source: camera 'gate': {scheme.lower()}:// sources are not supported; "
        r"use rtsp://\.\.\., rtsps://\.\.\., a video file path or usb:N .*",
        line,
    ), line
    assert "hunter2" not in line


@pytest.mark.parametrize(
    "source",
    ["rtsp://127.0.0.1:9/s", "rtsps://127.0.0.1:9/s", "http://127.0.0.1:9/s", "https://h/s", "rtmp://h/s"],
)
def test_config_validation_and_the_reader_agree_on_url_schemes(source):
    from pydantic import ValidationError

    from edge.frames.sources import SourceError, open_source

    try:
        CameraConfig(id="gate", source=source)
        accepted = True
    except ValidationError:
        accepted = False
    try:
        open_source(source, realtime=False, loop=False, open_timeout_s=0.2, read_timeout_s=0.2)
        opened_scheme = True
    except SourceError as exc:
        opened_scheme = "unsupported camera source" not in str(exc)
    assert accepted == opened_scheme
