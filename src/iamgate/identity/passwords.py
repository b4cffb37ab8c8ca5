"""Password hashes: argon2id, with a fixed dummy hash so unknown users cost the same time."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# argon2id with argon2-cffi's defaults, RFC 9106's low-memory profile: 3 passes over 64 MiB
# in 4 lanes. OWASP's Password Storage Cheat Sheet asks for at least 19 MiB and 2 passes
# (or 46 MiB and 1) in 1 lane: these exceed it on every axis. One check costs ~0.15 s and
# ~0.2 s of CPU here, which is why checks run in `iamgate.control.hashing`'s bounded pool.
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("iamgate: a password nobody has")


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Constant work whether or not the user exists: an unknown user is checked against a
    dummy hash, so timing does not reveal which names are real."""
    try:
        return _hasher.verify(stored_hash or _dummy_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
