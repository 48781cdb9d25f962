"""A cache of recently verified credentials, so repeat logins skip the argon2id cost (and nothing else).

Only successes are cached, keyed by the user name and an HMAC of the password under a random
per-process key: the password itself is never kept, and a wrong password or an unknown user always
takes the full, equal-time path of the store behind (RFC 2577 §7 timing still holds, because a hit
needs the right password). Entries expire after ``ttl`` seconds, so a password change, a disabled
account or a changed home reaches every node within that time; :meth:`forget` drops a user at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from pyftps.auth.base import Authenticator, Principal, SupportsCertificateLogin


class CachingAuthenticator:
    def __init__(
        self,
        inner: Authenticator,
        *,
        ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner
        self._ttl = ttl
        self._max = max_entries
        self._clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, bytes], tuple[float, Principal]] = OrderedDict()
        # Verifications running now, by key: the same credentials arriving meanwhile wait for that
        # answer instead of paying argon2id again (a client's parallel logins, every client at start).
        self._running: dict[tuple[str, bytes], Future[Principal | None]] = {}

    def authenticate(self, username: str, password: str) -> Principal | None:
        known = self.cached(username, password)
        if known is not None or self._ttl <= 0:
            return known if known is not None else self._inner.authenticate(username, password)
        key = (username, self._digest(password))
        with self._lock:
            running = self._running.get(key)
            if running is None:
                flight: Future[Principal | None] = Future()
                self._running[key] = flight
        if running is not None:
            return running.result()  # same credentials, same answer (or the same error)
        now = self._clock()
        try:
            principal = self._inner.authenticate(username, password)
        except BaseException as error:
            with self._lock:
                del self._running[key]
            flight.set_exception(error)
            raise
        with self._lock:  # cached and no longer running in one step: a newcomer sees one or the other
            del self._running[key]
            if principal is not None:
                self._entries[key] = (now + self._ttl, principal)
                self._entries.move_to_end(key)
                while len(self._entries) > self._max:
                    self._entries.popitem(last=False)
        flight.set_result(principal)
        return principal

    def cached(self, username: str, password: str) -> Principal | None:
        """The principal if these credentials were verified within the TTL, else None (never the store).

        Cheap enough for the event loop: a login it answers needs no worker thread.
        """
        key = (username, self._digest(password))
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > now:
                self._entries.move_to_end(key)
                return entry[1]
        return None

    def authenticate_certificate(
        self, username: str, fingerprint: str, subject: str | None
    ) -> Principal | None:
        if not isinstance(self._inner, SupportsCertificateLogin):
            return None
        return self._inner.authenticate_certificate(username, fingerprint, subject)

    def forget(self, username: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == username]:
                del self._entries[key]

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
