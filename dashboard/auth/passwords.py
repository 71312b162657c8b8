"""Argon2id password hashing."""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # stateless and thread-safe; argon2-cffi's defaults follow RFC 9106


@cache
def _dummy_hash() -> str:
    """A hash verified when the user name is unknown, so a wrong name costs as long as a wrong password."""
    return _HASHER.hash("not a password of anyone")


def hash_password(password: str) -> str:
    """Return the Argon2id hash of `password`."""
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Tell whether `password` matches; None (unknown user) is checked against a dummy, so timing is equal."""
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Tell whether a stored hash uses weaker parameters than today's."""
    return _HASHER.check_needs_rehash(password_hash)
