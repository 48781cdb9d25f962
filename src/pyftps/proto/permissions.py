"""What a logged-in user may do, and where: permission flags and per-directory rules.

The command table pre-checks a command's flag against everything the user is granted anywhere; handlers
check the flag at the resolved target path (:class:`AccessRules`) before any storage call.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from pyftps.proto import paths
from pyftps.proto.errors import RemoteProtocolError


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
        """Parse ``"all"``, ``"ro"``, ``"none"`` or a comma list such as ``"list,read,write"``."""
        text = text.strip().lower()
        if text == "all":
            return cls.all()
        if text == "none":
            return cls(0)
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


# ---------------------------------------------------------------- per-directory rules
#
# A user may carry directory rules (SFTPGo per-path permissions, ProFTPD <Directory> limits): a virtual
# path inside the user's root mapped to a Permission set. Semantics:
#
# * The rule with the longest matching path gives the permissions for that path and everything under
#   it. Matching is component-wise: a rule for /pub covers /pub and /pub/x, never /public.
# * A rule replaces the base permissions, it does not add to them: /incoming=write means only write
#   there, even for a user whose base set is "all".
# * No matching rule: the user's base permissions.
# * Each command checks its target path once resolved: the file for RETR/STOR/APPE/STOU/DELE/SIZE/
#   MDTM/MFMT/MLST/SITE CHMOD, the directory created or removed for MKD/RMD, the listed path for
#   LIST/NLST/MLSD/STAT, the source for RNFR and the destination for RNTO (both need RENAME). CWD,
#   CDUP and PWD need no permission, as before rules existed: entering a directory reveals nothing
#   that a refused LIST would hide, and clients must be able to reach a write-only drop box.
# * Paths are compared as the client names them (case-sensitive, after ``..`` and ``.`` are
#   resolved); a symbolic link inside the root is not followed for the check, so a link from a
#   permissive directory into a restricted one gives the permissive directory's rights.


def normalise_rule_path(text: str) -> str:
    """The canonical form of a rule's virtual path: absolute, no ``.``/``..``, no trailing slash.

    Raises ValueError for anything that is not plainly an absolute path inside the user's root.
    """
    if not isinstance(text, str) or not text.startswith("/"):
        raise ValueError(f"directory rule path must be absolute (such as /incoming), got {text!r}")
    if ".." in text.split("/"):
        raise ValueError(f"directory rule path must not contain '..', got {text!r}")
    try:
        return paths.resolve("/", text)
    except RemoteProtocolError as error:
        raise ValueError(f"directory rule path {text!r}: {error.text}") from None


def _covers(rule_path: str, path: str) -> bool:
    """Component-wise prefix: /pub covers /pub and /pub/x, not /public; / covers everything."""
    return rule_path in ("/", path) or path.startswith(rule_path + "/")


@dataclass(frozen=True, slots=True)
class DirectoryRule:
    """Permissions for a virtual path and everything below it."""

    path: str  # canonical, see normalise_rule_path
    permissions: Permission

    def __post_init__(self) -> None:
        if normalise_rule_path(self.path) != self.path:
            raise ValueError(f"directory rule path {self.path!r} is not in canonical form")


@dataclass(frozen=True, slots=True)
class AccessRules:
    """A user's base permissions plus directory rules: what may be done where."""

    base: Permission = Permission(0)  # noqa: RUF009 - an immutable flag value
    rules: tuple[DirectoryRule, ...] = ()
    anywhere: Permission = field(init=False, compare=False)  # granted somewhere: the cheap pre-check
    _exact: dict[str, Permission] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Deepest first, so the first covering rule is the longest match.
        ordered = tuple(sorted(self.rules, key=lambda rule: (-len(rule.path), rule.path)))
        seen = {rule.path for rule in ordered}
        if len(seen) != len(ordered):
            raise ValueError("two directory rules for the same path")
        # A rule for / shadows the base set everywhere, so the base then grants nothing anywhere.
        anywhere = Permission(0) if any(rule.path == "/" for rule in ordered) else self.base
        for rule in ordered:
            anywhere |= rule.permissions
        object.__setattr__(self, "rules", ordered)
        object.__setattr__(self, "anywhere", anywhere)
        object.__setattr__(self, "_exact", {rule.path: rule.permissions for rule in ordered})

    @classmethod
    def of(cls, base: Permission, rules: Mapping[str, Permission] | None = None) -> AccessRules:
        """Build from ``{"/path": Permission}``; paths are normalised here."""
        items = (rules or {}).items()
        return cls(base, tuple(DirectoryRule(normalise_rule_path(p), perm) for p, perm in items))

    def effective(self, path: str) -> Permission:
        """The permissions that apply at *path* (a resolved virtual path)."""
        for rule in self.rules:
            if _covers(rule.path, path):
                return rule.permissions
        return self.base

    def allows(self, perm: Permission, path: str) -> bool:
        """True if every flag of *perm* is granted at *path*."""
        return perm in self.effective(path)

    def rule_at(self, path: str) -> Permission | None:
        """The permissions of a rule for exactly *path*, if there is one.

        Listings use it: the rules covering an entry are its own and those covering its directory,
        so the entry's set is its own rule if any, else the directory's: one lookup per entry.
        """
        return self._exact.get(path)

    def mlsx_perm(self, path: str, *, is_dir: bool) -> str:
        """The MLSx ``perm`` fact of the entry at *path* (RFC 3659 §7.5.5)."""
        granted = self.effective(path)
        return dir_perm(granted) if is_dir else file_perm(granted)


@functools.cache  # one string per flag combination: listings ask once per entry
def file_perm(granted: Permission) -> str:
    """The MLSx ``perm`` fact of a file (RFC 3659 §7.5.5)."""
    letters = (
        ("a", Permission.APPEND),
        ("d", Permission.DELETE),
        ("f", Permission.RENAME),
        ("r", Permission.READ),
        ("w", Permission.WRITE),
    )
    return "".join(letter for letter, flag in letters if flag in granted)


@functools.cache
def dir_perm(granted: Permission) -> str:
    """The MLSx ``perm`` fact of a directory (RFC 3659 §7.5.5)."""
    letters = (
        ("c", Permission.WRITE),
        ("d", Permission.RMDIR),
        ("f", Permission.RENAME),
        ("l", Permission.LIST),
        ("m", Permission.MKDIR),
        ("p", Permission.DELETE),
    )
    return "e" + "".join(letter for letter, flag in letters if flag in granted)
