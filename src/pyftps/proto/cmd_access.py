"""Handlers of the access-control commands USER, PASS, ACCT, REIN, QUIT, HOST (RFC 959 §4.1.1, RFC 7151).

Login never reveals whether a user exists (RFC 2577 §7): USER always answers 331, and a wrong
password and an unknown user get the same 530 after the same delay.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from pyftps.proto.actions import (
    Action,
    Authenticate,
    CertificateLogin,
    Close,
    DropDataChannel,
    EndLogin,
    LoginAccepted,
    OpFailed,
    OpOk,
    OpResult,
    SelectHost,
    Sleep,
)
from pyftps.proto.codes import ReplyCode
from pyftps.proto.grammar import canonical_host, parse_host_arg, same_host
from pyftps.proto.session import LoginState

if TYPE_CHECKING:
    from pyftps.proto.commands import Command
    from pyftps.proto.session import ServerSession

TLS_REQUIRED = "TLS required: send AUTH TLS first, or use the implicit FTPS port."
USER_TLS_REQUIRED = "This account must log in over TLS: send AUTH TLS first, or use the implicit FTPS port."


def user(s: ServerSession, cmd: Command) -> list[Action]:
    if s.policy.require_tls_for_login and not s.state.tls.protected:
        return s.reply(ReplyCode.NOT_LOGGED_IN, TLS_REQUIRED)
    actions = s.reset_login()  # a new USER flushes the old login, keeps transfer parameters (959 §4.1.1)
    s.state.pending_user = cmd.arg
    s.state.login = LoginState.NEED_PASS
    info = s.tls_info if s.state.tls.protected else None
    if info is not None and info.client_fingerprint is not None and cmd.arg:
        # RFC 4217 §12.2 / RFC 2228 §4: a certificate mapped to this user logs in with 232, no PASS.
        login = CertificateLogin(cmd.arg, info.client_fingerprint, info.client_subject)
        return actions + s.run(login, lambda result: _certificate_result(s, result))
    return actions + s.reply(ReplyCode.NEED_PASSWORD, "Password required.")


def _certificate_result(s: ServerSession, result: OpResult) -> list[Action]:
    if isinstance(result, OpOk) and isinstance(result.value, LoginAccepted):
        s.commit_login(result.value)
        return s.reply(ReplyCode.LOGGED_IN_SECURITY, "Logged in, authorized by the TLS client certificate.")
    return s.reply(ReplyCode.NEED_PASSWORD, "Password required.")  # the certificate is not this user's


def password(s: ServerSession, cmd: Command) -> list[Action]:
    if s.state.logged_in:
        return s.reply(ReplyCode.BAD_SEQUENCE, "Already logged in.")
    if s.state.login is not LoginState.NEED_PASS or s.state.pending_user is None:
        return s.reply(ReplyCode.BAD_SEQUENCE, "Send USER first.")
    if s.policy.require_tls_for_login and not s.state.tls.protected:
        return s.reply(ReplyCode.NOT_LOGGED_IN, TLS_REQUIRED)
    name = s.state.pending_user
    return s.run(Authenticate(name, cmd.arg or ""), lambda result: _login_result(s, result))


def _login_result(s: ServerSession, result: OpResult) -> list[Action]:
    if isinstance(result, OpFailed) and result.code != ReplyCode.NOT_LOGGED_IN:
        s.state.login, s.state.pending_user = LoginState.NONE, None
        if result.code == ReplyCode.SERVICE_NOT_AVAILABLE:  # banned, or the user store is down
            return s.close_with(result.code, result.text)
        return s.reply(result.code, result.text)  # backend trouble, not a wrong password
    if isinstance(result, OpFailed) or not isinstance(result.value, LoginAccepted):
        s.state.login, s.state.pending_user = LoginState.NONE, None
        s.login_failures += 1
        delay: list[Action] = [Sleep(s.policy.login_failure_delay)] if s.policy.login_failure_delay else []
        if s.login_failures >= s.policy.max_login_failures:
            # RFC 2577 §5: the 421 must precede the close.
            return delay + s.close_with(ReplyCode.SERVICE_NOT_AVAILABLE, "Too many failed logins; closing.")
        text = result.text if isinstance(result, OpFailed) else "Login incorrect."
        return delay + s.reply(ReplyCode.NOT_LOGGED_IN, text)
    accepted = result.value
    policy = s.policy if accepted.tls is None else s.policy.with_user(accepted.tls)
    if policy.require_tls_for_login and not s.state.tls.protected:
        return _cleartext_refused(s)
    s.commit_login(accepted)
    return s.reply(ReplyCode.LOGGED_IN, "Login successful.")


def _cleartext_refused(s: ServerSession) -> list[Action]:
    """The password was right but this user must log in over TLS (a per-user policy).

    Refused only now, after the same verification as any login: refusing at USER would tell
    whether the name exists (RFC 2577 §7). The I/O layer already took the user's session slot;
    EndLogin gives it back. Not a failed login (the password was right), but the same pause.
    """
    s.state.login, s.state.pending_user = LoginState.NONE, None
    delay: list[Action] = [Sleep(s.policy.login_failure_delay)] if s.policy.login_failure_delay else []
    return [EndLogin(), *delay, *s.reply(ReplyCode.NOT_LOGGED_IN, USER_TLS_REQUIRED)]


def account(s: ServerSession, cmd: Command) -> list[Action]:
    return s.reply(ReplyCode.SUPERFLUOUS, "ACCT is not needed on this server.")


def reinitialize(s: ServerSession, cmd: Command) -> list[Action]:
    # REIN starts a fresh session state, HOST included: logins go to the default host again.
    forget: list[Action] = [SelectHost(None)] if s.state.host is not None else []
    return forget + s.reinitialize()


def quit(s: ServerSession, cmd: Command) -> list[Action]:
    s.closed = True
    return [DropDataChannel(), *s.reply(ReplyCode.CLOSING_CONTROL, "Goodbye."), Close()]


def host(s: ServerSession, cmd: Command) -> list[Action]:
    if s.state.logged_in:
        return s.reply(ReplyCode.BAD_SEQUENCE, "HOST must be sent before login (RFC 7151).")
    name = parse_host_arg((cmd.arg or "").strip())
    literal = name.strip("[]")
    if canonical_host(literal) != literal or _is_address(literal):
        if not same_host(literal, s.local_host):
            return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, "That address is not this server's.")
    elif s.policy.host_names and name not in s.policy.host_names:
        return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, "Unknown virtual host.")
    sni = s.tls_info.sni if s.tls_info and s.state.tls.protected else None
    if sni and sni.lower().rstrip(".") != name.rstrip("."):
        return s.reply(ReplyCode.NOT_IMPLEMENTED_PARAM, "HOST does not match the TLS server name (SNI).")
    actions = s.reset_login()  # RFC 7151 §3: each HOST resets the authentication environment
    s.state.host = name
    # The I/O layer picks the virtual host's user store, root and (before AUTH) certificate.
    return [*actions, SelectHost(name), *s.reply(ReplyCode.SERVICE_READY, f"Host {name} accepted.")]


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
