"""Control commands: check the sender, parse, run the app's callback, and build the reply; never raises."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from contract.ids import is_id
from contract.payloads import SCHEMA_VERSION, ControlCommand, ControlReply
from edge.config.loader import format_location

log = logging.getLogger(__name__)

_WARN_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class ControlResult:
    """What the app's control callback answers: ok or not, and a short message for the sender."""

    ok: bool
    message: str


ControlCallback = Callable[[ControlCommand], ControlResult]


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A message that arrived on the control topic, with the MQTT 5 properties that matter."""

    payload: bytes
    sender: str | None  # the `client_id` user property
    response_topic: str | None
    correlation_data: bytes | None
    mqtt5: bool


@dataclass(frozen=True, slots=True)
class ControlOutcome:
    """The reply to publish (None: answer nothing) and how the request was counted."""

    reply: ControlReply | None
    result: str  # ok, error, malformed, unauthorised, unsupported, too_large, failed


class ReplyLimiter:
    """A token bucket for error replies: junk sent in bulk gets a few answers, then none, counted."""

    def __init__(self, rate_per_s: float = 5.0, burst: int = 20, clock: Callable[[], float] = time.monotonic):
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()

    def allow(self) -> bool:
        """Take a token if one is left; False means: count the reply as suppressed, do not send it."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


#: In `mqtt.control_clients`: accept commands from any client the broker lets publish on the control topic.
ANY_CLIENT = "*"


def reply_topic(default: str, request: ControlRequest) -> str:
    """Where a reply may go: the sender's own `<default>/<client_id>` when it asked for a response topic,
    else `default`. Any other response topic is ignored, so a sender cannot steer replies onto the edge's
    event, alarm or status topics, nor anyone else's."""
    if request.response_topic is None or request.sender is None or not is_id(request.sender):
        return default
    return f"{default}/{request.sender}"


class ControlHandler:
    """Accepts commands only from `allowed_clients`; malformed or unauthorised ones are rejected, counted."""

    def __init__(
        self,
        *,
        site: str,
        edge: str,
        allowed_clients: Collection[str],
        callback: ControlCallback,
        clock: Callable[[], datetime],
        max_bytes: int = 4096,
    ) -> None:
        self._site = site
        self._edge = edge
        self._allowed = frozenset(allowed_clients)
        self._callback = callback
        self._clock = clock
        self._max_bytes = max_bytes
        self.counts: Counter[str] = Counter()
        self._last_warning: dict[str, float] = {}

    def handle(self, request: ControlRequest) -> ControlOutcome:
        """Check, parse and run one request; any failure becomes an error reply (none for strangers)."""
        checked = self.check(request)
        return checked if isinstance(checked, ControlOutcome) else self.run(checked, request)

    def check(self, request: ControlRequest) -> ControlCommand | ControlOutcome:
        """Cheap checks, safe on the network thread: the command to run, or the outcome of a rejection.

        Strangers (no MQTT 5, no client_id or one not listed) get no reply at all: answering them would let
        anyone make the edge publish.
        """
        # "*" leaves the broker's ACL as the only lock (the embedded loopback broker speaks 3.1.1 only).
        anyone = ANY_CLIENT in self._allowed
        if not request.mqtt5 and not anyone:
            need = "control commands need MQTT 5 (the sender's client_id user property)"
            return self._reject(None, "unsupported", need, answer=False)
        if not anyone and (request.sender is None or request.sender not in self._allowed):
            who = (
                "a client without a client_id user property"
                if request.sender is None
                else repr(request.sender)
            )
            return self._reject(None, "unauthorised", f"{who} may not send control commands", answer=False)
        if len(request.payload) > self._max_bytes:
            return self._reject(None, "too_large", f"command is larger than {self._max_bytes} bytes")
        request_id = _guess_request_id(request.payload)
        try:
            data = json.loads(request.payload)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return self._reject(request_id, "malformed", f"not JSON: {str(exc)[:120]}")
        try:
            command = ControlCommand.model_validate(data)
        except ValidationError as exc:
            return self._reject(request_id, "malformed", f"invalid command: {_first_error(exc)}")
        return command

    def run(self, command: ControlCommand, request: ControlRequest) -> ControlOutcome:
        """Run a checked command through the app's callback; a failure becomes an error reply."""
        try:
            result = self._callback(command)
        except Exception as exc:
            log.exception("control command %s from %s failed", command.request_id, request.sender)
            return self._reject(command.request_id, "failed", f"command failed: {exc}")
        outcome = "ok" if result.ok else "error"
        self.counts[outcome] += 1
        log.info(
            "control command %s from %s: %s %s -> %s (%s)",
            command.request_id,
            request.sender,
            command.action,
            _target(command),
            outcome,
            result.message,
        )
        return ControlOutcome(self._reply(command.request_id, result.ok, result.message), outcome)

    def _reject(
        self, request_id: str | None, reason: str, message: str, *, answer: bool = True
    ) -> ControlOutcome:
        self.counts[reason] += 1
        now = time.monotonic()
        # Rejections can be provoked from outside: warn per reason at most every few seconds.
        if now - self._last_warning.get(reason, -_WARN_EVERY_S) >= _WARN_EVERY_S:
            self._last_warning[reason] = now
            log.warning(
                "control command rejected (%s): %s; %d rejected so far", reason, message, self.counts[reason]
            )
        return ControlOutcome(self._reply(request_id, False, message) if answer else None, reason)

    def _reply(self, request_id: str | None, ok: bool, message: str) -> ControlReply:
        return ControlReply(
            schema_version=SCHEMA_VERSION,
            request_id=request_id,
            site=self._site,
            edge=self._edge,
            status="ok" if ok else "error",
            message=message,
            at=self._clock(),
        )


def _target(command: ControlCommand) -> str:
    if command.event_id is not None:
        return f"event {command.event_id}"
    if command.rule is not None and command.camera is not None:
        return f"rule {command.rule} on camera {command.camera}"
    return f"rule {command.rule}" if command.rule is not None else f"camera {command.camera}"


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    return f"{format_location(tuple(err['loc']))}: {str(err['msg']).removeprefix('Value error, ')}"


def _guess_request_id(payload: bytes) -> str | None:
    """The request id of even a rejected command, so the sender can match the error to its request."""
    if len(payload) > 65536:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # bad JSON, huge numbers, absurd nesting
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
        return value
    return None
