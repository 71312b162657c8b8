"""`cameras[].detect` (detector input size and slicing): what it accepts, what it refuses and how, and the
older `tiling:` section carried into it."""

from pathlib import Path

import pytest
import yaml

from edge.config import ConfigError, load_config
from edge.config.models import TileGrid

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "site.yaml"


def load_with(tmp_path: Path, camera_yaml: str):
    """Load the sample site with its camera's extra keys written as YAML text (so `off` is YAML's own)."""
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    camera = data["cameras"][0]
    camera["source"] = str(REPO / "samples" / "vtest.mp4")
    camera.update(yaml.safe_load(camera_yaml))
    data["model"] = {"path": str(REPO / "models" / "ppe-yolo" / "model.onnx")}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path)


@pytest.mark.parametrize(
    ("text", "input_", "tiling"),
    [
        ("{}", "auto", "auto"),
        ("detect: {input: 640}", 640, "auto"),
        ("detect: {input: 1280, tiling: off}", 1280, "off"),  # YAML 1.1 reads a bare off as false
        ("detect: {input: auto, tiling: 'off'}", "auto", "off"),
        ("detect: {tiling: {rows: 2, cols: 3}}", "auto", TileGrid(rows=2, cols=3)),
        (
            "detect: {input: 160, tiling: {rows: 1, cols: 2, overlap: 0.1}}",
            160,
            TileGrid(rows=1, cols=2, overlap=0.1),
        ),
    ],
)
def test_good_detect_settings_load(tmp_path, text, input_, tiling):
    detect = load_with(tmp_path, text).cameras[0].detect
    assert detect.input == input_ and detect.tiling == tiling


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "detect: {input: 650}",
            "detect.input: 650 px: the model input's long side must be a multiple of 32",
        ),
        (
            "detect: {input: 128}",
            "detect.input: 128 px: the model input's long side must be a multiple of 32 from 160",
        ),
        ("detect: {input: 8192}", "detect.input: 8192 px"),
        ("detect: {input: big}", "detect.input: expected auto or a size in pixels such as 640, not 'big'"),
        ("detect: {input: true}", "detect.input: expected auto or a size in pixels such as 640, not True"),
        ("detect: {input: 640.0}", "detect.input: expected auto or a size in pixels"),
        ("detect: {tiling: on}", "detect.tiling: expected auto, off or {rows, cols, overlap}, not True"),
        (
            "detect: {tiling: sometimes}",
            "detect.tiling: expected auto, off or {rows, cols, overlap}, not 'sometimes'",
        ),
        ("detect: {tiling: {rows: 9}}", "detect.tiling: rows: Input should be less than or equal to 8"),
        ("detect: {tiling: {rows: 2, colums: 2}}", "detect.tiling: colums: Extra inputs are not permitted"),
        ("detect: {tiling: {overlap: 0.5}}", "detect.tiling: overlap: Input should be less than 0.5"),
        ("detect: {size: 640}", "detect.size: Extra inputs are not permitted"),
    ],
)
def test_bad_detect_settings_are_refused_in_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        load_with(tmp_path, text)
    (line,) = caught.value.lines()
    assert f"cameras[0].{message}" in line


def test_an_older_tiling_section_still_loads_into_detect_tiling(tmp_path):
    enabled = load_with(tmp_path, "tiling: {enabled: true, rows: 3, cols: 2, overlap: 0.1}").cameras[0]
    assert enabled.detect.tiling == TileGrid(rows=3, cols=2, overlap=0.1)
    assert enabled.detect.input == "auto"
    disabled = load_with(tmp_path, "tiling: {enabled: false, rows: 3}").cameras[0]
    assert disabled.detect.tiling == "off"
    with_input = load_with(tmp_path, "{tiling: {enabled: true}, detect: {input: 640}}").cameras[0]
    assert with_input.detect.tiling == TileGrid() and with_input.detect.input == 640


def test_tiling_set_both_ways_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"cameras\[0\]: tiling is set twice: keep detect.tiling"):
        load_with(tmp_path, "{tiling: {enabled: true}, detect: {tiling: off}}")
