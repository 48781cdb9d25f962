"""Per-session policy: the configurable choices the protocol core enforces (CONFORMANCE.md PROJ items).

A listener's :class:`SessionPolicy` applies until login; a user's :class:`UserTLSPolicy` overrides
then apply for the rest of the session (:meth:`SessionPolicy.with_user`), like SFTPGo's per-user
TLS settings applied at login.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, TypeVar

_T = TypeVar("_T")


class CCCPolicy(enum.Enum):
    """When CCC may clear the control connection (RFC 4217 §5, §15.3)."""

    NEVER = "never"
    AFTER_LOGIN = "after-login"  # default: an attacker cannot clear a session before authentication
    ALWAYS = "always"


DATA_REUSE_MODES = ("require", "warn", "off")  # the values of the server's tls.data_reuse setting


@dataclass(frozen=True, slots=True)
class UserTLSPolicy:
    """One user's TLS overrides, kept in the user record; ``None`` everywhere = inherit the listener."""

    require_tls_for_login: bool | None = None
    require_protected_data: bool | None = None
    ccc: CCCPolicy | None = None
    data_reuse: str | None = None  # one of DATA_REUSE_MODES

    KEYS: ClassVar[tuple[str, ...]] = ("require_tls_for_login", "require_protected_data", "ccc", "data_reuse")

    def __post_init__(self) -> None:
        if self.data_reuse is not None and self.data_reuse not in DATA_REUSE_MODES:
            raise ValueError(
                f"data_reuse must be one of {', '.join(DATA_REUSE_MODES)}, got {self.data_reuse!r}"
            )

    @property
    def inherits_all(self) -> bool:
        return all(getattr(self, key) is None for key in self.KEYS)

    @classmethod
    def from_settings(cls, settings: Mapping[str, object]) -> UserTLSPolicy:
        """Read the overrides kept in a user record's settings; a malformed value raises ValueError."""
        flags: dict[str, bool | None] = {}
        for key in ("require_tls_for_login", "require_protected_data"):
            value = settings.get(key)
            if value is not None and not isinstance(value, bool):
                raise ValueError(f"setting {key} must be true or false, got {value!r}")
            flags[key] = value
        ccc, reuse = settings.get("ccc"), settings.get("data_reuse")
        if ccc is not None and ccc not in tuple(c.value for c in CCCPolicy):
            raise ValueError(f"setting ccc must be never, after-login or always, got {ccc!r}")
        if reuse is not None and not isinstance(reuse, str):
            raise ValueError(f"setting data_reuse must be require, warn or off, got {reuse!r}")
        return cls(
            require_tls_for_login=flags["require_tls_for_login"],
            require_protected_data=flags["require_protected_data"],
            ccc=CCCPolicy(ccc) if ccc is not None else None,
            data_reuse=reuse,
        )

    def to_settings(self) -> dict[str, object]:
        """The overrides as user-record settings; inherited values are left out."""
        values: dict[str, object] = {}
        for key in self.KEYS:
            value = getattr(self, key)
            if value is not None:
                values[key] = value.value if isinstance(value, CCCPolicy) else value
        return values

    def summary(self) -> str:
        """Compact text for ``pyftps user list``: ``tls-login=yes prot-p=no ccc=always reuse=off``."""
        parts = []
        for label, value in (
            ("tls-login", self.require_tls_for_login),
            ("prot-p", self.require_protected_data),
            ("ccc", self.ccc.value if self.ccc is not None else None),
            ("reuse", self.data_reuse),
        ):
            if value is not None:
                shown = ("yes" if value else "no") if isinstance(value, bool) else value
                parts.append(f"{label}={shown}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """Everything a :class:`~pyftps.proto.session.ServerSession` needs to decide replies on its own."""

    tls_available: bool = True  # a usable certificate is loaded (else AUTH → 431)
    require_tls_for_login: bool = True  # USER/PASS in clear → 530 (RFC 4217 §10.1)
    require_protected_data: bool = True  # PROT C → 534; transfers with PROT C → 521 (4217 §10.2)
    ccc: CCCPolicy = CCCPolicy.AFTER_LOGIN
    allow_foreign_data_address: bool = False  # PORT/EPRT to another host (FXP, RFC 2577 §2)
    allow_low_data_ports: bool = False  # PORT/EPRT to ports < 1024 (RFC 2577 §3)
    max_login_failures: int = 3  # then 421 and close (RFC 2577 §5)
    login_failure_delay: float = 3.0  # seconds before a 530 (RFC 2577 §5)
    idle_timeout: float = 600.0  # no command for this long → 421 (RFC 1123 §4.1.3.2)
    banner: str = "pyftps FTPS server ready."
    passive_address: str | None = None  # masquerade address for PASV behind NAT
    host_names: frozenset[str] = frozenset()  # RFC 7151 names accepted; empty = any name
    ascii_size_limit: int = 64 * 1024 * 1024  # SIZE in TYPE A reads the file up to this size
    stat_list_limit: int = 2000  # STAT <dir> over the control connection lists at most this many
    max_queued_commands: int = 32  # commands pipelined behind a running operation
    max_line: int = 8192
    trace_commands: bool = False  # emit CommandStarted before each command's actions (logs, metrics)
    data_reuse: str | None = None  # a user's data-channel reuse mode; None = the server's tls.data_reuse

    def with_user(self, user: UserTLSPolicy | None) -> SessionPolicy:
        """The policy for the rest of a session once ``user`` logged in: this one with their overrides.

        A user may tighten anything, and may loosen PROT C, CCC and data-channel reuse, which only
        matter after login. ``require_tls_for_login=False`` cannot loosen a listener that requires
        TLS: the server must answer USER before it knows who the user is, and answering it
        differently per user would reveal which names exist (RFC 2577 §7).
        """
        if user is None or user.inherits_all:
            return self
        return replace(
            self,
            require_tls_for_login=self.require_tls_for_login or bool(user.require_tls_for_login),
            require_protected_data=_pick(user.require_protected_data, self.require_protected_data),
            ccc=_pick(user.ccc, self.ccc),
            data_reuse=_pick(user.data_reuse, self.data_reuse),
        )


def _pick(override: _T | None, inherited: _T) -> _T:
    return inherited if override is None else override
