"""An in-memory I/O layer for :class:`~pyftps.proto.session.ServerSession`: no sockets, no threads, no TLS.

The :class:`Harness` plays the part of ``pyftps.server.control`` for the sans-IO core. It runs the
session's actions strictly in order from one queue, exactly like the real I/O layer does, and feeds
the results back in:

* ``StartTLS`` → the handshake "succeeds" at once with :meth:`ServerSession.tls_established`
  (or waits for :meth:`Harness.handshake` when ``auto_tls=False``);
* ``StopTLS`` → the control connection is clear again;
* ``RunOp(op)`` → answered from :class:`FakeFS` / the fake authenticator (alice/secret may do
  everything, bob/secret is read-only), or held for :meth:`Harness.complete_op` with ``hold_ops``;
* ``RunOp(Transfer)`` → ``data_connected`` then ``transfer_done``, with the refusals the real
  transfer runner gives before any 150 (missing file, MLSD of a file); with ``auto_transfer=False``
  the transfer stays running until the test calls :meth:`Harness.data_connected` and
  :meth:`Harness.transfer_done`;
* ``Sleep`` → the fake clock moves on; ``Close`` → the connection is gone.

Replies come back as :class:`Got` ``(code, lines)`` tuples::

    h = Harness()                      # explicit session, greeting in h.greeting
    h.secure()                         # AUTH TLS + handshake + PBSZ 0 + PROT P
    h.login()                          # USER alice / PASS secret
    assert h.send("PWD") == [(257, ('"/" is the current directory.',))]
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any, NamedTuple

from pyftps.proto import actions as a
from pyftps.proto.ascii import AsciiEncoder, ascii_size
from pyftps.proto.codes import ReplyCode
from pyftps.proto.permissions import Permission
from pyftps.proto.policy import SessionPolicy
from pyftps.proto.security import TLSState
from pyftps.proto.session import ServerSession, SessionState
from pyftps.storage.base import FileInfo

MTIME = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
MTIME_TEXT = "20231114221320"
FIRST_PASSIVE_PORT = 50000
START_TIME = 1000.0
README = b"hello\nworld\n"

NOT_FOUND = a.OpFailed(ReplyCode.FILE_UNAVAILABLE, "No such file or directory.")


class Got(NamedTuple):
    """One reply the session sent: its code and its lines (one for a single-line reply)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# ---------------------------------------------------------------------------------- fake backends


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1] or "/"


