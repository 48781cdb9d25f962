"""Server settings from one table: command-line flags, a TOML file and ``PYFTPS_*`` variables, validated once.

Every option is declared once in :data:`OPTIONS` with its TOML key (``section.name``), its flag and
its parser; the ``serve`` flags, the environment names (``PYFTPS_SECTION_NAME``) and the file
format all derive from it. Precedence: command line, then environment, then file, then default.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyftps.config import ReusePolicy, ServerConfig, UserSpec
from pyftps.proto.policy import CCCPolicy, SessionPolicy
from pyftps.server.guard import BanPolicy, ConnectionLimits
from pyftps.server.scheduling import TransferPriority
from pyftps.settings_vhosts import parse_vhosts


class SettingsError(ValueError):
    """A setting is invalid; the message names the setting and where it came from."""


def _port(value: object) -> int:
    number = _int(value)
    if not 0 <= number <= 65535:
        raise ValueError("a port is 0-65535 (0 disables the listener)")
    return number


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"expected a whole number, got {value!r}")


def _positive_int(value: object) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _workers(value: object) -> int:
    """A number of worker processes, or "auto": one per CPU."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return max(1, os.cpu_count() or 1)
    return _positive_int(value)


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected seconds")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"expected seconds, got {value!r}") from None
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected text, got {value!r}")
    return value


def _path(value: object) -> Path:
    return Path(_text(value)).expanduser()


def _port_range(value: object) -> tuple[int, int]:
    low, sep, high = _text(value).partition("-")
    try:
        pair = (int(low), int(high if sep else low))
    except ValueError:
        raise ValueError("expected LOW-HIGH, e.g. 50000-50100") from None
    if not 1024 <= pair[0] <= pair[1] <= 65535:
        raise ValueError("passive ports must satisfy 1024 <= LOW <= HIGH <= 65535")
    return pair


def _ipv4(value: object) -> str:
    text = _text(value)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise ValueError(f"expected an IPv4 address (PASV can only announce IPv4), got {text!r}") from None
    return text


def _network(value: object) -> str:
    text = _text(value)
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"expected an address or CIDR network, got {text!r}") from None
    return text


def _user(value: object) -> UserSpec:
    name, sep, password = _text(value).partition(":")
    if not sep or not name or not password:
        raise ValueError("expected NAME:PASSWORD")
    return UserSpec(name, password)


def _listen(value: object) -> tuple[str, int]:
    host, sep, port = _text(value).rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9100")
    return host.strip("[]") or "0.0.0.0", int(port)


def _database(url: str | None) -> str | None:
    if url is None:
        return None
    from pyftps.auth.stores import parse_database_url

    try:
        parse_database_url(url)
    except ValueError as error:
        raise SettingsError(f"users.database: {error}") from None
    return url


