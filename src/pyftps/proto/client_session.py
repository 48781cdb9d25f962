"""The client's sans-IO view of one control connection: commands out as bytes, replies in as events
(RFC 959 §4-§5; RFC 1123 §4.1.2.11; RFC 2228 §3; RFC 4217 §4-§13; MS-FTPS §3.1.5; RFC 7151 §3.2).

Theory of operation
-------------------
The I/O layer asks :meth:`ClientSession.send` for the bytes of a command, writes them, feeds what
the server sends back (decrypted) to :meth:`ClientSession.receive_data`, and gets one
:class:`ReplyReceived` per reply, paired with the command it answers. Replies change state as the
RFCs say; the layer watches :attr:`ClientSession.security` to learn when TLS must start or stop on
the socket and reports back with :meth:`tls_established` / :meth:`tls_closed`.

Security state (:class:`Security`) is data, as on the server (:mod:`pyftps.proto.security`):
:data:`TRANSITIONS` holds every legal move and :data:`GATES` says which security commands a client
may send in which state. Explicit sessions start ``PLAIN`` and become ``TLS`` after ``234`` and a
handshake; implicit ones start in ``IMPLICIT_WAIT`` (handshake first, no plaintext greeting,
MS-FTPS §3.1.5.1) and land in ``IMPLICIT`` with ``PBSZ 0`` and ``PROT P`` assumed. ``CCC`` and
``REIN`` under TLS pass through a closing state while both close_notify alerts are exchanged
(RFC 4217 §5, §13); ``REIN`` on an implicit session ends in ``IMPLICIT_WAIT`` again: a new
handshake, then a new greeting (MS-FTPS §3.1.5.3).

What the session refuses to send (:class:`CommandRefused`): anything before the greeting or while
TLS is being started or stopped; ``AUTH``, ``CCC``, ``PBSZ``, ``PROT`` on an implicit session
(MS-FTPS §3.1.5.1, §3.1.5.2, §3.1.5.6); ``PROT`` before an accepted ``PBSZ`` (RFC 4217 §9);
``PBSZ``/``PROT`` after ``CCC`` (RFC 4217 §5); a second command while one awaits its reply, except
``ABOR``/``STAT`` during a transfer (RFC 959 §4.1.3); line breaks or NUL inside an argument. CR and
0xFF in pathnames travel as ``CR NUL`` and ``IAC IAC`` (RFC 2640 §3.1); no Telnet negotiation is
ever sent (RFC 1123 §4.1.2.12). Success or failure is decided by the first digit only
(RFC 1123 §4.1.2.11).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import dataclass

from pyftps.proto.codes import ReplyCode
from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError
from pyftps.proto.grammar import parse_feat_reply
from pyftps.proto.replies import MAX_REPLY_LINE, Reply, ReplyParser

__all__ = [
    "GATES",
    "TRANSFER_VERBS",
    "TRANSITIONS",
    "ClientLogin",
    "ClientSession",
    "CommandRefused",
    "Mode",
    "ReplyReceived",
    "Security",
    "Trigger",
    "format_command",
]


class Mode(enum.Enum):
    EXPLICIT = "explicit"  # RFC 4217: AUTH TLS on the ordinary port
    IMPLICIT = "implicit"  # MS-FTPS: TLS from the first byte, port 990
    PLAIN = "plain"  # RFC 959 without TLS; the user opted in


class Security(enum.Enum):
    PLAIN = "plain"
    HANDSHAKE = "handshake"  # 234 received: run the TLS handshake now (4217 §4.2)
    TLS = "tls"
    CLEARING = "clearing"  # 200 to CCC: exchange close_notify, then plaintext (4217 §5)
    CLEARED = "cleared"
    REIN_CLOSING = "rein-closing"  # 220 to REIN under TLS: close, then plaintext (4217 §13)
    IMPLICIT_WAIT = "implicit-wait"  # handshake before anything else (MS-FTPS §3.1.5.1)
    IMPLICIT = "implicit"
    IMPLICIT_REIN_CLOSING = "implicit-rein-closing"  # then IMPLICIT_WAIT (MS-FTPS §3.1.5.3)

    @property
    def protected(self) -> bool:
        """Commands and replies travel under TLS now."""
        return self in (Security.TLS, Security.IMPLICIT)

    @property
    def accepts_commands(self) -> bool:
        return self in (Security.PLAIN, Security.TLS, Security.CLEARED, Security.IMPLICIT)

    @property
    def needs_handshake(self) -> bool:
        return self in (Security.HANDSHAKE, Security.IMPLICIT_WAIT)

    @property
    def needs_close(self) -> bool:
        return self in (Security.CLEARING, Security.REIN_CLOSING, Security.IMPLICIT_REIN_CLOSING)


class Trigger(enum.Enum):
    AUTH_ACCEPTED = "auth-accepted"  # 234
    HANDSHAKE_DONE = "handshake-done"
    CCC_ACCEPTED = "ccc-accepted"  # 200 to CCC
    REIN_ACCEPTED = "rein-accepted"  # 220 to REIN
    TLS_CLOSED = "tls-closed"  # both close_notify alerts exchanged


_S, _T = Security, Trigger
TRANSITIONS: dict[tuple[Security, Trigger], Security] = {
    (_S.PLAIN, _T.AUTH_ACCEPTED): _S.HANDSHAKE,
    (_S.HANDSHAKE, _T.HANDSHAKE_DONE): _S.TLS,
    (_S.IMPLICIT_WAIT, _T.HANDSHAKE_DONE): _S.IMPLICIT,
    (_S.TLS, _T.CCC_ACCEPTED): _S.CLEARING,
    (_S.CLEARING, _T.TLS_CLOSED): _S.CLEARED,
    (_S.PLAIN, _T.REIN_ACCEPTED): _S.PLAIN,
    (_S.CLEARED, _T.REIN_ACCEPTED): _S.PLAIN,
    (_S.TLS, _T.REIN_ACCEPTED): _S.REIN_CLOSING,
    (_S.REIN_CLOSING, _T.TLS_CLOSED): _S.PLAIN,
    (_S.IMPLICIT, _T.REIN_ACCEPTED): _S.IMPLICIT_REIN_CLOSING,
    (_S.IMPLICIT_REIN_CLOSING, _T.TLS_CLOSED): _S.IMPLICIT_WAIT,
}

_NO_EXCHANGE = "no security exchange yet: send AUTH TLS first (RFC 2228 §3)"
_FROZEN = "PBSZ and PROT are frozen after CCC (RFC 4217 §5)"
_IMPLICIT_PBSZ_PROT = "implicit FTPS already assumes PBSZ 0 and PROT P (MS-FTPS §3.1.5.1)"
_ALLOWED = None

# (verb, state) -> None (may be sent) or the reason it must not be (state != accepting is checked first).
GATES: dict[tuple[str, Security], str | None] = {
    ("AUTH", _S.PLAIN): _ALLOWED,
    ("AUTH", _S.TLS): "TLS is already negotiated on this connection",
    ("AUTH", _S.CLEARED): "the control connection was cleared with CCC; AUTH again is refused (RFC 4217 §5)",
    ("AUTH", _S.IMPLICIT): "implicit FTPS: the implicit AUTH TLS already happened (MS-FTPS §3.1.5.6)",
    ("PBSZ", _S.PLAIN): _NO_EXCHANGE,
    ("PBSZ", _S.TLS): _ALLOWED,
    ("PBSZ", _S.CLEARED): _FROZEN,
    ("PBSZ", _S.IMPLICIT): _IMPLICIT_PBSZ_PROT,
    ("PROT", _S.PLAIN): _NO_EXCHANGE,
    ("PROT", _S.TLS): _ALLOWED,
    ("PROT", _S.CLEARED): _FROZEN,
    ("PROT", _S.IMPLICIT): _IMPLICIT_PBSZ_PROT,
    ("CCC", _S.PLAIN): "the control connection is not protected (RFC 4217 §5)",
    ("CCC", _S.TLS): _ALLOWED,
    ("CCC", _S.CLEARED): "the control connection is already clear (RFC 4217 §5)",
    ("CCC", _S.IMPLICIT): "CCC is never sent on implicit FTPS: servers always reject it (MS-FTPS §3.1.5.2)",
}

TRANSFER_VERBS = frozenset({"RETR", "STOR", "STOU", "APPE", "LIST", "NLST", "MLSD"})
_DURING_TRANSFER = frozenset({"ABOR", "STAT"})  # RFC 959 §4.1.3; RFC 1123 §4.1.3.3
_VERB = re.compile(r"[A-Z][A-Z0-9]{2,7}")  # 959 §5.3: 4 letters; XSHA256 and kin are longer
_IAC = b"\xff"


class ClientLogin(enum.Enum):
    NONE = "none"
    NEED_PASS = "need-pass"  # 331
    NEED_ACCT = "need-acct"  # 332
    LOGGED_IN = "logged-in"  # 230 / 232 / 202 to PASS


class CommandRefused(LocalProtocolError):
    """The session will not send this command in this state; ``reason`` cites the rule."""

    def __init__(self, verb: str, reason: str) -> None:
        super().__init__(f"{verb} not sent: {reason}")
        self.verb = verb
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReplyReceived:
    """One reply and the command it answers (``verb`` None: the greeting or an unsolicited 421)."""

    verb: str | None
    arg: str | None
    reply: Reply

    @property
    def final(self) -> bool:
        """False for a 1yz preliminary reply: another reply to the same command follows (959 §4.2)."""
        return not self.reply.is_preliminary


def format_command(verb: str, arg: str | None = None) -> bytes:
    """``VERB[ SP arg] CRLF`` in UTF-8 with CR as ``CR NUL`` and 0xFF as ``IAC IAC`` (RFC 2640 §3.1).

    Exactly one space separates verb and argument, so further spaces belong to the pathname.
    A line feed or NUL in the argument could start a second command and is refused.
    """
    upper = verb.upper()
    if _VERB.fullmatch(upper) is None:
        raise CommandRefused(verb[:8], "a command verb is 3-8 ASCII letters or digits (RFC 959 §5.3)")
    if arg is None:
        return upper.encode("ascii") + b"\r\n"
    if "\n" in arg or "\x00" in arg:
        raise CommandRefused(upper, "line feed or NUL inside an argument (RFC 959 §5.3; 3659 §2.2)")
    raw = arg.encode("utf-8", "surrogateescape").replace(b"\r", b"\r\x00").replace(_IAC, _IAC + _IAC)
    return upper.encode("ascii") + b" " + raw + b"\r\n"


class ClientSession:
    """Protocol state of one client control connection; never performs I/O."""

    def __init__(self, mode: Mode) -> None:
        self.mode = mode
        self.security = Security.IMPLICIT_WAIT if mode is Mode.IMPLICIT else Security.PLAIN
        self.awaiting_greeting = True  # implicit: read inside TLS, after the handshake
        self.login = ClientLogin.NONE
        self.pbsz_ok = False
        self.prot = "C"  # RFC 4217 §9 initial level; implicit → P after the handshake
        self.transfer_type: str | None = None  # what the server has for TYPE, once we set it
        self.host: str | None = None  # RFC 7151 HOST accepted by the server
        self.features: dict[str, str] | None = None  # FEAT result (RFC 2389 §3.2); None: not asked
        self.closed = False  # 221 to QUIT or a 421: the server is closing the connection
        self._parser = ReplyParser()
        self._unparsed = bytearray()
        self._pending: deque[tuple[str, str | None]] = deque()

    # ------------------------------------------------------------------ commands out

    def send(self, verb: str, arg: str | None = None) -> bytes:
        """The bytes of one command, after checking that it may be sent now (see :class:`CommandRefused`)."""
        verb = verb.upper()
        data = format_command(verb, arg)
        self._check_may_send(verb, arg)
        self._pending.append((verb, arg))
        return data

    implicit_protection_fallback = False

    def allow_implicit_protection(self) -> None:
        """Let PBSZ 0 / PROT P through on an implicit session whose server refused a transfer.

        MS-FTPS §3.1.5.1 says a client must not send them, but vsftpd's implicit mode does not
        assume PROT P and answers 522 until it gets them; only after such a refusal do we send them.
        """
        self.implicit_protection_fallback = True

    def _check_may_send(self, verb: str, arg: str | None) -> None:
        if self.closed:
            raise CommandRefused(verb, "the server closed the control connection")
        if not self.security.accepts_commands:
            raise CommandRefused(verb, f"TLS is being started or stopped ({self.security.value})")
        if self.awaiting_greeting:
            raise CommandRefused(verb, "the server's greeting has not arrived yet (RFC 959 §5.4)")
        if self._pending and not (verb in _DURING_TRANSFER and self._pending[0][0] in TRANSFER_VERBS):
            raise CommandRefused(verb, f"{self._pending[0][0]} still awaits its reply")
        reason = GATES.get((verb, self.security), _ALLOWED)
        if reason is not None and not (self.implicit_protection_fallback and verb in ("PBSZ", "PROT")):
            raise CommandRefused(verb, reason)
        if verb == "PROT" and not self.pbsz_ok:
            raise CommandRefused(verb, "PBSZ 0 must be accepted before PROT (RFC 4217 §9)")
        if verb == "HOST" and self.login is ClientLogin.LOGGED_IN:
            raise CommandRefused(verb, "HOST must come before USER (RFC 7151 §3.2.2)")

    @property
    def pending(self) -> tuple[str, ...]:
        """Verbs sent whose final reply has not arrived yet, oldest first."""
        return tuple(verb for verb, _ in self._pending)

    # ------------------------------------------------------------------ replies in

    def receive_data(self, data: bytes) -> list[ReplyReceived]:
        """Plaintext control bytes from the server; returns the complete replies, in order.

        Parsing stops after a reply that hands the socket to TLS (234) or starts a TLS close (200
        to CCC, 220 to REIN under TLS): whatever follows is not a reply (see :meth:`take_unparsed`).
        A malformed reply, a 334 to AUTH or a reply nobody asked for raises RemoteProtocolError.
        """
        self._unparsed += data
        events: list[ReplyReceived] = []
        while self.security.accepts_commands and not self.closed:
            end = self._unparsed.find(b"\n")
            if end < 0:
                break
            line = bytes(self._unparsed[: end + 1])
            del self._unparsed[: end + 1]
            for reply in self._parser.feed(line):
                events.append(self._on_reply(reply))
        if len(self._unparsed) > MAX_REPLY_LINE:
            raise RemoteProtocolError(500, "reply line too long")  # 1123 §4.1.2.11: survive, don't hang
        return events

    def take_unparsed(self) -> bytes:
        """Bytes received after the last complete reply (raw, drained)."""
        data = bytes(self._unparsed)
        self._unparsed.clear()
        return data

    def _on_reply(self, reply: Reply) -> ReplyReceived:
        if self.awaiting_greeting:
            return self._on_greeting(reply)
        if not self._pending:
            if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
                self.closed = True  # e.g. idle timeout: the server closes (959 §4.2.2)
                return ReplyReceived(None, None, reply)
            raise RemoteProtocolError(500, f"unsolicited reply {reply.code} (RFC 959 §5.4)")
        verb, arg = self._pending[0]
        if not reply.is_preliminary:
            self._pending.popleft()
        if reply.code == ReplyCode.SERVICE_NOT_AVAILABLE:
            self.closed = True
        else:
            self._apply(verb, arg, reply)
        return ReplyReceived(verb, arg, reply)

    def _on_greeting(self, reply: Reply) -> ReplyReceived:
        if reply.is_success:
            self.awaiting_greeting = False
        elif not reply.is_preliminary:  # 421 or anything else: the server will not serve us
            self.closed = True
        return ReplyReceived(None, None, reply)

    def _apply(self, verb: str, arg: str | None, reply: Reply) -> None:
        kind = reply.kind
        if verb in ("USER", "PASS", "ACCT"):
            self._apply_login(reply)
        elif verb == "AUTH":
            if reply.code == 334:
                self.closed = True  # the server now expects ADAT, which TLS never sends
                raise RemoteProtocolError(334, "334 to AUTH: TLS uses no ADAT exchange (RFC 4217 §4.2)")
            if kind == 2:
                self._move(Trigger.AUTH_ACCEPTED)
        elif kind != 2:
            if verb == "QUIT":
                self.closed = True
        elif verb == "PBSZ":
            self.pbsz_ok = True
        elif verb == "PROT" and arg is not None:
            self.prot = arg.strip().upper()
        elif verb == "CCC":
            self._move(Trigger.CCC_ACCEPTED)
        elif verb == "REIN":
            self._reinitialized()
        elif verb == "TYPE" and arg is not None:
            self.transfer_type = arg.strip().upper()
        elif verb == "HOST":
            self.host = arg
        elif verb == "FEAT":
            self.features = parse_feat_reply(reply.lines) if len(reply.lines) > 1 else {}
        elif verb == "QUIT":
            self.closed = True

    def _apply_login(self, reply: Reply) -> None:
        # 959 §5.4: USER 230/331/332; PASS 230/202/332; 2228 §4 adds 232 (certificate login).
        if reply.kind == 2:
            self.login = ClientLogin.LOGGED_IN
        elif reply.code == ReplyCode.NEED_PASSWORD:
            self.login = ClientLogin.NEED_PASS
        elif reply.code == ReplyCode.NEED_ACCOUNT:
            self.login = ClientLogin.NEED_ACCT
        else:
            self.login = ClientLogin.NONE

    def _reinitialized(self) -> None:
        """REIN: everything back to the just-connected state (959 §4.1.1; 7151 §3.2.1; MS-FTPS §3.1.5.3)."""
        self._move(Trigger.REIN_ACCEPTED)
        self._reset_parameters()
        self.features = None

    def _reset_parameters(self) -> None:
        self.login = ClientLogin.NONE
        self.pbsz_ok, self.prot = False, "C"
        self.transfer_type = None
        self.host = None

    # ------------------------------------------------------------------ TLS events from the I/O layer

    def tls_established(self) -> None:
        """The handshake the state asked for completed."""
        self._move(Trigger.HANDSHAKE_DONE)
        if self.security is Security.IMPLICIT:
            # MS-FTPS §3.1.5.1: act as if PBSZ 0 and PROT P were accepted; then read the greeting.
            self.pbsz_ok, self.prot = True, "P"
            self.awaiting_greeting = True
        else:
            # RFC 4217 §4.2 / RFC 2228 §3: an accepted AUTH resets login and transfer parameters;
            # the user must send USER again. HOST survives: it chose the certificate (7151 §4).
            host = self.host
            self._reset_parameters()
            self.host = host

    def tls_closed(self) -> None:
        """Both close_notify alerts were exchanged; the socket carries plaintext (or a new handshake)."""
        self._move(Trigger.TLS_CLOSED)
        if self.security is Security.IMPLICIT_WAIT:
            self._parser = ReplyParser()  # nothing of the old TLS session may leak into the next one

    def _move(self, trigger: Trigger) -> None:
        try:
            self.security = TRANSITIONS[(self.security, trigger)]
        except KeyError:
            raise LocalProtocolError(f"no transition from {self.security.value} on {trigger.value}") from None

    # ------------------------------------------------------------------ derived facts

    @property
    def implicit(self) -> bool:
        return self.mode is Mode.IMPLICIT

    @property
    def data_protected(self) -> bool:
        """Data connections of the next transfer use TLS (PROT P, explicit or implicit)."""
        return self.prot == "P"

    @property
    def logged_in(self) -> bool:
        return self.login is ClientLogin.LOGGED_IN

    def supports(self, feature: str) -> bool:
        """Whether FEAT listed ``feature`` (its label, case-insensitive); False before FEAT."""
        return self.features is not None and feature.upper() in self.features

    def auth_mechanisms(self) -> frozenset[str]:
        """Mechanisms of the FEAT ``AUTH`` line: ``AUTH TLS`` and ``AUTH TLS;SSL;`` alike (MS-FTPS §4.2)."""
        if self.features is None or "AUTH" not in self.features:
            return frozenset()
        return frozenset(m.strip().upper() for m in self.features["AUTH"].split(";") if m.strip())
