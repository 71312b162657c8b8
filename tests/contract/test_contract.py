"""The MQTT contract: pydantic and stdlib only; evidence chunks round-trip and refuse bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from contract.evidence import CHUNK_BYTES, decode_chunk, file_chunks
from contract.payloads import ControlCommand
from contract.topics import TopicKind, Topics, parse_topic

# Packages pydantic itself needs; anything else (numpy, cv2, onnxruntime, paho, edge...) is a leak.
_ALLOWED = {
    "pydantic",
    "pydantic_core",
    "typing_extensions",
    "annotated_types",
    "typing_inspection",
    "contract",
}


def test_contract_imports_only_pydantic_and_stdlib() -> None:
    code = (
        "import sys, json; import contract, contract.payloads, contract.topics, contract.evidence, "
        "contract.schemas, contract.ids, contract.enums; print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    top = {name.split(".")[0] for name in json.loads(out)}
    foreign = {
        n for n in top if n not in sys.stdlib_module_names and n not in _ALLOWED and not n.startswith("_")
    }
    assert foreign == set(), f"contract pulls in {sorted(foreign)}"


def test_evidence_file_round_trips_through_chunks_out_of_order() -> None:
    data = bytes(range(256)) * (CHUNK_BYTES // 256 * 2 + 7)  # two full chunks and a tail
    messages = list(file_chunks(data, site="s1", edge="e1", camera="cam-1", kind="clip", path="cam-1/a.mp4"))
    assert len(messages) == 3
    parts: dict[int, bytes] = {}
    for payload in reversed(messages + messages[:1]):  # a duplicate and reversed order
        header, chunk = decode_chunk(payload)
        parts[header.index] = chunk
    whole = b"".join(parts[i] for i in range(header.count))
    assert hashlib.sha256(whole).hexdigest() == header.sha256 and whole == data


@pytest.mark.parametrize("path", ["../etc/passwd", "/abs/file.jpg", "a/../../b.jpg", "a\\b.jpg", ""])
def test_evidence_chunk_refuses_paths_that_leave_the_folder(path: str) -> None:
    good = next(file_chunks(b"x", site="s1", edge="e1", camera="c1", kind="snapshot", path="c1/x.jpg"))
    head, _, data = good.partition(b"\n")
    bad = json.loads(head) | {"path": path}
    with pytest.raises(ValueError, match="path"):
        decode_chunk(json.dumps(bad).encode() + b"\n" + data)


def test_evidence_chunk_refuses_wrong_length_and_missing_header() -> None:
    good = next(file_chunks(b"hello", site="s1", edge="e1", camera="c1", kind="snapshot", path="c1/x.jpg"))
    with pytest.raises(ValueError, match="holds 6 bytes"):
        decode_chunk(good + b"!")
    with pytest.raises(ValueError, match="no header"):
        decode_chunk(b"just bytes")


def test_new_topics_parse_back() -> None:
    topics = Topics("sitesentry", "site-a")
    assert parse_topic("sitesentry", topics.evidence("edge-1")).kind is TopicKind.EVIDENCE  # type: ignore[union-attr]
    parsed = parse_topic("sitesentry", topics.zones("cam-1"))
    assert parsed is not None and parsed.kind is TopicKind.ZONES and parsed.camera == "cam-1"


def test_set_zones_needs_camera_and_unique_zone_ids() -> None:
    square = [(0.1, 0.1), (0.5, 0.1), (0.5, 0.5)]
    ok = ControlCommand(
        request_id="r1", action="set_zones", camera="c1", zones=[{"id": "z1", "polygon": square}]
    )
    assert ok.zones is not None and ok.zones[0].polygon[1] == (0.5, 0.1)
    with pytest.raises(ValueError, match="needs `camera`"):
        ControlCommand(request_id="r1", action="set_zones", zones=[])
    with pytest.raises(ValueError, match="unique"):
        ControlCommand(
            request_id="r1",
            action="set_zones",
            camera="c1",
            zones=[{"id": "z1", "polygon": square}, {"id": "z1", "polygon": square}],
        )
