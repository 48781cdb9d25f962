"""IPv6 control and data connections (RFC 2428): EPSV and EPRT work, PASV cannot express the address."""

from __future__ import annotations

import os
import socket

import pytest

from tests.server.conftest import ServerHandle, StartServer


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _ipv6_loopback_works(), reason="::1 is not available")


@pytest.fixture
def server6(start_server: StartServer) -> ServerHandle:
    return start_server(host="::1", implicit_port=None)


def test_epsv_and_eprt_over_ipv6(server6: ServerHandle) -> None:
    assert server6.explicit[0] == "::1"
    client = server6.login()
    assert client.sock.getpeername()[0] == "::1"
    body = os.urandom(500_000)
    stored = client.stor("six.bin", body, mode="epsv")
    assert stored.data_tls and stored.session_reused
    assert client.retr("six.bin", mode="epsv") == body
    assert client.retr("six.bin", mode="eprt") == body
    assert (server6.root / "six.bin").read_bytes() == body
    assert client.nlst(mode="eprt") == ["six.bin"]


def test_pasv_and_ipv4_forms_are_refused_on_ipv6(server6: ServerHandle) -> None:
    client = server6.login()
    assert client.send("PASV").code == 502
    assert client.send("EPSV 1").code == 522
    assert client.send("EPSV 2").code == 229
    assert client.send("PORT 127,0,0,1,200,10").code == 504
    assert client.send("EPRT |1|127.0.0.1|51210|").code == 504
    assert client.send("EPRT |2|::1|80|").code == 504
    assert client.send("NOOP").code == 200
