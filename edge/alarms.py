"""The local alarm hook on the edge box: run a command or play a sound when a violation starts, and an
`off_command` when the last open alarm of a zone (or camera) ends."""

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
        if self.command is None and self.sound_file is None:
            raise ValueError("set `command`, `sound_file` or both (or leave the alarm hook out)")
        return self


class AlarmHook:
    """Fires the configured command and sound on a worker thread; `trigger` never waits for them."""

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
        self.counts: Counter[str] = Counter()
        self._last_fired: dict[str, float] = {}
        self._open: dict[str, set[uuid.UUID]] = {}  # alarm (event) ids open per zone or camera key
        # Unbounded, but at most _MAX_ON_JOBS alarms wait: an off is never dropped (a siren left on is
        # worse than a late one).
        self._jobs: queue.Queue[tuple[bool, list[list[str]]] | None] = queue.Queue()
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
        with self._lock:
            self._open.setdefault(key, set()).add(event.event_id)
            last = self._last_fired.get(key)
            if last is not None and now - last < self.config.min_interval_s:
                self.counts["suppressed"] += 1
                return False
            if self._on_jobs >= _MAX_ON_JOBS:
                self.counts["dropped"] += 1
                log.warning(
                    "alarm hook busy: alarm for event %s on %s dropped", event.event_id, event.camera_id
                )
                return False
            self._last_fired[key] = now
            self._on_jobs += 1
            self._ensure_worker()
        self._jobs.put((True, self._commands(event, self.config.command, sound=True)))
        self.counts["queued"] += 1
        return True

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

    def _commands(self, event: SafetyEvent, command: list[str] | None, *, sound: bool) -> list[list[str]]:
        values = {
            "rule": str(event.rule),
            "camera": event.camera_id,
            "zone": event.zone or "",
            "event_id": str(event.event_id),
            "site": event.site_id,
        }
        commands = []
        if command is not None:
            commands.append([_PLACEHOLDER.sub(lambda m: values[m[1]], arg) for arg in command])
        if sound and self._player is not None:
            commands.append(list(self._player))
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
            for argv in job:
                try:
                    processes.append(
                        (
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
            for argv, process in processes:
                self._wait(argv, process)

    def _wait(self, argv: list[str], process: subprocess.Popen[bytes]) -> None:
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
