"""The MQTT message contract shared by edge and dashboard: payload models, topic tree, enums, id rules.

Importable with pydantic and the standard library alone (a test checks it), so a dashboard on a site
server never pulls in OpenCV, ONNX Runtime or the edge publisher.
"""

from contract.enums import CameraStatus, Phase, Rule, StrEnum
from contract.ids import ID_PATTERN, Identifier, check_id
from contract.payloads import SCHEMA_VERSION
from contract.topics import ParsedTopic, TopicKind, Topics, parse_topic

__all__ = [
    "ID_PATTERN",
    "SCHEMA_VERSION",
    "CameraStatus",
    "Identifier",
    "ParsedTopic",
    "Phase",
    "Rule",
    "StrEnum",
    "TopicKind",
    "Topics",
    "check_id",
    "parse_topic",
]
