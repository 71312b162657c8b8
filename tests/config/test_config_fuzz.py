"""Fuzzing the config loader: whatever the file holds, the outcome is a config or one ConfigError, promptly.

Three kinds of input: random bytes, random YAML-ish text built from YAML's own punctuation and keywords,
and structured mutations of samples/site.yaml (values swapped for hostile ones, keys dropped or repeated,
lines shuffled, anchors and aliases added). A traceback, a hang or an error line that spans several lines
fails the test.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import ConfigError, load_config
from edge.config.models import SiteConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE_TEXT = (REPO / "samples" / "site.yaml").read_text(encoding="utf-8")
SAMPLE = yaml.safe_load(SAMPLE_TEXT)

FUZZ = settings(
    max_examples=250,
    deadline=timedelta(seconds=3),  # a hang or a slow path shows up as a deadline failure
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,  # the same examples on every run: a CI failure can be reproduced
)

TOKENS = [
    *"abcxyz019:-[]{},&*!|>'\"#.?% \t\n",
    "\n  ",
    "\n- ",
    "site:",
    "cameras:",
    "id: ",
    "source: ",
    "fps: ",
    ".nan",
    "-.inf",
    "<<: ",
    "&a ",
    "*a",
    "!!binary ",
    "!!timestamp ",
    "!!python/object ",
    "---\n",
    "...\n",
    "${HOME}",
    "${NOPE_NOT_SET}",
    "\x00",
    "\ufeff",
    "\u2028",
    "é",
    "9" * 50,
]

HOSTILE_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    10**30,
    1e308,
    float("nan"),
    float("inf"),
    -float("inf"),
    "",
    "x" * 5000,
    "a\x00b",
    "line\nbreak",
    "[not markup]",
    "${NOPE_NOT_SET}",
    "rtsp://u:p@host/s",
    "usb:x",
    "/",
    "/dev/null",
    "/proc/self/mem",
    "a/" * 300,
    [],
    {},
    [[[[[[[[1]]]]]]]],
    {"unexpected": 1},
    [1, "2", None],
    "2024-13-45",
]


def check(path: Path) -> None:
    """Load `path`: a SiteConfig, or a ConfigError whose every line names the file and is one line."""
    try:
        config = load_config(path, check_paths=True)
    except ConfigError as exc:
        lines = exc.lines()
        assert lines, "a ConfigError says why"
        for line in lines:
            assert line.startswith(f"{path}: "), line
            assert "\n" not in line and "\r" not in line, repr(line)
        return
    assert isinstance(config, SiteConfig)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One file, rewritten per example; the folder is empty otherwise, so relative paths resolve beside it.
    return tmp_path_factory.mktemp("fuzz") / "site.yaml"


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_loaded_or_refused_cleanly(target: Path, data: bytes) -> None:
    target.write_bytes(data)
    check(target)


@FUZZ
@given(pieces=st.lists(st.sampled_from(TOKENS), max_size=300))
def test_random_yaml_like_text_is_loaded_or_refused_cleanly(target: Path, pieces: list[str]) -> None:
    target.write_text("".join(pieces), encoding="utf-8")
    check(target)


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a parsed YAML value, containers and leaves."""
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths_of(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += paths_of(value, (*prefix, index))
    return out


def set_at(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return data


def delete_at(data: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return data


@st.composite
def mutated_samples(draw: st.DrawFn) -> str:
    """samples/site.yaml with a few structural edits, then a few textual ones."""
    data = copy.deepcopy(SAMPLE)
    for _ in range(draw(st.integers(0, 4))):
        paths = paths_of(data)
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "duplicate"]))
        if action == "replace":
            data = set_at(data, path, copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES))))
        elif action == "delete" and path:
            data = delete_at(data, path)
        elif action == "duplicate" and path and isinstance(path[-1], int):
            parent = data
            for part in path[:-1]:
                parent = parent[part]
            parent.append(copy.deepcopy(parent[path[-1]]))
    text = yaml.safe_dump(data, sort_keys=draw(st.booleans()), allow_unicode=draw(st.booleans()))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        index = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["repeat", "drop", "swap", "insert", "truncate", "anchor"]))
        if edit == "repeat":  # a duplicate key at the same indent, most of the time
            lines.insert(index, lines[index])
        elif edit == "drop":
            del lines[index]
        elif edit == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif edit == "insert":
            column = draw(st.integers(0, len(lines[index])))
            token = draw(st.sampled_from(TOKENS))
            lines[index] = lines[index][:column] + token + lines[index][column:]
        elif edit == "truncate":
            lines = lines[:index]
        elif edit == "anchor" and ": " in lines[index]:
            key, value = lines[index].split(": ", 1)
            lines[index] = f"{key}: &a {value}"
            lines.append("x-alias: [*a, *a, *a]\n")
    return "".join(lines)


@FUZZ
@given(text=mutated_samples())
def test_mutated_sample_configs_are_loaded_or_refused_cleanly(target: Path, text: str) -> None:
    target.write_text(text, encoding="utf-8")
    check(target)


def test_the_mutation_fuzzer_still_reaches_valid_configs(target: Path) -> None:
    # Guards the fuzzer itself: unmutated, the sample must load, so mutations start from a valid config.
    target.write_text(yaml.safe_dump(SAMPLE), encoding="utf-8")
    config = load_config(target)
    assert config.site.id == "demo-site"
