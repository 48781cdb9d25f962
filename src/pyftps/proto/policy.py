"""Per-session policy: the configurable choices the protocol core enforces (CONFORMANCE.md PROJ items)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CCCPolicy(enum.Enum):
    """When CCC may clear the control connection (RFC 4217 §5, §15.3)."""

    NEVER = "never"
    AFTER_LOGIN = "after-login"  # default: an attacker cannot clear a session before authentication
    ALWAYS = "always"


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
