"""The user model every user store shares: schema history, records, validation and the login decision.

The SQLite and PostgreSQL stores differ only in how they reach their database; what a user record is,
how its fields are validated and encoded, which migrations build the table and how a stored hash turns
into a login decision (with the same argon2 work for every outcome) lives here, once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self

from argon2 import PasswordHasher

from pyftps.auth.base import Permission, Principal, UserLimits, UserTLSPolicy
from pyftps.auth.passwords import needs_rehash, validate_user_name, verify_dummy, verify_password
from pyftps.proto.permissions import DirectoryRule, normalise_rule_path

__all__ = [
    "CREATE_MIGRATIONS_TABLE",
    "DIRECTORY_PERMISSIONS",
    "MIGRATIONS",
    "RECORD_COLUMNS",
    "SCHEMA_VERSION",
    "NoSuchUser",
    "SchemaVersionError",
    "UserExists",
    "UserRecord",
    "UserStore",
    "UserStoreError",
    "check_home",
    "decide_login",
    "directory_rules",
    "encode_settings",
    "format_directory_permissions",
    "format_permissions",
    "is_storable_name",
    "new_user_row",
    "normalise_directory_permissions",
    "now_text",
    "record_from_row",
    "user_changes",
]

# Schema history, applied in order; step N (1-based) takes the database to version N. Append only: never
# edit a released step. One portable statement per step (no executescript: it commits implicitly and
# would break the all-or-nothing upgrade), so SQLite and PostgreSQL run this very tuple and a database of
# either kind at version N has the same tables.
MIGRATIONS: tuple[str, ...] = (
    # 1: accounts. TEXT compares byte-wise in both SQLite (BINARY collation) and PostgreSQL (deterministic
    # collations), so user names are case-sensitive. permissions is a comma list of lower-case Permission
    # names. Sorting is not byte-wise in PostgreSQL, so listings there say COLLATE "C".
    """CREATE TABLE users (
        name TEXT NOT NULL PRIMARY KEY,
        password_hash TEXT NOT NULL,
        home TEXT NOT NULL,
        permissions TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    # 2: per-user settings (TLS policy, limits, ...) as a JSON object, so new settings need no migration.
    "ALTER TABLE users ADD COLUMN settings TEXT NOT NULL DEFAULT '{}'",
)
SCHEMA_VERSION = len(MIGRATIONS)

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
)
RECORD_COLUMNS = "name, home, permissions, enabled, settings, created_at, updated_at"


class UserStoreError(Exception):
    """Base class for user-store failures (other than invalid arguments, which raise ValueError)."""


class UserExists(UserStoreError):
    """The user name is already taken."""

    def __init__(self, name: str) -> None:
        super().__init__(f"user {name!r} already exists")
        self.name = name


class NoSuchUser(UserStoreError, LookupError):
    """No account has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no such user {name!r}")
        self.name = name


class SchemaVersionError(UserStoreError):
    """The database was written by a newer pyftps; refusing to touch it protects its data."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    """One account as stored, minus the password hash (which never leaves the store)."""

    name: str
    home: str
    permissions: Permission
    enabled: bool
    settings: dict[str, Any] = field(hash=False)  # a fresh copy per record; editing it changes nothing
    created_at: str
    updated_at: str

    def principal(self) -> Principal:
        """The record as the server sees a logged-in user."""
        return Principal(
            name=self.name,
            home=self.home,
            permissions=self.permissions,
            limits=UserLimits.from_settings(self.settings),
            directory_rules=directory_rules(self.settings),
            tls=UserTLSPolicy.from_settings(self.settings),
        )


CERTIFICATE_FINGERPRINTS = "certificate_fingerprints"  # settings key: SHA-256 fingerprints ("AB:CD:...")
CERTIFICATE_SUBJECT = "certificate_subject"  # settings key: a certificate subject CN to accept
# settings key: {"/virtual/path": "list,write", ...}; semantics in pyftps.proto.permissions
DIRECTORY_PERMISSIONS = "directory_permissions"


class _FindsUsers(Protocol):
    def get_user(self, name: str) -> UserRecord | None: ...


class CertificateLogins:
    """``authenticate_certificate`` for any store with ``get_user`` (SQLite and PostgreSQL alike)."""

    def authenticate_certificate(
        self: _FindsUsers, username: str, fingerprint: str, subject: str | None
    ) -> Principal | None:
        """A verified client certificate listed in the user's settings logs in without a password."""
        try:
            record = self.get_user(username)
        except (ValueError, UnicodeError):
            return None
        return certificate_login(record, fingerprint, subject)


