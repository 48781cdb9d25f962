"""PROXY protocol behind a trusted load balancer: real client addresses for bans, limits and data checks."""

from __future__ import annotations

import socket
import ssl

from pyftps.proto.proxy import build_v1, build_v2
from pyftps.server.control import ControlConnection
from pyftps.server.guard import BanPolicy
from tests.server.conftest import PASSWORD, ServerHandle, StartServer

CLIENT = ("192.0.2.7", 40000)


def _read_reply(sock: socket.socket | ssl.SSLSocket) -> str:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def _peers(handle: ServerHandle) -> list[str]:
    async def collect() -> list[str]:
        return [
            str(c.peer[0])
            for c in handle.server.context.connections
            if isinstance(c, ControlConnection) and c.session is not None
        ]

    return handle.call(collect())


def _proxied(handle: ServerHandle, source: tuple[str, int], *, implicit: bool = False) -> socket.socket:
    host, port = handle.implicit if implicit else handle.explicit
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(build_v2(source, (host, port)) if implicit else build_v1(source, (host, port)))
    return sock


def test_the_session_sees_the_client_address_from_the_header(start_server: StartServer) -> None:
    handle = start_server(proxy_trusted=("127.0.0.1",))
    with _proxied(handle, CLIENT) as sock:
        assert _read_reply(sock).startswith("220 ")
        assert _peers(handle) == ["192.0.2.7"]


def test_a_trusted_peer_without_a_header_is_dropped_without_a_greeting(start_server: StartServer) -> None:
    handle = start_server(proxy_trusted=("127.0.0.1",))
    with socket.create_connection(handle.explicit, timeout=10) as sock:
        sock.sendall(b"USER alice\r\n")
        assert sock.recv(100) == b""  # no 220 was ever sent: the header must come first


def test_untrusted_peers_are_served_directly(start_server: StartServer) -> None:
    handle = start_server(proxy_trusted=("192.0.2.0/24",))
    client = handle.connect()
    client.expect("NOOP", 200)


def test_bans_apply_to_the_real_client_not_to_the_load_balancer(start_server: StartServer) -> None:
    handle = start_server(proxy_trusted=("127.0.0.1",), bans=BanPolicy(max_failures=2))
    context = handle.client_context()
    for _ in range(2):
        with _proxied(handle, CLIENT) as raw:
            _read_reply(raw)
            raw.sendall(b"AUTH TLS\r\n")
            assert _read_reply(raw).startswith("234")
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"USER alice\r\n")
                _read_reply(tls)
                tls.sendall(b"PASS wrong\r\n")
                _read_reply(tls)
    with _proxied(handle, CLIENT) as banned:
        assert _read_reply(banned).startswith("421 ")
    with _proxied(handle, ("192.0.2.8", 40001)) as other:
        assert _read_reply(other).startswith("220 ")


def test_implicit_session_and_a_proxied_passive_data_connection(start_server: StartServer) -> None:
    handle = start_server(proxy_trusted=("127.0.0.1",))
    (handle.root / "hello.txt").write_bytes(b"hello through the balancer\n")
    context = handle.client_context()
    raw = _proxied(handle, CLIENT, implicit=True)
    with context.wrap_socket(raw, server_hostname="localhost") as control:
        assert _read_reply(control).startswith("220 ")
        for command, code in (("USER alice", "331"), (f"PASS {PASSWORD}", "230"), ("TYPE I", "200")):
            control.sendall(command.encode() + b"\r\n")
            assert _read_reply(control).startswith(code)
        control.sendall(b"EPSV\r\n")
        reply = _read_reply(control)
        port = int(reply.split("|||")[1].split("|")[0])
        data_raw = socket.create_connection((handle.implicit[0], port), timeout=10)
        # HAProxy (send-proxy-v2 on the passive range) tells the real client here too.
        data_raw.sendall(build_v2(CLIENT, (handle.implicit[0], port)))
        control.sendall(b"RETR hello.txt\r\n")
        with context.wrap_socket(data_raw, server_hostname="localhost", session=control.session) as data:
            assert _read_reply(control).startswith("150")
            received = b""
            while chunk := data.recv(65536):
                received += chunk
        assert received == b"hello through the balancer\n"
        assert _read_reply(control).startswith("226")


def test_a_data_connection_claiming_another_client_is_refused(start_server: StartServer) -> None:
    handle = start_server(proxy_trusted=("127.0.0.1",), data_connect_timeout=1.0)
    context = handle.client_context()
    raw = _proxied(handle, CLIENT, implicit=True)
    with context.wrap_socket(raw, server_hostname="localhost") as control:
        _read_reply(control)
        for command in ("USER alice", f"PASS {PASSWORD}"):
            control.sendall(command.encode() + b"\r\n")
            _read_reply(control)
        control.sendall(b"EPSV\r\n")
        port = int(_read_reply(control).split("|||")[1].split("|")[0])
        with socket.create_connection((handle.implicit[0], port), timeout=10) as thief:
            thief.sendall(build_v2(("198.51.100.9", 5555), (handle.implicit[0], port)))
            control.sendall(b"LIST\r\n")
            assert _read_reply(control).startswith("425")
