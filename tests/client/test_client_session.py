"""ClientSession paired in memory with the server's ServerSession (h11's ConnectionPair idea): no sockets.

Bytes from ``ClientSession.send`` go to ``ServerSession.receive_data``; replies go back through
``ClientSession.receive_data``. Where TLS would start or stop, both sides are told it happened
(``tls_established`` / ``tls_closed``), and the client's state must already be asking for it.
"""

from __future__ import annotations

import itertools

import pytest

from pyftps.proto import actions as a
from pyftps.proto.client_session import (
    GATES,
    TRANSITIONS,
    ClientLogin,
    ClientSession,
    CommandRefused,
    Mode,
    ReplyReceived,
    Security,
    Trigger,
    format_command,
)
from pyftps.proto.commands import Command, CommandReader
from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError
from pyftps.proto.permissions import Permission
from pyftps.proto.policy import SessionPolicy
from pyftps.proto.session import ServerSession
from pyftps.storage.base import FileInfo

PASSWORD = "secret"


class Pair:
    """A ClientSession wired to a ServerSession; ``send`` returns the replies the client saw."""

    def __init__(self, mode: Mode, policy: SessionPolicy | None = None, *, hold_tls: bool = False) -> None:
        self.server = ServerSession(
            policy or SessionPolicy(login_failure_delay=0),
            implicit=mode is Mode.IMPLICIT,
            peer_host="127.0.0.1",
            local_host="127.0.0.1",
        )
        self.client = ClientSession(mode)
        self.events: list[ReplyReceived] = []
        self.wire: list[bytes] = []  # every byte string the client put on the wire
        self.closed = False
        self.hold_tls = hold_tls  # keep StartTLS until handshake() (to look at the waiting state)
        self.held: list[a.StartTLS] = []
        self._run(self.server.start(0.0))

    def handshake(self) -> None:
        self.hold_tls = False
        while self.held:
            self._do(self.held.pop(0))

    def send(self, verb: str, arg: str | None = None) -> list[ReplyReceived]:
        start = len(self.events)
        data = self.client.send(verb, arg)
        self.wire.append(data)
        self._run(self.server.receive_data(data, 0.0))
        return self.events[start:]

    def codes(self, verb: str, arg: str | None = None) -> list[int]:
        return [event.reply.code for event in self.send(verb, arg)]

    def _run(self, actions: list[a.Action]) -> None:
        for action in actions:
            self._do(action)

    def _do(self, action: a.Action) -> None:
        match action:
            case a.SendReply(reply):
                self.events += self.client.receive_data(reply.to_bytes())
            case a.StartTLS() if self.hold_tls:
                self.held.append(action)
            case a.StartTLS():
                assert self.client.security.needs_handshake, self.client.security
                self.client.tls_established()
                self._run(self.server.tls_established(a.TLSInfo("TLSv1.3"), 0.0))
            case a.StopTLS():
                assert self.client.security.needs_close, self.client.security
                assert not self.client.take_unparsed()
                self.client.tls_closed()
            case a.RunOp(op):
                self._op(op)
            case a.Close():
                self.closed = True
            case _:
                pass  # Sleep, DropDataChannel, EndLogin, SendRaw: nothing to simulate

    def _op(self, op: a.Op) -> None:
        if isinstance(op, a.Transfer):
            self._run(self.server.data_connected(0.0))
            self._run(self.server.transfer_done(a.TransferOutcome(10), 0.0))
            return
        result: a.OpResult
        if isinstance(op, a.Authenticate):
            ok = op.password == PASSWORD
            accepted = a.LoginAccepted(op.username, Permission.all())
            result = a.OpOk(accepted) if ok else a.OpFailed(530, "Login incorrect.")
        elif isinstance(op, a.OpenPassive):
            result = a.OpOk(50000)
        elif isinstance(op, a.StatPath):
            result = a.OpOk(FileInfo("f", False, 10, 0.0, 0o644))
        else:
            result = a.OpOk(None)
        self._run(self.server.op_done(result, 0.0))

    # the usual sequences

    def secure(self) -> None:
        assert self.codes("AUTH", "TLS") == [234]
        assert self.client.security is Security.TLS

    def login(self) -> None:
        assert self.codes("USER", "alice") == [331]
        assert self.codes("PASS", PASSWORD) == [230]
        assert self.client.logged_in

    def protect(self) -> None:
        assert self.codes("PBSZ", "0") == [200]
        assert self.codes("PROT", "P") == [200]


def explicit_ready() -> Pair:
    pair = Pair(Mode.EXPLICIT)
    pair.secure()
    pair.login()
    pair.protect()
    return pair


