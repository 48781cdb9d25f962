"""What a logged-in user may do: the permission flags the command table checks before any storage call."""

from __future__ import annotations

import enum


class Permission(enum.Flag):
    """One flag per kind of operation (vsftpd/ProFTPD/SFTPGo grant the same set)."""

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
