"""The ``[[vhost]]`` tables of a settings file (RFC 7151 virtual hosts), validated once at start-up.

Each table names the host names a virtual host answers to and its root; ``cert``/``key``, ``users``
and ``anonymous_root`` are optional. Virtual hosts come from the file only: there are no flags or
``PYFTPS_*`` variables for them (an array of tables has no natural flat form).
"""

from __future__ import annotations

import re
from pathlib import Path

from pyftps.config import VhostConfig

__all__ = ["VHOST_KEYS", "parse_vhosts"]

VHOST_KEYS = frozenset({"names", "root", "cert", "key", "users", "anonymous_root"})

# A DNS name as HOST accepts it (LDH labels, A-labels for IDNs; RFC 7151 §3.1).
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _host_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a host name must be text, got {value!r}")
    name = value.strip().rstrip(".").lower()
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{value!r} is not a DNS host name (letters, digits, '-' and dots)")
    if all(label.isdigit() for label in name.split(".")):
        raise ValueError(f"{value!r} is an address, not a host name")
    return name


def _path(table: dict[str, object], key: str, where: str) -> Path | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: '{key}' must be a path, got {value!r}")
    return Path(value).expanduser()


def _one(table: object, where: str) -> VhostConfig:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: must be a table ([[vhost]])")
    unknown = sorted(set(table) - VHOST_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown setting '{unknown[0]}' (known: {', '.join(sorted(VHOST_KEYS))})")
    raw_names = table.get("names")
    if isinstance(raw_names, str):
        raw_names = [raw_names]
    if not isinstance(raw_names, list) or not raw_names:
        raise ValueError(f"{where}: 'names' must list the host names it answers to")
    try:
        names = tuple(dict.fromkeys(_host_name(name) for name in raw_names))
    except ValueError as error:
        raise ValueError(f"{where}: names: {error}") from None
    where = f"{where} ({names[0]})"
    root = _path(table, "root", where)
    if root is None:
        raise ValueError(f"{where}: 'root' is required (the directory its users' homes lie in)")
    root = root.resolve()
    cert, key = _path(table, "cert", where), _path(table, "key", where)
    if (cert is None) != (key is None):
        raise ValueError(f"{where}: 'cert' and 'key' go together: give both or neither")
    if cert is not None and key is not None:
        _check_certificate(cert, key, where)
    users = table.get("users")
    if users is not None:
        users = _users_url(users, where)
    anonymous = _path(table, "anonymous_root", where)
    if anonymous is not None:
        anonymous = (root / anonymous).resolve()  # relative: inside the host's root
    return VhostConfig(names, root, cert, key, users, anonymous)


def _check_certificate(cert: Path, key: Path, where: str) -> None:
    from pyftps.tls.contexts import TLSConfigError, server_context

    try:
        server_context(cert, key)
    except TLSConfigError as error:
        raise ValueError(f"{where}: {error}") from None


def _users_url(value: object, where: str) -> str:
    from pyftps.auth.stores import parse_database_url

    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: 'users' must be a user store URL, got {value!r}")
    try:
        parse_database_url(value)
    except ValueError as error:
        raise ValueError(f"{where}: users: {error}") from None
    return value


def parse_vhosts(tables: object, source: str) -> tuple[VhostConfig, ...]:
    """Validate the ``vhost`` array of a settings file; ValueError names the table and the problem."""
    if tables is None:
        return ()
    if not isinstance(tables, list):
        raise ValueError(f"{source}: 'vhost' must be an array of tables: write [[vhost]]")
    hosts = tuple(_one(table, f"{source}: vhost #{number}") for number, table in enumerate(tables, 1))
    seen: dict[str, str] = {}
    for number, host in enumerate(hosts, 1):
        for name in host.names:
            if name in seen:
                raise ValueError(f"{source}: vhost #{number}: name {name!r} is already used by {seen[name]}")
            seen[name] = f"vhost #{number}"
    return hosts
