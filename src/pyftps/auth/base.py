"""The authentication seam: who may log in, where their files are and what they may do.

Authenticators are blocking (SQLite, PostgreSQL, argon2 hashing); the server calls them from worker
threads. They must never reveal whether a user name exists: an unknown user and a wrong password
return the same ``None`` after the same amount of work (RFC 2577 §7).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from pyftps.proto.permissions import DirectoryRule, Permission
from pyftps.proto.policy import UserTLSPolicy

__all__ = [
    "Authenticator",
    "Permission",
    "Principal",
    "SupportsCertificateLogin",
    "UserLimits",
    "UserTLSPolicy",
]


@dataclass(frozen=True, slots=True)
class UserLimits:
    """Per-user limits; ``None`` means "no limit of this kind" (or the server-wide default)."""

    quota_bytes: int | None = None  # disk quota (552 when exceeded)
    quota_files: int | None = None
    upload_rate: int | None = None  # bytes per second, shared by the user's concurrent transfers
    download_rate: int | None = None
    max_sessions: int | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "quota_bytes",
        "quota_files",
        "upload_rate",
        "download_rate",
        "max_sessions",
    )

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> UserLimits:
        """Read the limits kept in a user record's settings; anything malformed is ignored loudly."""
        values: dict[str, int | None] = {}
        for key in cls.FIELDS:
            value = settings.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"setting {key} must be a non-negative integer, got {value!r}")
            values[key] = value
        return cls(**values)


@dataclass(frozen=True, slots=True, weakref_slot=True)  # keys of IdentityMemo
class Principal:
    """A logged-in user as the rest of the server sees it."""

    name: str
    home: str  # backend location of the user's root (a directory for the local backend)
    permissions: Permission = Permission.all()  # noqa: RUF009 - immutable flag value
    limits: UserLimits = UserLimits()
    # Per-directory permissions: the longest matching rule replaces ``permissions`` below its path.
    directory_rules: tuple[DirectoryRule, ...] = ()
    tls: UserTLSPolicy = UserTLSPolicy()  # noqa: RUF009 - frozen; all None = inherit the listener


@runtime_checkable
class SupportsCachedLogin(Protocol):
    """Authenticators that can answer a repeat login from memory, with no I/O (on the event loop)."""

    def cached(self, username: str, password: str) -> Principal | None: ...


@runtime_checkable
class SupportsCertificateLogin(Protocol):
    """Authenticators that accept a verified TLS client certificate instead of a password (RFC 4217 §12.2)."""

    def authenticate_certificate(
        self, username: str, fingerprint: str, subject: str | None
    ) -> Principal | None: ...


class Authenticator(Protocol):
    """Checks credentials. Must take the same time for unknown users and wrong passwords."""

    def authenticate(self, username: str, password: str) -> Principal | None: ...
