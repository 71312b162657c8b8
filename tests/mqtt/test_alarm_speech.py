"""Spoken warnings of the alarm hook: real audio rendered by espeak-ng in Cantonese, English and Mandarin,
measured with sox; cached by content; played through a real player command, rate-limited per zone and rule."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from mqtt_fixtures import make_event
from pydantic import ValidationError

from edge.alarms import AlarmHook, AlarmHookConfig, AlarmHookError
from edge.config.loader import load_config
from edge.dataflow import Rule
from edge.speech import DEFAULT_TEXT, SpeechConfig, SpeechWarnings

REPO = Path(__file__).resolve().parents[2]

needs_tools = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")),
    reason="needs apt packages espeak-ng and sox (scripts/setup.sh)",
)


def measure(wav: Path) -> dict[str, float]:
    """Sample rate, channels and duration from `sox --i`, RMS and peak amplitude from `sox stat`."""
    info = {
        "rate": float(subprocess.run(["sox", "--i", "-r", str(wav)], capture_output=True, text=True).stdout),
        "channels": float(
            subprocess.run(["sox", "--i", "-c", str(wav)], capture_output=True, text=True).stdout
        ),
        "seconds": float(
            subprocess.run(["sox", "--i", "-D", str(wav)], capture_output=True, text=True).stdout
        ),
    }
    stat = subprocess.run(["sox", str(wav), "-n", "stat"], capture_output=True, text=True).stderr
    info["rms"] = float(re.search(r"RMS\s+amplitude:\s+([\d.]+)", stat)[1])  # type: ignore[index]
    info["peak"] = float(re.search(r"Maximum amplitude:\s+([\d.]+)", stat)[1])  # type: ignore[index]
    return info


def wait_files(folder: Path, count: int, timeout: float = 20.0) -> list[Path]:
    """Wait until the player command has written `count` WAVs into a folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(folder.glob("*.wav"))
        if len(files) >= count:
            return files
        time.sleep(0.05)
    return sorted(folder.glob("*.wav"))


@needs_tools
@pytest.mark.parametrize("language", ["yue", "en", "cmn"])
def test_each_language_renders_a_short_audible_warning(tmp_path: Path, language: str) -> None:
    speech = SpeechWarnings(
        SpeechConfig(languages=[language], player=["sox", "{file}", "-n"], cache_dir=tmp_path),
        [Rule.NO_HELMET, Rule.NO_VEST, Rule.ZONE_ENTRY],
    )
    for rule in Rule:
        wav = speech.file_for(None, rule)
        assert wav is not None and wav.parent == tmp_path
        audio = measure(wav)
        assert audio["rate"] == 22050 and audio["channels"] == 1, (rule, audio)
        # A short sentence: longer than a click, shorter than a speech; loud enough to hear (not silence).
        assert 0.8 <= audio["seconds"] <= 5.0, (rule, audio)
        assert audio["rms"] > 0.03 and audio["peak"] > 0.3, (rule, audio)


@needs_tools
def test_three_languages_are_joined_into_one_warning_with_gaps_and_cached_by_content(tmp_path: Path) -> None:
    config = SpeechConfig(player=["sox", "{file}", "-n"], cache_dir=tmp_path, gap_s=0.5)
    first = SpeechWarnings(config, [Rule.NO_HELMET])
    joined = first.file_for(None, Rule.NO_HELMET)
    assert joined is not None
    parts = [
        SpeechWarnings(config.model_copy(update={"languages": [lang]}), [Rule.NO_HELMET]).file_for(
            None, Rule.NO_HELMET
        )
        for lang in ("yue", "en", "cmn")
    ]
    lengths = [measure(p)["seconds"] for p in parts if p is not None]
    assert measure(joined)["seconds"] == pytest.approx(sum(lengths) + 2 * 0.5, abs=0.01)
    # Cached: a second start renders nothing (same files, untouched); new text gets a file of its own.
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.wav")}
    assert len(stamps) == 4  # three languages and the joined warning
    again = SpeechWarnings(config, [Rule.NO_HELMET])
    assert again.file_for(None, Rule.NO_HELMET) == joined
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.wav")} == stamps
    edited = {**config.model_dump(), "rules": {"no_helmet": {"text": {"en": "Helmet on, please."}}}}
    changed = SpeechWarnings(SpeechConfig.model_validate(edited), [Rule.NO_HELMET])
    assert changed.file_for(None, Rule.NO_HELMET) not in stamps
    assert len(list(tmp_path.glob("*.wav"))) == 6  # the new English sentence and its joined warning


