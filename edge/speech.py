"""Spoken warnings for the local alarm hook: a short sentence per rule (and zone) in Cantonese, English and
Mandarin, rendered once with espeak-ng into WAV files cached on disk by content, or a recorded file."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.dataflow import Rule

Language = Literal["yue", "en", "cmn"]
LANGUAGES: tuple[Language, ...] = ("yue", "en", "cmn")

#: Debian's espeak-ng reads Mandarin Han characters with English fallbacks (its cmn dictionary lacks common
#: ones), so the Mandarin defaults are tone-numbered pinyin for the `cmn-latn-pinyin` voice.
DEFAULT_VOICES: dict[Language, str] = {"yue": "yue", "en": "en", "cmn": "cmn-latn-pinyin"}
DEFAULT_TEXT: dict[Rule, dict[Language, str]] = {
    Rule.NO_HELMET: {
        "yue": "請戴上安全帽",
        "en": "Please wear your helmet.",
        "cmn": "qing3 dai4 shang4 an1 quan2 mao4",  # 请戴上安全帽
    },
    Rule.NO_VEST: {
        "yue": "請穿上反光衣",
        "en": "Please wear your safety vest.",
        "cmn": "qing3 chuan1 shang4 fan3 guang1 yi1",  # 请穿上反光衣
    },
    Rule.ZONE_ENTRY: {
        "yue": "危險區域，請離開",
        "en": "Danger zone. Please leave now.",
        "cmn": "wei1 xian3 qu1 yu4, qing3 li2 kai1",  # 危险区域，请离开
    },
}
#: Players tried in order when `player` is not set: PulseAudio/PipeWire, bare ALSA, then FFmpeg's.
PLAYERS: tuple[tuple[str, ...], ...] = (
    ("paplay", "{file}"),
    ("aplay", "-q", "{file}"),
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "{file}"),
)
RENDER_TIMEOUT_S = 30.0
_LATIN = re.compile(r"[A-Za-z]")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
#: What a `player` argument may name: the WAV, and the event's fields (as the alarm hook's `command`).
PLAYER_PLACEHOLDERS = ("file", "rule", "camera", "zone", "event_id", "site")


class SpeechError(ValueError):
    """A spoken warning cannot be prepared as configured (the message names the setting)."""


class SpokenWarning(BaseModel):
    """What is said for one rule (or one rule in one zone): text per language, or a recorded file."""

    model_config = ConfigDict(extra="forbid")

    text: dict[Language, str] = Field(
        default_factory=dict,
        description="Sentence per language (yue, en, cmn), spoken in the order of `languages`; for a rule, "
        "a language left out keeps its default sentence.",
    )
    file: Path | None = Field(
        None, description="A recorded WAV played instead of the rendered text (relative to the config file)."
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: dict[Language, str]) -> dict[Language, str]:
        for language, sentence in value.items():
            if not sentence.strip():
                raise ValueError(f"{language}: empty sentence")
            if len(sentence) > 200:
                raise ValueError(f"{language}: over 200 characters; a warning should be short")
        return value


class SpeechConfig(BaseModel):
    """Spoken warnings played on the edge box when a violation starts, rate-limited per zone and rule."""

    model_config = ConfigDict(extra="forbid")

    languages: list[Language] = Field(
        default_factory=lambda: list(LANGUAGES),
        min_length=1,
        description="Languages spoken one after another, in this order: yue (Cantonese), en, cmn (Mandarin).",
    )
    voices: dict[Language, str] = Field(
        default_factory=dict,
        description="espeak-ng voice per language (`espeak-ng --voices`); default yue, en, cmn-latn-pinyin.",
    )
    rules: dict[Rule, SpokenWarning] = Field(
        default_factory=dict,
        description="Per rule: the sentences (defaults: 'Please wear your helmet.' and the like) or a file.",
    )
    zones: dict[str, dict[Rule, SpokenWarning]] = Field(
        default_factory=dict,
        description="Per zone id, then rule: a warning used in that zone instead of the rule's (every "
        "language in `languages`, or a file).",
    )
    player: list[str] | None = Field(
        None,
        description="Program and arguments that play a WAV, run without a shell; {file} is the WAV and "
        "{rule}, {camera}, {zone}, {event_id}, {site} are replaced. Default: the first of paplay, aplay "
        "and ffplay installed.",
    )
    min_interval_s: float = Field(
        30.0, ge=0, description="Per zone (or camera, for PPE rules) and rule: spoken at most this often."
    )
    speed_wpm: int = Field(140, ge=80, le=300, description="Speaking rate of espeak-ng, words per minute.")
    gap_s: float = Field(0.4, ge=0, le=3, description="Silence between two languages, in seconds.")
    espeak: str = Field("espeak-ng", description="The espeak-ng program (apt install espeak-ng).")
    cache_dir: Path = Field(
        Path("var/speech"),
        description="Where rendered warnings are kept, named by a hash of text, voice and speed, so each "
        "is rendered once.",
    )

    @field_validator("player")
    @classmethod
    def _plays_a_file(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value or not value[0] or not any("{file}" in a for a in value):
                raise ValueError("needs the program and a {file} argument for the WAV to play")
            for name in (n for arg in value for n in _PLACEHOLDER.findall(arg)):
                if name not in PLAYER_PLACEHOLDERS:
                    raise ValueError(
                        f"unknown placeholder {{{name}}}; known: {', '.join(PLAYER_PLACEHOLDERS)}"
                    )
        return value

    @model_validator(mode="after")
    def _zones_say_everything(self) -> SpeechConfig:
        for zone, warnings in self.zones.items():
            for rule, warning in warnings.items():
                missing = [lang for lang in self.languages if lang not in warning.text]
                if warning.file is None and missing:
                    raise ValueError(
                        f"zones.{zone}.{rule}: no text for {', '.join(missing)} and no file "
                        f"(languages: {', '.join(self.languages)})"
                    )
        return self

    def with_paths(self, fix: Callable[[Path], Path]) -> SpeechConfig:
        """Return a copy with the cache folder and recorded files passed through `fix` (made absolute)."""

        def fixed(warning: SpokenWarning) -> SpokenWarning:
            return warning if warning.file is None else warning.model_copy(update={"file": fix(warning.file)})

        return self.model_copy(
            update={
                "cache_dir": fix(self.cache_dir),
                "rules": {rule: fixed(w) for rule, w in self.rules.items()},
                "zones": {z: {rule: fixed(w) for rule, w in ws.items()} for z, ws in self.zones.items()},
            }
        )


@dataclass(frozen=True, slots=True)
class _Line:
    """One sentence to render: its config key (for errors), voice and text."""

    key: str
    voice: str
    text: str


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:20]


def join_wavs(parts: list[Path], gap_s: float, out: Path) -> None:
    """Write the WAVs one after another with `gap_s` of silence between them (same format required)."""
    partial = out.with_name(f"{out.stem}.part.wav")
    try:
        with wave.open(str(partial), "wb") as sink:
            params = None
            for i, part in enumerate(parts):
                with wave.open(str(part), "rb") as source:
                    if params is None:
                        params = source.getparams()
                        sink.setparams(params)
                    elif source.getparams()[:3] != params[:3]:
                        raise SpeechError(f"{part}: a different WAV format from {parts[0]}")
                    if i:
                        silence = round(gap_s * params.framerate) * params.sampwidth * params.nchannels
                        sink.writeframes(b"\0" * silence)
                    sink.writeframes(source.readframes(source.getnframes()))
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


class SpeechWarnings:
    """The WAV to play per (zone, rule), prepared at start: a missing program, voice or file is a
    SpeechError then, never a failure mid-run."""

    def __init__(
        self,
        config: SpeechConfig,
        rules: list[Rule],
        *,
        which: Callable[[str], str | None] = shutil.which,
    ) -> None:
        self.config = config
        self.player = self._find_player(which)
        self._voices = {**DEFAULT_VOICES, **config.voices}
        self._espeak: str | None = None
        plans: dict[tuple[str | None, Rule], tuple[str, list[_Line] | Path]] = {}
        for rule in rules:
            plans[(None, rule)] = self._plan(
                f"alarms.speech.rules.{rule}", rule, config.rules.get(rule), True
            )
        for zone, warnings in config.zones.items():
            for rule, warning in warnings.items():
                plans[(zone, rule)] = self._plan(f"alarms.speech.zones.{zone}.{rule}", rule, warning, False)
        if any(isinstance(plan, list) for _, plan in plans.values()):
            self._espeak = which(config.espeak)
            needing = next(key for key, plan in plans.values() if isinstance(plan, list))
            if self._espeak is None:
                raise SpeechError(
                    f"alarms.speech.espeak: program {config.espeak!r} not found (apt install espeak-ng); it "
                    f"renders the text of {needing}, or give each warning a recorded `file`"
                )
        self._files: dict[tuple[str | None, Rule], Path] = {}
        for target, (key, plan) in plans.items():
            self._files[target] = plan if isinstance(plan, Path) else self._render_all(key, plan)

    def _find_player(self, which: Callable[[str], str | None]) -> list[str]:
        if self.config.player is not None:
            found = which(self.config.player[0])
            if found is None:
                raise SpeechError(f"alarms.speech.player: program {self.config.player[0]!r} not found")
            return [found, *self.config.player[1:]]
        for player in PLAYERS:
            found = which(player[0])
            if found is not None:
                return [found, *player[1:]]
        raise SpeechError(
            "alarms.speech.player: none of paplay, aplay or ffplay is installed (apt install "
            "pulseaudio-utils, alsa-utils or ffmpeg), or set alarms.speech.player"
        )

    def _plan(
        self, key: str, rule: Rule, warning: SpokenWarning | None, defaults: bool
    ) -> tuple[str, list[_Line] | Path]:
        """A recorded file (checked now) or the sentences to render, one per language in order."""
        if warning is not None and warning.file is not None:
            if not warning.file.is_file():
                raise SpeechError(f"{key}.file {warning.file}: no such file")
            return key, warning.file
        text = {**(DEFAULT_TEXT[rule] if defaults else {}), **(warning.text if warning else {})}
        return key, [
            _Line(f"{key}.text.{lang}", self._voices[lang], text[lang]) for lang in self.config.languages
        ]

    def _render_all(self, key: str, lines: list[_Line]) -> Path:
        parts = [self._render(line) for line in lines]
        if len(parts) == 1:
            return parts[0]
        out = self.config.cache_dir / f"{_digest('join', str(self.config.gap_s), *map(str, parts))}.wav"
        if not out.is_file():
            try:
                join_wavs(parts, self.config.gap_s, out)
            except (OSError, wave.Error) as exc:
                raise SpeechError(f"{key}: cannot join the rendered languages into {out}: {exc}") from None
        return out

    def _render(self, line: _Line) -> Path:
        """Render one sentence with espeak-ng, unless the cache has it already (named by content)."""
        speed = str(self.config.speed_wpm)
        out = self.config.cache_dir / f"{_digest(line.voice, speed, line.text)}.wav"
        if out.is_file():
            return out
        assert self._espeak is not None
        self._check_language(line)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpeechError(f"alarms.speech.cache_dir {out.parent}: {exc.strerror or exc}") from None
        partial = out.with_name(f"{out.stem}.part.wav")
        try:
            done = subprocess.run(
                [self._espeak, "-v", line.voice, "-s", speed, "-w", str(partial), "--", line.text],
                capture_output=True,
                timeout=RENDER_TIMEOUT_S,
            )
            error = done.stderr.decode("utf-8", "replace").strip()
            if done.returncode != 0 or not partial.is_file() or partial.stat().st_size <= 44:
                raise SpeechError(
                    f"{line.key}: espeak-ng could not render it with voice {line.voice!r} "
                    f"(alarms.speech.voices; `espeak-ng --voices` lists them): {error or 'no audio'}"
                )
            os.replace(partial, out)
        except subprocess.TimeoutExpired:
            raise SpeechError(f"{line.key}: espeak-ng took over {RENDER_TIMEOUT_S:.0f} s") from None
        finally:
            partial.unlink(missing_ok=True)
        return out

    def _check_language(self, line: _Line) -> None:
        """Refuse text the voice would read as English: a worker would hear nonsense."""
        if line.voice.startswith("en") or _LATIN.search(line.text):
            return
        assert self._espeak is not None
        phonemes = subprocess.run(
            [self._espeak, "-q", "-x", "-v", line.voice, "--", line.text],
            capture_output=True,
            timeout=RENDER_TIMEOUT_S,
        ).stdout.decode("utf-8", "replace")
        if "(en)" in phonemes:
            raise SpeechError(
                f"{line.key}: espeak-ng voice {line.voice!r} reads parts of {line.text!r} as English (its "
                "dictionary lacks those characters); for Mandarin write tone-numbered pinyin with voice "
                "cmn-latn-pinyin, or record a `file`"
            )

    def file_for(self, zone: str | None, rule: Rule) -> Path | None:
        """The WAV for a violation of this rule in this zone (the zone's own warning first), if any."""
        return self._files.get((zone, rule)) or self._files.get((None, rule))
