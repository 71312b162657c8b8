"""Load a site YAML file into SiteConfig, with ${ENV} substitution and errors that name their path."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge.config.models import SiteConfig

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(ValueError):
    """A config file that cannot be used; `errors` holds one 'path: message' line per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `cameras[1].zones[0].polygon`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _substitute_env(node: Any, path: str, missing: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _substitute_env(v, f"{path}.{k}" if path else str(k), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, f"{path}[{i}]", missing) for i, v in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                missing.append(f"{path}: environment variable {name} is not set")
                return ""
            return os.environ[name]

        return _ENV.sub(replace, node)
    return node


def parse_config(data: Any, source: str = "<config>") -> SiteConfig:
    """Validate already-parsed YAML data; raise ConfigError listing every problem with its location."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping with `site` and `cameras`"])
    missing: list[str] = []
    data = _substitute_env(data, "", missing)
    if missing:
        raise ConfigError(source, missing)
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            message = str(err["msg"]).removeprefix("Value error, ")
            errors.append(f"{format_location(tuple(err['loc']))}: {message}")
        raise ConfigError(source, errors) from None


def load_config(path: Path | str) -> SiteConfig:
    """Read and validate a site YAML file; relative paths inside it resolve against its folder."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise ConfigError(str(path), [f"{where}: {getattr(exc, 'problem', exc)}"]) from None
    config = parse_config(data, str(path))
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: SiteConfig, base: Path) -> SiteConfig:
    """Make file paths in the config relative to the config file, as users expect."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    updates: dict[str, Any] = {
        "model": config.model.model_copy(update={"path": fix(config.model.path)}),
        "evidence": config.evidence.model_copy(update={"folder": fix(config.evidence.folder)}),
        "mqtt": config.mqtt.model_copy(update={"outbox": fix(config.mqtt.outbox)}),
        "hard_examples": config.hard_examples.model_copy(update={"folder": fix(config.hard_examples.folder)}),
    }
    cameras = []
    for cam in config.cameras:
        src = (
            cam.source
            if cam.is_stream or Path(cam.source).is_absolute()
            else str((base / cam.source).resolve())
        )
        cameras.append(cam.model_copy(update={"source": src}))
    updates["cameras"] = cameras
    tls = config.mqtt.tls
    if tls is not None:
        files = {
            k: fix(v) for k in ("ca_file", "cert_file", "key_file") if (v := getattr(tls, k)) is not None
        }
        updates["mqtt"] = updates["mqtt"].model_copy(update={"tls": tls.model_copy(update=files)})
    if config.alarms is not None and config.alarms.sound_file is not None:
        updates["alarms"] = config.alarms.model_copy(update={"sound_file": fix(config.alarms.sound_file)})
    return config.model_copy(update=updates)
