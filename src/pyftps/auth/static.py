"""An in-memory authenticator for a fixed set of users, e.g. from ``pyftps serve --user NAME:PASSWORD``."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError

from pyftps.auth.base import Principal
from pyftps.auth.passwords import (
    default_hasher,
    dummy_hash,
    hash_password,
    validate_user_name,
    verify_dummy,
    verify_password,
)

__all__ = ["StaticAuthenticator"]


class StaticAuthenticator:
    """Checks logins against argon2id hashes held in memory; immutable after construction.

    Plain-text passwords never stay in memory: ``from_plain`` hashes them at start-up. Unknown users are
    verified against the dummy hash so they cost the same as a wrong password.
    """

    __slots__ = ("_hasher", "_users")

    def __init__(
        self,
        users: Mapping[str, tuple[str, Principal]],
        *,
        hasher: PasswordHasher | None = None,
    ) -> None:
        """*users* maps each user name to ``(argon2 hash, principal)``; the principal's name must match."""
        self._hasher = hasher or default_hasher()
        checked: dict[str, tuple[str, Principal]] = {}
        for name, (stored_hash, principal) in users.items():
            validate_user_name(name)
            if principal.name != name:
                raise ValueError(f"user {name!r} is mapped to a principal named {principal.name!r}")
            try:
                # Catches the easy mistake of passing plain passwords here instead of to from_plain(),
                # which would otherwise make every login for that user fail without any hint why.
                extract_parameters(stored_hash)
            except (InvalidHashError, ValueError, TypeError):
                raise ValueError(f"user {name!r}: not an argon2 hash (use from_plain())") from None
            checked[name] = (stored_hash, principal)
        self._users: Mapping[str, tuple[str, Principal]] = MappingProxyType(checked)
        dummy_hash(self._hasher)  # build it now rather than during the first unknown-user login

    @classmethod
    def from_plain(
        cls,
        users: Mapping[str, tuple[str, Principal]],
        *,
        hasher: PasswordHasher | None = None,
    ) -> StaticAuthenticator:
        """Build from ``{name: (plain password, principal)}``, hashing each password once, now."""
        hashed = {
            name: (hash_password(password, hasher=hasher), principal)
            for name, (password, principal) in users.items()
        }
        return cls(hashed, hasher=hasher)

    @property
    def user_names(self) -> list[str]:
        """The configured user names, sorted (for start-up logging; no secrets)."""
        return sorted(self._users)

    def authenticate(self, username: str, password: str) -> Principal | None:
        entry = self._users.get(username)
        if entry is None:
            verify_dummy(password, hasher=self._hasher)
            return None
        stored_hash, principal = entry
        return principal if verify_password(stored_hash, password, hasher=self._hasher) else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(users={self.user_names!r})"
