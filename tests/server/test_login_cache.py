"""A repeat login the credential cache vouches for is answered on the loop, with the usual replies."""

from __future__ import annotations

from pyftps.auth.base import Principal
from pyftps.auth.cache import CachingAuthenticator
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
