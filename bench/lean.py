"""A minimal FTPS control-connection client for the session scenarios.

ftplib costs its process about 2.6 ms of CPU per session (AUTH TLS, login, PWD, QUIT) on this machine,
more than most servers spend, and the bench clients share the servers' two cores: with ftplib clients the
`sessions` and `idle_memory` figures mostly measure the clients. This client does the same exchange with a
socket, one buffer and no per-line machinery, so the server's cost dominates. It speaks plain RFC 959 /
RFC 4217 (one command, then its complete reply), so every peer sees ordinary traffic.
"""

from __future__ import annotations

import socket
import ssl

HOST = "127.0.0.1"


class ReplyError(Exception):
    """The server answered with a code the exchange did not expect."""


class LeanControl:
    """One control connection: explicit AUTH TLS, then commands answered one at a time."""

    def __init__(self, port: int, context: ssl.SSLContext, timeout: float) -> None:
        self._context = context
        self.sock: socket.socket = socket.create_connection((HOST, port), timeout=timeout)
        self._buffer = b""
        try:
            self._expect(b"22")  # 220 greeting
            self.command(b"AUTH TLS", b"23")  # 234
            self.sock = context.wrap_socket(self.sock, server_hostname=HOST)
        except BaseException:
            self.sock.close()
            raise

    def _reply(self) -> bytes:
        """The last line of the next complete reply (multi-line replies end with 'ddd ')."""
        while True:
            start = 0
            while (end := self._buffer.find(b"\r\n", start)) >= 0:
                line = self._buffer[start:end]
                start = end + 2
                if len(line) >= 4 and line[3:4] == b" " and line[:3].isdigit():
                    self._buffer = self._buffer[start:]
                    return line
            chunk = self.sock.recv(4096)
            if not chunk:
                raise EOFError("server closed the control connection")
            self._buffer += chunk

    def _expect(self, prefix: bytes) -> bytes:
        line = self._reply()
        if not line.startswith(prefix):
            raise ReplyError(line.decode("utf-8", "replace"))
        return line

    def command(self, line: bytes, prefix: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self._expect(prefix)

    def login(self, user: str, password: str) -> None:
        reply = self.command(b"USER " + user.encode(), b"")
        if reply.startswith(b"331"):
            self.command(b"PASS " + password.encode(), b"230")
        elif not reply.startswith(b"230"):  # 230: no password needed
            raise ReplyError(reply.decode("utf-8", "replace"))

    def quit(self) -> None:
        try:
            self.command(b"QUIT", b"221")
        finally:
            self.close()

    def close(self) -> None:
        self.sock.close()


def session(port: int, context: ssl.SSLContext, user: str, password: str, timeout: float = 10.0) -> None:
    """What the `sessions` scenario repeats: AUTH TLS (full handshake), USER/PASS, PWD, QUIT."""
    control = LeanControl(port, context, timeout)
    try:
        control.login(user, password)
        control.command(b"PWD", b"257")
        control.quit()
    finally:
        control.close()
