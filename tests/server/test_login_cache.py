"""A repeat login the credential cache vouches for is answered on the loop, with the usual replies."""

from __future__ import annotations

import logging
from pathlib import Path

from pyftps.auth.anonymous import AnonymousAuthenticator
from pyftps.auth.base import Principal, SupportsCachedLogin
from pyftps.auth.cache import CachingAuthenticator
from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.server.vhosts import VirtualHost
from pyftps.storage.base import Storage
from tests.server.conftest import PASSWORD, StartServer


class _Spy(CachingAuthenticator):
    """Counts the logins that go the slow way (through a worker thread to authenticate())."""

    calls = 0

    def authenticate(self, username: str, password: str) -> Principal | None:
        type(self).calls += 1
        return super().authenticate(username, password)


def test_a_cached_login_needs_no_worker_thread(start_server: StartServer) -> None:
    server = start_server()
    context = server.server.context
    _Spy.calls = 0
    context.authenticator = _Spy(context.authenticator, ttl=60)
    server.login().expect("PWD", 257)
    assert _Spy.calls == 1  # the first login verifies the password
    server.login().expect("PWD", 257)
    assert _Spy.calls == 1  # the second is answered from the cache, on the loop
    client = server.connect()
    client.auth_tls()
    client.expect("USER alice", 331)
    client.expect("PASS not-" + PASSWORD, 530)  # a wrong password still takes the full path
    assert _Spy.calls == 2


def test_wrappers_keep_the_fast_path(start_server: StartServer, tmp_path: Path) -> None:
    # Anonymous access and a virtual host's root confinement wrap the cache; a repeat login must
    # still be answered from it, and a virtual host's cached principal is already confined.
    server = start_server()
    context = server.server.context
    _Spy.calls = 0
    cached = _Spy(context.authenticator, ttl=60)
    context.authenticator = AnonymousAuthenticator(cached, str(tmp_path / "pub"))
    server.login().expect("PWD", 257)
    server.login().expect("PWD", 257)
    assert _Spy.calls == 1

    _Spy.calls = 0
    root = tmp_path / "host"
    root.mkdir()
    inner = StaticAuthenticator.from_plain(
        {"bob": (PASSWORD, Principal("bob", "bob"))}, hasher=cheap_hasher()
    )
    host = VirtualHost.confined(["a.test"], root, inner, cache=lambda users: _Spy(users, ttl=60))
    assert isinstance(host.authenticator, SupportsCachedLogin)
    assert host.authenticator.cached("bob", PASSWORD) is None
    first = host.authenticator.authenticate("bob", PASSWORD)
    assert first is not None and first.home == str(root / "bob")
    assert host.authenticator.cached("bob", PASSWORD) == first
    assert _Spy.calls == 1


def test_a_login_that_fails_unexpectedly_is_a_421_on_both_paths(start_server: StartServer) -> None:
    # The cached path runs inside the connection's action loop: a home that cannot be created (or a
    # ban list that is down) must end in the 421 of a broken user store, not a dropped connection.
    server = start_server()
    context = server.server.context
    context.authenticator = CachingAuthenticator(context.authenticator, ttl=60)
    server.login().expect("PWD", 257)  # the cache now vouches for alice

    def broken_home(principal: Principal) -> Storage:
        raise PermissionError("home cannot be created")

    seen: list[str] = []

    def expected(record: logging.LogRecord) -> bool:
        if record.getMessage().endswith("login failed unexpectedly"):
            seen.append(record.getMessage())
            return False  # expected here: kept out of the teardown's error check
        return True

    session_log = logging.getLogger("pyftps.session")
    session_log.addFilter(expected)
    try:
        context.storage_for = broken_home
        cached = server.connect()
        cached.auth_tls()
        cached.expect("USER alice", 331)
        cached.expect("PASS " + PASSWORD, 421)  # from the cache, answered on the loop
        context.authenticator = CachingAuthenticator(context.authenticator, ttl=60)  # an empty cache
        slow = server.connect()
        slow.auth_tls()
        slow.expect("USER alice", 331)
        slow.expect("PASS " + PASSWORD, 421)  # verified in a worker thread, then settled
    finally:
        session_log.removeFilter(expected)
    assert len(seen) == 2
