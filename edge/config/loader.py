"""Load a site YAML file into SiteConfig: bounded parsing, ${ENV} substitution, errors naming line and path.

A config file is untrusted input (copied from a forum, half-written by a script, or hostile): every problem
ends as a ConfigError whose lines say what is wrong and where, never as a traceback, a hang or unbounded
memory. The limits below are far above what a real site needs.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

try:
    # libyaml's event parser: about 2.5x faster than PyYAML's and not recursive. Only its events are used;
    # composing them into nodes stays in Python, where the limits below are checked.
    from yaml._yaml import CParser as _EventParser
except ImportError:  # PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _EventParser(Reader, Scanner, Parser):  # type: ignore[no-redef]
        """PyYAML's pure-Python reader, scanner and parser, with the constructor signature of CParser."""

        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


from edge.config.models import SiteConfig

#: Largest config file read (bytes); a site with dozens of cameras and zones needs a few KiB.
MAX_CONFIG_BYTES = 1024 * 1024
#: Deepest nesting of mappings and lists, aliases expanded; a site config needs 8.
MAX_DEPTH = 64
#: Values (mapping keys included) after every alias is expanded; stops "billion laughs" alias bombs.
MAX_NODES = 200_000

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Characters YAML does not allow in a stream (PyYAML's Reader.NON_PRINTABLE): binary data, not text.
_NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_MERGE_TAG = "tag:yaml.org,2002:merge"

Loc = tuple[int | str, ...]


class ConfigError(ValueError):
    """A config file that cannot be used; `errors` holds one 'line N: path: message' entry per problem."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = [_one_line(error) for error in errors]
        super().__init__(f"{source}: " + "; ".join(self.errors))

    def lines(self) -> list[str]:
        """Return one self-contained line per problem: 'file: line N: path: message'."""
        return [f"{self.source}: {error}" for error in self.errors]


def _one_line(text: str) -> str:
    """Escape line breaks and other control characters (from keys or messages) so an error stays one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class _Refused(Exception):
    """A limit or rule broken while reading the YAML; `line` is 1-based (None: the file as a whole)."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def format_location(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic error location as `cameras[1].zones[0].polygon`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


class _BoundedLoader(Composer, _EventParser, SafeConstructor, Resolver):
    """A safe YAML loader that refuses deep nesting and huge node counts while composing.

    PyYAML composes nodes recursively, so 20,000 nested brackets would end in a RecursionError (and
    libyaml's own composer recurses in C); the depth check stops it at MAX_DEPTH, long before any stack is
    at risk. Composer comes first so that its Python get_single_node, not libyaml's, is the one used.
    """

    def __init__(self, stream: str) -> None:
        _EventParser.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        Composer.__init__(self)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose one node, refusing it when it nests too deep or the document holds too many."""
        if self._depth >= MAX_DEPTH or self._composed >= MAX_NODES:
            event = self.peek_event()
            line = event.start_mark.line + 1 if event is not None and event.start_mark else None
            if self._depth >= MAX_DEPTH:
                raise _Refused(line, f"nested deeper than {MAX_DEPTH} levels")
            raise _Refused(line, f"more than {MAX_NODES:,} values")
        self._depth += 1
        self._composed += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Construct one value; one Python cannot convert (a 13th month, `!!int ''`) is refused by line."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            # Python's own hint about sys.set_int_max_str_digits is no help to someone editing YAML.
            reason = str(exc).split("; use sys.", 1)[0]
            raise _Refused(node.start_mark.line + 1, f"cannot read this value: {reason}") from None
        except (TypeError, KeyError, IndexError, AttributeError):
            # PyYAML's constructors assume an explicitly tagged scalar is well formed (`!!bool maybe` is a
            # KeyError, `!!timestamp ''` an AttributeError): whatever they raise, the value is the problem.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            raise _Refused(node.start_mark.line + 1, f"cannot read this value as {tag}") from None


class _NodeWalk:
    """One pass over the composed node graph with aliases expanded, bounded by MAX_NODES and MAX_DEPTH.

    It refuses alias bombs (the expanded size is counted, not built), recursive aliases and duplicate keys,
    and records the line of every path so validation errors can say where they are.
    """

    def __init__(self, loader: _BoundedLoader) -> None:
        self._loader = loader
        self.lines: dict[Loc, int] = {}
        self._visited = 0
        self._active: set[int] = set()  # ids of the nodes on the current path: a repeat is a cycle
        self._checked: set[int] = set()  # mappings already checked for duplicate keys (aliases repeat)

    def walk(self, node: Node, path: Loc, depth: int = 0) -> None:
        """Visit `node` at `path`; raise _Refused on the first broken limit or rule."""
        line = node.start_mark.line + 1
        if id(node) in self._active:
            raise _Refused(line, f"{format_location(path)}: an alias refers to a value that contains it")
        if depth >= MAX_DEPTH:
            raise _Refused(line, f"{format_location(path)}: nested deeper than {MAX_DEPTH} levels")
        self._visited += 1
        if self._visited > MAX_NODES:
            raise _Refused(line, f"aliases expand to more than {MAX_NODES:,} values (an alias bomb?)")
        self.lines.setdefault(path, line)
        if isinstance(node, ScalarNode):
            return
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                for index, item in enumerate(node.value):
                    self.walk(item, (*path, index), depth + 1)
            elif isinstance(node, MappingNode):
                self._walk_mapping(node, path, depth)
        finally:
            self._active.discard(id(node))

    def _walk_mapping(self, node: MappingNode, path: Loc, depth: int) -> None:
        first_seen = id(node) not in self._checked
        self._checked.add(id(node))
        keys: dict[Any, int] = {}
        for key_node, value_node in node.value:
            self.walk(key_node, (*path, "<key>"), depth + 1)
            if key_node.tag == _MERGE_TAG:  # `<<: *defaults` merges keys into this mapping
                merged = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for item in merged:
                    self.walk(item, path, depth + 1)
                continue
            key = self._key(key_node)
            line = key_node.start_mark.line + 1
            if first_seen and key in keys:
                raise _Refused(
                    line,
                    f"{format_location((*path, str(key)))}: duplicate key (first at line {keys[key]}); YAML "
                    "would silently keep only the last one",
                )
            keys.setdefault(key, line)
            self.walk(value_node, (*path, key if isinstance(key, str | int) else str(key)), depth + 1)

    def _key(self, key_node: Node) -> Any:
        """The key as YAML will construct it (so `1` and `0x1` are the same key), or the node for others."""
        if isinstance(key_node, ScalarNode):
            key = self._loader.construct_object(key_node)
            try:
                hash(key)
            except TypeError:
                return key_node
            return key
        return key_node  # a complex key: construction reports it


def _read_text(path: Path) -> str:
    """Read a config file as UTF-8 text within MAX_CONFIG_BYTES; raise _Refused with what is wrong."""
    try:
        info = path.stat()
    except OSError as exc:
        raise _Refused(None, f"cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _Refused(None, "is a folder, not a config file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        raise _Refused(None, "is not a regular file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise _Refused(None, f"is {info.st_size:,} bytes; a site config may be at most {MAX_CONFIG_BYTES:,}")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise _Refused(None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _Refused(None, f"is over {MAX_CONFIG_BYTES:,} bytes, the most a site config may be")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Refused(
            line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the config as UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise _Refused(line, f"control character U+{ord(bad.group()):04X}: binary data, not YAML text")
    return text


def _parse_yaml(text: str) -> tuple[Any, dict[Loc, int]]:
    """Parse YAML text within the limits; return the data and the line of each path in it."""
    loader = _BoundedLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, {}
        walk = _NodeWalk(loader)
        walk.walk(root, ())
        # Keys were constructed during the walk; construct the document afresh from the same nodes.
        loader.constructed_objects = {}
        return loader.construct_document(root), walk.lines
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Return a YAML error as 'line N, column M: problem' (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        context = f"{context} (line {context_mark.line + 1})"  # e.g. where an unclosed bracket opened
    problem = ", ".join(str(part) for part in (context, getattr(exc, "problem", None)) if part) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def _substitute_env(node: Any, path: Loc, problems: list[tuple[Loc, str]]) -> Any:
    """Replace ${NAME} in every string with the environment's value; note NUL characters and NaNs too."""
    if isinstance(node, dict):
        return {k: _substitute_env(v, (*path, str(k)), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_env(v, (*path, i), problems) for i, v in enumerate(node)]
    if isinstance(node, str):

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                problems.append((path, f"environment variable {name} is not set"))
                return ""
            return os.environ[name]

        value = _ENV.sub(replace, node)
        if "\x00" in value:  # no path, URL or name holds one; the OS would refuse it later, obscurely
            problems.append((path, "contains a NUL character"))
        return value
    if isinstance(node, float) and not math.isfinite(node):  # .nan, .inf, 1e400: before range checks lie
        problems.append((path, f"must be a finite number, not {node}"))
    return node


def _non_finite(value: Any, loc: Loc) -> Iterator[Loc]:
    """Yield the location of every NaN or infinity in a validated config (models, lists, dicts)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield loc
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _non_finite(getattr(value, name), (*loc, name))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*loc, str(key)))


def _where(loc: Loc, lines: dict[Loc, int]) -> str:
    """Return 'line N: path' for a location, N being the line of its nearest ancestor found in the file."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return f"line {line}: {format_location(loc)}"
    return format_location(loc)


def parse_config(data: Any, source: str = "<config>", lines: dict[Loc, int] | None = None) -> SiteConfig:
    """Validate already-parsed YAML data; raise ConfigError listing every problem with its location."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping with `site` and `cameras`"])
    problems: list[tuple[Loc, str]] = []
    data = _substitute_env(data, (), problems)
    if problems:
        raise ConfigError(source, [f"{_where(loc, lines)}: {message}" for loc, message in problems])
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_url=False, include_input=False):
            message = str(err["msg"]).removeprefix("Value error, ")
            errors.append(f"{_where(tuple(err['loc']), lines)}: {message}")
        raise ConfigError(source, errors) from None
    # Sections that are not Strict models (edge.alarms) accept "inf" in lax mode; no setting means it.
    errors = [f"{_where(loc, lines)}: must be a finite number" for loc in _non_finite(config, ())]
    if errors:
        raise ConfigError(source, errors)
    return config


def load_config(path: Path | str, *, check_paths: bool = False) -> SiteConfig:
    """Read and validate a site YAML file; relative paths inside it resolve against its folder.

    With `check_paths`, also refuse files and folders this machine cannot use (see `unusable_paths`):
    `config check`, `run` and `demo` ask for it; tools that only read settings do not.
    """
    path = Path(path)
    source = str(path)
    try:
        text = _read_text(path)
        data, lines = _parse_yaml(text)
    except _Refused as exc:
        raise ConfigError(source, [f"line {exc.line}: {exc.message}" if exc.line else exc.message]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_yaml_problem(exc)]) from None
    config = _resolve_paths(parse_config(data, source, lines), path.parent)
    if check_paths:
        problems = unusable_paths(config)
        if problems:
            raise ConfigError(source, [f"{_where(loc, lines)}: {message}" for loc, message in problems])
    return config


def _resolve_paths(config: SiteConfig, base: Path) -> SiteConfig:
    """Make file paths in the config relative to the config file, as users expect."""

    def fix(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    updates: dict[str, Any] = {
        "model": config.model.model_copy(
            update={"path": fix(config.model.path)}
            | {k: fix(v) for k in ("engine_cache", "calibration") if (v := getattr(config.model, k))}
        ),
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
    if config.alarms is not None and config.alarms.speech is not None:
        alarms = updates.get("alarms", config.alarms)
        updates["alarms"] = alarms.model_copy(update={"speech": config.alarms.speech.with_paths(fix)})
    return config.model_copy(update=updates)


def _stat(path: Path) -> os.stat_result | None:
    """Return the path's stat, None when nothing is there; OSError for anything else (too long, no access)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _creatable(path: Path) -> str | None:
    """Say why a file or folder cannot be created at `path` (None: it can, by this user)."""
    parent = path.parent
    while True:
        info = _stat(parent)
        if info is not None:
            break
        if parent.parent == parent:
            return f"cannot be created: nothing of {path} exists"
        parent = parent.parent
    if not stat.S_ISDIR(info.st_mode):
        return f"cannot be created: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def _folder_problem(folder: Path) -> str | None:
    info = _stat(folder)
    if info is None:
        return _creatable(folder / "x")
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    return None


def _database_problem(file: Path) -> str | None:
    info = _stat(file)
    if info is None:
        return _creatable(file)
    if stat.S_ISDIR(info.st_mode):
        return f"{file} is a folder; name the database file in it, e.g. {file / 'outbox.sqlite3'}"
    if not stat.S_ISREG(info.st_mode):
        return f"{file} is not a regular file"
    # SQLite writes its journal next to the database, so the folder must be writable too.
    if not os.access(file, os.R_OK | os.W_OK) or not os.access(file.parent, os.W_OK | os.X_OK):
        return f"{file} or its folder is not writable"
    return None


def _readable_file_problem(file: Path) -> str | None:
    info = _stat(file)
    if info is None:
        return f"{file} does not exist"
    if not stat.S_ISREG(info.st_mode):
        return f"{file} is not a regular file"
    if not os.access(file, os.R_OK):
        return f"{file} is not readable"
    return None


def unusable_paths(config: SiteConfig) -> list[tuple[Loc, str]]:
    """Files and folders of a loaded config that this machine cannot use: TLS files, evidence, outbox."""
    checks: list[tuple[Loc, Path, Any]] = [
        (("evidence", "folder"), config.evidence.folder, _folder_problem),
        (("mqtt", "outbox"), config.mqtt.outbox, _database_problem),
    ]
    if config.hard_examples.enabled:
        checks.append((("hard_examples", "folder"), config.hard_examples.folder, _folder_problem))
    tls = config.mqtt.tls
    if tls is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            file = getattr(tls, name)
            if file is not None:
                checks.append((("mqtt", "tls", name), file, _readable_file_problem))
    problems: list[tuple[Loc, str]] = []
    for loc, path, check in checks:
        try:
            problem = check(path)
        except OSError as exc:  # a name too long, a folder we may not look into
            problem = f"cannot check {path}: {exc.strerror or exc}"
        except ValueError as exc:  # e.g. an embedded NUL, refused earlier; kept as a safety net
            problem = f"cannot check {path}: {exc}"
        if problem is not None:
            problems.append((loc, problem))
    return problems


def missing_files(config: SiteConfig) -> list[str]:
    """The model file when it does not exist here: a warning only, a model may be deployed separately."""
    try:
        exists = config.model.path.is_file()
    except (OSError, ValueError):
        exists = False
    return [] if exists else [f"model.path: {config.model.path} does not exist"]


def missing_camera_files(config: SiteConfig) -> list[str]:
    """One line per enabled camera whose video file is not there: `config check` refuses them, since `run`
    would only take such a camera offline."""
    out = []
    for i, camera in enumerate(config.cameras):
        if camera.is_stream or not camera.enabled:
            continue
        try:
            exists = Path(camera.source).is_file()
        except (OSError, ValueError):
            exists = False
        if not exists:
            out.append(
                f"cameras[{i}].source: camera {camera.id!r}: video file {camera.source} does not exist"
            )
    return out
