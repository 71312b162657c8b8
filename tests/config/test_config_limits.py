"""Hostile and broken config files: each is refused with one line saying what is wrong and where."""

import os
import time
from pathlib import Path

import pytest
import yaml

from edge.config import ConfigError, load_config
from edge.config.loader import MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "site.yaml"


def sample_text() -> str:
    """The worked example with absolute paths, so it can be written anywhere."""
    return (
        SAMPLE.read_text(encoding="utf-8")
        .replace("../", f"{REPO}/")
        .replace("source: vtest.mp4", f"source: {REPO}/samples/vtest.mp4")
    )


def refused(path: Path, **kwargs: bool) -> list[str]:
    """Load a file that must be refused; return its error lines, checking each is one line naming the file."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, **kwargs)
    lines = caught.value.lines()
    assert lines, "a refusal says why"
    for line in lines:
        assert line.startswith(f"{path}: ") and "\n" not in line and "\r" not in line, line
    return lines


def write(tmp_path: Path, text: str | bytes, name: str = "site.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_a_file_over_the_size_limit_is_refused_without_being_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, "# padding\n" * (5 * MAX_CONFIG_BYTES // 10 + 1))
    started = time.monotonic()
    assert refused(path) == [
        f"{path}: is {path.stat().st_size:,} bytes; a site config may be at most 1,048,576"
    ]
    assert time.monotonic() - started < 1.0


def test_a_billion_laughs_alias_bomb_is_refused_quickly_and_in_bounded_memory(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    path = write(tmp_path, "\n".join(lines) + "\n")
    started = time.monotonic()
    assert refused(path) == [
        f"{path}: line 1: aliases expand to more than {MAX_NODES:,} values (an alias bomb?)"
    ]
    assert time.monotonic() - started < 10.0


def test_aliases_of_reasonable_size_still_work(tmp_path: Path) -> None:
    text = sample_text().replace(
        "        min_dwell_s: 0.5\n",
        "        min_dwell_s: 0.5\n        schedules: &workdays [{days: [mon, tue], start: '07:00'}]\n",
    )
    text = text.replace(
        "      require: []\n",
        "      require: []\n      schedules: *workdays\n",
    )
    config = load_config(write(tmp_path, text))
    assert config.cameras[0].rules.schedules == config.cameras[0].zones[0].schedules
    assert config.cameras[0].zones[0].schedules[0].days == ["mon", "tue"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &a [*a]\n", "line 1: a[0]: an alias refers to a value that contains it"),
        ("a: &a {<<: *a}\n", "line 1: a: an alias refers to a value that contains it"),
    ],
)
def test_a_recursive_alias_is_refused(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    assert refused(path) == [f"{path}: {expected}"]


@pytest.mark.parametrize("opening", ["[", "{a: ", "- "])
def test_nesting_20000_deep_is_refused_not_a_recursion_error(tmp_path: Path, opening: str) -> None:
    closing = {"[": "]", "{a: ": "}", "- ": ""}[opening]
    if opening == "- ":  # block style: `- - - x` nests one sequence in the next
        text = "site:\n" + opening * 20_000 + "x\n"
    else:
        text = "site: " + opening * 20_000 + "1" + closing * 20_000 + "\n"
    lines = refused(write(tmp_path, text))
    assert len(lines) == 1
    assert "nested deeper than" in lines[0] or "maximum nesting depth" in lines[0]


def test_nesting_just_within_the_limit_parses(tmp_path: Path) -> None:
    # The schema refuses the key, but the parser must get that far: the error is not about nesting.
    path = write(tmp_path, "deep: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n")
    lines = refused(path)
    assert not any("nested" in line for line in lines), lines


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "site:\n  name: café\n".encode("latin-1"),
            "line 2: not UTF-8 text (byte 0xe9); save the config as UTF-8",
        ),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "line 1: not UTF-8 text (byte 0x89); save the config as UTF-8",
        ),
        (b"site:\n  id: a\x00b\n", "line 2: control character U+0000: binary data, not YAML text"),
        (b"\x7fELF\x02\x01\x01", "line 1: control character U+007F: binary data, not YAML text"),
    ],
)
def test_binary_and_non_utf8_files_are_refused_with_the_line(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = write(tmp_path, content)
    assert refused(path) == [f"{path}: {expected}"]


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff".encode() + sample_text().encode())
    assert load_config(path).site.id == "demo-site"


def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path: Path) -> None:
    text = sample_text().replace("    fps: 5\n", "    fps: 5\n    realtime: true\n    fps: 15\n")
    fps_line = text.splitlines().index("    fps: 5") + 1
    path = write(tmp_path, text)
    assert refused(path) == [
        f"{path}: line {fps_line + 2}: cameras[0].fps: duplicate key (first at line {fps_line}); "
        "YAML would silently keep only the last one"
    ]


def test_keys_merged_with_double_angle_brackets_are_not_duplicates(tmp_path: Path) -> None:
    text = sample_text().replace("  - id: gate\n", "  - &gate\n    id: gate\n")
    text = text.replace("\nmodel:", "\n  - <<: *gate\n    id: gate-2\n    fps: 2\n\nmodel:")
    config = load_config(write(tmp_path, text))
    assert [(c.id, c.fps) for c in config.cameras] == [("gate", 5.0), ("gate-2", 2.0)]


@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("    fps: 5\n", "    fps: .nan\n", "cameras[0].fps: must be a finite number, not nan"),
        ("  debounce_s: 1.0 ", "  debounce_s: .inf ", "rules.debounce_s: must be a finite number, not inf"),
        (
            "  min_free_gb: 1\n",
            "  min_free_gb: 1.0e+400\n",
            "evidence.min_free_gb: must be a finite number, not inf",
        ),
        (
            "[0.44, 0.40]",
            "[-.Inf, 0.40]",
            "cameras[0].zones[0].polygon[0][0]: must be a finite number, not -inf",
        ),
        # Quoted, it is a string until validation parses it: refused there, still not as out of range.
        ("    fps: 5\n", "    fps: 'NaN'\n", "cameras[0].fps: Input should be a finite number"),
        (
            "  min_free_gb: 1\n",
            "  min_free_gb: '-inf'\n",
            "evidence.min_free_gb: Input should be a finite number",
        ),
    ],
)
def test_nan_and_infinity_are_refused_as_not_finite(tmp_path: Path, old: str, new: str, error: str) -> None:
    text = sample_text()
    assert old in text
    text = text.replace(old, new)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if new.strip() in row)
    path = write(tmp_path, text)
    assert refused(path) == [f"{path}: line {line}: {error}"]


def test_an_infinity_in_the_alarm_hook_section_is_refused_too(tmp_path: Path) -> None:
    # edge.alarms' model is not one of the Strict config models; the loader checks what it accepted.
    text = sample_text() + "\nalarms:\n  command: [echo]\n  min_interval_s: 'inf'\n"
    lines = refused(write(tmp_path, text))
    assert len(lines) == 1 and lines[0].endswith("alarms.min_interval_s: must be a finite number"), lines


def test_an_inverted_reconnect_range_is_refused(tmp_path: Path) -> None:
    text = sample_text() + "  reconnect_min_s: 60\n  reconnect_max_s: 5\n"
    lines = refused(write(tmp_path, text))
    assert len(lines) == 1
    assert lines[0].endswith("mqtt: reconnect_min_s (60) is greater than reconnect_max_s (5)"), lines


def test_a_site_without_cameras_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "site: {id: a, name: A}\ncameras: []\n")
    assert refused(path) == [
        f"{path}: line 2: cameras: "
        "at least one camera is needed (an edge box without cameras watches nothing)"
    ]


def test_a_site_whose_every_camera_is_disabled_is_refused(tmp_path: Path) -> None:
    """`run` would otherwise wait for ever on no camera at all."""
    text = "site: {id: a, name: A}\ncameras:\n  - {id: gate, source: usb:0, enabled: false}\n"
    (line,) = refused(write(tmp_path, text))
    assert "cameras: every camera has enabled: false, so this edge box would watch nothing" in line, line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site: !!timestamp 2024-13-45\n", "line 1: cannot read this value: month must be in 1..12"),
        (
            "site:\n  id: " + "9" * 5000 + "\n",
            "line 2: cannot read this value: Exceeds the limit (4300",  # 3.10 and 3.11 word the rest apart
        ),
        ("a: 1\n---\nb: 2\n", "line 2, column 1: expected a single document in the stream"),
        ("site: !!python/object:os.system {}\n", "line 1, column 7: could not determine a constructor"),
        ("? [a, b]\n: 1\n", "found unhashable key"),
        ("site: !!timestamp ''\n", "line 1: cannot read this value as !!timestamp"),
        ("site: !!bool maybe\n", "line 1: cannot read this value as !!bool"),
        ("site: !!int ''\n", "line 1: cannot read this value as !!int"),
        ("", "(top level): expected a mapping with `site` and `cameras`"),
    ],
)
def test_values_yaml_cannot_build_are_refused_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    lines = refused(path)
    assert len(lines) == 1 and expected in lines[0], lines


def test_a_folder_or_a_device_is_not_read_as_a_config(tmp_path: Path) -> None:
    assert refused(tmp_path) == [f"{tmp_path}: is a folder, not a config file"]
    fifo = tmp_path / "site.yaml"
    os.mkfifo(fifo)  # opening it would block until a writer appears
    assert refused(fifo) == [f"{fifo}: is not a regular file"]


def test_a_newline_in_a_key_does_not_split_the_error_line(tmp_path: Path) -> None:
    path = write(tmp_path, sample_text() + '"bad\\nkey": 1\n')
    lines = refused(path)
    assert any("bad\\nkey: Extra inputs are not permitted" in line for line in lines), lines


# -- paths this machine must be able to use (`config check`, `run`) ---------------------------------------


def with_paths(tmp_path: Path, **mqtt: object) -> str:
    data = yaml.safe_load(sample_text())
    data["evidence"]["folder"] = str(tmp_path / "evidence")
    data["mqtt"]["outbox"] = str(tmp_path / "outbox.sqlite3")
    data["mqtt"].update(mqtt)
    return yaml.safe_dump(data, sort_keys=False)


def test_usable_paths_pass_and_nothing_is_created_by_checking(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, with_paths(tmp_path)), check_paths=True)
    assert config.evidence.folder == tmp_path / "evidence"
    assert not (tmp_path / "evidence").exists() and not (tmp_path / "outbox.sqlite3").exists()


def test_a_missing_tls_ca_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, with_paths(tmp_path, host="broker.local", tls={"ca_file": "ca.pem"}))
    lines = refused(path, check_paths=True)
    assert len(lines) == 1 and lines[0].endswith(f"mqtt.tls.ca_file: {tmp_path / 'ca.pem'} does not exist")
    assert "line " in lines[0]
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    load_config(path, check_paths=True)


def test_an_evidence_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "evidence").write_text("oops")
    lines = refused(write(tmp_path, with_paths(tmp_path)), check_paths=True)
    assert len(lines) == 1 and lines[0].endswith(
        f"evidence.folder: {tmp_path / 'evidence'} is a file, not a folder"
    )


def test_an_outbox_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outbox.sqlite3").mkdir()
    lines = refused(write(tmp_path, with_paths(tmp_path)), check_paths=True)
    assert len(lines) == 1
    assert f"mqtt.outbox: {tmp_path / 'outbox.sqlite3'} is a folder; name the database file in it" in lines[0]


def test_a_folder_under_a_file_cannot_be_created_and_says_which_file(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    text = with_paths(tmp_path).replace(str(tmp_path / "evidence"), str(tmp_path / "blocker" / "ev" / "x"))
    lines = refused(write(tmp_path, text), check_paths=True)
    assert len(lines) == 1
    assert lines[0].endswith(
        f"evidence.folder: cannot be created: {tmp_path / 'blocker'} is a file, not a folder"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_parent_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        text = with_paths(tmp_path).replace(str(tmp_path / "outbox.sqlite3"), str(locked / "outbox.sqlite3"))
        lines = refused(write(tmp_path, text), check_paths=True)
        assert len(lines) == 1 and lines[0].endswith(
            f"mqtt.outbox: cannot be created: {locked} is not writable"
        )
    finally:
        locked.chmod(0o700)


def test_paths_are_not_checked_unless_asked(tmp_path: Path) -> None:
    # Tools that only read settings (alerts tail, eval) must work on a machine without the edge's folders.
    (tmp_path / "outbox.sqlite3").mkdir()
    assert load_config(write(tmp_path, with_paths(tmp_path))).site.id == "demo-site"
