"""Id rules: site, edge, camera and zone ids are safe as MQTT topic levels and file names."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import Field

#: The one definition of an id; topics, config and the dashboard check against it.
ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_ID = re.compile(ID_PATTERN)

Identifier = Annotated[
    str,
    Field(
        pattern=ID_PATTERN,
        description="Letters, digits, '_' and '-' (max 64); safe inside MQTT topics and file names.",
    ),
]


def is_id(value: str) -> bool:
    """Tell whether `value` is a valid site, edge, camera or zone id."""
    return bool(_ID.match(value))


def check_id(value: str, what: str) -> str:
    """Return `value` if it is a valid id, else raise ValueError naming `what` it was meant to be."""
    if not _ID.match(value):
        raise ValueError(
            f"{what} {value!r} cannot be a topic level: use letters, digits, '_' and '-' (max 64)"
        )
    return value
