"""The authentication seam: who may log in, where their files are and what they may do.

Authenticators are blocking (SQLite, PostgreSQL, argon2 hashing); the server calls them from worker
threads. They must never reveal whether a user name exists: an unknown user and a wrong password
return the same ``None`` after the same amount of work (RFC 2577 §7).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Permission(enum.Flag):
    """What a user may do; checked by the protocol core before any storage call."""

    LIST = enum.auto()
    READ = enum.auto()
    WRITE = enum.auto()
    APPEND = enum.auto()
    DELETE = enum.auto()
    RENAME = enum.auto()
    MKDIR = enum.auto()
    RMDIR = enum.auto()
    CHMOD = enum.auto()

    @classmethod
    def all(cls) -> Permission:
        result = cls(0)
        for member in cls:
            result |= member
        return result

    @classmethod
    def read_only(cls) -> Permission:
        return cls.LIST | cls.READ

    @classmethod
    def parse(cls, text: str) -> Permission:
        """Parse ``"all"``, ``"ro"`` or a comma list such as ``"list,read,write"``."""
        text = text.strip().lower()
        if text == "all":
            return cls.all()
        if text in ("ro", "read-only", "readonly"):
            return cls.read_only()
        result = cls(0)
        for word in filter(None, (w.strip() for w in text.split(","))):
            try:
                result |= cls[word.upper()]
            except KeyError:
                raise ValueError(f"unknown permission {word!r}") from None
        return result

    def names(self) -> list[str]:
        return [m.name.lower() for m in type(self) if m in self and m.name]


@dataclass(frozen=True, slots=True)
class Principal:
    """A logged-in user as the rest of the server sees it."""

    name: str
    home: str  # backend location of the user's root (a directory for the local backend)
    permissions: Permission = Permission.all()  # noqa: RUF009 - immutable flag value


class Authenticator(Protocol):
    """Checks credentials. Must take the same time for unknown users and wrong passwords."""

    def authenticate(self, username: str, password: str) -> Principal | None: ...
