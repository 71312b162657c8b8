"""Reassembly of evidence files pushed in chunks (contract.evidence): chunks go to a scratch folder per
file, and the file is kept only when all chunks are in and the whole matches its sha256."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from contract.evidence import EvidenceChunk

Result = Literal["partial", "complete", "sha_mismatch", "duplicate"]


@dataclass(frozen=True, slots=True)
class AssemblyResult:
    """What one chunk did: more are needed, the file is complete (stored at `path`), or it was rejected."""

    result: Result
    path: Path | None = None
    relative: str | None = None


def evidence_target(evidence_dir: Path, site: str, edge: str, path: str) -> tuple[Path, str]:
    """Return where an edge's evidence file lives here (absolute, and relative to evidence_dir).

    The contract already refuses absolute paths and `..`; resolving and checking again means a bug there
    still cannot write outside evidence_dir."""
    relative = f"{site}/{edge}/{path}"
    root = evidence_dir.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"evidence path {path!r} leaves the evidence folder")
    return target, relative


def _fsync_write(path: Path, data: bytes) -> None:
    """Write `path` atomically and durably (the chunk is acknowledged to the broker right after)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ChunkAssembler:
    """Collects chunks under `scratch_dir/<sha256>-<destination hash>/`; duplicates are harmless."""

    def __init__(self, scratch_dir: Path, evidence_dir: Path) -> None:
        self.scratch_dir = scratch_dir
        self.evidence_dir = evidence_dir

    def _folder(self, header: EvidenceChunk) -> Path:
        # Keyed by the content's sha256 and the destination: two files with equal bytes stay apart.
        where = hashlib.sha256(f"{header.site}/{header.edge}/{header.path}".encode()).hexdigest()[:16]
        return self.scratch_dir / f"{header.sha256}-{where}"

    def add(self, header: EvidenceChunk, data: bytes) -> AssemblyResult:
        """Store one chunk; when it was the last one missing, verify and move the whole file into place."""
        target, relative = evidence_target(self.evidence_dir, header.site, header.edge, header.path)
        if target.is_file() and target.stat().st_size == header.size and _sha256_of(target) == header.sha256:
            return AssemblyResult("duplicate", target, relative)
        folder = self._folder(header)
        folder.mkdir(parents=True, exist_ok=True)
        _fsync_write(folder / f"{header.index:06d}.part", data)
        parts = [folder / f"{index:06d}.part" for index in range(header.count)]
        if not all(part.is_file() for part in parts):
            return AssemblyResult("partial")
        digest = hashlib.sha256()
        target.parent.mkdir(parents=True, exist_ok=True)
        # Assembled beside the target, so the final rename never crosses file systems.
        assembled = target.with_name(target.name + ".assembling")
        with open(assembled, "wb") as out:
            for part in parts:
                chunk = part.read_bytes()
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != header.sha256:
            # Which chunk is wrong cannot be told: drop them all; a resend starts clean.
            assembled.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            return AssemblyResult("sha_mismatch")
        os.replace(assembled, target)
        shutil.rmtree(folder, ignore_errors=True)
        return AssemblyResult("complete", target, relative)


def _sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