@needs_tools
def test_the_hook_speaks_through_the_player_at_most_once_per_interval_per_zone_and_rule(
    tmp_path: Path,
) -> None:
    played = tmp_path / "played"
    played.mkdir()
    # The player is sox writing what it would play to a file named after the event: real playback, no ears.
    speech = {
        "player": ["sox", "{file}", f"{played}/{{camera}}-{{zone}}-{{rule}}-{{event_id}}.wav"],
        "cache_dir": tmp_path / "cache",
        "min_interval_s": 60,
        "zones": {
            "crane": {
                "zone_entry": {
                    "text": {
                        "yue": "吊運中，請離開",
                        "en": "Crane lifting. Keep out.",
                        "cmn": "diao4 yun4 zhong1, qing3 li2 kai1",
                    }
                }
            }
        },
    }
    hook = AlarmHook(AlarmHookConfig.model_validate({"speech": speech}))
    events = [
        make_event(rule=Rule.NO_HELMET),  # spoken
        make_event(rule=Rule.NO_HELMET),  # same camera and rule within a minute: not spoken
        make_event(rule=Rule.NO_VEST),  # another rule: spoken
        make_event(rule=Rule.ZONE_ENTRY, zone="crane"),  # spoken, the zone's own warning
        make_event(rule=Rule.ZONE_ENTRY, zone="crane"),  # not spoken
        make_event(rule=Rule.ZONE_ENTRY, zone="pit"),  # another zone: spoken, the rule's warning
    ]
    assert [hook.trigger(e) for e in events] == [True, False, True, True, False, True]
    hook.close(timeout=30)
    files = wait_files(played, 4)
    assert [f.name.rsplit("-", 5)[0] for f in files] == [
        "gate--no_helmet",
        "gate--no_vest",
        "gate-crane-zone_entry",
        "gate-pit-zone_entry",
    ]
    assert (hook.counts["spoken"], hook.counts["speech_suppressed"]) == (4, 2)
    by_name = {f.name.rsplit("-", 5)[0]: measure(f) for f in files}
    for name, audio in by_name.items():
        assert audio["rms"] > 0.03 and 3.0 <= audio["seconds"] <= 12.0, (name, audio)  # three languages
    # The crane's own sentence differs from the rule's default, so the two zones heard different audio.
    assert by_name["gate-crane-zone_entry"]["seconds"] != by_name["gate-pit-zone_entry"]["seconds"]


@needs_tools
def test_speech_has_its_own_rate_limit_beside_the_siren_command(tmp_path: Path) -> None:
    log_file, played = tmp_path / "siren.log", tmp_path / "played"
    played.mkdir()
    hook = AlarmHook(
        AlarmHookConfig.model_validate(
            {
                "command": ["/bin/sh", "-c", f'echo "$0" >> {log_file}', "{rule}"],
                "min_interval_s": 0,
                "speech": {
                    "languages": ["en"],
                    "player": ["sox", "{file}", f"{played}/{{event_id}}.wav"],
                    "cache_dir": tmp_path / "cache",
                    "min_interval_s": 60,
                },
            }
        )
    )
    for _ in range(3):
        assert hook.trigger(make_event(rule=Rule.NO_HELMET))
    hook.close(timeout=30)
    assert log_file.read_text().split() == ["no_helmet"] * 3  # the siren command each time
    assert len(wait_files(played, 1)) == 1  # the warning once


def test_a_recorded_file_is_played_instead_of_rendered_text_and_needs_no_espeak(tmp_path: Path) -> None:
    recording, args = tmp_path / "helmet-yue.wav", tmp_path / "args"
    recording.write_bytes(b"RIFF")
    player = tmp_path / "player"
    player.write_text(f'#!/bin/sh\necho "$@" > {args}\n')
    player.chmod(0o755)
    found = {"player": str(player)}  # no espeak-ng on this box
    config = AlarmHookConfig.model_validate(
        {
            "rules": ["no_helmet"],
            "speech": {"player": ["player", "{file}"], "rules": {"no_helmet": {"file": str(recording)}}},
        }
    )
    hook = AlarmHook(config, which=found.get)
    assert hook.trigger(make_event(rule=Rule.NO_HELMET))
    hook.close()
    deadline = time.monotonic() + 10
    while not args.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert args.read_text().strip() == str(recording)


