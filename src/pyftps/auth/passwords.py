"""Credential primitives shared by every authenticator: argon2id hashes, generated passwords, user names."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import threading
import unicodedata

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError

__all__ = [
    "CONCURRENT_VERIFICATIONS",
    "DEFAULT_MEMORY_COST",
    "DEFAULT_PARALLELISM",
    "DEFAULT_TIME_COST",
    "MAX_USER_NAME_LENGTH",
    "cheap_hasher",
    "default_hasher",
    "dummy_hash",
    "generate_password",
    "hash_password",
    "make_hasher",
    "needs_rehash",
    "validate_user_name",
    "verify_dummy",
    "verify_password",
]

# RFC 9106 §4 second recommended option (t=3, m=64 MiB) is memory-hard enough to make GPU/ASIC guessing
# expensive while one verification stays around 50-100 ms on a current server core. Parallelism is 1, not
# the RFC's 4: the server already verifies many logins at once on worker threads, so spreading one hash
# over several cores would only let a burst of logins starve each other; with p=1 each login costs exactly
# one core and 64 MiB. Verifications beyond one per core gain no throughput, so they queue on
# _VERIFY_SLOTS: a flood of guesses costs at most cores x 64 MiB (16 op threads once held 1 GiB).
DEFAULT_TIME_COST = 3
DEFAULT_MEMORY_COST = 64 * 1024  # KiB, i.e. 64 MiB
DEFAULT_PARALLELISM = 1

MAX_USER_NAME_LENGTH = 64

# No 0/O/o, 1/l/I: generated passwords are read off terminals and typed into FTP clients by hand, and the
# alphabet is URL-safe so they survive being pasted into ftp:// URLs and config files without escaping.
CONCURRENT_VERIFICATIONS = max(2, os.cpu_count() or 1)
_VERIFY_SLOTS = threading.BoundedSemaphore(CONCURRENT_VERIFICATIONS)
_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
_MIN_GENERATED_LENGTH = 8


def make_hasher(
    *,
    time_cost: int = DEFAULT_TIME_COST,
    memory_cost: int = DEFAULT_MEMORY_COST,
    parallelism: int = DEFAULT_PARALLELISM,
) -> PasswordHasher:
    """Build an argon2id hasher; the defaults are the production parameters."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID)


@functools.cache
def default_hasher() -> PasswordHasher:
    """The process-wide production hasher (PasswordHasher is stateless, so sharing it is thread-safe)."""
    return make_hasher()


def cheap_hasher() -> PasswordHasher:
    """A hasher with the smallest legal cost. For tests only: it offers no protection at all."""
    return make_hasher(time_cost=1, memory_cost=8, parallelism=1)


def _encode(password: str) -> bytes:
    # NFC as in RFC 8265's OpaqueString profile, so the same password typed on clients that compose
    # accents differently still matches. "surrogatepass" makes encoding total: a PASS argument decoded
    # with surrogateescape (non-UTF-8 bytes) must be rejected as a wrong password, not crash the login.
    return unicodedata.normalize("NFC", password).encode("utf-8", "surrogatepass")


def hash_password(password: str, *, hasher: PasswordHasher | None = None) -> str:
    """Return an encoded argon2id hash (``$argon2id$v=19$m=...``) of a non-empty password."""
    if not password:
        raise ValueError("refusing to hash an empty password")
    return (hasher or default_hasher()).hash(_encode(password))


def verify_password(stored_hash: str, password: str, *, hasher: PasswordHasher | None = None) -> bool:
    """True if *password* matches *stored_hash*; False on mismatch or any malformed hash, never raises."""
    hasher = hasher or default_hasher()
    if isinstance(stored_hash, str):  # a NULL column or a bytes value from a careless backend: no hash
        try:
            with _VERIFY_SLOTS:
                return hasher.verify(stored_hash, _encode(password))
        except VerificationError:  # mismatch, or a hash that parses but is corrupt
            return False
        except ValueError:  # InvalidHashError or non-ASCII: not an argon2 hash at all
            pass
    # Burn the usual time anyway so an account with a broken hash is indistinguishable from an unknown
    # user or a wrong password.
    verify_dummy(password, hasher=hasher)
    return False


def needs_rehash(stored_hash: str, *, hasher: PasswordHasher | None = None) -> bool:
    """True if *stored_hash* was made with other parameters (or is unreadable) and should be replaced."""
    if not isinstance(stored_hash, str):
        return True
    try:
        return (hasher or default_hasher()).check_needs_rehash(stored_hash)
    except ValueError:  # InvalidHashError or non-ASCII
        return True


def _hasher_key(hasher: PasswordHasher) -> tuple[int, int, int, int, int, Type]:
    return (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
        hasher.type,
    )


@functools.lru_cache(maxsize=8)
def _dummy_hash_for(key: tuple[int, int, int, int, int, Type]) -> str:
    time_cost, memory_cost, parallelism, hash_len, salt_len, hash_type = key
    hasher = PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_cost,
        parallelism=parallelism,
        hash_len=hash_len,
        salt_len=salt_len,
        type=hash_type,
    )
    # A random secret nobody knows: the result of verifying against it is always discarded anyway.
    return hasher.hash(secrets.token_bytes(32))


def dummy_hash(hasher: PasswordHasher | None = None) -> str:
    """The lazily built hash that unknown users are checked against; same parameters as *hasher*.

    Authenticators call this once at start-up so that the first unknown-user login does not also pay
    for building it (which would make that one attempt measurably slower).
    """
    return _dummy_hash_for(_hasher_key(hasher or default_hasher()))


def verify_dummy(password: str, *, hasher: PasswordHasher | None = None) -> None:
    """Spend exactly the work of one real verification and learn nothing (unknown-user path)."""
    hasher = hasher or default_hasher()
    stored = dummy_hash(hasher)  # built outside the slot: building it also hashes
    with contextlib.suppress(VerificationError), _VERIFY_SLOTS:
        hasher.verify(stored, _encode(password))


def generate_password(length: int = 20) -> str:
    """A random password from an unambiguous URL-safe alphabet (20 characters give ~116 bits)."""
    if length < _MIN_GENERATED_LENGTH:
        raise ValueError(f"generated passwords must be at least {_MIN_GENERATED_LENGTH} characters")
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def validate_user_name(name: str) -> str:
    """Return *name* unchanged if it is a legal user name, else raise ValueError saying why.

    Legal: 1-64 characters, no whitespace, no control/format/unassigned characters (they are invisible
    in logs and listings, so they allow look-alike accounts), no '/' (names end up in paths and URLs)
    and no ':' (``--user NAME:PASSWORD`` and ``user:password@host`` use it as the separator).
    """
    if not isinstance(name, str):
        raise ValueError(f"user name must be a string, not {type(name).__name__}")
    if not 1 <= len(name) <= MAX_USER_NAME_LENGTH:
        raise ValueError(f"user name must be 1-{MAX_USER_NAME_LENGTH} characters long, got {len(name)}")
    for char in name:
        if char.isspace():
            raise ValueError(f"user name {name!r} must not contain whitespace")
        if unicodedata.category(char).startswith("C"):
            raise ValueError(f"user name {name!r} must not contain control or invisible characters")
        if char in "/:":
            raise ValueError(f"user name {name!r} must not contain {char!r}")
    return name