def implicit_ready() -> Pair:
    pair = Pair(Mode.IMPLICIT)  # the server's first action is StartTLS: the handshake runs at once
    pair.login()
    return pair


# --------------------------------------------------------------------- explicit (RFC 4217)


def test_explicit_full_sequence() -> None:
    pair = Pair(Mode.EXPLICIT)
    assert [e.reply.code for e in pair.events] == [220]
    assert pair.client.security is Security.PLAIN and not pair.client.awaiting_greeting
    pair.secure()
    pair.login()
    assert pair.client.prot == "C"  # 4217 §9: initial level
    pair.protect()
    assert pair.client.data_protected and pair.server.state.prot == "P"
    assert pair.codes("EPSV") == [229]
    assert pair.codes("RETR", "f") == [150, 226]


def test_auth_resets_login_and_the_client_logs_in_again() -> None:
    pair = Pair(Mode.EXPLICIT, SessionPolicy(login_failure_delay=0, require_tls_for_login=False))
    pair.login()
    pair.secure()
    # 4217 §4.2: after AUTH the user must send USER again, and both sides know it.
    assert pair.client.login is ClientLogin.NONE
    assert pair.codes("PWD") == [530]
    pair.login()


def test_pbsz_before_prot_is_enforced_on_the_client() -> None:
    pair = Pair(Mode.EXPLICIT)
    pair.secure()
    with pytest.raises(CommandRefused, match="PBSZ 0 must be accepted before PROT"):
        pair.client.send("PROT", "P")
    assert pair.codes("PBSZ", "0") == [200]
    assert pair.codes("PROT", "P") == [200]


@pytest.mark.parametrize("verb", ["PBSZ", "PROT", "CCC"])
def test_security_commands_refused_before_auth(verb: str) -> None:
    pair = Pair(Mode.EXPLICIT)
    with pytest.raises(CommandRefused):
        pair.client.send(verb, "0" if verb == "PBSZ" else ("P" if verb == "PROT" else None))
    assert pair.client.pending == ()


def test_334_to_auth_is_a_protocol_violation() -> None:
    client = ClientSession(Mode.EXPLICIT)
    client.receive_data(b"220 ready\r\n")
    client.send("AUTH", "TLS")
    with pytest.raises(RemoteProtocolError) as info:
        client.receive_data(b"334 ADAT=needed\r\n")
    assert info.value.code == 334 and client.closed  # 4217 §4.2


def test_auth_refused_leaves_the_session_plain() -> None:
    client = ClientSession(Mode.EXPLICIT)
    client.receive_data(b"220 ready\r\n")
    client.send("AUTH", "TLS")
    [event] = client.receive_data(b"504 no\r\n")
    assert event.verb == "AUTH" and event.reply.code == 504
    assert client.security is Security.PLAIN


def test_bytes_after_234_are_not_parsed_as_replies() -> None:
    client = ClientSession(Mode.EXPLICIT)
    client.receive_data(b"220 ready\r\n")
    client.send("AUTH", "TLS")
    events = client.receive_data(b"234 go\r\n\x16\x03\x01junk\n")
    assert [e.reply.code for e in events] == [234]
    assert client.security is Security.HANDSHAKE
    assert client.take_unparsed() == b"\x16\x03\x01junk\n"


# --------------------------------------------------------------------- CCC (RFC 4217 §5)


def test_ccc_clears_and_freezes_protection() -> None:
    pair = explicit_ready()
    assert pair.codes("CCC") == [200]
    assert pair.client.security is Security.CLEARED
    assert pair.client.prot == "P"  # kept for later transfers (4217 §5)
    for verb, arg in (("PBSZ", "0"), ("PROT", "C"), ("CCC", None), ("AUTH", "TLS")):
        with pytest.raises(CommandRefused):
            pair.client.send(verb, arg)
    assert pair.codes("NOOP") == [200]


def test_commands_refused_while_tls_is_stopping() -> None:
    client = ClientSession(Mode.EXPLICIT)
    client.receive_data(b"220 ready\r\n")
    client.security = Security.TLS
    client.send("CCC")
    client.receive_data(b"200 clearing\r\n")
    assert client.security is Security.CLEARING
    with pytest.raises(CommandRefused, match="being started or stopped"):
        client.send("NOOP")
    client.tls_closed()
    client.send("NOOP")


# --------------------------------------------------------------------- implicit (MS-FTPS §3.1.5)


