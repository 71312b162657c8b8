"""The local alarm hook: runs a command or plays a sound off the pipeline thread, rate-limited."""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

import pytest
from mqtt_fixtures import make_event
from pydantic import ValidationError

from edge.alarms import AlarmHook, AlarmHookConfig, AlarmHookError
from edge.dataflow import Phase, Rule


def wait_file(path: Path, timeout: float = 10.0) -> str:
    """Wait for a file the hook's command writes."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.read_text()


def test_the_command_gets_the_event_as_arguments_without_a_shell(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hook = AlarmHook(
        AlarmHookConfig(command=["/bin/sh", "-c", f'echo "$0|$1|$2" > {out}', "{rule}", "{zone}", "{camera}"])
    )
    assert hook.trigger(make_event(zone="crane; rm -rf /", rule=Rule.ZONE_ENTRY))
    hook.close()
    assert wait_file(out).strip() == "zone_entry|crane; rm -rf /|gate"
    assert hook.counts["fired"] == 1


def test_trigger_returns_while_the_command_is_still_running(tmp_path: Path) -> None:
    go, out = tmp_path / "go", tmp_path / "out"
    script = f"while [ ! -e {go} ]; do sleep 0.02; done; echo done > {out}"
    hook = AlarmHook(AlarmHookConfig(command=["/bin/sh", "-c", script]))
    assert hook.trigger(make_event())
    assert not out.exists()  # the command waits for `go`, the caller does not
    go.touch()
    hook.close()
    assert wait_file(out).strip() == "done"


def test_the_hook_is_rate_limited_per_zone_or_camera(tmp_path: Path) -> None:
    hook = AlarmHook(AlarmHookConfig(command=["/bin/true"], min_interval_s=60))
    assert hook.trigger(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    assert not hook.trigger(make_event(zone="crane", rule=Rule.ZONE_ENTRY))
    assert hook.trigger(make_event(zone="pit", rule=Rule.ZONE_ENTRY))
    assert hook.trigger(make_event(camera="gate"))
    assert not hook.trigger(make_event(camera="gate", rule=Rule.NO_VEST))
    hook.close()
    assert (hook.counts["queued"], hook.counts["suppressed"]) == (3, 2)


def test_only_starts_of_the_configured_rules_set_it_off() -> None:
    hook = AlarmHook(AlarmHookConfig(command=["/bin/true"], rules=[Rule.ZONE_ENTRY], min_interval_s=0))
    assert not hook.trigger(make_event(rule=Rule.NO_HELMET))
    assert not hook.trigger(make_event(rule=Rule.ZONE_ENTRY, zone="z", phase=Phase.UPDATE))
    assert not hook.trigger(make_event(rule=Rule.ZONE_ENTRY, zone="z", phase=Phase.END))
    assert hook.trigger(make_event(rule=Rule.ZONE_ENTRY, zone="z"))
    hook.close()


def test_a_sound_file_is_played_with_the_player_found_on_path(tmp_path: Path) -> None:
    sound, args = tmp_path / "siren.wav", tmp_path / "args"
    sound.write_bytes(b"RIFF....WAVE")
    player = tmp_path / "aplay"
    player.write_text(f'#!/bin/sh\necho "$@" > {args}\n')
    player.chmod(0o755)
    found = {"aplay": str(player)}
    hook = AlarmHook(AlarmHookConfig(sound_file=sound), which=found.get)
    assert hook.trigger(make_event())
    hook.close()
    assert wait_file(args).strip() == str(sound)


def test_a_failing_command_is_logged_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    hook = AlarmHook(AlarmHookConfig(command=["/bin/sh", "-c", "echo speaker offline >&2; exit 3"]))
    with caplog.at_level(logging.ERROR, logger="edge.alarms"):
        hook.trigger(make_event())
        hook.close()
    assert hook.counts["failed"] == 1
    assert "exited with 3: speaker offline" in caplog.text


def test_bad_hook_settings_fail_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unknown placeholder {password}"):
        AlarmHookConfig(command=["/bin/echo", "{password}"])
    with pytest.raises(ValidationError, match="set `command`, `sound_file` or `speech`"):
        AlarmHookConfig()
    with pytest.raises(AlarmHookError, match="program 'no-such-siren' not found"):
        AlarmHook(AlarmHookConfig(command=["no-such-siren"]))
    with pytest.raises(AlarmHookError, match="sound_file .*: no such file"):
        AlarmHook(AlarmHookConfig(sound_file=tmp_path / "missing.wav"))
    (tmp_path / "s.wav").write_bytes(b"RIFF")
    with pytest.raises(AlarmHookError, match="neither paplay nor aplay is installed"):
        AlarmHook(AlarmHookConfig(sound_file=tmp_path / "s.wav"), which=lambda name: None)


def test_off_command_runs_when_the_last_alarm_of_a_zone_ends_and_is_never_rate_limited(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "log"
    record = ["/bin/sh", "-c", f'echo "$0 $1" >> {log_file}']
    hook = AlarmHook(
        AlarmHookConfig(
            command=[*record, "on", "{zone}"], off_command=[*record, "off", "{zone}"], min_interval_s=60
        )
    )
    first, second = uuid.uuid4(), uuid.uuid4()
    crane = {"zone": "crane", "rule": Rule.ZONE_ENTRY}
    assert hook.trigger(make_event(event_id=first, **crane))
    assert not hook.trigger(make_event(event_id=second, **crane))  # rate-limited, but still open
    assert not hook.trigger(make_event(event_id=first, phase=Phase.END, **crane))  # the second is open
    assert hook.trigger(make_event(event_id=second, phase=Phase.END, **crane))
    # An end this run never saw start (closed after a crash) still switches the siren off.
    assert hook.trigger(make_event(phase=Phase.END, zone="pit", rule=Rule.ZONE_ENTRY))
    hook.close()
    assert log_file.read_text().splitlines() == ["on crane", "off crane", "off pit"]
