"""The contract between the sans-IO server session and the I/O layer: frozen actions out, results in.

The session never performs I/O. It returns actions (send this reply, start TLS, run this storage
operation, start this transfer) and the I/O layer reports back with :class:`OpOk`/:class:`OpFailed`
and the transfer events. Operations carry only virtual paths and plain values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pyftps.proto import paths
from pyftps.proto.permissions import AccessRules, DirectoryRule, Permission, dir_perm, file_perm
from pyftps.proto.policy import UserTLSPolicy
from pyftps.proto.replies import Reply

# ---------------------------------------------------------------- operations the I/O layer runs


@dataclass(frozen=True, slots=True)
class Authenticate:
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class CertificateLogin:
    """Log ``username`` in with the verified TLS client certificate instead of a password."""

    username: str
    fingerprint: str
    subject: str | None


@dataclass(frozen=True, slots=True)
class StatPath:
    path: str


@dataclass(frozen=True, slots=True)
class ListNames:
    """Entries of a directory for STAT over the control connection, at most ``limit`` of them."""

    path: str
    limit: int


@dataclass(frozen=True, slots=True)
class MakeDir:
    path: str


@dataclass(frozen=True, slots=True)
class RemoveDir:
    path: str


@dataclass(frozen=True, slots=True)
class DeleteFile:
    path: str


@dataclass(frozen=True, slots=True)
class RenamePath:
    source: str
    target: str


@dataclass(frozen=True, slots=True)
class SetMtime:
    path: str
    mtime: float


@dataclass(frozen=True, slots=True)
class Chmod:
    path: str
    mode: int


@dataclass(frozen=True, slots=True)
class AsciiSize:
    """Octets a TYPE A download of the file would send; fails when the file exceeds ``limit``."""

    path: str
    limit: int


@dataclass(frozen=True, slots=True)
class OpenPassive:
    """Open a passive listener; the result is its port (an ``int``)."""

    extended: bool


class TransferKind(enum.Enum):
    RETR = "RETR"
    STOR = "STOR"
    STOU = "STOU"
    APPE = "APPE"
    LIST = "LIST"
    NLST = "NLST"
    MLSD = "MLSD"

    @property
    def upload(self) -> bool:
        return self in (TransferKind.STOR, TransferKind.STOU, TransferKind.APPE)

    @property
    def listing(self) -> bool:
        return self in (TransferKind.LIST, TransferKind.NLST, TransferKind.MLSD)


@dataclass(frozen=True, slots=True)
class ActiveAddress:
    host: str
    port: int


class TransferProgress:
    """Bytes moved so far; written by the transfer's worker, read by STAT (RFC 1123 §4.1.3.3)."""

    __slots__ = ("bytes_done",)

    def __init__(self) -> None:
        self.bytes_done = 0


@dataclass(frozen=True, slots=True)
class Transfer:
    """Everything the I/O layer needs to run one data transfer."""

    kind: TransferKind
    path: str
    offset: int = 0
    ascii: bool = False
    protect: bool = False  # PROT P: TLS on the data connection, FTP client as TLS client (4217 §7)
    active: ActiveAddress | None = None  # None: use the passive listener
    facts: frozenset[str] = frozenset()  # MLSD facts selected by OPTS MLST
    perm_for_file: str = ""  # MLSD perm fact values, from the user's permissions
    perm_for_dir: str = ""
    access: AccessRules | None = None  # with directory rules: per-entry MLSD perm facts
    progress: TransferProgress = field(default_factory=TransferProgress, compare=False)

    def entry_perm(self, name: str, *, is_dir: bool) -> str:
        """The MLSD ``perm`` fact of one entry of the listed directory (RFC 3659 §7.5.5)."""
        own = None if self.access is None else self.access.rule_at(paths.join(self.path, name))
        if own is None:  # the listed directory's rule (perm_for_*) covers the entry
            return self.perm_for_dir if is_dir else self.perm_for_file
        return dir_perm(own) if is_dir else file_perm(own)


Op = (
    Authenticate
    | CertificateLogin
    | StatPath
    | ListNames
    | MakeDir
    | RemoveDir
    | DeleteFile
    | RenamePath
    | SetMtime
    | Chmod
    | AsciiSize
    | OpenPassive
    | Transfer
)

# ---------------------------------------------------------------- actions out of the session


@dataclass(frozen=True, slots=True)
class SendReply:
    reply: Reply


@dataclass(frozen=True, slots=True)
class SendRaw:
    """Bytes that are not a reply (a Telnet option refusal, RFC 1123 §4.1.2.12)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Run a TLS handshake as server; ``initial`` are bytes already received that belong to it."""

    initial: bytes = b""


@dataclass(frozen=True, slots=True)
class StopTLS:
    """Send close_notify, wait (bounded) for the peer's, then continue in clear on the same socket."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Delay the next action (the pause after a failed login, RFC 2577 §5)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class RunOp:
    op: Op


@dataclass(frozen=True, slots=True)
class AbortTransfer:
    """Stop the running transfer now; its outcome is reported as aborted."""


@dataclass(frozen=True, slots=True)
class DropDataChannel:
    """Close any passive listener or pending data connection."""


@dataclass(frozen=True, slots=True)
class EndLogin:
    """The logged-in identity is gone (REIN, AUTH, a new USER): release the user's storage."""


@dataclass(frozen=True, slots=True)
class SelectHost:
    """The virtual host logins are for from now on (RFC 7151 HOST); None: back to the default host (REIN).

    A host chosen before AUTH also selects the certificate of the handshake that follows (7151 §4).
    """

    name: str | None


@dataclass(frozen=True, slots=True)
class CommandStarted:
    """The session starts handling a command; its replies follow (only with ``policy.trace_commands``)."""

    verb: str
    arg: str | None = field(default=None, repr=False)  # PASS arguments must not reach a repr


@dataclass(frozen=True, slots=True)
class Close:
    """Close the control connection (after a TLS close_notify when under TLS)."""


Action = (
    SendReply
    | SendRaw
    | StartTLS
    | StopTLS
    | Sleep
    | RunOp
    | AbortTransfer
    | DropDataChannel
    | EndLogin
    | SelectHost
    | Close
    | CommandStarted
)

# ---------------------------------------------------------------- results into the session


@dataclass(frozen=True, slots=True)
class OpOk:
    value: object = None


@dataclass(frozen=True, slots=True)
class OpFailed:
    code: int
    text: str


OpResult = OpOk | OpFailed


@dataclass(frozen=True, slots=True, weakref_slot=True)  # keys of IdentityMemo
class LoginAccepted:
    """Value of a successful :class:`Authenticate`: what the session needs to know of the user."""

    name: str
    permissions: Permission
    tls: UserTLSPolicy | None = None  # the user's TLS overrides (None: the listener's policy applies)
    rules: tuple[DirectoryRule, ...] = ()  # per-directory permissions (see proto.permissions)

    @property
    def access(self) -> AccessRules:
        return AccessRules(self.permissions, self.rules)


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """How a transfer ended. ``code`` is None on success (226), else the final reply to send."""

    bytes_done: int
    code: int | None = None
    text: str = ""
    aborted: bool = False

    @property
    def ok(self) -> bool:
        return self.code is None and not self.aborted


@dataclass(frozen=True, slots=True)
class TLSInfo:
    """What the session learns from a completed handshake."""

    version: str = ""
    cipher: str = ""
    sni: str | None = None
    client_fingerprint: str | None = None  # SHA-256 of a client certificate the TLS layer verified
    client_subject: str | None = None  # its subject common name
