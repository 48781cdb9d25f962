"""Virtual hosts (RFC 7151): per host name its own user store, root (confining homes) and certificate.

A session picks its host with HOST before login, or by TLS SNI on the handshake; without either it
gets the default host (the server's own users, root and certificate). Two hosts never share user
names: a host's users are counted, throttled and given quotas under ``host/name`` (user names cannot
contain ``/``), so "bob" of one host is not "bob" of another.

TLS. With SNI the certificate is switched during the handshake: the default context's
``sni_callback`` moves the connection to the host's ``SSLContext``. OpenSSL keeps encrypting session
tickets with the keys of the context the connection was *created* with (its ``session_ctx``), so a
data connection resumes only when wrapped with that creating context (measured, CPython 3.11,
OpenSSL 3). After HOST and before AUTH the control connection is created with the host's context
directly, so its tickets are sealed with that host's own keys and another host's ticket cannot
resume on its data connections.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from pyftps.auth.base import Authenticator, Principal, SupportsCertificateLogin
from pyftps.tls.contexts import install_sni_recorder

__all__ = ["VirtualHost", "VirtualHosts", "confine_home", "host_key"]

log = logging.getLogger("pyftps.server")


def host_key(name: str) -> str:
    """How host names compare: case-insensitive, a trailing dot ignored (``FTP.Example.COM.``)."""
    return name.strip().rstrip(".").lower()


def confine_home(root: Path, home: str) -> str | None:
    """``home`` made absolute under ``root`` (a relative home is taken relative to it); None if outside.

    Checked twice: lexically (``..`` collapsed) and with symlinks resolved, so neither ``../other``
    nor a link inside the root that points out of it passes.
    """
    if not home:
        return str(root)
    if home.startswith("s3://") or "\x00" in home:
        return None  # an S3 home cannot lie inside a local root
    base = Path(os.path.normpath(os.path.abspath(root)))
    path = Path(os.path.normpath(base / home))  # an absolute home replaces base
    if not (path.is_relative_to(base) and path.resolve().is_relative_to(base.resolve())):
        return None
    return str(path)


class _ConfinedUsers:
    """A host's user store whose principals must live under the host's root; others cannot log in."""

    def __init__(self, inner: Authenticator, root: Path, host: str) -> None:
        self._inner, self._root, self._host = inner, root, host

    def authenticate(self, username: str, password: str) -> Principal | None:
        return self._confine(self._inner.authenticate(username, password))

    def authenticate_certificate(
        self, username: str, fingerprint: str, subject: str | None
    ) -> Principal | None:
        if not isinstance(self._inner, SupportsCertificateLogin):
            return None
        return self._confine(self._inner.authenticate_certificate(username, fingerprint, subject))

    def _confine(self, principal: Principal | None) -> Principal | None:
        if principal is None:
            return None
        home = confine_home(self._root, principal.home)
        if home is None:
            # A configuration error, not a wrong password: the operator must see it.
            log.warning(
                "vhost %s: user %s has home %r outside the host's root %s; login refused",
                self._host,
                principal.name,
                principal.home,
                self._root,
            )
            return None
        return replace(principal, home=home)


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """One virtual host; ``name`` is its first configured name and labels it in logs and keys."""

    name: str
    names: frozenset[str]
    root: Path
    authenticator: Authenticator
    ssl_context: ssl.SSLContext | None = None  # None: the server's certificate

    @classmethod
    def confined(
        cls,
        names: Iterable[str],
        root: Path,
        users: Authenticator,
        ssl_context: ssl.SSLContext | None = None,
        *,
        cache: Callable[[Authenticator], Authenticator] | None = None,
        wrap: Callable[[Authenticator], Authenticator] | None = None,
    ) -> VirtualHost:
        """A host whose ``users`` are kept under ``root``.

        ``cache`` goes around the confinement, so a cached login carries an already confined home and
        needs no file system access (it is answered on the event loop); ``wrap`` adds what is not
        confined (anonymous).
        """
        keys = [host_key(name) for name in names]
        if not keys or not all(keys):
            raise ValueError("a virtual host needs at least one non-empty name")
        confined: Authenticator = _ConfinedUsers(users, root, keys[0])
        if cache is not None:
            confined = cache(confined)
        return cls(keys[0], frozenset(keys), root, wrap(confined) if wrap else confined, ssl_context)

    def user_key(self, user: str) -> str:
        """The name this host's user is counted and throttled under (never a default-host name)."""
        return f"{self.name}/{user}"

    def principal(self, principal: Principal) -> Principal:
        """``principal`` as the server-wide structures (limits, bandwidth, quotas, logs) must see it."""
        return replace(principal, name=self.user_key(principal.name))


class VirtualHosts:
    """The configured hosts by name; empty means "no virtual hosts", exactly the single-host server."""

    def __init__(self, hosts: Iterable[VirtualHost] = ()) -> None:
        self.hosts = tuple(hosts)
        self._by_name: dict[str, VirtualHost] = {}
        for host in self.hosts:
            for name in host.names:
                if name in self._by_name:
                    raise ValueError(f"virtual host name {name!r} is configured twice")
                self._by_name[name] = host

    def __bool__(self) -> bool:
        return bool(self.hosts)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._by_name)

    def find(self, name: str | None) -> VirtualHost | None:
        return self._by_name.get(host_key(name)) if name else None

    def attach(self, default: ssl.SSLContext | None) -> None:
        """Make ``default`` present a host's certificate to clients that ask for it by SNI."""
        if default is None or not any(host.ssl_context is not None for host in self.hosts):
            return
        install_sni_recorder(default, self._switch)

    def _switch(self, obj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> int | None:
        host = self.find(name)
        if host is not None and host.ssl_context is not None and host.ssl_context is not context:
            obj.context = host.ssl_context  # the certificate; tickets stay sealed by the creating context
        return None
