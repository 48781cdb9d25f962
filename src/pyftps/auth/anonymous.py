"""Anonymous FTP (RFC 1635) in front of another authenticator: only when enabled, read-only by default."""

from __future__ import annotations

from pyftps.auth.base import (
    Authenticator,
    Permission,
    Principal,
    SupportsCachedLogin,
    SupportsCertificateLogin,
)

ANONYMOUS_NAMES = frozenset({"anonymous", "ftp"})


class AnonymousAuthenticator:
    """Lets ``anonymous``/``ftp`` in with any password (by custom an e-mail address) to ``root``.

    Every other name goes to ``inner``, so real accounts keep their timing guarantees. An account
    named ``anonymous`` in the user store is shadowed while anonymous access is on.
    """

    def __init__(self, inner: Authenticator, root: str, permissions: Permission | None = None) -> None:
        self._inner = inner
        self._principal = Principal("anonymous", root, permissions or Permission.read_only())

    def authenticate(self, username: str, password: str) -> Principal | None:
        if username.lower() in ANONYMOUS_NAMES:
            return self._principal
        return self._inner.authenticate(username, password)

    def cached(self, username: str, password: str) -> Principal | None:
        if username.lower() in ANONYMOUS_NAMES or not isinstance(self._inner, SupportsCachedLogin):
            return None  # anonymous is as cheap on the worker thread; the rest is the inner cache's
        return self._inner.cached(username, password)

    def authenticate_certificate(
        self, username: str, fingerprint: str, subject: str | None
    ) -> Principal | None:
        if username.lower() in ANONYMOUS_NAMES or not isinstance(self._inner, SupportsCertificateLogin):
            return None
        return self._inner.authenticate_certificate(username, fingerprint, subject)