def _choice(*values: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _text(value)
        if text not in values:
            raise ValueError(f"expected one of {', '.join(values)}, got {text!r}")
        return text

    return parse


@dataclass(frozen=True, slots=True)
class Option:
    key: str  # "section.name" in the TOML file
    flag: str
    parse: Callable[[object], Any]
    default: Any
    help: str
    kind: str = "value"  # "value", "switch" (a flag that sets true) or "list" (repeatable)
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return "PYFTPS_" + self.key.replace(".", "_").upper()


OPTIONS: tuple[Option, ...] = (
    Option("server.host", "--host", _text, "0.0.0.0", "listen address ('::' for IPv6 and IPv4)"),
    Option("server.port", "--port", _port, None, "explicit FTPS port (default 21, or 2121; 0 disables)"),
    Option(
        "server.implicit_port",
        "--implicit-port",
        _port,
        None,
        "implicit FTPS port (default 990, or 9990; 0 disables)",
    ),
    Option(
        "server.passive_ports",
        "--passive-ports",
        _port_range,
        None,
        "passive data port range",
        metavar="LO-HI",
    ),
    Option(
        "server.masquerade_address",
        "--masquerade-address",
        _ipv4,
        None,
        "address announced in PASV replies (NAT)",
    ),
    Option("server.root", "--root", _path, None, "directory served to --user accounts and the first user"),
    Option(
        "server.workers",
        "--workers",
        _workers,
        1,
        "worker processes sharing the listeners (default 1; 'auto': one per CPU)",
        metavar="N",
    ),
    Option(
        "server.state_dir",
        "--state-dir",
        _path,
        None,
        "certificates and user database (default ~/.local/share/pyftps)",
    ),
    Option(
        "server.users",
        "--user",
        _user,
        (),
        "an account NAME:PASSWORD rooted at --root (repeatable)",
        "list",
        "NAME:PASSWORD",
    ),
    Option(
        "users.anonymous_root",
        "--anonymous-root",
        _path,
        None,
        "enable read-only anonymous login, rooted here",
    ),
    Option(
        "users.anonymous_write", "--anonymous-write", _bool, False, "let anonymous users upload too", "switch"
    ),
    Option(
        "storage.s3_endpoint",
        "--s3-endpoint",
        _text,
        None,
        "S3 endpoint URL for s3:// homes (MinIO, SeaweedFS)",
    ),
    Option("storage.s3_region", "--s3-region", _text, None, "S3 region for s3:// homes"),
    Option(
        "storage.s3_allow_backslash",
        "--s3-allow-backslash",
        _bool,
        True,
        "accept '\\' in names in s3:// homes; false for SeaweedFS, which turns it into '/' (553 instead)",
        metavar="BOOL",
    ),
    Option(
        "users.cache_ttl", "--credential-cache", _seconds, 60.0, "seconds a verified password skips argon2id"
    ),
    Option("users.database", "--database", _text, None, "user store URL: sqlite:///path or postgresql://..."),
    Option(
        "tls.cert", "--cert", _path, None, "certificate chain (PEM); default: a generated self-signed one"
    ),
    Option("tls.key", "--key", _path, None, "private key (PEM)"),
    Option(
        "tls.client_ca",
        "--client-ca",
        _path,
        None,
        "accept client certificates issued by (or listed in) FILE",
    ),
    Option(
        "tls.data_reuse",
        "--data-reuse",
        _choice(*(r.value for r in ReusePolicy)),
        "require",
        "data connections must resume the control TLS session",
    ),
    Option(
        "policy.allow_plain_login",
        "--allow-plain-login",
        _bool,
        False,
        "allow USER/PASS without TLS",
        "switch",
    ),
    Option(
        "policy.allow_plain_data",
        "--allow-plain-data",
        _bool,
        False,
        "allow PROT C (unprotected data)",
        "switch",
    ),
    Option(
        "policy.allow_foreign_data",
        "--allow-foreign-data",
        _bool,
        False,
        "allow data connections with other addresses (FXP)",
        "switch",
    ),
    Option(
        "policy.ccc",
        "--ccc",
        _choice(*(c.value for c in CCCPolicy)),
        "after-login",
        "when CCC may clear the control connection",
    ),
    Option("policy.idle_timeout", "--idle-timeout", _seconds, 600.0, "seconds without a command before 421"),
    Option(
        "policy.handshake_timeout",
        "--handshake-timeout",
        _seconds,
        30.0,
        "seconds allowed for a TLS handshake",
    ),
    Option("policy.login_delay", "--login-delay", _seconds, 3.0, "seconds before answering a failed login"),
    Option(
        "storage.no_fsync", "--no-fsync", _bool, False, "do not fsync uploads before the 226 reply", "switch"
    ),
    Option("limits.max_connections", "--max-connections", _positive_int, 1000, "control connections in all"),
    Option("limits.max_per_ip", "--max-per-ip", _positive_int, 20, "control connections from one address"),
    Option("limits.max_per_user", "--max-per-user", _positive_int, 10, "logged-in sessions of one user"),
    Option(
        "limits.transfer_threads",
        "--transfer-threads",
        _positive_int,
        256,
        "data connections served at once per process (more wait their turn); a small pool is faster "
        "under a burst but lets a few slow clients hold every thread",
    ),
    Option(
        "limits.transfer_priority",
        "--transfer-priority",
        _choice(*(p.value for p in TransferPriority)),
        "idle",
        "CPU priority of transfer threads: idle (SCHED_IDLE: commands are answered first, transfers "
        "give way to every other program), low (nice +5) or normal",
    ),
    Option("limits.upload_rate", "--upload-rate", _positive_int, None, "bytes/s per user for uploads"),
    Option("limits.download_rate", "--download-rate", _positive_int, None, "bytes/s per user for downloads"),
    Option(
        "limits.quota_rescan",
        "--quota-rescan",
        _seconds,
        300.0,
        "seconds before a user's quota usage is measured again, e.g. after changes by other nodes (0: never)",
        metavar="SECONDS",
    ),
    Option(
        "bans.after", "--ban-after", _positive_int, 5, "failed logins within 10 minutes that ban an address"
    ),
    Option("bans.time", "--ban-time", _seconds, 900.0, "first ban in seconds; doubles on repeat"),
    Option(
        "bans.allow",
        "--ban-allow",
        _network,
        (),
        "never ban these addresses/networks (repeatable)",
        "list",
        "CIDR",
    ),
    Option(
        "proxy.trusted",
        "--proxy-trusted",
        _network,
        (),
        "load balancers that send a PROXY v1/v2 header (repeatable)",
        "list",
        "CIDR",
    ),
    Option("logging.level", "--log-level", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", "log level"),
    Option("logging.format", "--log-format", _choice("text", "json"), "text", "log lines as text or JSON"),
    Option(
        "logging.xferlog",
        "--xferlog",
        _path,
        None,
        "append finished transfers to FILE in xferlog(5) format",
        metavar="FILE",
    ),
    Option(
        "metrics.listen",
        "--metrics-listen",
        _listen,
        None,
        "serve /metrics and /healthz on HOST:PORT",
        metavar="HOST:PORT",
    ),
)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``serve`` flags, generated from :data:`OPTIONS`; every default is None so the source is known."""
    parser.add_argument("--config", type=Path, help="a TOML settings file (see docs/configuration.md)")
    for option in OPTIONS:
        if option.kind == "switch":
            parser.add_argument(option.flag, action="store_const", const=True, default=None, help=option.help)
        elif option.kind == "list":
            parser.add_argument(
                option.flag, action="append", default=None, metavar=option.metavar, help=option.help
            )
        else:
            parser.add_argument(option.flag, default=None, metavar=option.metavar, help=option.help)


def read_file(path: Path) -> dict[str, object]:
    """Flatten a TOML file into ``{"section.name": value}``; unknown keys are errors, not silently ignored."""
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise SettingsError(f"{path}: cannot read: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path}: not valid TOML: {error}") from None
    known = {option.key for option in OPTIONS}
    flat: dict[str, object] = {}
    for section, table in document.items():
        if section == "vhost":  # [[vhost]]: an array of tables, checked by parse_vhosts
            flat["vhost"] = table
            continue
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: '{section}' must be a [section] table")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in known:
                raise SettingsError(f"{path}: unknown setting '{key}'")
            flat[key] = value
    return flat


def resolve(args: argparse.Namespace | None, environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Every option's value, validated: command line, then ``PYFTPS_*``, then ``--config``, then default."""
    config_path = getattr(args, "config", None) if args is not None else None
    from_file = read_file(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        given = getattr(args, option.dest, None) if args is not None else None
        source, raw = "default", option.default
        if given is not None:
            source, raw = option.flag, given
        elif option.env in environ:
            source, raw = option.env, environ[option.env]
            raw = raw.split(",") if option.kind == "list" else raw
        elif option.key in from_file:
            source, raw = f"{config_path}: {option.key}", from_file[option.key]
        values[option.key] = _parse(option, raw, source)
    try:
        values["vhost"] = parse_vhosts(from_file.get("vhost"), str(config_path))
    except ValueError as error:
        raise SettingsError(str(error)) from None
    return values


def _parse(option: Option, raw: object, source: str) -> Any:
    if raw is None or source == "default":
        return raw
    try:
        if option.kind == "list":
            items = raw if isinstance(raw, list | tuple) else [raw]
            return tuple(option.parse(item) for item in items)
        return option.parse(raw)
    except ValueError as error:
        raise SettingsError(f"{source}: {error}") from None


def build_config(
    values: Mapping[str, Any], *, pick_port: Callable[[str, int | None, int, int], int | None]
) -> ServerConfig:
    """Turn validated values into the frozen :class:`ServerConfig` the server reads."""
    from pyftps.serve import default_state_dir

    state_dir = (values["server.state_dir"] or default_state_dir()).resolve()
    root = (values["server.root"] or state_dir / "data").resolve()
    host = values["server.host"]
    policy = SessionPolicy(
        require_tls_for_login=not values["policy.allow_plain_login"],
        require_protected_data=not values["policy.allow_plain_data"],
        ccc=CCCPolicy(values["policy.ccc"]),
        idle_timeout=values["policy.idle_timeout"],
        login_failure_delay=values["policy.login_delay"],
        passive_address=values["server.masquerade_address"],
        allow_foreign_data_address=values["policy.allow_foreign_data"],
        host_names=frozenset(name for vhost in values.get("vhost", ()) for name in vhost.names),
    )
    if (values["tls.cert"] is None) != (values["tls.key"] is None):
        raise SettingsError("--cert and --key go together: give both or neither")
    return ServerConfig(
        host=host,
        explicit_port=pick_port(host, values["server.port"], 21, 2121),
        implicit_port=pick_port(host, values["server.implicit_port"], 990, 9990),
        passive_ports=values["server.passive_ports"],
        workers=values["server.workers"],
        root=root,
        state_dir=state_dir,
        cert_file=values["tls.cert"],
        key_file=values["tls.key"],
        users=tuple(values["server.users"]),
        data_reuse=ReusePolicy(values["tls.data_reuse"]),
        session=policy,
        fsync=not values["storage.no_fsync"],
        handshake_timeout=values["policy.handshake_timeout"],
        limits=ConnectionLimits(
            values["limits.max_connections"], values["limits.max_per_ip"], values["limits.max_per_user"]
        ),
        bans=BanPolicy(
            max_failures=values["bans.after"],
            ban_time=values["bans.time"],
            allow_list=tuple(values["bans.allow"]),
        ),
        max_transfer_threads=values["limits.transfer_threads"],
        transfer_priority=TransferPriority(values["limits.transfer_priority"]),
        upload_rate=values["limits.upload_rate"],
        download_rate=values["limits.download_rate"],
        metrics_listen=values["metrics.listen"],
        log_format=values["logging.format"],
        xferlog=values["logging.xferlog"],
        proxy_trusted=tuple(values["proxy.trusted"]),
        database_url=_database(values["users.database"]),
        anonymous_root=values["users.anonymous_root"],
        credential_cache_ttl=values["users.cache_ttl"],
        client_ca_file=values["tls.client_ca"],
        s3_endpoint=values["storage.s3_endpoint"],
        s3_region=values["storage.s3_region"],
        s3_allow_backslash=values["storage.s3_allow_backslash"],
        quota_rescan=values["limits.quota_rescan"] or None,
        anonymous_write=values["users.anonymous_write"],
        vhosts=tuple(values.get("vhost", ())),
    )
