"""The blocking SyncClient against pyftps on its own loop thread; URL parsing (RFC 1738 §3.2; RFC 3986)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pyftps.client import FTPURL, PermanentError, SyncClient, parse_url
from pyftps.client.data import pasv_host
from pyftps.client.errors import (
    ConnectionClosed,
    FTPError,
    ProtocolViolation,
    TransientError,
    error_for_reply,
)
from pyftps.proto.replies import Reply
from tests.client.conftest import RunningServer


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_sync_client_mirrors_the_async_api(mode: str, pyftps_thread: RunningServer, tmp_path: Path) -> None:
    srv = pyftps_thread
    with SyncClient.connect(srv.host, srv.port(mode), **srv.login(mode)) as ftp:
        assert ftp.pwd() == "/"
        ftp.mkdir("d")
        assert ftp.upload(io.BytesIO(b"x" * 300_000), "d/f.bin") == 300_000
        progress: list[int] = []
        dest = tmp_path / "f.bin"
        assert ftp.download("d/f.bin", dest, progress=progress.append) == 300_000
        assert dest.read_bytes() == b"x" * 300_000 and progress[-1] == 300_000
        assert [e.name for e in ftp.list("d")] == ["f.bin"]
        assert ftp.stat("d/f.bin").size == 300_000
        chunks = ftp.open_read("d/f.bin")
        assert next(chunks)
        chunks.close()  # early close: ABOR, the session stays usable
        assert ftp.noop().code == 200
        with pytest.raises(PermanentError):
            ftp.delete("nope")
        ftp.reinitialize()
        assert ftp.client.session.logged_in
        ftp.delete("d/f.bin")
        ftp.rmdir("d")
    assert ftp.client.closed
    ftp.quit()  # idempotent


# --------------------------------------------------------------------- URLs


def test_url_schemes_and_default_ports() -> None:
    assert parse_url("ftps://example.com/").mode == "implicit"
    assert parse_url("ftps://example.com/").port == 990
    assert parse_url("ftpes://example.com").port == 21
    assert parse_url("FTPES://example.com:2121/x").port == 2121
    with pytest.raises(ValueError, match="clear"):
        parse_url("ftp://example.com/")
    plain = parse_url("ftp://example.com/", allow_plain=True)
    assert plain.mode == "plain" and plain.port == 21
    with pytest.raises(ValueError, match="scheme"):
        parse_url("sftp://example.com/")


def test_url_credentials_and_path_are_percent_decoded() -> None:
    url = parse_url("ftpes://al%40ice:p%3Aw%2Fd@[::1]:2121/dir%20one/f%C3%A9.txt;type=i")
    assert url == FTPURL("ftpes", "explicit", "::1", 2121, "al@ice", "p:w/d", "dir one/fé.txt")
    assert "p:w/d" not in repr(url)  # the password is kept out of logs
    assert url.login == ("al@ice", "p:w/d")
    assert parse_url("ftps://h//abs/path").path == "/abs/path"
    assert parse_url("ftps://h").path == ""
    assert parse_url("ftps://h/").login == ("anonymous", "anonymous@")  # RFC 1738 §3.2.1


@pytest.mark.parametrize("bad", ["ftps://", "ftps://h:99999/", "ftps://h/?q=1", "ftps://h/#frag"])
def test_url_errors(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_url(bad)


# --------------------------------------------------------------------- small pieces


@pytest.mark.parametrize(
    ("announced", "peer", "expected"),
    [
        ("10.0.0.5", "8.8.4.4", "8.8.4.4"),  # NAT: private address behind a public peer
        ("127.0.0.1", "8.8.4.4", "8.8.4.4"),
        ("0.0.0.0", "127.0.0.1", "127.0.0.1"),
        ("192.168.1.2", "192.168.1.9", "192.168.1.2"),  # both private: trust the reply
        ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
        ("1.1.1.1", "8.8.4.4", "1.1.1.1"),
        ("10.0.0.5", "::1", "::1"),  # a 227 cannot describe an IPv6 peer
    ],
)
def test_pasv_host(announced: str, peer: str, expected: str) -> None:
    assert pasv_host(announced, peer) == expected


def test_errors_by_first_digit_and_one_line_messages() -> None:
    transient = error_for_reply(Reply.of(450, "busy"))
    assert isinstance(transient, TransientError) and transient.code == 450
    permanent = error_for_reply(Reply.of(550, "first", " second", "End"))
    assert isinstance(permanent, PermanentError) and str(permanent) == "550 first second End"
    odd = error_for_reply(Reply.of(331, "need password"))
    assert isinstance(odd, ProtocolViolation) and odd.code == 331
    closed = ConnectionClosed(None, "gone\nreally")
    assert isinstance(closed, FTPError) and str(closed) == "gone really" and closed.code is None


def test_227_without_parentheses_and_229_replies() -> None:
    from pyftps.client.data import _epsv_port, _pasv_address

    assert _pasv_address(Reply.of(227, "Entering Passive Mode 10,0,0,1,4,1")) == ("10.0.0.1", 1025)
    assert _pasv_address(Reply.of(227, "=10,0,0,1,4,1")) == ("10.0.0.1", 1025)  # 1123 §4.1.2.6
    assert _epsv_port(Reply.of(229, "Entering Extended Passive Mode (|||6446|)")) == 6446
    assert _epsv_port(Reply.of(229, "ok (!!!6446!)")) == 6446  # any delimiter (2428 §3)
    with pytest.raises(ProtocolViolation):
        _pasv_address(Reply.of(227, "no numbers here"))


def test_active_listener_accepts_only_the_server_address() -> None:
    import asyncio
    import socket
    from types import SimpleNamespace

    from pyftps.client.data import _accept

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        stream = SimpleNamespace(peer=("127.0.0.1", 21))
        client = SimpleNamespace(_ctl=SimpleNamespace(stream=stream), timeout=2.0)
        intruder = socket.socket()
        intruder.bind(("127.0.0.2", 0))  # another host (RFC 2577 §4): must be dropped
        intruder.setblocking(False)
        await loop.sock_connect(intruder, ("127.0.0.1", port))
        server = socket.socket()
        server.setblocking(False)
        await loop.sock_connect(server, ("127.0.0.1", port))
        accepted = await _accept(client, listener)  # type: ignore[arg-type]
        assert accepted.peer == server.getsockname()
        assert await loop.sock_recv(intruder, 1) == b""  # closed by the client
        for sock in (accepted.sock, intruder, server, listener):
            sock.close()

    from tests.client.conftest import run

    run(scenario())