class FakeFS:
    """A dict-based file tree keyed by virtual path, answering the core's operations like ``server.ops``."""

    def __init__(self) -> None:
        self.entries: dict[str, FileInfo] = {"/": FileInfo("/", True, 0, MTIME, 0o755)}
        self.data: dict[str, bytes] = {}
        self.add_dir("/pub")
        self.add_file("/readme.txt", README)
        self.add_file("/pub/data.bin", bytes(range(256)) * 4)

    # -- building
    def add_dir(self, path: str) -> None:
        self.entries[path] = FileInfo(_name(path), True, 0, MTIME, 0o755)

    def add_file(self, path: str, data: bytes, mtime: float = MTIME) -> None:
        self.entries[path] = FileInfo(_name(path), False, len(data), mtime, 0o644)
        self.data[path] = data

    # -- queries
    def stat(self, path: str) -> FileInfo | None:
        return self.entries.get(path)

    def children(self, path: str) -> list[FileInfo]:
        return [info for p, info in sorted(self.entries.items()) if p != "/" and _parent(p) == path]

    def is_dir(self, path: str) -> bool:
        info = self.entries.get(path)
        return info is not None and info.is_dir

    # -- operations
    def run(self, op: a.Op) -> a.OpResult:
        match op:
            case a.StatPath(path):
                info = self.stat(path)
                return NOT_FOUND if info is None else a.OpOk(info)
            case a.ListNames(path, limit):
                info = self.stat(path)
                if info is None:
                    return NOT_FOUND
                return a.OpOk((info, self.children(path)[:limit] if info.is_dir else []))
            case a.MakeDir(path):
                if path in self.entries:
                    return a.OpFailed(ReplyCode.FILE_UNAVAILABLE, "Already exists.")
                if not self.is_dir(_parent(path)):
                    return NOT_FOUND
                self.add_dir(path)
                return a.OpOk()
            case a.RemoveDir(path):
                if not self.is_dir(path):
                    return NOT_FOUND
                if self.children(path):
                    return a.OpFailed(ReplyCode.FILE_UNAVAILABLE, "Directory not empty.")
                del self.entries[path]
                return a.OpOk()
            case a.DeleteFile(path):
                info = self.stat(path)
                if info is None or info.is_dir:
                    return NOT_FOUND
                del self.entries[path]
                self.data.pop(path, None)
                return a.OpOk()
            case a.RenamePath(source, target):
                if source not in self.entries or not self.is_dir(_parent(target)):
                    return NOT_FOUND
                info = self.entries.pop(source)
                self.entries[target] = dataclasses.replace(info, name=_name(target))
                if source in self.data:
                    self.data[target] = self.data.pop(source)
                return a.OpOk()
            case a.SetMtime(path, mtime):
                info = self.stat(path)
                if info is None:
                    return NOT_FOUND
                self.entries[path] = dataclasses.replace(info, mtime=mtime)
                return a.OpOk()
            case a.Chmod(path, mode):
                info = self.stat(path)
                if info is None:
                    return NOT_FOUND
                self.entries[path] = dataclasses.replace(info, mode=mode)
                return a.OpOk()
            case a.AsciiSize(path, limit):
                info = self.stat(path)
                if info is None:
                    return NOT_FOUND
                if info.is_dir or info.size > limit:
                    return a.OpFailed(ReplyCode.FILE_UNAVAILABLE, "Not available in TYPE A.")
                return a.OpOk(ascii_size([self.data[path]]))
            case _:
                raise AssertionError(f"FakeFS cannot run {op!r}")

    def refuse_transfer(self, t: a.Transfer) -> a.OpFailed | None:
        """What the real transfer runner refuses before any 150 (``server.transfers._prepare``)."""
        info = self.stat(t.path)
        if t.kind.upload:
            return None if self.is_dir(_parent(t.path)) else NOT_FOUND
        if info is None:
            return NOT_FOUND
        if t.kind is a.TransferKind.RETR and info.is_dir:
            return a.OpFailed(ReplyCode.FILE_UNAVAILABLE, "Is a directory.")
        if t.kind is a.TransferKind.MLSD and not info.is_dir:
            return a.OpFailed(ReplyCode.SYNTAX_ERROR_ARGS, "MLSD needs a directory; use MLST for a file.")
        return None

    def perform(self, t: a.Transfer, upload: bytes) -> int:
        """Move the data; the number of octets that crossed the data connection."""
        if t.kind.upload:
            old = self.data.get(t.path, b"")
            kept = old if t.kind is a.TransferKind.APPE else old[: t.offset]
            self.add_file(t.path, kept + upload)
            return len(upload)
        if t.kind is a.TransferKind.RETR:
            data = self.data[t.path]
            if t.ascii:
                return len(AsciiEncoder(skip=t.offset).encode(data))
            return len(data[t.offset :])
        return 100 * len(self.children(t.path) or [t.path])  # a listing: the size does not matter


USERS: dict[str, tuple[str, Permission]] = {
    "alice": ("secret", Permission.all()),
    "bob": ("secret", Permission.read_only()),
}


LOGIN_INCORRECT = a.OpFailed(ReplyCode.NOT_LOGGED_IN, "Login incorrect.")


def authenticate(users: dict[str, tuple[str, Permission]], op: a.Authenticate) -> a.OpResult:
    """A fake authenticator with the contract of ``server.ops.authenticate``: one failure for both an
    unknown user and a wrong password (RFC 2577 §7), ``LoginAccepted`` on success."""
    entry = users.get(op.username)
    if entry is None or op.password != entry[0]:
        return LOGIN_INCORRECT
    return a.OpOk(a.LoginAccepted(op.username, entry[1]))


# ---------------------------------------------------------------------------------- the driver