def test_implicit_handshake_first_then_greeting() -> None:
    pair = Pair(Mode.IMPLICIT, hold_tls=True)
    assert pair.events == [] and pair.client.security is Security.IMPLICIT_WAIT
    assert pair.client.security.needs_handshake and pair.client.awaiting_greeting
    with pytest.raises(CommandRefused):
        pair.client.send("USER", "alice")  # nothing before the handshake (MS-FTPS §3.1.5.1)
    assert pair.client.receive_data(b"") == []
    pair.handshake()
    assert [e.reply.code for e in pair.events] == [220]  # read inside TLS, before any command
    assert pair.client.pbsz_ok and pair.client.data_protected  # implicit PBSZ 0 + PROT P
    pair.login()
    assert pair.codes("EPSV") == [229]
    assert pair.codes("LIST") == [150, 226]
    assert pair.server.state.prot == "P"
    assert not any(w.startswith((b"PBSZ", b"PROT", b"AUTH", b"CCC")) for w in pair.wire)


@pytest.mark.parametrize(
    ("verb", "arg"),
    [("AUTH", "TLS"), ("AUTH", "SSL"), ("PBSZ", "0"), ("PROT", "P"), ("PROT", "C"), ("CCC", None)],
)
def test_implicit_never_sends_security_commands(verb: str, arg: str | None) -> None:
    pair = implicit_ready()
    with pytest.raises(CommandRefused, match="MS-FTPS"):
        pair.client.send(verb, arg)
    assert pair.client.pending == ()
    assert pair.codes("NOOP") == [200]


def test_implicit_rein_needs_a_new_handshake_and_greeting() -> None:
    pair = implicit_ready()
    events = pair.send("REIN")
    # REIN's 220 inside TLS, then (after StopTLS, StartTLS and the new handshake) the new greeting.
    assert [e.reply.code for e in events] == [220, 220]
    assert [e.verb for e in events] == ["REIN", None]
    assert pair.client.security is Security.IMPLICIT
    assert pair.client.login is ClientLogin.NONE and pair.client.data_protected
    assert pair.codes("PWD") == [530]
    pair.login()
    assert pair.codes("PWD") == [257]


def test_implicit_rein_state_walk_without_server() -> None:
    client = ClientSession(Mode.IMPLICIT)
    client.tls_established()
    client.receive_data(b"220-Welcome\r\n to the server\r\n220 ready\r\n")
    client.send("REIN")
    client.receive_data(b"220 Service ready for new user.\r\n")
    assert client.security is Security.IMPLICIT_REIN_CLOSING and client.security.needs_close
    client.tls_closed()
    assert client.security is Security.IMPLICIT_WAIT and client.security.needs_handshake
    assert client.prot == "C" and not client.pbsz_ok  # reset, until the new handshake
    client.tls_established()
    assert client.awaiting_greeting and client.prot == "P"


def test_explicit_rein_under_tls_returns_to_plain() -> None:
    pair = explicit_ready()
    assert pair.codes("REIN") == [220]
    assert pair.client.security is Security.PLAIN  # 4217 §13
    assert pair.client.prot == "C" and not pair.client.pbsz_ok and not pair.client.logged_in
    with pytest.raises(CommandRefused):
        pair.client.send("PBSZ", "0")
    pair.secure()
    pair.login()
    pair.protect()


# --------------------------------------------------------------------- replies (959 §4.2, 1123 §4.1.2.11)


def test_multiline_greeting_and_preliminary_120() -> None:
    client = ClientSession(Mode.EXPLICIT)
    events = client.receive_data(b"120 in a minute\r\n220-Hello\r\n 220 padded inner line\r\n220x\r\n")
    assert [e.reply.code for e in events] == [120]
    assert client.awaiting_greeting
    events = client.receive_data(b"220 ready\r\n")
    assert events[0].reply.lines == ("Hello", " 220 padded inner line", "220x", "ready")
    assert not client.awaiting_greeting


def test_replies_arrive_in_any_fragmentation() -> None:
    client = ClientSession(Mode.PLAIN)
    data = b"220 hi\r\n"
    got = [e for i in range(len(data)) for e in client.receive_data(data[i : i + 1])]
    assert [e.reply.code for e in got] == [220]


def test_first_digit_decides_and_221_multiline_closes() -> None:
    client = ClientSession(Mode.PLAIN)
    client.receive_data(b"220 hi\r\n")
    client.send("LIST")
    events = client.receive_data(b"125 open\r\n250 listed\r\n")
    assert [(e.reply.code, e.final) for e in events] == [(125, False), (250, True)]
    assert client.pending == ()
    client.send("QUIT")
    client.receive_data(b"221-Goodbye\r\n221 see you\r\n")
    assert client.closed


def test_unsolicited_reply_is_an_error_but_421_closes() -> None:
    client = ClientSession(Mode.PLAIN)
    client.receive_data(b"220 hi\r\n")
    [event] = client.receive_data(b"421 idle timeout\r\n")
    assert event.verb is None and client.closed
    with pytest.raises(CommandRefused):
        client.send("NOOP")
    other = ClientSession(Mode.PLAIN)
    other.receive_data(b"220 hi\r\n")
    with pytest.raises(RemoteProtocolError, match="unsolicited"):
        other.receive_data(b"200 surprise\r\n")


