"""The authentication seam: who may log in, where their files are and what they may do.

Authenticators are blocking (SQLite, PostgreSQL, argon2 hashing); the server calls them from worker
threads. They must never reveal whether a user name exists: an unknown user and a wrong password
return the same ``None`` after the same amount of work (RFC 2577 §7).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pyftps.proto.permissions import Permission

__all__ = ["Authenticator", "Permission", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A logged-in user as the rest of the server sees it."""

    name: str
    home: str  # backend location of the user's root (a directory for the local backend)
    permissions: Permission = Permission.all()  # noqa: RUF009 - immutable flag value


class Authenticator(Protocol):
    """Checks credentials. Must take the same time for unknown users and wrong passwords."""

    def authenticate(self, username: str, password: str) -> Principal | None: ...