class Harness:
    """Drives one :class:`ServerSession` in memory; see the module docstring."""

    def __init__(
        self,
        *,
        implicit: bool = False,
        policy: SessionPolicy | None = None,
        peer: str = "127.0.0.1",
        local: str = "127.0.0.1",
        ipv6: bool = False,
        auto_tls: bool = True,
        auto_transfer: bool = True,
        sni: str | None = None,
        fs: FakeFS | None = None,
        users: dict[str, tuple[str, Permission]] | None = None,
        start: bool = True,
        **policy_overrides: Any,
    ) -> None:
        base = policy if policy is not None else SessionPolicy()
        self.policy = dataclasses.replace(base, **policy_overrides) if policy_overrides else base
        self.now = START_TIME
        self.session = ServerSession(
            self.policy, implicit=implicit, peer_host=peer, local_host=local, ipv6=ipv6, now=self.now
        )
        self.fs = fs if fs is not None else FakeFS()
        self.users = users if users is not None else dict(USERS)
        self.auto_tls = auto_tls
        self.auto_transfer = auto_transfer
        self.hold_ops = False
        self.sni = sni
        self.upload = b"uploaded\n"  # what a client "sends" on STOR/APPE/STOU
        self.next_port = FIRST_PASSIVE_PORT

        self.actions: list[a.Action] = []  # every action, in execution order
        self.last: list[a.Action] = []  # the actions executed by the latest call
        self.replies: list[Got] = []
        self.under_tls: list[bool] = []  # parallel to replies: was the control channel under TLS?
        self.wire = bytearray()  # what the control connection carried (replies and raw bytes)
        self.raw: list[bytes] = []
        self.ops: list[a.Op] = []  # operations other than transfers
        self.transfers: list[a.Transfer] = []
        self.sleeps: list[float] = []
        self.tls_initial: list[bytes] = []  # StartTLS.initial of every handshake
        self.tls_up = False
        self.handshake_pending = False
        self.closed = False
        self.running: a.Transfer | None = None
        self.pending_op: a.Op | None = None
        self.greeting: list[Got] = self._run(self.session.start(self.now)) if start else []

    # ------------------------------------------------------------------ constructors

    @classmethod
    def ready(cls, **kwargs: Any) -> Harness:
        """Explicit session after AUTH TLS, PBSZ 0, PROT P and a login as alice."""
        h = cls(**kwargs)
        h.secure()
        h.login()
        return h

    @classmethod
    def implicit_ready(cls, **kwargs: Any) -> Harness:
        """Implicit session after the handshake and a login as alice."""
        h = cls(implicit=True, **kwargs)
        h.login()
        return h

    # ------------------------------------------------------------------ client side

    def feed(self, data: bytes) -> list[Got]:
        """Raw (already decrypted) control bytes from the client."""
        return self._run(self.session.receive_data(data, self.now))

    def send(self, *lines: str) -> list[Got]:
        """Send the lines (CRLF added) in one read; the replies they caused, in order."""
        return self.feed("".join(line + "\r\n" for line in lines).encode("utf-8", "surrogateescape"))

    def codes(self, *lines: str) -> list[int]:
        """Send each line in its own read; every reply code, in order."""
        return [got.code for line in lines for got in self.send(line)]

    def one(self, line: str) -> Got:
        """Send one line that must get exactly one reply."""
        replies = self.send(line)
        assert len(replies) == 1, f"{line!r} got {replies!r}"
        return replies[0]

    def code(self, line: str) -> int:
        return self.one(line).code

    def login(self, user: str = "alice", password: str = "secret") -> None:
        assert self.codes(f"USER {user}") == [ReplyCode.NEED_PASSWORD]
        assert self.codes(f"PASS {password}") == [ReplyCode.LOGGED_IN]

    def secure(self, prot: str = "P") -> None:
        """AUTH TLS with a successful handshake, then PBSZ 0 and PROT ``prot``."""
        assert self.codes("AUTH TLS") == [ReplyCode.SECURITY_EXCHANGE_DONE]
        assert self.tls_state is TLSState.TLS, "auto_tls=False: call handshake() yourself"
        assert self.codes("PBSZ 0", f"PROT {prot}") == [ReplyCode.OK, ReplyCode.OK]

    def passive(self) -> int:
        got = self.one("PASV")
        assert got.code == ReplyCode.ENTERING_PASSIVE, got
        return self.next_port - 1

    # ------------------------------------------------------------------ I/O layer side

    def handshake(self, sni: str | None = None) -> list[Got]:
        """Complete the TLS handshake the session asked for with StartTLS."""
        assert self.handshake_pending, "no StartTLS pending"
        self.handshake_pending = False
        return self._run(self._tls_done(sni if sni is not None else self.sni))

    def data_connected(self) -> list[Got]:
        assert self.running is not None, "no transfer running"
        return self._run(self.session.data_connected(self.now))

    def transfer_done(
        self, bytes_done: int = 0, code: int | None = None, text: str = "", aborted: bool = False
    ) -> list[Got]:
        assert self.running is not None, "no transfer running"
        self.running = None
        outcome = a.TransferOutcome(bytes_done, code, text, aborted)
        return self._run(self.session.transfer_done(outcome, self.now))

    def complete_op(self, result: a.OpResult | None = None) -> list[Got]:
        """Finish the operation held by ``hold_ops``, with ``result`` or what the fakes answer."""
        op, self.pending_op = self.pending_op, None
        assert op is not None, "no operation pending"
        return self._run(self.session.op_done(result if result is not None else self._answer(op), self.now))

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def tick(self) -> list[Got]:
        return self._run(self.session.tick(self.now))

    # ------------------------------------------------------------------ views

    @property
    def state(self) -> SessionState:
        return self.session.state

    @property
    def tls_state(self) -> TLSState:
        return self.session.state.tls

    def kinds(self, actions: list[a.Action] | None = None) -> list[str]:
        """Action class names (``SendReply`` shown as ``"220"``), handy for asserting sequences."""
        out = []
        for action in self.last if actions is None else actions:
            out.append(str(action.reply.code) if isinstance(action, a.SendReply) else type(action).__name__)
        return out

    # ------------------------------------------------------------------ the action loop

    def _tls_done(self, sni: str | None) -> list[a.Action]:
        self.tls_up = True
        info = a.TLSInfo(version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384", sni=sni)
        return self.session.tls_established(info, self.now)

    def _answer(self, op: a.Op) -> a.OpResult:
        if isinstance(op, a.Authenticate):
            return authenticate(self.users, op)
        if isinstance(op, a.OpenPassive):
            self.next_port += 1
            return a.OpOk(self.next_port - 1)
        return self.fs.run(op)

    def _simulate(self, t: a.Transfer) -> list[a.Action]:
        refused = self.fs.refuse_transfer(t)
        self.running = None
        if refused is not None:
            return self.session.transfer_done(a.TransferOutcome(0, refused.code, refused.text), self.now)
        actions = self.session.data_connected(self.now)
        done = self.fs.perform(t, self.upload)
        return actions + self.session.transfer_done(a.TransferOutcome(done), self.now)

    def _run(self, actions: list[a.Action]) -> list[Got]:
        first = len(self.replies)
        self.last = []
        queue = deque(actions)
        while queue:
            action = queue.popleft()
            self.actions.append(action)
            self.last.append(action)
            assert not self.closed, f"action after Close: {action!r}"
            match action:
                case a.SendReply(reply):
                    self.replies.append(Got(reply.code, reply.lines))
                    self.under_tls.append(self.tls_up)
                    self.wire += reply.to_bytes()
                case a.SendRaw(data):
                    self.raw.append(data)
                    self.wire += data
                case a.StartTLS(initial):
                    self.tls_initial.append(initial)
                    if self.auto_tls:
                        queue.extend(self._tls_done(self.sni))
                    else:
                        self.handshake_pending = True
                case a.StopTLS():
                    assert self.tls_up, "StopTLS on a clear channel"
                    self.tls_up = False
                case a.Sleep(seconds):
                    self.sleeps.append(seconds)
                    self.now += seconds
                case a.RunOp(a.Transfer() as transfer):
                    assert self.running is None, "two transfers at once"
                    self.transfers.append(transfer)
                    self.running = transfer
                    if self.auto_transfer:
                        queue.extend(self._simulate(transfer))
                case a.RunOp(op):
                    assert self.pending_op is None, "two operations at once"
                    self.ops.append(op)
                    if self.hold_ops:
                        self.pending_op = op
                    else:
                        queue.extend(self.session.op_done(self._answer(op), self.now))
                case a.Close():
                    self.closed = True
                case a.AbortTransfer() | a.DropDataChannel() | a.EndLogin():
                    pass  # recorded in self.actions; tests look them up there
        return self.replies[first:]

    def count(self, kind: type[a.Action]) -> int:
        """How many actions of this kind the session asked for so far."""
        return sum(isinstance(action, kind) for action in self.actions)