def certificate_login(record: UserRecord | None, fingerprint: str, subject: str | None) -> Principal | None:
    """The principal when an enabled user's settings name this verified client certificate."""
    if record is None or not record.enabled:
        return None
    fingerprints = record.settings.get(CERTIFICATE_FINGERPRINTS) or []
    wanted_subject = record.settings.get(CERTIFICATE_SUBJECT)
    if fingerprint.upper() in (str(f).upper() for f in fingerprints):
        return record.principal()
    if subject is not None and wanted_subject is not None and subject == wanted_subject:
        return record.principal()
    return None


class UserStore(Protocol):
    """What every user store offers: administration plus the ``Authenticator`` entry point."""

    def add_user(
        self,
        name: str,
        password: str,
        home: str,
        permissions: Permission = ...,
        enabled: bool = ...,
        *,
        settings: Mapping[str, Any] | None = ...,
    ) -> UserRecord: ...

    def delete_user(self, name: str) -> None: ...

    def set_password(self, name: str, password: str) -> None: ...

    def update_user(
        self,
        name: str,
        *,
        home: str | None = ...,
        permissions: Permission | None = ...,
        enabled: bool | None = ...,
        settings: Mapping[str, Any] | None = ...,
    ) -> None: ...

    def get_user(self, name: str) -> UserRecord | None: ...

    def list_users(self) -> list[UserRecord]: ...

    def count_users(self) -> int: ...

    def schema_version(self) -> int: ...

    def authenticate(self, username: str, password: str) -> Principal | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def now_text() -> str:
    """The current UTC time as stored in created_at/updated_at (ISO 8601, whole seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_storable_name(name: str) -> bool:
    """True if *name* could be an account name, so that looking it up in a database makes sense."""
    try:
        validate_user_name(name)
    except ValueError:
        return False
    return True


def check_home(home: str) -> str:
    """Return *home* if it is a usable backend location, else raise ValueError."""
    if not isinstance(home, str) or not home or "\x00" in home:
        raise ValueError(f"home must be a non-empty string without NUL characters, got {home!r}")
    return home


def format_permissions(permissions: Permission) -> str:
    """The stored form of *permissions*: a comma list of lower-case names."""
    if not isinstance(permissions, Permission):
        raise TypeError(f"permissions must be a Permission, not {type(permissions).__name__}")
    return ",".join(permissions.names())


def normalise_directory_permissions(value: object) -> dict[str, str]:
    """Validate directory rules and return their canonical stored form, or raise ValueError.

    Paths become canonical absolute virtual paths (``/pub/`` → ``/pub``; ``..`` is refused), and
    permission texts canonical comma lists (``ro`` → ``list,read``; ``""`` or ``none``: nothing).
    """
    if not isinstance(value, Mapping):
        raise ValueError(f"{DIRECTORY_PERMISSIONS} must map virtual paths to permissions, got {value!r}")
    result: dict[str, str] = {}
    for path, text in value.items():
        if not isinstance(path, str) or not isinstance(text, str):
            raise ValueError(f"{DIRECTORY_PERMISSIONS}: {path!r}: {text!r} is not path: permissions text")
        canonical = normalise_rule_path(path)
        if canonical in result:
            raise ValueError(f"{DIRECTORY_PERMISSIONS}: two rules for {canonical}")
        result[canonical] = format_permissions(Permission.parse(text))
    return dict(sorted(result.items()))


def directory_rules(settings: Mapping[str, Any]) -> tuple[DirectoryRule, ...]:
    """The directory rules kept in a user record's settings (ValueError if malformed)."""
    value = settings.get(DIRECTORY_PERMISSIONS)
    if value is None:
        return ()
    rules = normalise_directory_permissions(value)
    return tuple(DirectoryRule(path, Permission.parse(text)) for path, text in rules.items())


