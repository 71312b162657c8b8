"""The local alarm hook on the edge box: run a command, play a sound or speak a warning (edge.speech) when a
violation starts, and an `off_command` when the last open alarm of a zone (or camera) ends."""

from __future__ import annotations

import logging
import queue
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge.dataflow import Phase, Rule, SafetyEvent
from edge.speech import SpeechConfig, SpeechError, SpeechWarnings

log = logging.getLogger(__name__)

PLACEHOLDERS = ("rule", "camera", "zone", "event_id", "site")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_PLAYERS = ("paplay", "aplay")  # PulseAudio/PipeWire first, then bare ALSA
_MAX_ON_JOBS = 8  # alarms waiting for the worker; more are dropped (counted), offs never are


class AlarmHookError(ValueError):
    """The hook cannot work as configured (message names the setting)."""


class AlarmHookConfig(BaseModel):
    """A local alarm on the edge box: a command, a sound file, or both, when a violation starts."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | None = Field(
        None,
        description="Program and arguments, run without a shell; {rule}, {camera}, {zone}, {event_id} and "
        "{site} are replaced.",
    )
    sound_file: Path | None = Field(
        None, description="WAV file played with paplay or aplay, whichever is installed."
    )
    off_command: list[str] | None = Field(
        None,
        description="Program and arguments run when the last open alarm of a zone (or camera) ends, also "
        "for alarms a crash left open (closed on the next start); never rate-limited nor dropped. Same "
        "placeholders as `command`.",
    )
    rules: list[Rule] = Field(default_factory=lambda: list(Rule), description="Rules that set the alarm off.")
    min_interval_s: float = Field(
        10.0, ge=0, description="Per zone (or camera, for PPE rules): the hook fires at most this often."
    )
    timeout_s: float = Field(
        30.0, gt=0, description="A command or sound still running after this is stopped."
    )
    speech: SpeechConfig | None = Field(
        None,
        description="A spoken warning per rule and zone in Cantonese, English and Mandarin (espeak-ng or "
        "recorded files), rate-limited on its own (`speech.min_interval_s`, per zone and rule).",
    )

    @field_validator("command", "off_command")
    @classmethod
    def _known_placeholders(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value or not value[0]:
                raise ValueError("needs at least the program to run")
            for arg in value:
                for name in _PLACEHOLDER.findall(arg):
                    if name not in PLACEHOLDERS:
                        raise ValueError(f"unknown placeholder {{{name}}}; known: {', '.join(PLACEHOLDERS)}")
        return value

    @model_validator(mode="after")
    def _does_something(self) -> AlarmHookConfig:
        if self.command is None and self.sound_file is None and self.speech is None:
            raise ValueError("set `command`, `sound_file` or `speech` (or leave the alarm hook out)")
        return self


class AlarmHook:
    """Fires the configured command, sound and spoken warning on a worker thread; `trigger` never waits."""

    def __init__(self, config: AlarmHookConfig, *, which: Callable[[str], str | None] = shutil.which) -> None:
        self.config = config
        self._player: list[str] | None = None
        if config.sound_file is not None:
            if not config.sound_file.is_file():
                raise AlarmHookError(f"alarms.sound_file {config.sound_file}: no such file")
            found = next((path for name in _PLAYERS if (path := which(name))), None)
            if found is None:
                raise AlarmHookError(
                    "alarms.sound_file is set but neither paplay nor aplay is installed "
                    "(apt install pulseaudio-utils or alsa-utils)"
                )
            self._player = [found, str(config.sound_file)]
        if config.command is not None and which(config.command[0]) is None:
            raise AlarmHookError(f"alarms.command: program {config.command[0]!r} not found")
        if config.off_command is not None and which(config.off_command[0]) is None:
            raise AlarmHookError(f"alarms.off_command: program {config.off_command[0]!r} not found")
        self.speech: SpeechWarnings | None = None
        if config.speech is not None:
            try:  # renders every warning now (or finds it cached), so nothing can fail for want of it later
                self.speech = SpeechWarnings(config.speech, config.rules, which=which)
            except SpeechError as exc:
                raise AlarmHookError(str(exc)) from None
        self.counts: Counter[str] = Counter()
        self._last_fired: dict[str, float] = {}
        self._last_spoken: dict[str, float] = {}  # per zone (or camera) and rule
        self._open: dict[str, set[uuid.UUID]] = {}  # alarm (event) ids open per zone or camera key
        # Unbounded, but at most _MAX_ON_JOBS alarms wait: an off is never dropped (a siren left on is
        # worse than a late one).
        self._jobs: queue.Queue[tuple[bool, list[tuple[str, list[str]]]] | None] = queue.Queue()
        self._on_jobs = 0
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def trigger(self, event: SafetyEvent) -> bool:
        """Set the alarm off for a starting violation unless rate-limited, or run `off_command` when the
        last open alarm of its zone (or camera) ends; return whether a job was queued."""
        if event.rule not in self.config.rules or event.phase is Phase.UPDATE:
            return False
        key = f"zone:{event.camera_id}/{event.zone}" if event.zone else f"camera:{event.camera_id}"
        if event.phase is Phase.END:
            return self._release(key, event)
        now = time.monotonic()
        siren = self.config.command is not None or self._player is not None
        spoken_key = f"{key}/{event.rule}"
        with self._lock:
            self._open.setdefault(key, set()).add(event.event_id)
            siren_due = siren and _due(self._last_fired.get(key), now, self.config.min_interval_s)
            speech_due = self.speech is not None and _due(
                self._last_spoken.get(spoken_key), now, self.speech.config.min_interval_s
            )
            if siren and not siren_due:
                self.counts["suppressed"] += 1
            if self.speech is not None and not speech_due:
                self.counts["speech_suppressed"] += 1
            if not siren_due and not speech_due:
                return False
            if self._on_jobs >= _MAX_ON_JOBS:
                self.counts["dropped"] += 1
                log.warning(
                    "alarm hook busy: alarm for event %s on %s dropped", event.event_id, event.camera_id
                )
                return False
            if siren_due:
                self._last_fired[key] = now
            if speech_due:
                self._last_spoken[spoken_key] = now
            self._on_jobs += 1
            self._ensure_worker()
        job = self._commands(event, self.config.command, sound=True) if siren_due else []
        if speech_due:
            job += self._speech_command(event)
        self._jobs.put((True, job))
        self.counts["queued"] += 1
        return True

    def _speech_command(self, event: SafetyEvent) -> list[tuple[str, list[str]]]:
        assert self.speech is not None
        wav = self.speech.file_for(event.zone, event.rule)
        if wav is None:  # a rule the hook does not speak for
            return []
        values = {**_values(event), "file": str(wav)}
        return [
            ("speech", [_PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), a) for a in self.speech.player])
        ]

    def _release(self, key: str, event: SafetyEvent) -> bool:
        with self._lock:
            still_open = self._open.get(key, set())
            still_open.discard(event.event_id)
            if still_open or self.config.off_command is None:
                return False
            self._open.pop(key, None)
            self._ensure_worker()
        # Also for an end this run never saw start (closed after a crash): switching off twice is harmless.
        self._jobs.put((False, self._commands(event, self.config.off_command, sound=False)))
        self.counts["off_queued"] += 1
        return True

    def _commands(
        self, event: SafetyEvent, command: list[str] | None, *, sound: bool
    ) -> list[tuple[str, list[str]]]:
        values = _values(event)
        commands = []
        if command is not None:
            commands.append(("command", [_PLACEHOLDER.sub(lambda m: values[m[1]], arg) for arg in command]))
        if sound and self._player is not None:
            commands.append(("sound", list(self._player)))
        return commands

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="alarm-hook", daemon=True)
            self._worker.start()

    def _run(self) -> None:
        while (item := self._jobs.get()) is not None:
            is_on, job = item
            if is_on:
                with self._lock:
                    self._on_jobs -= 1
            processes = []
            for kind, argv in job:
                try:
                    processes.append(
                        (
                            kind,
                            argv,
                            subprocess.Popen(
                                argv,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE,
                            ),
                        )
                    )
                except OSError as exc:
                    self.counts["failed"] += 1
                    log.error("alarm hook: cannot run %s: %s", argv[0], exc.strerror or exc)
            for kind, argv, process in processes:
                self._wait(kind, argv, process)

    def _wait(self, kind: str, argv: list[str], process: subprocess.Popen[bytes]) -> None:
        try:
            _, stderr = process.communicate(timeout=self.config.timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            self.counts["failed"] += 1
            log.error("alarm hook: %s still running after %.0f s, stopped", argv[0], self.config.timeout_s)
            return
        if process.returncode != 0:
            self.counts["failed"] += 1
            tail = stderr.decode("utf-8", "replace").strip()[-200:]
            log.error("alarm hook: %s exited with %d: %s", argv[0], process.returncode, tail)
        else:
            self.counts["fired"] += 1
            if kind == "speech":
                self.counts["spoken"] += 1

    def close(self, timeout: float = 5.0) -> None:
        """Let queued alarms finish (up to `timeout`) and stop the worker."""
        worker = self._worker
        if worker is None:
            return
        try:
            self._jobs.put(None, timeout=timeout)
        except queue.Full:
            log.warning("alarm hook: queue still full at shutdown; pending alarms are abandoned")
            return
        worker.join(timeout)


def _due(last: float | None, now: float, interval: float) -> bool:
    """Whether a rate-limited action may run again."""
    return last is None or now - last >= interval


def _values(event: SafetyEvent) -> dict[str, str]:
    """The placeholder values of an event."""
    return {
        "rule": str(event.rule),
        "camera": event.camera_id,
        "zone": event.zone or "",
        "event_id": str(event.event_id),
        "site": event.site_id,
    }
