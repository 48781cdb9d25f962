"""The security state machine of one control connection, as data (RFC 2228, RFC 4217, MS-FTPS).

Theory of operation
-------------------
A control connection is in exactly one :class:`TLSState`. An explicit connection starts in
``PLAIN`` (greeting sent in clear); ``AUTH`` moves it to ``HANDSHAKE`` and a completed handshake to
``TLS``; ``CCC`` clears it to ``CLEARED``; ``REIN`` brings every explicit state back to ``PLAIN``.
An implicit connection (MS-FTPS §3.2.5.1) starts in ``IMPLICIT_WAIT``: no byte is sent until the
client's handshake completes, which lands in ``IMPLICIT`` with ``PBSZ 0`` and ``PROT P`` applied
silently; ``REIN`` there shuts TLS down and returns to ``IMPLICIT_WAIT`` on the same TCP connection
(MS-FTPS §3.2.5.3).

:data:`TRANSITIONS` holds every legal move; anything else is a bug in the caller
(:class:`LocalProtocolError`). :data:`GATES` says, for each security command and state, whether the
command reaches its handler or is answered straight from the table (RFC 2228 §3 codes; the PROJ
choices of CONFORMANCE.md §7). Tests walk every cell of both tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pyftps.proto.codes import ReplyCode
from pyftps.proto.errors import LocalProtocolError


class TLSState(enum.Enum):
    PLAIN = "plain"
    HANDSHAKE = "handshake"
    TLS = "tls"
    CLEARED = "cleared"
    IMPLICIT_WAIT = "implicit-wait"
    IMPLICIT = "implicit"

    # Members are singletons compared by identity, so the identity hash is as good as Enum's
    # hash(name), and it is C: the tables below are consulted for every command.
    __hash__ = object.__hash__

    @property
    def protected(self) -> bool:
        """Commands and replies currently travel under TLS."""
        return self in PROTECTED_STATES

    @property
    def accepts_commands(self) -> bool:
        return self in COMMAND_STATES


class Trigger(enum.Enum):
    AUTH_ACCEPTED = "auth-accepted"  # 234 sent
    HANDSHAKE_DONE = "handshake-done"
    CCC_ACCEPTED = "ccc-accepted"  # 200 sent under TLS, shutdown follows
    REIN = "rein"

    __hash__ = object.__hash__  # as TLSState's


PROTECTED_STATES = frozenset({TLSState.TLS, TLSState.IMPLICIT})  # commands and replies under TLS
# Commands are read in every state but during a handshake (explicit AUTH or implicit accept).
COMMAND_STATES = frozenset(TLSState) - {TLSState.HANDSHAKE, TLSState.IMPLICIT_WAIT}


TRANSITIONS: dict[tuple[TLSState, Trigger], TLSState] = {
    (TLSState.PLAIN, Trigger.AUTH_ACCEPTED): TLSState.HANDSHAKE,
    (TLSState.HANDSHAKE, Trigger.HANDSHAKE_DONE): TLSState.TLS,
    (TLSState.IMPLICIT_WAIT, Trigger.HANDSHAKE_DONE): TLSState.IMPLICIT,
    (TLSState.TLS, Trigger.CCC_ACCEPTED): TLSState.CLEARED,
    (TLSState.PLAIN, Trigger.REIN): TLSState.PLAIN,
    (TLSState.TLS, Trigger.REIN): TLSState.PLAIN,  # 4217 §13: reply protected, then clear
    (TLSState.CLEARED, Trigger.REIN): TLSState.PLAIN,
    (TLSState.IMPLICIT, Trigger.REIN): TLSState.IMPLICIT_WAIT,  # MS-FTPS §3.2.5.3
}


def transition(state: TLSState, trigger: Trigger) -> TLSState:
    try:
        return TRANSITIONS[(state, trigger)]
    except KeyError:
        raise LocalProtocolError(f"no transition from {state.value} on {trigger.value}") from None


@dataclass(frozen=True, slots=True)
class Gate:
    """Either let the command through (``code is None``) or answer it from the table."""

    code: int | None = None
    text: str = ""

    @property
    def allows(self) -> bool:
        return self.code is None


ALLOW = Gate()
_NO_EXCHANGE = Gate(ReplyCode.BAD_SEQUENCE, "Security exchange not done: send AUTH TLS first.")
_AUTH_AGAIN = Gate(ReplyCode.REQUEST_DENIED_POLICY, "Security mechanism already negotiated.")
_FROZEN = Gate(ReplyCode.PROTECTION_LEVEL_DENIED, "Protection settings are frozen after CCC.")
_CCC_CLEAR = Gate(ReplyCode.PROTECTION_LEVEL_DENIED, "Control connection is not protected.")
_ADAT = Gate(ReplyCode.BAD_SEQUENCE, "TLS uses no ADAT exchange.")
_MIC = Gate(ReplyCode.NOT_IMPLEMENTED, "Protected commands are not used with TLS.")

_P, _T, _C, _I = TLSState.PLAIN, TLSState.TLS, TLSState.CLEARED, TLSState.IMPLICIT

GATES: dict[tuple[str, TLSState], Gate] = {
    # AUTH (2228 §3; 4217 §4; MS-FTPS §3.2.5.6): a second AUTH or AUTH on implicit → 534 (PROJ)
    ("AUTH", _P): ALLOW,
    ("AUTH", _T): _AUTH_AGAIN,
    ("AUTH", _C): _AUTH_AGAIN,
    ("AUTH", _I): Gate(ReplyCode.REQUEST_DENIED_POLICY, "Implicit FTPS: TLS is already in place."),
    # PBSZ / PROT (2228 §3; 4217 §5, §9; MS-FTPS §3.2.5.1)
    ("PBSZ", _P): _NO_EXCHANGE,
    ("PBSZ", _T): ALLOW,
    ("PBSZ", _C): _FROZEN,
    ("PBSZ", _I): ALLOW,
    ("PROT", _P): _NO_EXCHANGE,
    ("PROT", _T): ALLOW,
    ("PROT", _C): _FROZEN,
    ("PROT", _I): ALLOW,
    # CCC (4217 §5 decision order; MS-FTPS §3.2.5.2: implicit → policy refusal)
    ("CCC", _P): _CCC_CLEAR,
    ("CCC", _T): ALLOW,
    ("CCC", _C): _CCC_CLEAR,
    ("CCC", _I): Gate(ReplyCode.REQUEST_DENIED_POLICY, "CCC is not allowed on implicit FTPS sessions."),
    # ADAT / MIC / CONF / ENC (2228 §3; 4217 §4.2)
    **{("ADAT", s): _ADAT for s in (_P, _T, _C, _I)},
    **{(verb, _P): _NO_EXCHANGE for verb in ("MIC", "CONF", "ENC")},
    **{(verb, s): _MIC for verb in ("MIC", "CONF", "ENC") for s in (_T, _C, _I)},
}

SECURITY_VERBS = frozenset(verb for verb, _ in GATES)


def gate(verb: str, state: TLSState) -> Gate:
    """The table's verdict for a command; commands without security rules are always allowed."""
    if verb not in SECURITY_VERBS:
        return ALLOW
    return GATES[(verb, state)]