def format_directory_permissions(settings: Mapping[str, Any]) -> str:
    """Directory rules for a one-line listing: ``/incoming=list,write /pub=list,read`` (``-`` = none)."""
    return " ".join(
        f"{rule.path}={','.join(rule.permissions.names()) or '-'}" for rule in directory_rules(settings)
    )


def encode_settings(settings: Mapping[str, Any]) -> str:
    """The stored form of a settings mapping: canonical JSON, or ValueError if it has none."""
    if not isinstance(settings, Mapping) or not all(isinstance(key, str) for key in settings):
        raise ValueError("settings must be a mapping with string keys")
    if DIRECTORY_PERMISSIONS in settings:  # stored canonical, so listings and comparisons are exact
        stored = dict(settings)
        value = stored.pop(DIRECTORY_PERMISSIONS)
        rules = {} if value is None else normalise_directory_permissions(value)
        if rules:
            stored[DIRECTORY_PERMISSIONS] = rules
        settings = stored
    UserTLSPolicy.from_settings(settings)  # a bad TLS override is refused when stored, not at login
    try:
        return json.dumps(dict(settings), sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"settings must be JSON-serialisable: {exc}") from None


def new_user_row(
    name: str, home: str, permissions: Permission, enabled: bool, settings: Mapping[str, Any] | None
) -> tuple[str, str, str, int, str]:
    """Validate a new account's fields and encode them as (name, home, permissions, enabled, settings)."""
    validate_user_name(name)
    return (
        name,
        check_home(home),
        format_permissions(permissions),
        int(bool(enabled)),
        encode_settings(settings or {}),
    )


def user_changes(
    *,
    home: str | None,
    permissions: Permission | None,
    enabled: bool | None,
    settings: Mapping[str, Any] | None,
) -> dict[str, object]:
    """The validated column values an update sets, keyed by column name (None arguments are left out)."""
    changes: dict[str, object] = {}
    if home is not None:
        changes["home"] = check_home(home)
    if permissions is not None:
        changes["permissions"] = format_permissions(permissions)
    if enabled is not None:
        changes["enabled"] = int(bool(enabled))
    if settings is not None:
        changes["settings"] = encode_settings(settings)
    return changes


def record_from_row(row: tuple[Any, ...]) -> UserRecord:
    """Decode a row of RECORD_COLUMNS; UserStoreError if it is corrupt (so logins fail closed)."""
    name, home, permissions_text, enabled, settings_text, created_at, updated_at = row
    try:
        permissions = Permission.parse(permissions_text)
    except ValueError as exc:
        raise UserStoreError(f"user {name!r} has unreadable permissions: {exc}") from None
    try:
        settings = json.loads(settings_text)
    except ValueError:
        settings = None
    if not isinstance(settings, dict):
        raise UserStoreError(f"user {name!r} has unreadable settings (not a JSON object)")
    return UserRecord(name, home, permissions, bool(enabled), settings, created_at, updated_at)


def decide_login(
    row: tuple[Any, ...] | None, password: str, hasher: PasswordHasher
) -> tuple[Principal | None, bool]:
    """Turn a ``(password_hash, *RECORD_COLUMNS)`` row into (principal or None, whether to rehash).

    Exactly one argon2 verification runs whatever the outcome (unknown user, wrong password, disabled
    account, success), so the answer's timing says nothing about which it was. Call it with no
    connection, transaction or lock held: it takes as long as the hash is expensive.
    """
    if row is None:
        verify_dummy(password, hasher=hasher)
        return None, False
    stored_hash, record = row[0], record_from_row(row[1:])
    if not verify_password(stored_hash, password, hasher=hasher):
        return None, False
    if not record.enabled:  # checked after the verification so it costs the same as a wrong password
        return None, False
    return record.principal(), needs_rehash(stored_hash, hasher=hasher)
