"""Logging, Prometheus metrics serving, and credential redaction shared by every stage."""

from __future__ import annotations

import errno
import json
import logging
import re
import sys
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import CollectorRegistry, start_http_server

_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<password>[^@/\s]+)@"
)
# A secret-looking key as a whole word: `password`, `mqtt_password`, `access-token`, but not `passwords`,
# `tokenizer` or `secretary`; and never a word that merely follows a key, as in "mqtt.password: environment
# variable X is not set" (a message about the key, not its value).
_KEY = r"(?<![A-Za-z0-9])(?:password|passwd|secret|token)(?![A-Za-z0-9])"
# key=value, as on command lines, in query strings and in key=value log lines.
_KEY_EQUALS = re.compile(rf"(?i)({_KEY}\s*=\s*)([^\s&;,'\"]+)")
# "key": "value" or 'key': 'value', as in JSON and Python reprs of dicts.
_KEY_QUOTED = re.compile(rf"""(?i)({_KEY}["']\s*:\s*)(["'])((?:\\.|(?!\2).)*)\2""")
# key: value where the value is one word ending the line, as in a YAML line (a message goes on longer).
_KEY_COLON = re.compile(rf"(?im)({_KEY}:[ \t]*)([^\s'\"]+)[ \t]*$")


def redact(text: str) -> str:
    """Hide credentials in URLs (rtsp://user:pass@host) and the values of password/secret/token keys."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KEY_EQUALS.sub(lambda m: f"{m[1]}***", text)
    text = _KEY_QUOTED.sub(lambda m: f"{m[1]}{m[2]}***{m[2]}", text)
    return _KEY_COLON.sub(lambda m: f"{m[1]}***", text)


class RedactingFilter(logging.Filter):
    """Redact credentials from every log record, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's message with credentials hidden."""
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


#: Libraries that log every internal step at INFO (amqtt's broker and its `transitions` state machine,
#: one line per client state change): held at WARNING unless the log level is DEBUG.
CHATTY_LOGGERS = ("amqtt", "transitions")


class SiteTimeFormatter(logging.Formatter):
    """Times in the site's time zone with their UTC offset, as the dashboard shows them (not the box's)."""

    def __init__(self, fmt: str | None = None, tz: tzinfo | None = None) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Return e.g. 2026-12-01T17:01:49.027+08:00 (the box's own zone when no site zone is set)."""
        at = datetime.fromtimestamp(record.created, self.tz)
        if self.tz is None:
            at = at.astimezone()
        return at.isoformat(timespec="milliseconds")


class JsonFormatter(SiteTimeFormatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as JSON with time, level, logger, message and any `extra` fields."""
        payload: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("camera", "event_id", "rule", "zone"):
            if hasattr(record, key):
                payload[key] = getattr(record, key)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def setup_logging(
    level: str = "INFO",
    json_lines: bool = False,
    timezone: str | None = None,
    chatty: tuple[str, ...] = CHATTY_LOGGERS,
) -> None:
    """Configure the root logger once for a CLI process: redacted, plain text or JSON lines on stderr.

    Times are in `timezone` (the config's site.timezone; None: the box's zone), with their offset. The
    `chatty` libraries log at WARNING and above unless `level` is DEBUG.
    """
    tz = ZoneInfo(timezone) if timezone else None
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter(tz=tz)
        if json_lines
        else SiteTimeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", tz=tz)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in chatty:
        logging.getLogger(name).setLevel(logging.NOTSET if root.level <= logging.DEBUG else logging.WARNING)


class PortInUseError(OSError):
    """A port this process must listen on is taken or not available; the message names the setting."""


def bind_problem(
    exc: OSError, what: str, address: tuple[str, int], keys: tuple[str, str], hint: str = ""
) -> PortInUseError | None:
    """Turn a failed bind into one line naming the port and the setting to change (`keys`: host's, port's);
    None when `exc` is not a bind error."""
    (host, port), (host_key, port_key) = address, keys
    where = f"cannot {what} on {host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return PortInUseError(
            f"{where}: the port is already in use (another SiteSentry on this box?); "
            f"set {port_key} to a free port{hint}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return PortInUseError(f"{where}: this box has no such address; check {host_key}")
    if exc.errno == errno.EACCES:
        return PortInUseError(f"{where}: permission denied (ports below 1024 need root); change {port_key}")
    return None


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> int:
    """Serve a registry's metrics over HTTP in a daemon thread; return the bound port.

    Raises PortInUseError naming `metrics.port` or `metrics.host` when it cannot listen there.
    """
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        hint = " (0: any free one) or metrics.enabled: false"
        problem = bind_problem(exc, "serve metrics", (host, port), ("metrics.host", "metrics.port"), hint)
        if problem is None:
            raise
        raise problem from None
    return int(server.server_address[1])
