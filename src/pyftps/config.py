"""Server configuration: one frozen value built once at start-up and only read afterwards."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from pyftps.proto.policy import SessionPolicy
from pyftps.server.guard import BanPolicy, ConnectionLimits
from pyftps.server.scheduling import TransferPriority


class ReusePolicy(enum.Enum):
    """What to do when a PROT P data connection does not resume the control connection's TLS session."""

    REQUIRE = "require"  # refuse with 522 (RFC 4217 §10.2; vsftpd's require_ssl_reuse)
    WARN = "warn"  # allow, log a warning
    OFF = "off"  # do not check


@dataclass(frozen=True, slots=True)
class UserSpec:
    """A ``--user NAME:PASSWORD`` account, rooted at the server's ``--root``."""

    name: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class VhostConfig:
    """A ``[[vhost]]`` table (RFC 7151): host names with their own root, users and certificate."""

    names: tuple[str, ...]  # lower case, no trailing dot
    root: Path  # every home of the host's users lies inside it; relative homes are taken from it
    cert_file: Path | None = None  # None: the server's certificate
    key_file: Path | None = None
    users: str | None = None  # user store URL; None: the server's own users (homes still confined)
    anonymous_root: Path | None = None  # anonymous login (read-only) to this host when set


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    explicit_port: int | None = 2121  # None disables the listener
    implicit_port: int | None = 9990
    passive_ports: tuple[int, int] | None = None  # None: any free port
    workers: int = 1  # pre-forked processes sharing the listeners (see pyftps.prefork)
    root: Path = Path("data")
    state_dir: Path = Path("state")
    cert_file: Path | None = None  # None: a generated self-signed certificate in state_dir
    key_file: Path | None = None
    users: tuple[UserSpec, ...] = ()

    @property
    def user_database(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'users.db'}"

    data_reuse: ReusePolicy = ReusePolicy.REQUIRE
    session: SessionPolicy = field(default_factory=SessionPolicy)
    handshake_timeout: float = 30.0
    data_connect_timeout: float = 30.0  # waiting for the data connection (accept or connect)
    data_idle_timeout: float = 120.0  # no byte moving on a data connection for this long → 426
    tls_close_timeout: float = 5.0  # waiting for the peer's close_notify after CCC/REIN
    s3_endpoint: str | None = None  # for users whose home is s3://bucket/prefix (AWS when None)
    s3_region: str | None = None
    s3_allow_backslash: bool = True  # False where a backslash becomes '/' (SeaweedFS): names refused
    quota_rescan: float | None = 300.0  # seconds before a user's usage is measured again (None: never)
    fsync: bool = True  # fsync an upload before its 226 (issue: no acknowledged file lost)
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)  # global, per IP, per user
    bans: BanPolicy = field(default_factory=BanPolicy)  # failed logins per address (RFC 2577 §5)
    max_transfer_threads: int = 256
    transfer_priority: TransferPriority = TransferPriority.IDLE  # see server/scheduling.py
    buffer_size: int = 256 * 1024  # data copy chunk: 64-256 KiB measured best (TLS-IO.md)
    upload_rate: int | None = None  # bytes/s per user unless the user record says otherwise
    download_rate: int | None = None
    metrics_listen: tuple[str, int] | None = None  # /metrics and /healthz
    log_format: str = "text"  # or "json": one JSON object per line
    xferlog: Path | None = None  # transfer log in xferlog(5) format
    database_url: str | None = (
        None  # None: sqlite:///<state_dir>/users.db; postgresql://... shares users and bans
    )
    client_ca_file: Path | None = None  # client certificates verified against it may log in (232)
    credential_cache_ttl: float = 60.0  # seconds a verified password skips argon2id (0 disables)
    anonymous_root: Path | None = None  # anonymous login (read-only) only when set
    anonymous_write: bool = False
    proxy_trusted: tuple[str, ...] = ()  # addresses/networks whose connections start with a PROXY header
    proxy_header_timeout: float = 10.0
    drain_timeout: float = 30.0  # SIGTERM: how long running transfers may take to finish
    vhosts: tuple[VhostConfig, ...] = ()  # none: one host, today's behaviour
