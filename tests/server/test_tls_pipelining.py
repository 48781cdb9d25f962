"""TLS boundaries that share a TCP segment with other bytes.

A real client may put its ClientHello right behind ``AUTH TLS``, plaintext right behind its
close_notify (CCC), a new ClientHello right behind its close_notify (implicit REIN), or its first
command in the same flight as its Finished. The server must split the stream at the exact byte. A
``MemoryBIO`` client lets these tests put both parts into one ``sendall``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl

from tests.server.conftest import ServerHandle


class BioTLS:
    """A TLS client over a socket that we feed by hand, so that we decide what shares a write."""

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, initial: bytes = b"") -> None:
        self.sock = sock
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = context.wrap_bio(self.incoming, self.outgoing, server_hostname="127.0.0.1")
        self.incoming.write(initial)
        self.plain = b""

    def take_output(self) -> bytes:
        return self.outgoing.read()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        self.incoming.write(data)

    def start(self) -> bytes:
        """The first flight (ClientHello), not sent."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.do_handshake()
        return self.take_output()

    def finish_handshake(self, *, send_last_flight: bool = True) -> None:
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.take_output())
                self._fill()
        if send_last_flight:
            self.sock.sendall(self.take_output())

    def send(self, data: bytes) -> None:
        self.obj.write(data)
        self.sock.sendall(self.take_output())

    def read_line(self) -> bytes:
        while b"\n" not in self.plain:
            try:
                self.plain += self.obj.read(65536)
            except ssl.SSLWantReadError:
                self._fill()
        line, _, self.plain = self.plain.partition(b"\n")
        return line + b"\n"

    def close_notify(self) -> bytes:
        """Our close_notify, not sent."""
        with contextlib.suppress(ssl.SSLWantReadError):
            self.obj.unwrap()
        return self.take_output()

    def await_close_notify(self) -> bytes:
        """Read until the peer's close_notify; return the raw bytes that followed it."""
        while True:
            try:
                self.obj.unwrap()
                return self.incoming.read()
            except ssl.SSLWantReadError:
                self._fill()


def _read_plain_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        data = sock.recv(65536)
        assert data
        buffer += data
    end = buffer.index(b"\n") + 1
    line = bytes(buffer[:end])
    del buffer[:end]
    return line


def _login(tls: BioTLS) -> None:
    tls.send(b"USER alice\r\n")
    assert tls.read_line().startswith(b"331 ")
    tls.send(b"PASS secret\r\n")
    assert tls.read_line().startswith(b"230 ")


def test_client_hello_in_the_same_segment_as_auth_tls(ftp_server: ServerHandle) -> None:
    with socket.create_connection(ftp_server.explicit, timeout=10) as sock:
        buffer = bytearray()
        assert _read_plain_line(sock, buffer).startswith(b"220 ")
        tls = BioTLS(sock, ftp_server.client_context())
        sock.sendall(b"AUTH TLS\r\n" + tls.start())
        assert _read_plain_line(sock, buffer).startswith(b"234 ")
        tls.incoming.write(bytes(buffer))  # whatever followed the 234 is the server's TLS flight
        tls.finish_handshake()
        tls.send(b"NOOP\r\n")
        assert tls.read_line().startswith(b"200 ")


def test_first_command_in_the_same_flight_as_the_client_finished(ftp_server: ServerHandle) -> None:
    with socket.create_connection(ftp_server.implicit, timeout=10) as sock:
        tls = BioTLS(sock, ftp_server.client_context())
        sock.sendall(tls.start())
        tls.finish_handshake(send_last_flight=False)
        tls.obj.write(b"NOOP\r\n")
        sock.sendall(tls.take_output())  # Finished + the first command together
        assert tls.read_line().startswith(b"220 ")  # the greeting still comes first
        assert tls.read_line().startswith(b"200 ")


def test_plaintext_in_the_same_segment_as_our_close_notify_after_ccc(ftp_server: ServerHandle) -> None:
    with socket.create_connection(ftp_server.explicit, timeout=10) as sock:
        buffer = bytearray()
        assert _read_plain_line(sock, buffer).startswith(b"220 ")
        sock.sendall(b"AUTH TLS\r\n")
        assert _read_plain_line(sock, buffer).startswith(b"234 ")
        tls = BioTLS(sock, ftp_server.client_context())
        sock.sendall(tls.start())
        tls.finish_handshake()
        _login(tls)
        tls.send(b"CCC\r\n")
        assert tls.read_line().startswith(b"200 ")
        sock.sendall(tls.close_notify() + b"NOOP\r\nPWD\r\n")
        after = bytearray(tls.await_close_notify())
        assert _read_plain_line(sock, after).startswith(b"200 ")
        assert _read_plain_line(sock, after).startswith(b"257 ")


def test_new_client_hello_in_the_same_segment_as_our_close_notify_after_rein(
    ftp_server: ServerHandle,
) -> None:
    context = ftp_server.client_context()
    with socket.create_connection(ftp_server.implicit, timeout=10) as sock:
        old = BioTLS(sock, context)
        sock.sendall(old.start())
        old.finish_handshake()
        assert old.read_line().startswith(b"220 ")
        _login(old)
        old.send(b"REIN\r\n")
        assert old.read_line().startswith(b"220 ")
        new = BioTLS(sock, context)
        sock.sendall(old.close_notify() + new.start())  # close_notify + ClientHello together
        new.incoming.write(old.await_close_notify())  # bytes behind the server's close_notify
        new.finish_handshake()
        assert new.read_line().startswith(b"220 ")  # the new greeting
        new.send(b"PWD\r\n")
        assert new.read_line().startswith(b"530 ")
        _login(new)
        new.send(b"PWD\r\n")
        assert new.read_line().startswith(b"257 ")
