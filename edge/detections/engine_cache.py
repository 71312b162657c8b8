"""The TensorRT engine cache: one engine per (GPU, compute capability, TensorRT version, precision, input
profile, ONNX file, calibration set), each with a key file beside it that is checked before the engine is
deserialised.

A TensorRT engine only runs on the GPU model and TensorRT version it was built with, and silently differs
from its ONNX file once that changes. So the key names every ingredient, the file name carries the key's
digest, and `check_engine` refuses an engine whose key file is missing, unreadable, different in any field
(a stale or foreign engine) or whose bytes are not the ones the key recorded: such an engine is rebuilt,
never loaded. Nothing here imports TensorRT: the key is built from plain facts, so it is tested anywhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: Bumped when the way SiteSentry builds engines changes (flags, quantization recipe): old engines rebuild.
BUILD_RECIPE = 1
KEY_SUFFIX = ".key.json"
Precision = str  # "fp16" | "int8" | "fp32" (ModelConfig.engine_precision)


class StaleEngine(ValueError):
    """A cached engine that must not be loaded; the message says which ingredient differs."""


@dataclass(frozen=True)
class InputProfile:
    """The optimisation profile an engine is built for: batch and input height/width ranges (NCHW)."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_hw: tuple[int, int]
    opt_hw: tuple[int, int]
    max_hw: tuple[int, int]

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) NCHW shapes for TensorRT's IOptimizationProfile.set_shape."""
        return (
            (self.min_batch, 3, *self.min_hw),
            (self.opt_batch, 3, *self.opt_hw),
            (self.max_batch, 3, *self.max_hw),
        )

    def admits(self, shape: tuple[int, ...]) -> bool:
        """True when an NCHW input shape lies inside the profile."""
        n, _, h, w = shape
        return (
            self.min_batch <= n <= self.max_batch
            and self.min_hw[0] <= h <= self.max_hw[0]
            and self.min_hw[1] <= w <= self.max_hw[1]
        )


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. Two keys are equal exactly when one engine serves both."""

    gpu_name: str
    gpu_uuid: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100/H200)
    tensorrt_version: str
    precision: Precision
    profile: InputProfile
    onnx_sha256: str
    calibration_sha256: str | None = None  # INT8 only: the calibration images, in order
    recipe: int = BUILD_RECIPE

    def to_dict(self) -> dict[str, object]:
        """The key as JSON-ready data (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def digest(self) -> str:
        """sha256 of the key's canonical JSON: the cache's file name carries it."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def describe(self) -> str:
        """One line for logs and `sitesentry export --format engine`."""
        p = self.profile
        return (
            f"{self.digest()[:16]} ({self.gpu_name} sm{self.compute_capability}, TensorRT "
            f"{self.tensorrt_version}, {self.precision}, batch {p.min_batch}-{p.opt_batch}-{p.max_batch}, "
            f"input {p.max_hw[0]}x{p.max_hw[1]}, onnx {self.onnx_sha256[:12]})"
        )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One sha256 over several files' names and bytes, in the given order (a calibration set)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + sha256_file(path).encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    """Where engines go when model.engine_cache is unset: $XDG_CACHE_HOME/sitesentry/engines."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sitesentry" / "engines"


def engine_path(cache_dir: Path, onnx_path: Path, key: EngineKey) -> Path:
    """The engine file for `key` in `cache_dir`: <onnx stem>-<precision>-<digest prefix>.engine."""
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{key.precision}-{key.digest()[:16]}.engine"


def key_path(engine: Path) -> Path:
    """The key file beside an engine."""
    return engine.with_name(engine.name + KEY_SUFFIX)


def _differences(found: dict[str, object], wanted: dict[str, object]) -> list[str]:
    return [
        f"{name} {found.get(name)!r} (this box: {wanted[name]!r})"
        for name in wanted
        if found.get(name) != wanted[name]
    ]


def check_engine(engine: Path, key: EngineKey) -> None:
    """Raise StaleEngine unless `engine` exists with a key file equal to `key` and the bytes it recorded."""
    if not engine.is_file():
        raise StaleEngine(f"{engine}: no cached engine")
    kfile = key_path(engine)
    try:
        record = json.loads(kfile.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StaleEngine(f"{engine}: no key file {kfile.name} beside it (not built by SiteSentry)") from None
    except (OSError, ValueError) as exc:
        raise StaleEngine(f"{kfile}: unreadable key file ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("key"), dict):
        raise StaleEngine(f"{kfile}: not a SiteSentry engine key file")
    differences = _differences(record["key"], key.to_dict())
    if differences:
        foreign = {"gpu_name", "gpu_uuid", "compute_capability"} & {d.split()[0] for d in differences}
        kind = "built for another device" if foreign else "stale"
        raise StaleEngine(f"{engine}: {kind}: {'; '.join(differences)}")
    if record.get("engine_sha256") != sha256_file(engine):
        raise StaleEngine(f"{engine}: its bytes differ from those its key file recorded (partial write?)")


def write_engine(engine: Path, key: EngineKey, data: bytes) -> Path:
    """Write an engine and then its key file, each atomically (a crash leaves no key for a partial engine)."""
    engine.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(engine, data)
    record = {"key": key.to_dict(), "digest": key.digest(), "engine_sha256": hashlib.sha256(data).hexdigest()}
    _atomic_write(key_path(engine), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return engine


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
