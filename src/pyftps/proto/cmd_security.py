"""Handlers of the security commands AUTH, PBSZ, PROT, CCC (RFC 2228 §3, RFC 4217 §4-§9, MS-FTPS §3.2.5).

The state checks live in :data:`pyftps.proto.security.GATES`; what remains here is argument
parsing and policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyftps.proto.codes import ReplyCode
from pyftps.proto.grammar import parse_pbsz_arg, parse_prot_arg
from pyftps.proto.policy import CCCPolicy

if TYPE_CHECKING:
    from pyftps.proto.actions import Action
    from pyftps.proto.commands import Command
    from pyftps.proto.session import ServerSession

# TLS-C is RFC 4217 §17's synonym; SSL is MS-FTPS §2.2.1's; TLS-P is the legacy "protect data too".
MECHANISMS = ("TLS", "TLS-C", "SSL", "TLS-P")


def auth(s: ServerSession, cmd: Command) -> list[Action]:
    mechanism = (cmd.arg or "").strip().upper()
    if mechanism not in MECHANISMS:
        return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, "Unsupported mechanism: use AUTH TLS.")
    if not s.policy.tls_available:
        return s.reply(ReplyCode.SECURITY_RESOURCE_UNAVAILABLE, "TLS is unavailable: no usable certificate.")
    if mechanism == "TLS-P":
        s.request_tls_p()
    return s.reply(ReplyCode.SECURITY_EXCHANGE_DONE, f"AUTH {mechanism} OK, starting TLS.") + s.start_tls()


def pbsz(s: ServerSession, cmd: Command) -> list[Action]:
    size = parse_pbsz_arg((cmd.arg or "").strip())
    s.state.pbsz_ok = True
    # RFC 2228 §3: a server using a smaller size than asked must say which; TLS streams use 0 (4217 §9).
    return s.reply(ReplyCode.OK, "PBSZ=0" if size else "PBSZ 0 OK.")


def prot(s: ServerSession, cmd: Command) -> list[Action]:
    if not s.state.pbsz_ok:
        return s.reply(ReplyCode.BAD_SEQUENCE, "PROT must follow PBSZ 0.")
    level = parse_prot_arg((cmd.arg or "").strip())
    if level in ("S", "E"):
        return s.reply(ReplyCode.PROT_NOT_SUPPORTED, f"PROT {level} is not supported by TLS: use C or P.")
    if level == "C" and s.policy.require_protected_data:
        return s.reply(ReplyCode.REQUEST_DENIED_POLICY, "Policy requires protected data: use PROT P.")
    s.state.prot = level
    return s.reply(ReplyCode.OK, f"Protection level set to {level}.")


def ccc(s: ServerSession, cmd: Command) -> list[Action]:
    policy = s.policy.ccc
    if policy is CCCPolicy.NEVER:
        return s.reply(ReplyCode.REQUEST_DENIED_POLICY, "CCC is disabled by policy.")
    if policy is CCCPolicy.AFTER_LOGIN and not s.state.logged_in:
        # RFC 4217 §15.3: clearing before authentication would expose the login to injection.
        return s.reply(ReplyCode.REQUEST_DENIED_POLICY, "CCC is allowed only after login.")
    return s.clear_control()


def unused(s: ServerSession, cmd: Command) -> list[Action]:
    # Unreachable in practice: the gate table answers ADAT/MIC/CONF/ENC in every state.
    return s.reply(ReplyCode.NOT_IMPLEMENTED, f"{cmd.verb} is not used with TLS.")
