"""The security state machine of one control connection, cell by cell (CONFORMANCE.md §1, §6, §7).

Three layers:

* every cell of :data:`security.TRANSITIONS` and :data:`security.GATES`, checked against codes written
  down here independently from the CONFORMANCE §1.2 tables (not copied from the module under test);
* the §1.2 reply tables for AUTH, PBSZ, PROT, CCC, ADAT/MIC/CONF/ENC, REIN and USER-before-TLS;
* the numbered server checks of CONFORMANCE §6 that are observable without sockets, one
  parametrized case per check, with ids ``check-NNN-...``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from pyftps.proto import actions as a
from pyftps.proto.errors import LocalProtocolError
from pyftps.proto.policy import CCCPolicy
from pyftps.proto.replies import ReplyParser
from pyftps.proto.security import GATES, SECURITY_VERBS, TRANSITIONS, TLSState, Trigger, gate, transition
from tests.proto.harness import MTIME_TEXT, README, Got, Harness

PLAIN, TLS, CLEARED, IMPLICIT = TLSState.PLAIN, TLSState.TLS, TLSState.CLEARED, TLSState.IMPLICIT
COMMAND_STATES = (PLAIN, TLS, CLEARED, IMPLICIT)  # the states in which commands are read at all


def in_state(state: TLSState, *, pbsz: bool = True, **kwargs: Any) -> Harness:
    """A session in ``state``. TLS: after AUTH TLS (+ PBSZ 0 unless ``pbsz=False``), not logged in.
    CLEARED: logged in, PROT P, then CCC (the default policy allows CCC only after login).
    IMPLICIT: right after the handshake and the greeting."""
    if state is PLAIN:
        return Harness(**kwargs)
    if state is TLS:
        h = Harness(**kwargs)
        assert h.codes("AUTH TLS") == [234]
        if pbsz:
            assert h.codes("PBSZ 0") == [200]
        return h
    if state is CLEARED:
        h = Harness.ready(**kwargs)
        assert h.codes("CCC") == [200]
        assert h.tls_state is CLEARED
        return h
    assert state is IMPLICIT
    return Harness(implicit=True, **kwargs)


def no_channel_change(h: Harness) -> bool:
    return not any(isinstance(x, a.StartTLS | a.StopTLS) for x in h.last)


# ============================================================================ TRANSITIONS


def _drive_auth() -> Harness:
    h = Harness(auto_tls=False)
    assert h.send("AUTH TLS") == [(234, ("AUTH TLS OK, starting TLS.",))]
    assert h.kinds() == ["234", "StartTLS"]
    return h


def _drive_handshake() -> Harness:
    h = _drive_auth()
    assert h.handshake() == []
    return h


def _drive_implicit_handshake() -> Harness:
    h = Harness(implicit=True, auto_tls=False)
    assert h.handshake() == [(220, (h.policy.banner,))]
    return h


def _drive_ccc() -> Harness:
    h = Harness.ready()
    assert h.codes("CCC") == [200]
    assert h.kinds() == ["200", "StopTLS"]
    return h


def _drive_rein_plain() -> Harness:
    h = Harness()
    assert h.codes("REIN") == [220]
    assert h.kinds() == ["DropDataChannel", "220"]
    return h


def _drive_rein_tls() -> Harness:
    h = Harness.ready()
    assert h.codes("REIN") == [220]
    assert h.kinds() == ["EndLogin", "DropDataChannel", "220", "StopTLS"]
    assert h.under_tls[-1], "4217 §13: the 220 goes out protected, before the TLS session is cleared"
    return h


def _drive_rein_cleared() -> Harness:
    h = in_state(CLEARED)
    assert h.codes("REIN") == [220]
    assert h.kinds() == ["EndLogin", "DropDataChannel", "220"]  # already clear: no StopTLS
    return h


def _drive_rein_implicit() -> Harness:
    h = Harness.implicit_ready()
    h.auto_tls = False  # stay in IMPLICIT_WAIT after the REIN
    assert h.codes("REIN") == [220]
    assert h.kinds() == ["EndLogin", "DropDataChannel", "220", "StopTLS", "StartTLS"]
    return h


DRIVERS: dict[tuple[TLSState, Trigger], Callable[[], Harness]] = {
    (PLAIN, Trigger.AUTH_ACCEPTED): _drive_auth,
    (TLSState.HANDSHAKE, Trigger.HANDSHAKE_DONE): _drive_handshake,
    (TLSState.IMPLICIT_WAIT, Trigger.HANDSHAKE_DONE): _drive_implicit_handshake,
    (TLS, Trigger.CCC_ACCEPTED): _drive_ccc,
    (PLAIN, Trigger.REIN): _drive_rein_plain,
    (TLS, Trigger.REIN): _drive_rein_tls,
    (CLEARED, Trigger.REIN): _drive_rein_cleared,
    (IMPLICIT, Trigger.REIN): _drive_rein_implicit,
}

# CONFORMANCE §1.1/§1.2, written out independently of security.TRANSITIONS.
EXPECTED_TRANSITIONS = {
    (PLAIN, Trigger.AUTH_ACCEPTED): TLSState.HANDSHAKE,
    (TLSState.HANDSHAKE, Trigger.HANDSHAKE_DONE): TLS,
    (TLSState.IMPLICIT_WAIT, Trigger.HANDSHAKE_DONE): IMPLICIT,
    (TLS, Trigger.CCC_ACCEPTED): CLEARED,
    (PLAIN, Trigger.REIN): PLAIN,
    (TLS, Trigger.REIN): PLAIN,
    (CLEARED, Trigger.REIN): PLAIN,
    (IMPLICIT, Trigger.REIN): TLSState.IMPLICIT_WAIT,
}


def test_transition_table_is_the_spec() -> None:
    assert TRANSITIONS == EXPECTED_TRANSITIONS
    assert set(DRIVERS) == set(TRANSITIONS)


@pytest.mark.parametrize(
    ("cell", "target"), list(TRANSITIONS.items()), ids=[f"{s.value}-{t.value}" for s, t in TRANSITIONS]
)
def test_transition_cell_driven_through_the_session(cell: tuple[TLSState, Trigger], target: TLSState) -> None:
    assert transition(*cell) is target
    h = DRIVERS[cell]()
    assert h.tls_state is target


ILLEGAL = [(s, t) for s in TLSState for t in Trigger if (s, t) not in TRANSITIONS]


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL, ids=[f"{s.value}-{t.value}" for s, t in ILLEGAL])
def test_every_other_transition_is_a_local_error(state: TLSState, trigger: Trigger) -> None:
    with pytest.raises(LocalProtocolError):
        transition(state, trigger)


@pytest.mark.parametrize("state", COMMAND_STATES, ids=lambda s: s.value)
def test_tls_established_without_a_handshake_is_a_local_error(state: TLSState) -> None:
    h = in_state(state)
    with pytest.raises(LocalProtocolError):
        h.session.tls_established(a.TLSInfo(), h.now)


def test_commands_wait_while_the_handshake_runs() -> None:
    h = Harness(auto_tls=False)
    h.send("AUTH TLS")
    assert h.tls_state is TLSState.HANDSHAKE
    assert h.session.next_deadline() is None  # the I/O layer's handshake guard owns this time
    assert h.send("NOOP") == []  # a misbehaving I/O layer: nothing is read until the handshake is done
    assert h.handshake() == [(200, ("NOOP OK.",))]


# ============================================================================ GATES

# Every security command in every command-reading state, per CONFORMANCE §1.2 (and the PROJ codes
# of §7): what a client must get back. Cells marked None reach the handler.
SPEC_GATES: dict[tuple[str, TLSState], int | None] = {
    ("AUTH", PLAIN): None,
    ("AUTH", TLS): 534,
    ("AUTH", CLEARED): 534,
    ("AUTH", IMPLICIT): 534,
    ("PBSZ", PLAIN): 503,
    ("PBSZ", TLS): None,
    ("PBSZ", CLEARED): 533,
    ("PBSZ", IMPLICIT): None,
    ("PROT", PLAIN): 503,
    ("PROT", TLS): None,
    ("PROT", CLEARED): 533,
    ("PROT", IMPLICIT): None,
    ("CCC", PLAIN): 533,
    ("CCC", TLS): None,
    ("CCC", CLEARED): 533,
    ("CCC", IMPLICIT): 534,
    ("ADAT", PLAIN): 503,
    ("ADAT", TLS): 503,
    ("ADAT", CLEARED): 503,
    ("ADAT", IMPLICIT): 503,
    ("MIC", PLAIN): 503,
    ("MIC", TLS): 502,
    ("MIC", CLEARED): 502,
    ("MIC", IMPLICIT): 502,
    ("CONF", PLAIN): 503,
    ("CONF", TLS): 502,
    ("CONF", CLEARED): 502,
    ("CONF", IMPLICIT): 502,
    ("ENC", PLAIN): 503,
    ("ENC", TLS): 502,
    ("ENC", CLEARED): 502,
    ("ENC", IMPLICIT): 502,
}
SAMPLE_LINE = {
    "AUTH": "AUTH TLS",
    "PBSZ": "PBSZ 0",
    "PROT": "PROT P",
    "CCC": "CCC",
    "ADAT": "ADAT Zm9v",
    "MIC": "MIC Zm9v",
    "CONF": "CONF Zm9v",
    "ENC": "ENC Zm9v",
}
# What the handler answers in the allowed cells, from the sessions built by in_state().
HANDLER_REPLY = {
    ("AUTH", PLAIN): 234,
    ("PBSZ", TLS): 200,
    ("PBSZ", IMPLICIT): 200,
    ("PROT", TLS): 200,
    ("PROT", IMPLICIT): 200,
    ("CCC", TLS): 534,  # handler reached: not logged in yet (policy after-login)
}


def test_gate_table_covers_every_security_verb_in_every_command_state() -> None:
    assert {verb for verb, _ in GATES} == SECURITY_VERBS == {"AUTH", "PBSZ", "PROT", "CCC", *SAMPLE_LINE}
    assert set(GATES) == {(v, s) for v in SECURITY_VERBS for s in COMMAND_STATES} == set(SPEC_GATES)


@pytest.mark.parametrize(("verb", "state"), list(GATES), ids=[f"{v}-{s.value}" for v, s in GATES])
def test_gate_cell(verb: str, state: TLSState) -> None:
    expected = SPEC_GATES[(verb, state)]
    verdict = gate(verb, state)
    assert verdict.code == expected
    assert verdict.allows is (expected is None)
    h = in_state(state)
    got = h.one(SAMPLE_LINE[verb])
    if expected is None:
        assert got.code == HANDLER_REPLY[(verb, state)]
    else:
        assert got == (expected, (verdict.text,))
        assert h.tls_state is state
        assert no_channel_change(h)


@pytest.mark.parametrize(
    ("state", "line", "code"),
    [
        (TLS, "AUTH", 534),
        (IMPLICIT, "AUTH GSSAPI", 534),
        (PLAIN, "PBSZ abc", 503),
        (CLEARED, "PROT", 533),
        (CLEARED, "PROT X", 533),
        (PLAIN, "CCC now", 533),
        (PLAIN, "MIC", 503),
    ],
    ids=lambda v: v.value if isinstance(v, TLSState) else str(v),
)
def test_gate_answers_before_argument_checks(state: TLSState, line: str, code: int) -> None:
    assert in_state(state).code(line) == code


def test_commands_outside_the_gate_table_are_never_gated() -> None:
    for state in COMMAND_STATES:
        assert gate("NOOP", state).allows
        assert gate("RETR", state).allows


# ============================================================================ §1.2 tables


@pytest.mark.parametrize(
    ("line", "prot", "pbsz_ok"),
    [
        ("AUTH TLS", "C", False),
        ("auth tls", "C", False),
        ("AUTH tls", "C", False),
        ("AUTH TLS-C", "C", False),
        ("AUTH SSL", "C", False),  # MS-FTPS §2.2.1: exact synonym of TLS
        ("AUTH ssl", "C", False),
        ("AUTH TLS-P", "P", True),  # PROJ §7.3: legacy "protect data too"
    ],
)
def test_auth_mechanisms_accepted_in_plain(line: str, prot: str, pbsz_ok: bool) -> None:
    h = Harness()
    mechanism = line.split(" ", 1)[1].upper()
    assert h.send(line) == [(234, (f"AUTH {mechanism} OK, starting TLS.",))]
    assert h.tls_state is TLS
    assert (h.state.prot, h.state.pbsz_ok) == (prot, pbsz_ok)


@pytest.mark.parametrize(
    ("line", "code"),
    [("AUTH GSSAPI", 504), ("AUTH KERBEROS_V4", 504), ("AUTH TLSX", 504), ("AUTH", 501), ("AUTH  ", 501)],
)
def test_auth_refused_in_plain(line: str, code: int) -> None:
    h = Harness()
    assert h.code(line) == code
    assert h.tls_state is PLAIN
    assert no_channel_change(h)


def test_auth_without_certificate_is_431() -> None:
    h = Harness(tls_available=False)
    assert h.code("AUTH TLS") == 431
    assert h.tls_state is PLAIN
    assert no_channel_change(h)


@pytest.mark.parametrize("state", [TLS, CLEARED, IMPLICIT], ids=lambda s: s.value)
@pytest.mark.parametrize("mechanism", ["TLS", "SSL", "TLS-C", "TLS-P"])
def test_second_auth_and_auth_on_implicit_are_534(state: TLSState, mechanism: str) -> None:
    h = in_state(state)
    assert h.code(f"AUTH {mechanism}") == 534
    assert h.tls_state is state
    assert no_channel_change(h)
    assert h.code("NOOP") == 200


@pytest.mark.parametrize(
    ("state", "line", "code", "text"),
    [
        (PLAIN, "PBSZ 0", 503, None),
        (TLS, "PBSZ 0", 200, None),
        (TLS, "PBSZ 1024", 200, "PBSZ=0"),
        (TLS, "PBSZ 4294967295", 200, "PBSZ=0"),
        (TLS, "PBSZ abc", 501, None),
        (TLS, "PBSZ 4294967296", 501, None),
        (TLS, "PBSZ -1", 501, None),
        (TLS, "PBSZ", 501, None),
        (CLEARED, "PBSZ 0", 533, None),
        (IMPLICIT, "PBSZ 0", 200, None),
    ],
    ids=lambda v: v.value if isinstance(v, TLSState) else None,
)
def test_pbsz_table(state: TLSState, line: str, code: int, text: str | None) -> None:
    h = in_state(state, pbsz=False)
    got = h.one(line)
    assert got.code == code
    if text is not None:
        assert text in got.text
    if code == 200:
        assert h.state.pbsz_ok


@pytest.mark.parametrize(
    ("state", "pbsz", "line", "code", "require_protected"),
    [
        (PLAIN, False, "PROT P", 503, True),
        (TLS, False, "PROT P", 503, True),  # PROT before PBSZ
        (TLS, True, "PROT P", 200, True),
        (TLS, True, "prot p", 200, True),
        (TLS, True, "PROT C", 534, True),  # default policy: protected data required
        (TLS, True, "PROT C", 200, False),
        (TLS, True, "PROT S", 536, True),
        (TLS, True, "PROT E", 536, True),
        (TLS, True, "PROT X", 504, True),
        (TLS, True, "PROT", 501, True),
        (TLS, True, "PROT PP", 501, True),
        (TLS, True, "PROT P P", 501, True),
        (TLS, True, "PROT 1", 501, True),
        (CLEARED, True, "PROT P", 533, True),
        (CLEARED, True, "PROT C", 533, False),
        (IMPLICIT, True, "PROT C", 200, False),  # MS-FTPS §1.3: allowed, no PBSZ needed
        (IMPLICIT, True, "PROT C", 534, True),
        (IMPLICIT, True, "PROT P", 200, True),
        (IMPLICIT, True, "PROT S", 536, True),
        (IMPLICIT, True, "PROT X", 504, True),
    ],
    ids=lambda v: v.value if isinstance(v, TLSState) else None,
)
def test_prot_table(state: TLSState, pbsz: bool, line: str, code: int, require_protected: bool) -> None:
    h = in_state(state, pbsz=pbsz, require_protected_data=require_protected)
    prot_before = h.state.prot
    assert h.code(line) == code
    if code == 200:
        assert h.state.prot == line.split(" ")[1].upper()
    else:
        assert h.state.prot == prot_before


@pytest.mark.parametrize(
    ("setup", "ccc", "code"),
    [
        ("plain", CCCPolicy.AFTER_LOGIN, 533),
        ("tls", CCCPolicy.AFTER_LOGIN, 534),
        ("tls-logged-in", CCCPolicy.AFTER_LOGIN, 200),
        ("cleared", CCCPolicy.AFTER_LOGIN, 533),
        ("implicit", CCCPolicy.AFTER_LOGIN, 534),
        ("implicit-logged-in", CCCPolicy.ALWAYS, 534),
        ("tls-logged-in", CCCPolicy.NEVER, 534),
        ("tls", CCCPolicy.ALWAYS, 200),
    ],
)
def test_ccc_table(setup: str, ccc: CCCPolicy, code: int) -> None:
    builders: dict[str, Callable[[], Harness]] = {
        "plain": lambda: Harness(ccc=ccc),
        "tls": lambda: in_state(TLS, ccc=ccc),
        "tls-logged-in": lambda: Harness.ready(ccc=ccc),
        "cleared": lambda: in_state(CLEARED, ccc=ccc),
        "implicit": lambda: Harness(implicit=True, ccc=ccc),
        "implicit-logged-in": lambda: Harness.implicit_ready(ccc=ccc),
    }
    h = builders[setup]()
    state = h.tls_state
    assert h.code("CCC") == code
    if code == 200:
        assert h.kinds() == ["200", "StopTLS"]
        assert h.under_tls[-1], "the 200 is sent under TLS, the shutdown follows"
        assert h.tls_state is CLEARED
        assert h.code("NOOP") == 200
    else:
        assert h.tls_state is state
        assert no_channel_change(h)


@pytest.mark.parametrize(
    ("state", "verb", "code"),
    [(s, verb, SPEC_GATES[(verb, s)]) for verb in ("ADAT", "MIC", "CONF", "ENC") for s in COMMAND_STATES],
    ids=lambda v: v.value if isinstance(v, TLSState) else str(v),
)
def test_adat_mic_conf_enc_table(state: TLSState, verb: str, code: int) -> None:
    h = in_state(state)
    assert h.code(f"{verb} Zm9v") == code
    assert h.code(verb) == code  # no argument: same answer


def test_rein_plain() -> None:
    h = Harness(require_tls_for_login=False, require_protected_data=False)
    h.login()
    h.codes("TYPE I", "CWD pub", "EPSV ALL", "HOST ftp.example.com", "OPTS MLST type;")
    assert h.code("REIN") == 220
    assert h.kinds() == ["EndLogin", "DropDataChannel", "220"]
    assert h.tls_state is PLAIN
    s = h.state
    assert (s.logged_in, s.cwd, s.type.value, s.epsv_all, s.host) == (False, "/", "A", False, None)
    assert "type*;size*;" in h.one("FEAT").text  # OPTS MLST selection is back to the default
    assert h.code("PWD") == 530


def test_rein_tls_returns_to_plain() -> None:
    h = Harness.ready()
    assert h.code("REIN") == 220
    assert h.kinds()[-2:] == ["220", "StopTLS"]
    assert h.under_tls[-1]
    assert h.tls_state is PLAIN
    assert (h.state.pbsz_ok, h.state.prot) == (False, "C")
    assert h.codes("PBSZ 0", "PROT P", "USER alice") == [503, 503, 530]
    assert h.code("AUTH TLS") == 234  # a fresh AUTH is possible again


def test_rein_cleared_returns_to_plain() -> None:
    h = in_state(CLEARED)
    assert h.code("REIN") == 220
    assert not h.under_tls[-1]
    assert h.tls_state is PLAIN
    assert h.code("AUTH TLS") == 234


def test_rein_implicit_returns_to_implicit_wait_then_greets_again() -> None:
    h = Harness(implicit=True, auto_tls=False)
    assert h.handshake() == [(220, (h.policy.banner,))]
    h.login()
    assert h.code("REIN") == 220
    assert h.kinds() == ["EndLogin", "DropDataChannel", "220", "StopTLS", "StartTLS"]
    assert h.under_tls[-1]
    assert h.tls_state is TLSState.IMPLICIT_WAIT
    assert h.tls_initial[-1] == b""
    assert h.session.next_deadline() is None  # waiting for a ClientHello, not for a command
    assert h.handshake() == [(220, (h.policy.banner,))]
    assert h.tls_state is IMPLICIT


def test_rein_implicit_new_handshake_gives_a_new_greeting_and_a_fresh_session() -> None:
    h = Harness(implicit=True, auto_tls=False)
    h.handshake()
    h.login()
    h.codes("PBSZ 0", "TYPE I")
    h.send("REIN")
    greeting = h.handshake()
    assert greeting == [(220, (h.policy.banner,))]  # MS-FTPS §3.2.5.1: a new greeting
    assert h.code("PWD") == 530
    assert (h.state.pbsz_ok, h.state.prot, h.state.type.value) == (True, "P", "A")
    h.login()
    h.passive()
    h.send("LIST")
    assert h.transfers[-1].protect


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ("FEAT", 211),
        ("AUTH TLS", 234),
        ("HOST ftp.example.com", 220),
        ("NOOP", 200),
        ("HELP", 214),
        ("OPTS UTF8 ON", 200),
        ("LANG EN", 200),
        ("SYST", 215),
        ("STAT", 211),
        ("QUIT", 221),
    ],
)
def test_user_before_tls_is_530_but_the_rest_works(line: str, code: int) -> None:
    h = Harness()
    assert h.send("USER alice") == [
        (530, ("TLS required: send AUTH TLS first, or use the implicit FTPS port.",))
    ]
    assert h.code("PASS secret") == 503
    assert h.state.login.value == "none"
    assert h.code(line) == code


def test_user_in_plain_allowed_by_policy() -> None:
    h = Harness(require_tls_for_login=False)
    h.login()
    assert h.state.logged_in


def test_implicit_start() -> None:
    h = Harness(implicit=True, auto_tls=False)
    assert h.greeting == []
    assert h.actions == [a.StartTLS()]
    assert h.wire == b""
    assert h.tls_state is TLSState.IMPLICIT_WAIT
    assert h.session.next_deadline() is None
    greeting = h.handshake()
    assert greeting == [(220, (h.policy.banner,))]
    assert h.kinds() == ["220"]
    assert bytes(h.wire) == f"220 {h.policy.banner}\r\n".encode()
    assert (h.tls_state, h.state.pbsz_ok, h.state.prot) == (IMPLICIT, True, "P")


# ============================================================================ §6 numbered checks

Scenario = Callable[[], None]
CHECKS: list[Any] = []  # pytest.param objects


def check(number: int, slug: str, *, bug: str | None = None) -> Callable[[Scenario], Scenario]:
    """Register a scenario for CONFORMANCE §6 check ``number``; ``bug`` marks it a strict xfail."""

    def register(scenario: Scenario) -> Scenario:
        marks = [pytest.mark.xfail(reason=f"BUG: {bug}", strict=True)] if bug else []
        CHECKS.append(pytest.param(scenario, id=f"check-{number:03d}-{slug}", marks=marks))
        return scenario

    return register


def first_reply_code(h: Harness) -> int:
    return ReplyParser().feed(bytes(h.wire))[0].code


@check(1, "explicit-greeting-first")
def _c1() -> None:
    h = Harness()
    assert isinstance(h.actions[0], a.SendReply)
    assert bytes(h.wire).startswith(b"220 ")


@check(2, "auth-tls-then-handshake-no-plaintext")
def _c2() -> None:
    h = Harness(auto_tls=False)
    assert h.send("AUTH TLS", "NOOP") == [(234, ("AUTH TLS OK, starting TLS.",))]
    assert h.kinds() == ["234", "StartTLS"]
    assert h.tls_initial == [b"NOOP\r\n"]  # bytes behind the AUTH line belong to the handshake


@check(3, "auth-lower-case")
def _c3() -> None:
    assert Harness().code("auth tls") == 234


@check(4, "auth-tls-c-same-as-tls")
def _c4() -> None:
    c, t = Harness(), Harness()
    assert c.code("AUTH TLS-C") == t.code("AUTH TLS") == 234
    assert c.state == t.state


@check(5, "auth-ssl-then-prot-before-pbsz-503")
def _c5() -> None:
    h = Harness()
    assert h.codes("AUTH SSL", "PROT P", "PBSZ 0", "PROT P") == [234, 503, 200, 200]


@check(6, "auth-tls-p-protects-data")
def _c6() -> None:
    h = Harness()
    assert h.code("AUTH TLS-P") == 234
    h.login()
    h.passive()
    assert h.codes("LIST") == [150, 226]
    assert h.transfers[-1].protect


@check(7, "auth-gssapi-504")
def _c7() -> None:
    assert Harness().code("AUTH GSSAPI") == 504


@check(8, "auth-no-arg-501")
def _c8() -> None:
    assert Harness().code("AUTH") == 501


@check(9, "auth-no-certificate-431")
def _c9() -> None:
    assert Harness(tls_available=False).code("AUTH TLS") == 431


@check(10, "never-334")
def _c10() -> None:
    for state in COMMAND_STATES:
        for mechanism in ("TLS", "TLS-C", "SSL", "TLS-P", "GSSAPI", "KERBEROS_V4", ""):
            assert in_state(state).code(f"AUTH {mechanism}".strip()) != 334


@check(11, "auth-after-plain-login-resets-login-and-type")
def _c11() -> None:
    h = Harness(require_tls_for_login=False, require_protected_data=False)
    h.login()
    assert h.codes("TYPE I", "CWD pub") == [200, 250]
    assert h.code("AUTH TLS") == 234
    assert a.EndLogin() in h.last
    assert h.code("PWD") == 530
    assert " TYPE: ASCII; STRUcture: File; MODE: Stream" in h.one("STAT").lines
    h.login()
    assert h.one("PWD").text.startswith('"/"')


@check(12, "plaintext-after-234-goes-to-the-handshake")
def _c12() -> None:
    h = Harness(auto_tls=False)
    assert h.send("AUTH TLS", "USER x") == [(234, ("AUTH TLS OK, starting TLS.",))]
    assert h.tls_initial == [b"USER x\r\n"]  # the TLS layer fails on it and drops the connection
    assert h.state.pending_user is None


@check(13, "plain-pbsz-503")
def _c13() -> None:
    assert Harness().code("PBSZ 0") == 503


@check(14, "plain-prot-503")
def _c14() -> None:
    assert Harness().code("PROT P") == 503


@check(15, "tls-prot-before-pbsz-503")
def _c15() -> None:
    assert in_state(TLS, pbsz=False).code("PROT P") == 503


@check(16, "tls-pbsz-0-200")
def _c16() -> None:
    assert in_state(TLS, pbsz=False).code("PBSZ 0") == 200


@check(17, "tls-pbsz-1024-says-pbsz-0")
def _c17() -> None:
    got = in_state(TLS, pbsz=False).one("PBSZ 1024")
    assert got.code == 200
    assert "PBSZ=0" in got.text


@check(18, "tls-pbsz-bad-501")
def _c18() -> None:
    assert in_state(TLS, pbsz=False).codes("PBSZ abc", "PBSZ 4294967296") == [501, 501]


@check(19, "prot-p-then-list-is-protected")
def _c19() -> None:
    h = Harness.ready()
    h.passive()
    h.send("LIST")
    assert h.transfers[-1].protect


@check(20, "prot-c-534-by-default-200-when-allowed")
def _c20() -> None:
    assert in_state(TLS).code("PROT C") == 534
    assert in_state(TLS, require_protected_data=False).code("PROT C") == 200


@check(21, "prot-s-e-536")
def _c21() -> None:
    assert in_state(TLS).codes("PROT S", "PROT E") == [536, 536]


@check(22, "prot-x-504")
def _c22() -> None:
    assert in_state(TLS).code("PROT X") == 504


@check(23, "tls-adat-503")
def _c23() -> None:
    assert in_state(TLS).code("ADAT Zm9v") == 503


@check(24, "tls-mic-502")
def _c24() -> None:
    assert in_state(TLS).code("MIC Zm9v") == 502


@check(25, "second-auth-534-session-stays-tls")
def _c25() -> None:
    h = in_state(TLS)
    assert h.codes("AUTH TLS", "NOOP") == [534, 200]
    assert h.tls_state is TLS
    assert h.count(a.StartTLS) == 1


@check(26, "plain-ccc-533")
def _c26() -> None:
    assert Harness().code("CCC") == 533


@check(27, "tls-ccc-before-login-534")
def _c27() -> None:
    assert in_state(TLS).code("CCC") == 534


@check(28, "ccc-after-login-200-then-plaintext")
def _c28() -> None:
    h = Harness.ready()
    assert h.code("CCC") == 200
    assert h.under_tls[-1]
    assert h.kinds() == ["200", "StopTLS"]
    assert h.code("NOOP") == 200
    assert not h.under_tls[-1]


@check(29, "cleared-prot-c-533-list-still-protected")
def _c29() -> None:
    h = in_state(CLEARED)
    assert h.code("PROT C") == 533
    h.passive()
    h.send("LIST")
    assert h.transfers[-1].protect


@check(30, "cleared-ccc-533")
def _c30() -> None:
    assert in_state(CLEARED).code("CCC") == 533


@check(31, "tls-rein-220-inside-tls-then-clear")
def _c31() -> None:
    h = Harness.ready()
    assert h.code("REIN") == 220
    assert h.under_tls[-1]
    assert isinstance(h.last[-1], a.StopTLS)
    assert h.code("PBSZ 0") == 503


@check(32, "after-rein-fresh-auth-accepted")
def _c32() -> None:
    h = Harness.ready()
    h.send("REIN")
    h.secure()
    h.login()
    h.passive()
    assert h.codes("RETR readme.txt") == [150, 226]


@check(33, "tls-required-user-530-feat-and-auth-work")
def _c33() -> None:
    h = Harness()
    assert h.codes("USER alice", "FEAT", "AUTH TLS") == [530, 211, 234]


@check(35, "pass-without-user-503")
def _c35() -> None:
    for state in COMMAND_STATES:
        h = in_state(state)
        ops = len(h.ops)
        assert h.code("PASS x") == 503, state
        assert len(h.ops) == ops  # nothing was sent to the authenticator


@check(36, "tls-quit-221-then-close")
def _c36() -> None:
    h = Harness.ready()
    assert h.code("QUIT") == 221
    assert h.under_tls[-1]
    assert h.kinds() == ["DropDataChannel", "221", "Close"]
    assert h.closed


@check(37, "implicit-nothing-before-handshake")
def _c37() -> None:
    h = Harness(implicit=True, auto_tls=False)
    assert h.actions == [a.StartTLS()]
    assert h.wire == b""


@check(38, "implicit-greeting-first-inside-tls")
def _c38() -> None:
    h = Harness(implicit=True, auto_tls=False)
    h.handshake()
    assert h.under_tls == [True]
    assert first_reply_code(h) == 220


@check(39, "implicit-exactly-one-reply-before-first-command")
def _c39() -> None:
    h = Harness(implicit=True)
    assert len(h.replies) == 1
    assert len(ReplyParser().feed(bytes(h.wire))) == 1


@check(40, "implicit-list-protected-without-pbsz-prot")
def _c40() -> None:
    h = Harness.implicit_ready()
    h.passive()
    assert h.codes("LIST") == [150, 226]
    assert h.transfers[-1].protect


@check(41, "implicit-auth-tls-534")
def _c41() -> None:
    h = Harness(implicit=True)
    assert h.code("AUTH TLS") == 534
    assert h.tls_state is IMPLICIT


@check(42, "implicit-auth-ssl-534")
def _c42() -> None:
    assert Harness(implicit=True).code("AUTH SSL") == 534


@check(43, "implicit-ccc-534")
def _c43() -> None:
    h = Harness.implicit_ready()
    assert h.code("CCC") == 534
    assert h.tls_state is IMPLICIT
    assert no_channel_change(h)


@check(44, "implicit-prot-c-200-then-clear-data")
def _c44() -> None:
    h = Harness.implicit_ready(require_protected_data=False)
    assert h.code("PROT C") == 200
    h.passive()
    h.send("LIST")
    assert not h.transfers[-1].protect


@check(45, "implicit-rein-220-then-close-notify-no-plaintext-greeting")
def _c45() -> None:
    h = Harness.implicit_ready()
    h.auto_tls = False
    assert h.code("REIN") == 220
    assert h.under_tls[-1]
    kinds = h.kinds()
    assert kinds[kinds.index("StopTLS") :] == ["StopTLS", "StartTLS"]  # no reply after the shutdown


@check(46, "implicit-rein-new-handshake-new-greeting-pwd-530-prot-p")
def _c46() -> None:
    h = Harness.implicit_ready()
    h.auto_tls = False
    h.send("REIN")
    assert h.handshake() == [(220, (h.policy.banner,))]
    assert h.code("PWD") == 530
    assert h.state.prot == "P"


@check(47, "implicit-feat-auth-lists-ssl")
def _c47() -> None:
    lines = Harness(implicit=True).one("FEAT").lines
    auth = [line for line in lines if line.startswith(" AUTH ")]
    assert len(auth) == 1
    assert "SSL" in auth[0]


@check(51, "prot-c-transfer-521-without-1xx")
def _c51() -> None:
    h = in_state(TLS)  # PBSZ 0 but no PROT P: the level is still C
    h.login()
    assert h.state.prot == "C"
    h.passive()
    assert h.send("RETR readme.txt") == [
        (521, ("Data connections must be protected: send PBSZ 0 and PROT P.",))
    ]
    assert h.transfers == []


@check(52, "prot-c-pasv-still-227")
def _c52() -> None:
    h = Harness(require_tls_for_login=False)
    h.login()
    assert h.state.prot == "C"
    assert h.code("PASV") == 227


@check(57, "abor-with-ip-dm-during-retr-426-then-226")
def _c57() -> None:
    h = Harness.ready(auto_transfer=False)
    h.passive()
    h.send("RETR readme.txt")
    h.data_connected()
    assert h.feed(b"\xff\xf4\xff\xf2ABOR\r\n") == []
    assert h.last == [a.AbortTransfer()]
    assert h.transfer_done(3, aborted=True) == [
        (426, ("Transfer aborted.",)),
        (226, ("ABOR command successful.",)),
    ]
    assert h.code("NOOP") == 200


@check(58, "abor-without-transfer-226")
def _c58() -> None:
    assert Harness.ready().code("ABOR") == 226


@check(60, "port-to-port-25-504")
def _c60() -> None:
    h = Harness.ready()
    assert h.code("PORT 127,0,0,1,0,25") == 504
    assert h.state.active is None


@check(61, "port-foreign-address-504")
def _c61() -> None:
    h = Harness.ready()
    assert h.code("PORT 192,0,2,1,200,1") == 504
    assert h.state.active is None


@check(62, "eprt-port-80-504")
def _c62() -> None:
    assert Harness.ready().code("EPRT |1|127.0.0.1|80|") == 504


@check(65, "unknown-verb-500")
def _c65() -> None:
    assert Harness().code("XYZZY") == 500


@check(66, "lower-case-noop-200")
def _c66() -> None:
    assert Harness().code("noop") == 200


@check(67, "multi-line-replies-well-framed")
def _c67() -> None:
    h = Harness.ready()
    h.send("FEAT", "HELP", "STAT", "MLST readme.txt", "SITE HELP", "STAT pub")
    parsed = ReplyParser().feed(bytes(h.wire))
    assert [(r.code, r.lines) for r in parsed] == h.replies
    text = bytes(h.wire).decode()
    for got in h.replies:
        if len(got.lines) > 1:
            assert f"{got.code}-{got.lines[0]}\r\n" in text
            assert f"\r\n{got.code} {got.lines[-1]}\r\n" in text
            assert not any(re.match(r"\d\d\d ", line) for line in got.lines[1:-1])


@check(68, "split-and-pipelined-noop")
def _c68() -> None:
    h = Harness()
    assert h.feed(b"NO") == []
    assert h.feed(b"OP\r\n") == [(200, ("NOOP OK.",))]
    assert h.feed(b"NOOP\r\nNOOP\r\n") == [(200, ("NOOP OK.",))] * 2


@check(69, "rnto-without-rnfr-503")
def _c69() -> None:
    assert Harness.ready().code("RNTO x") == 503


@check(70, "type-no-arg-501")
def _c70a() -> None:
    assert Harness().code("TYPE") == 501


@check(70, "type-z-504")
def _c70b() -> None:
    assert Harness().code("TYPE Z") == 504


@check(71, "pasv-227-six-numbers")
def _c71() -> None:
    got = Harness.ready().one("PASV")
    assert got.code == 227
    assert re.search(r"\d+,\d+,\d+,\d+,\d+,\d+", got.text)


@check(72, "stou-150-file-name")
def _c72() -> None:
    h = Harness.ready()
    h.passive()
    first = h.send("STOU")[0]
    assert first.code == 150
    assert re.fullmatch(r"FILE: \S+", first.text)


@check(73, "xpwd-like-pwd")
def _c73() -> None:
    h = Harness.ready()
    assert h.one("XPWD") == h.one("PWD")


@check(74, "idle-timeout-421-close")
def _c74() -> None:
    h = Harness()
    deadline = h.session.next_deadline()
    assert deadline == h.now + h.policy.idle_timeout
    h.advance(h.policy.idle_timeout)
    assert [got.code for got in h.tick()] == [421]
    assert h.closed


@check(75, "telnet-do-refused-then-noop")
def _c75() -> None:
    h = Harness()
    assert h.feed(b"\xff\xfd\x01") == []
    assert h.raw == [b"\xff\xfc\x01"]
    assert h.code("NOOP") == 200


@check(76, "overlong-line-500-then-normal")
def _c76() -> None:
    h = Harness()
    assert h.send("NOOP " + "x" * 9000) == [(500, ("Command line too long.",))]
    assert h.code("NOOP") == 200


@check(77, "unknown-user-same-as-wrong-password")
def _c77() -> None:
    unknown, wrong = Harness.ready(), Harness.ready()
    assert unknown.codes("USER nosuchuser") == [331]
    wrong.send("USER alice")
    a_reply, b_reply = unknown.one("PASS x"), wrong.one("PASS x")
    assert a_reply == b_reply
    assert a_reply.code == 530
    assert unknown.sleeps == wrong.sleeps


@check(78, "wrong-pass-delayed")
def _c78() -> None:
    h = Harness.ready(login_failure_delay=5.0)
    h.send("USER alice")
    h.send("PASS nope")
    assert h.kinds() == ["RunOp", "Sleep", "530"]
    assert h.sleeps == [5.0]


@check(79, "third-failure-421-then-close")
def _c79() -> None:
    h = Harness.ready()
    for _ in range(2):
        h.send("USER alice")
        assert h.code("PASS nope") == 530
    h.send("USER alice")
    assert h.code("PASS nope") == 421
    assert h.kinds()[-2:] == ["421", "Close"]


@check(80, "feat-format")
def _c80() -> None:
    lines = Harness().one("FEAT").lines
    assert lines[-1].lower() == "end"
    body = lines[1:-1]
    assert all(line.startswith(" ") and not line.startswith("  ") for line in body)
    labels = {line.split()[0] for line in body}
    assert {"AUTH", "PBSZ", "PROT"} <= labels


@check(81, "feat-with-arg-501")
def _c81() -> None:
    assert Harness().code("FEAT x") == 501


@check(82, "feat-before-login-211")
def _c82() -> None:
    assert Harness().code("FEAT") == 211


@check(83, "opts-utf8-on-200-nosuch-501")
def _c83() -> None:
    assert Harness().codes("OPTS UTF8 ON", "OPTS NOSUCH") == [200, 501]


@check(84, "opts-mlst-selection")
def _c84() -> None:
    h = Harness()
    assert h.send("OPTS MLST type;size;") == [(200, ("MLST OPTS type;size;",))]
    assert h.code("OPTS MLST type size;") == 501
    assert h.state.facts == {"type", "size"}


@check(85, "mlst-format")
def _c85() -> None:
    got = Harness.ready().one("MLST readme.txt")
    assert got.code == 250
    assert len(got.lines) == 3
    assert re.fullmatch(r" (?:[a-z.]+=[^; ]*;)+ /readme\.txt", got.lines[1])


@check(86, "mlsd-dir-150-226-protected")
def _c86() -> None:
    h = Harness.ready()
    h.passive()
    assert h.codes("MLSD pub") == [150, 226]
    transfer = h.transfers[-1]
    assert (transfer.kind, transfer.path, transfer.protect) == (a.TransferKind.MLSD, "/pub", True)


@check(87, "mlsd-file-501-mlst-nosuch-550")
def _c87() -> None:
    h = Harness.ready()
    h.passive()
    assert h.codes("MLSD readme.txt") == [501]  # refused by the I/O layer before any 150, relayed
    assert h.code("MLST nosuch") == 550


@check(88, "mdtm-single-line-213")
def _c88() -> None:
    h = Harness.ready()
    assert h.send("MDTM readme.txt") == [(213, (MTIME_TEXT,))]
    assert h.code("MDTM nosuch") == 550


@check(89, "size-binary-and-ascii")
def _c89() -> None:
    h = Harness.ready()
    h.send("TYPE I")
    assert h.send("SIZE readme.txt") == [(213, (str(len(README)),))]
    h.send("TYPE A")
    assert h.send("SIZE readme.txt") == [(213, (str(len(README) + README.count(b"\n")),))]


@check(90, "rest-100-then-retr-from-100")
def _c90() -> None:
    h = Harness.ready()
    h.send("TYPE I")
    assert h.codes("REST 100", "PASV", "RETR pub/data.bin") == [350, 227, 150, 226]
    assert h.transfers[-1].offset == 100
    assert h.code("REST abc") == 501


@check(91, "epsv-229")
def _c91() -> None:
    got = Harness.ready().one("EPSV")
    assert got.code == 229
    assert re.search(r"\(\|\|\|\d+\|\)", got.text)


@check(92, "epsv-3-and-eprt-af-3-522")
def _c92() -> None:
    h = Harness.ready()
    for line in ("EPSV 3", "EPRT |3|x|5|"):
        got = h.one(line)
        assert got.code == 522
        assert got.text.endswith("(1,2)")


@check(93, "epsv-all")
def _c93() -> None:
    h = Harness.ready()
    assert h.codes("EPSV ALL", "PORT 127,0,0,1,200,1", "PASV", "EPRT |1|127.0.0.1|50000|", "EPSV") == [
        200,
        503,
        503,
        503,
        229,
    ]


@check(94, "ipv6-eprt")
def _c94() -> None:
    h = Harness.ready(peer="::1", local="::1", ipv6=True)
    assert h.code("EPRT |2|::1|50001|") == 200
    h.send("LIST")
    assert h.transfers[-1].active == a.ActiveAddress("::1", 50001)


@check(95, "host")
def _c95() -> None:
    h = Harness(host_names=frozenset({"ftp.example.com"}))
    assert h.codes("HOST ftp.example.com", "HOST 192.0.2.1:21", "HOST other.example") == [220, 501, 504]
    h.secure()
    h.login()
    assert h.code("HOST ftp.example.com") == 503


@check(96, "host-differs-from-sni-504")
def _c96() -> None:
    h = Harness(sni="a.example")
    h.secure()
    assert h.code("HOST b.example") == 504
    assert h.code("HOST a.example") == 220


@check(97, "lang")
def _c97() -> None:
    h = Harness()
    assert h.codes("LANG zz", "LANG") == [504, 200]
    assert " LANG EN*" in h.one("FEAT").lines


@check(98, "feat-utf8")
def _c98() -> None:
    assert " UTF8" in Harness().one("FEAT").lines


@check(99, "mkd-two-spaces")
def _c99() -> None:
    h = Harness.ready()
    assert h.send("MKD  two") == [(257, ('"/ two" created.',))]
    assert h.ops[-1] == a.MakeDir("/ two")


@check(100, "rein-clears-host-and-lang")
def _c100() -> None:
    h = Harness(sni="ftp.example.com")
    h.codes("HOST ftp.example.com", "LANG EN")
    h.secure()
    assert h.state.host == "ftp.example.com"
    h.send("REIN")
    assert h.state.host is None
    assert h.code("HOST other.example") == 220  # no SNI any more: any name, back to the default
    assert h.one("FEAT").lines.count(" LANG EN*") == 1


@pytest.mark.parametrize("scenario", CHECKS)
def test_conformance_check(scenario: Scenario) -> None:
    scenario()


def test_check_ids_are_unique() -> None:
    ids = [p.id for p in CHECKS]
    assert len(ids) == len(set(ids))


def test_replies_match_the_wire() -> None:
    """The harness's reply list is exactly what a client parses from the wire."""
    h = Harness.ready()
    h.send("FEAT", "NOOP", "HELP RETR")
    assert [Got(r.code, r.lines) for r in ReplyParser().feed(bytes(h.wire))] == h.replies
