"""The canonical detector classes: the one place their names and order are defined."""

from __future__ import annotations

from typing import Final

#: Canonical class names, in model output order. Rules refer to these by name, never by index.
CLASS_NAMES: Final[tuple[str, ...]] = ("person", "helmet", "head", "vest", "no_vest")

#: Bumped whenever CLASS_NAMES changes, so a model trained for another class set is refused.
CLASS_SET_VERSION: Final[str] = "ppe-5.v1"

PERSON: Final = "person"
HELMET: Final = "helmet"
HEAD: Final = "head"
VEST: Final = "vest"
NO_VEST: Final = "no_vest"


def class_index(name: str) -> int:
    """Return the canonical index of a class name, raising KeyError with the known names."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown class {name!r}; canonical classes are {', '.join(CLASS_NAMES)}") from None
