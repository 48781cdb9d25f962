"""What virtual hosts rely on in OpenSSL: switching ``SSLObject.context`` by SNI, and where tickets resume.

Measured facts (CPython 3.11, OpenSSL 3) that ``server.vhosts`` and ``server.control`` are built on:
the certificate follows the switched context, but session tickets are sealed with the keys of the
context the connection was *created* with, so a data connection resumes only when wrapped with that
context; and a ticket sealed by one host's own context does not resume on another's.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.certs import make_self_signed_cert

from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.static import StaticAuthenticator
from pyftps.server.vhosts import VirtualHost, VirtualHosts
from pyftps.tls.contexts import (
    ReuseVerdict,
    client_context,
    data_session_matches,
    requested_server_name,
    server_context,
    wrap_data_socket,
)

VERSIONS = pytest.mark.parametrize(
    "version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls12", "tls13"]
)


class Pair:
    """A default context switching to a.test's and b.test's contexts by SNI, and client contexts."""

    def __init__(self, tmp: Path) -> None:
        self.certs = {name: make_self_signed_cert(tmp / name, hostname=name) for name in ("a.test", "b.test")}
        default = make_self_signed_cert(tmp / "default", hostname="default.test")
        self.default = server_context(default.cert, default.key, num_tickets=1)
        self.hosts = {
            name: server_context(paths.cert, paths.key, num_tickets=1) for name, paths in self.certs.items()
        }
        nobody = StaticAuthenticator.from_plain({}, hasher=cheap_hasher())
        VirtualHosts(
            VirtualHost.confined([name], tmp, nobody, context) for name, context in self.hosts.items()
        ).attach(self.default)
        both = tmp / "both.pem"
        both.write_bytes(b"".join(paths.cert.read_bytes() for paths in self.certs.values()))
        self.client = client_context(cafile=both)


_OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _handshake(
    server: ssl.SSLContext,
    client: ssl.SSLContext,
    name: str,
    *,
    data: bool = False,
    session: ssl.SSLSession | None = None,
) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """Server and client ends after a handshake (control ends exchange a byte so tickets arrive)."""
    left, right = socket.socketpair()
    _OPEN.extend((left, right))
    result: dict[str, ssl.SSLSocket | BaseException] = {}

    def serve() -> None:
        try:
            end = (
                wrap_data_socket(server, left)
                if data
                else server.wrap_socket(left, server_side=True, do_handshake_on_connect=False)
            )
            end.do_handshake()
            if not data:
                end.sendall(b"!")
            result["server"] = end
        except BaseException as error:
            result["server"] = error

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        end = client.wrap_socket(right, server_hostname=name, session=session)
        if not data:
            assert end.recv(1) == b"!"
    finally:
        thread.join(10)
    _OPEN.append(end)
    served = result["server"]
    if isinstance(served, BaseException):
        raise served
    _OPEN.append(served)
    return served, end


def _common_name(end: ssl.SSLSocket) -> str:
    subject = end.getpeercert()["subject"]
    return str(next(value for rdn in subject for key, value in rdn if key == "commonName"))


@VERSIONS
def test_sni_switches_the_certificate_and_data_resumes_with_the_creating_context(
    tmp_path: Path, version: ssl.TLSVersion
) -> None:
    pair = Pair(tmp_path)
    pair.client.maximum_version = version
    control, client = _handshake(pair.default, pair.client, "b.test")
    assert _common_name(client) == "b.test"
    assert control.context is pair.hosts["b.test"]
    assert requested_server_name(control) == "b.test"  # the recorder still works
    resumed, _ = _handshake(pair.default, pair.client, "b.test", data=True, session=client.session)
    assert resumed.session_reused
    control_id = control.session.id if control.session is not None else None
    if version is ssl.TLSVersion.TLSv1_3:
        assert data_session_matches(control_id, resumed) is ReuseVerdict.SAME_SESSION
    refused, _ = _handshake(pair.hosts["b.test"], pair.client, "b.test", data=True, session=client.session)
    assert not refused.session_reused  # the switched-to context cannot open the creator's tickets


@VERSIONS
def test_a_hosts_own_context_does_not_resume_another_hosts_ticket(
    tmp_path: Path, version: ssl.TLSVersion
) -> None:
    pair = Pair(tmp_path)
    pair.client.maximum_version = version
    _, a_client = _handshake(pair.hosts["a.test"], pair.client, "a.test")
    same, _ = _handshake(pair.hosts["a.test"], pair.client, "a.test", data=True, session=a_client.session)
    assert same.session_reused
    other, _ = _handshake(pair.hosts["b.test"], pair.client, "b.test", data=True, session=a_client.session)
    assert not other.session_reused


def test_an_unknown_sni_name_keeps_the_default_certificate(tmp_path: Path) -> None:
    pair = Pair(tmp_path)
    insecure = client_context(insecure=True)
    control, _ = _handshake(pair.default, insecure, "c.test")
    assert control.context is pair.default
    assert requested_server_name(control) == "c.test"