def test_one_command_at_a_time_except_abor_during_a_transfer() -> None:
    client = ClientSession(Mode.PLAIN)
    client.receive_data(b"220 hi\r\n")
    client.send("NOOP")
    with pytest.raises(CommandRefused, match="NOOP still awaits"):
        client.send("PWD")
    with pytest.raises(CommandRefused):
        client.send("ABOR")
    client.receive_data(b"200 ok\r\n")
    client.send("RETR", "big")
    client.receive_data(b"150 sending\r\n")
    client.send("ABOR")
    events = client.receive_data(b"426 aborted\r\n226 ABOR ok\r\n")
    assert [(e.verb, e.reply.code) for e in events] == [("RETR", 426), ("ABOR", 226)]


def test_feat_both_auth_styles_and_unknown_features() -> None:
    for body, expected in ((b" AUTH TLS\r\n", {"TLS"}), (b" AUTH TLS;SSL;\r\n", {"TLS", "SSL"})):
        client = ClientSession(Mode.PLAIN)
        client.receive_data(b"220 hi\r\n")
        client.send("FEAT")
        client.receive_data(b"211-Extensions\r\n" + body + b" XFOO bar\r\n MLST type*;\r\n211 End\r\n")
        assert client.auth_mechanisms() == expected
        assert client.supports("mlst") and client.supports("XFOO") and not client.supports("MDTM")


def test_feat_against_server() -> None:
    pair = explicit_ready()
    assert pair.codes("FEAT") == [211]
    assert pair.client.auth_mechanisms() == {"TLS", "SSL"}
    assert pair.client.supports("MLST") and pair.client.supports("REST")


def test_host_before_user_only() -> None:
    pair = Pair(Mode.EXPLICIT)
    assert pair.codes("HOST", "localhost") == [220]
    assert pair.client.host == "localhost"
    pair.secure()
    assert pair.client.host == "localhost"  # survives AUTH: it chose the certificate (7151 §4)
    pair.login()
    with pytest.raises(CommandRefused, match="7151"):
        pair.client.send("HOST", "other")


# --------------------------------------------------------------------- command formatting


@pytest.mark.parametrize("name", ["plain.txt", "two  spaces", " lead", "cr\rin", "ÿ-latin", "日本.txt"])
def test_arguments_round_trip_through_the_server_parser(name: str) -> None:
    line = format_command("RETR", name)
    [event] = CommandReader().events(line)
    assert event == Command("RETR", name)


def test_format_refuses_injection_and_bad_verbs() -> None:
    assert format_command("noop") == b"NOOP\r\n"
    assert format_command("STOR", "a\udcffb") == b"STOR a\xff\xffb\r\n"  # a raw 0xFF byte (2640 §3.1)
    for arg in ("a\nDELE b", "nul\x00"):
        with pytest.raises(CommandRefused):
            format_command("STOR", arg)
    with pytest.raises(CommandRefused):
        format_command("NO OP")


# --------------------------------------------------------------------- the tables, cell by cell


@pytest.mark.parametrize(("cell", "reason"), list(GATES.items()), ids=[f"{v}-{s.value}" for v, s in GATES])
def test_gate_cells(cell: tuple[str, Security], reason: str | None) -> None:
    verb, state = cell
    client = ClientSession(Mode.IMPLICIT if state is Security.IMPLICIT else Mode.EXPLICIT)
    client.security, client.awaiting_greeting, client.pbsz_ok = state, False, True
    arg = {"AUTH": "TLS", "PBSZ": "0", "PROT": "P"}.get(verb)
    if reason is None:
        client.send(verb, arg)
        assert client.pending == (verb,)
    else:
        with pytest.raises(CommandRefused):
            client.send(verb, arg)


@pytest.mark.parametrize(("state", "trigger"), list(itertools.product(Security, Trigger)))
def test_transition_cells(state: Security, trigger: Trigger) -> None:
    client = ClientSession(Mode.EXPLICIT)
    client.security = state
    if (state, trigger) in TRANSITIONS:
        client._move(trigger)
        assert client.security is TRANSITIONS[(state, trigger)]
    else:
        with pytest.raises(LocalProtocolError):
            client._move(trigger)


@pytest.mark.parametrize("state", [s for s in Security if not s.accepts_commands])
def test_nothing_is_sent_in_transitional_states(state: Security) -> None:
    client = ClientSession(Mode.EXPLICIT)
    client.security, client.awaiting_greeting = state, False
    with pytest.raises(CommandRefused):
        client.send("NOOP")
