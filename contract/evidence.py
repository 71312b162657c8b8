"""Evidence files pushed from an edge to the dashboard over MQTT, in chunks, through the edge's outbox.

Edge boxes sit behind NAT and 4G routers, so the dashboard cannot fetch files from them: the edge sends
each snapshot and clip on `<prefix>/<site>/edges/<edge>/evidence`, one MQTT message per chunk. A message
is the chunk's JSON header, one newline byte, then the raw bytes. Chunks may arrive more than once and
out of order (QoS 1, retries); the receiver keeps the file only when all chunks are in and the whole
file matches `sha256`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Annotated, Final, Literal

from pydantic import Field, ValidationError, field_validator

from contract.ids import Identifier
from contract.payloads import SCHEMA_VERSION, Wire

#: Chunk size: small enough for a 4G uplink and for brokers with a modest message size limit.
CHUNK_BYTES: Final = 256 * 1024
#: Largest evidence file the edge sends and the dashboard accepts (a clip of a minute is far smaller).
MAX_FILE_BYTES: Final = 200 * 1024 * 1024

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="Hex digest of the whole file.")]


class EvidenceChunk(Wire):
    """Header of one chunk of an evidence file; the chunk's bytes follow it in the same message."""

    schema_version: Literal[1] = Field(description="Payload schema version.")
    site: Identifier
    edge: Identifier
    camera: Identifier
    kind: Literal["snapshot", "clip"]
    path: str = Field(
        max_length=255,
        description="Relative to the edge's evidence folder, as named in the event's `evidence` list.",
    )
    sha256: Sha256
    size: int = Field(ge=0, le=MAX_FILE_BYTES, description="Size of the whole file in bytes.")
    index: int = Field(ge=0, description="Which chunk this is, from 0.")
    count: int = Field(ge=1, description="How many chunks the file has.")

    @field_validator("path")
    @classmethod
    def _relative_path(cls, value: str) -> str:
        # The receiver joins this onto its own folder: never absolute, never climbing out of it.
        parts = PurePosixPath(value).parts
        if not parts or value.startswith("/") or "\\" in value or any(p in ("..", ".", "") for p in parts):
            raise ValueError(f"evidence path {value!r} must be relative, without '..' or backslashes")
        return value


def chunk_count(size: int) -> int:
    """Return how many chunks a file of `size` bytes is sent in (an empty file is one empty chunk)."""
    return max(1, math.ceil(size / CHUNK_BYTES))


def encode_chunk(header: EvidenceChunk, data: bytes) -> bytes:
    """Return the MQTT payload of one chunk: the header as compact JSON, a newline, then the bytes."""
    return header.model_dump_json().encode("utf-8") + b"\n" + data


def decode_chunk(payload: bytes) -> tuple[EvidenceChunk, bytes]:
    """Split a chunk message into its checked header and its bytes; ValueError says what is wrong."""
    head, sep, data = payload.partition(b"\n")
    if not sep:
        raise ValueError("evidence chunk has no header line")
    try:
        header = EvidenceChunk.model_validate_json(head)
    except ValidationError as exc:
        raise ValueError(f"evidence chunk header: {exc.errors()[0]['msg']}") from None
    if header.index >= header.count:
        raise ValueError(f"evidence chunk index {header.index} is not below its count {header.count}")
    if header.count != chunk_count(header.size):
        raise ValueError(f"evidence chunk count {header.count} does not fit size {header.size}")
    expected = min(CHUNK_BYTES, header.size - header.index * CHUNK_BYTES)
    if len(data) != expected:
        raise ValueError(f"evidence chunk {header.index} holds {len(data)} bytes, expected {expected}")
    return header, data


def file_chunks(
    data: bytes, *, site: str, edge: str, camera: str, kind: Literal["snapshot", "clip"], path: str
) -> Iterator[bytes]:
    """Yield the chunk messages of one whole file held in memory."""
    digest = hashlib.sha256(data).hexdigest()
    count = chunk_count(len(data))
    for index in range(count):
        header = EvidenceChunk(
            schema_version=SCHEMA_VERSION,
            site=site,
            edge=edge,
            camera=camera,
            kind=kind,
            path=path,
            sha256=digest,
            size=len(data),
            index=index,
            count=count,
        )
        yield encode_chunk(header, data[index * CHUNK_BYTES : (index + 1) * CHUNK_BYTES])