def test_missing_programs_and_bad_settings_fail_at_start_naming_the_setting(tmp_path: Path) -> None:
    speech = {"cache_dir": str(tmp_path), "player": ["aplay", "{file}"]}
    only_player = {"aplay": "/usr/bin/aplay"}.get
    with pytest.raises(AlarmHookError, match=r"^alarms\.speech\.espeak: program 'espeak-ng' not found \(apt"):
        AlarmHook(AlarmHookConfig.model_validate({"speech": speech}), which=only_player)
    with pytest.raises(AlarmHookError, match=r"^alarms\.speech\.player: program 'aplay' not found$"):
        AlarmHook(AlarmHookConfig.model_validate({"speech": speech}), which=lambda name: None)
    with pytest.raises(AlarmHookError, match=r"^alarms\.speech\.player: none of paplay, aplay or ffplay"):
        AlarmHook(
            AlarmHookConfig.model_validate({"speech": {"cache_dir": str(tmp_path)}}), which=lambda n: None
        )
    with pytest.raises(AlarmHookError, match=r"alarms\.speech\.rules\.no_vest\.file .*: no such file"):
        AlarmHook(
            AlarmHookConfig.model_validate(
                {"speech": {**speech, "rules": {"no_vest": {"file": str(tmp_path / "gone.wav")}}}}
            ),
            which=only_player,
        )
    with pytest.raises(ValidationError, match=r"needs the program and a \{file\} argument"):
        SpeechConfig(player=["aplay"])
    with pytest.raises(ValidationError, match=r"unknown placeholder \{volume\}"):
        SpeechConfig(player=["aplay", "{file}", "{volume}"])
    with pytest.raises(ValidationError, match=r"zones\.crane\.zone_entry: no text for yue, cmn and no file"):
        SpeechConfig.model_validate({"zones": {"crane": {"zone_entry": {"text": {"en": "Keep out."}}}}})


@needs_tools
def test_text_a_voice_would_read_as_english_or_an_unknown_voice_is_refused_at_start(tmp_path: Path) -> None:
    # Debian's espeak-ng 'cmn' voice reads these Han characters with English letter names: nonsense to a
    # worker, so it is refused with the way out (pinyin, or a recording).
    hanzi = {
        "cache_dir": str(tmp_path),
        "player": ["sox", "{file}", "-n"],
        "languages": ["cmn"],
        "voices": {"cmn": "cmn"},
        "rules": {"no_helmet": {"text": {"cmn": "请戴上安全帽"}}},
    }
    with pytest.raises(
        AlarmHookError, match=r"alarms\.speech\.rules\.no_helmet\.text\.cmn: .* as English .*pinyin"
    ):
        AlarmHook(AlarmHookConfig.model_validate({"rules": ["no_helmet"], "speech": hanzi}))
    unknown = {**hanzi, "voices": {"cmn": "zz"}, "rules": {}}
    with pytest.raises(AlarmHookError, match=r"could not render it with voice 'zz' \(alarms\.speech\.voices"):
        AlarmHook(AlarmHookConfig.model_validate({"rules": ["no_helmet"], "speech": unknown}))


def test_default_sentences_exist_for_every_rule_and_language() -> None:
    assert set(DEFAULT_TEXT) == set(Rule)
    assert all(set(texts) == {"yue", "en", "cmn"} for texts in DEFAULT_TEXT.values())
    assert DEFAULT_TEXT[Rule.NO_HELMET]["en"] == "Please wear your helmet."
    assert DEFAULT_TEXT[Rule.NO_HELMET]["yue"] == "請戴上安全帽"


def test_speech_paths_in_a_site_file_are_relative_to_it(tmp_path: Path) -> None:
    text = (
        (REPO / "samples" / "site.yaml")
        .read_text()
        .replace("source: vtest.mp4", f"source: {REPO}/samples/vtest.mp4")
    )
    text = text.replace("model:\n  path: ../models", f"model:\n  path: {REPO}/models")
    text += "\nalarms:\n  speech:\n    cache_dir: speech-cache\n    rules:\n      no_vest: {file: vest.wav}\n"
    site = tmp_path / "site.yaml"
    site.write_text(text)
    speech = load_config(site, check_paths=False).alarms.speech  # type: ignore[union-attr]
    assert speech is not None
    assert speech.cache_dir == tmp_path / "speech-cache"
    assert speech.rules[Rule.NO_VEST].file == tmp_path / "vest.wav"
