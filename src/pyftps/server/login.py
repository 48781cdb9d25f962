"""One connection's logged-in identity: password and certificate logins with bans and limits in front.

RFC 2577 §5 (bans per address, shared between nodes when the guard is PostgreSQL's), the per-user
session limit, and RFC 4217 §12.2 certificate logins. The connection asks; this module decides who
is logged in, which storage serves them and when their session slot is given back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import cast

from pyftps.auth.base import Authenticator, Principal, SupportsCachedLogin, SupportsCertificateLogin
from pyftps.proto import actions as a
from pyftps.proto.codes import ReplyCode
from pyftps.proto.memo import IdentityMemo
from pyftps.proto.policy import UserTLSPolicy
from pyftps.server.context import ServerContext
from pyftps.server.guard import BANNED
from pyftps.server.ops import authenticate
from pyftps.server.vhosts import VirtualHost
from pyftps.storage.base import Storage

log = logging.getLogger("pyftps.session")


@functools.cache
def _has_cached_login(kind: type) -> bool:
    """Whether a store of this type is a SupportsCachedLogin: a Protocol check is slow, so once per type."""
    return issubclass(kind, SupportsCachedLogin)


def _cached_principal(authenticator: Authenticator, op: a.Authenticate) -> Principal | None:
    """A repeat login the credential cache vouches for, answered on the loop (no worker-thread hop)."""
    if not _has_cached_login(type(authenticator)):
        return None
    return cast(SupportsCachedLogin, authenticator).cached(op.username, op.password)


def _accepted(principal: Principal) -> a.OpOk:
    """What the core is told of an accepted login: the user's rights and TLS overrides.

    ``tls`` is None when the user overrides nothing, as the core reads it: the listener's policy.
    """
    tls: UserTLSPolicy | None = principal.tls
    if tls is not None and tls.inherits_all:
        tls = None
    return a.OpOk(a.LoginAccepted(principal.name, principal.permissions, tls, principal.directory_rules))


# _accepted() once per principal: the credential cache hands the same one out at each login, and
# logins waiting on one verification share its answer. The value is frozen, so sessions share it,
# and the core keys its own per-user work on it.
_accepted_once = IdentityMemo(_accepted)


class Identity:
    def __init__(self, server: ServerContext, session_id: str) -> None:
        self.server = server
        self.session_id = session_id
        self.principal: Principal | None = None
        self.storage: Storage | None = None
        self._counted: str | None = None  # holds a slot in the per-user session count
        self.vhost: VirtualHost | None = None  # RFC 7151 HOST or SNI; None: the default host

    @property
    def authenticator(self) -> Authenticator:
        """The user store logins go to: the selected virtual host's, else the server's."""
        return self.vhost.authenticator if self.vhost is not None else self.server.authenticator

    async def password(self, op: a.Authenticate, ip: str, *, protected: bool = True) -> a.OpResult:
        """USER/PASS, with the ban list checked first and failures recorded per address.

        ``protected``: the control connection is TLS-protected. A user whose record requires TLS is
        refused by the core on a cleartext connection; such a login is neither counted nor logged
        as one, and does not clear the address's failure count.
        """
        result = self.password_now(op, ip, protected=protected)
        return result if result is not None else await self.password_in_worker(op, ip, protected=protected)

    def password_now(self, op: a.Authenticate, ip: str, *, protected: bool = True) -> a.OpResult | None:
        """:meth:`password` when the loop can answer it (a ban, a cached login), else None."""
        try:
            if self.server.guard.is_banned(ip, asyncio.get_running_loop().time()):
                return a.OpFailed(BANNED.code, BANNED.text)  # banned while this connection was open
            principal = _cached_principal(self.authenticator, op)
            if principal is None:
                return None
            return self._settle(principal, _accepted_once(principal), op, ip, protected)
        except Exception as error:  # called from the I/O layer's action loop: never let it raise
            return self._unavailable(error)

    async def password_in_worker(self, op: a.Authenticate, ip: str, *, protected: bool = True) -> a.OpResult:
        """:meth:`password` past :meth:`password_now`: the store is asked in a worker thread."""
        loop = asyncio.get_running_loop()
        login = await loop.run_in_executor(
            self.server.op_executor, authenticate, self.authenticator, op, self.session_id
        )
        try:
            if login.principal is None:
                return self._refused(login.result, ip)
            return self._settle(login.principal, _accepted_once(login.principal), op, ip, protected)
        except Exception as error:
            return self._unavailable(error)

    def _unavailable(self, error: Exception) -> a.OpResult:
        """A ban list, cache or home that fails: the 421 of a broken user store, not a hang."""
        log.error("session %s: login failed unexpectedly", self.session_id, exc_info=error)
        return a.OpFailed(ReplyCode.SERVICE_NOT_AVAILABLE, "Login service unavailable.")

    def _settle(
        self, principal: Principal, result: a.OpOk, op: a.Authenticate, ip: str, protected: bool
    ) -> a.OpResult:
        """Accept the user, unless their record requires TLS on this cleartext connection."""
        if principal.tls.require_tls_for_login and not protected:
            log.info("session %s: refused cleartext login of %s (TLS required)", self.session_id, op.username)
            return result  # carries the user's TLS policy: the core refuses it
        return self._accept(principal, result, ip)

    def _refused(self, result: a.OpResult, ip: str) -> a.OpResult:
        """A failed login counts against the address (and may ban it); a broken store does not."""
        if isinstance(result, a.OpFailed) and result.code == ReplyCode.NOT_LOGGED_IN:
            server = self.server
            ban = server.guard.record_failure(ip, asyncio.get_running_loop().time())
            server.metrics.login(False)
            log.info("session %s: failed login from %s", self.session_id, ip)
            if ban is not None:
                server.metrics.ban()
                log.warning("session %s: banning %s for %.0f s after failures", self.session_id, ip, ban)
                return a.OpFailed(BANNED.code, BANNED.text)
        return result

    async def certificate(self, op: a.CertificateLogin, ip: str) -> a.OpResult:
        """USER with a verified client certificate: 232 when the user's record names it."""
        authenticator = self.authenticator
        refused = a.OpFailed(ReplyCode.NEED_PASSWORD, "Password required.")
        if not isinstance(authenticator, SupportsCertificateLogin):
            return refused
        loop = asyncio.get_running_loop()
        try:
            principal = await loop.run_in_executor(
                self.server.op_executor,
                authenticator.authenticate_certificate,
                op.username,
                op.fingerprint,
                op.subject,
            )
        except Exception as error:
            log.error("session %s: certificate login failed", self.session_id, exc_info=error)
            principal = None
        if principal is None:
            return refused
        return self._accept(principal, _accepted(principal), ip)

    def release(self) -> None:
        """REIN, AUTH, a new USER or the end of the connection: the user is gone."""
        self.principal, self.storage = None, None
        user, self._counted = self._counted, None
        if user is not None:
            self.server.counter.logout(user)

    def _accept(self, principal: Principal, result: a.OpOk, ip: str) -> a.OpResult:
        server = self.server
        if self.vhost is not None:  # "bob" of one host is not "bob" of another: limits, rates, quotas
            principal = self.vhost.principal(principal)
        # The user's own max_sessions replaces the server-wide per-user limit (same 530 reply).
        refusal = server.counter.try_login(principal.name, principal.limits.max_sessions)
        if refusal is not None:
            return a.OpFailed(refusal.code, refusal.text)
        server.guard.record_success(ip, asyncio.get_running_loop().time())
        server.metrics.login(True)
        self.release()
        self._counted = principal.name
        self.principal = principal
        self.storage = server.storage_for(principal)
        server.on_login(principal)
        log.info("session %s: user %s logged in from %s", self.session_id, principal.name, ip)
        return result
