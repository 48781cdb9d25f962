"""A small blocking FTP(S) client for tests that need full control of the wire.

Unlike ``ftplib`` it does nothing on its own: every command is sent as written, TLS is started and
stopped on the *same* TCP socket when asked (AUTH, implicit, CCC, REIN), data connections can be
opened with or without resuming the control session, and uploads can end with close_notify or with a
bare TCP close. Everything blocks with a timeout so that a misbehaving server fails the test instead of
hanging it.

    client = FtpRaw.connect("127.0.0.1", port, context=ctx)
    client.auth_tls()
    client.expect("PBSZ 0", 200)
    client.prot_p()
    client.login("alice", "secret")
    data = client.retr("file.bin", mode="epsv")
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT = 10.0
_REPLY_START = re.compile(rb"^(\d{3})([ -])")
_PASV_NUMBERS = re.compile(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")
_EPSV_PORT = re.compile(r"\((.)\1\1(\d+)\1\)")


class FtpRawError(AssertionError):
    """The server answered something the test did not expect (the reply is in the message)."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        """All lines joined with newlines, codes included."""
        return "\n".join(self.lines)

    @property
    def preliminary(self) -> bool:
        return 100 <= self.code < 200

    def __str__(self) -> str:
        return self.text


@dataclass
class DataPlan:
    """Where the next data connection comes from: a passive address, or our own listener (active)."""

    passive: tuple[str, int] | None = None
    listener: socket.socket | None = None

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None


@dataclass
class Transfer:
    """What happened on one transfer command."""

    first: Reply  # the 1xx reply, or the final reply when the command was refused up front
    final: Reply | None = None
    data: bytes = b""
    data_tls: bool = False
    session_reused: bool | None = None  # client view of the data handshake
    clean_close: bool | None = None  # download ended with close_notify (TLS) / FIN (plain)

    @property
    def codes(self) -> tuple[int, ...]:
        return (self.first.code,) if self.final is None else (self.first.code, self.final.code)


class FtpRaw:
    """One control connection. Create with :meth:`connect`; always :meth:`close` (or use ``with``)."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        context: ssl.SSLContext | None,
        server_hostname: str | None,
        timeout: float,
    ) -> None:
        self.sock: socket.socket = sock
        self.context = context
        self.server_hostname = server_hostname
        self.timeout = timeout
        self.protect = False  # the data protection the client believes in (PROT P / implicit / TLS-P)
        self.last_session: ssl.SSLSession | None = None  # control session kept across CCC
        self.greeting: Reply | None = None
        self._buffer = bytearray()

    # ------------------------------------------------------------------ connecting

    @classmethod
    def connect(
        cls,
        host: str,
        port: int,
        *,
        implicit: bool = False,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        greeting: bool = True,
    ) -> FtpRaw:
        """Open the TCP connection; read the greeting (implicit: after the TLS handshake) if asked."""
        sock = socket.create_connection((host, port), timeout=timeout)
        client = cls(sock, context=context, server_hostname=server_hostname or host, timeout=timeout)
        client.protect = implicit  # MS-FTPS: PROT P from the start
        try:
            if greeting:
                if implicit:
                    client.starttls()
                client.greeting = client.read_reply()
        except BaseException:
            client.close()
            raise
        return client

    @property
    def tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    @property
    def session(self) -> ssl.SSLSession | None:
        """The control connection's TLS session (after CCC: the one it had)."""
        if isinstance(self.sock, ssl.SSLSocket):
            return self.sock.session
        return self.last_session

    def starttls(self, *, session: ssl.SSLSession | None = None) -> None:
        """Run a TLS client handshake on the current TCP socket (after 234, or implicit)."""
        assert self.context is not None, "no client SSLContext given"
        assert not self.tls, "TLS is already active"
        assert not self._buffer, f"unread plaintext before the handshake: {bytes(self._buffer)!r}"
        self.sock = self.context.wrap_socket(
            self.sock,
            server_hostname=self.server_hostname,
            session=session,
            suppress_ragged_eofs=False,
        )

    def auth_tls(self, mechanism: str = "TLS") -> Reply:
        reply = self.expect(f"AUTH {mechanism}", 234)
        self.starttls()
        if mechanism.upper() == "TLS-P":
            self.protect = True
        return reply

    def unwrap(self, *, then_send: bytes = b"") -> None:
        """close_notify both ways on the control connection, then go on in plaintext on the same socket.

        ``then_send`` is written in plaintext right behind our close_notify, before the server's
        close_notify is awaited (a client may do that after CCC, CONFORMANCE §7 item 23).
        """
        tls_sock = self.sock
        assert isinstance(tls_sock, ssl.SSLSocket), "TLS is not active"
        assert not self._buffer, f"unread TLS plaintext before unwrap: {bytes(self._buffer)!r}"
        self.last_session = tls_sock.session
        finished = False
        if then_send:
            tls_sock.settimeout(0)
            try:
                tls_sock.unwrap()  # sends ours; finishes only if the server's is already here
                finished = True
            except ssl.SSLWantReadError:
                pass
            finally:
                tls_sock.settimeout(self.timeout)
            with socket.socket(fileno=os.dup(tls_sock.fileno())) as raw:
                raw.sendall(then_send)
        if not finished:
            tls_sock.unwrap()
        self.sock = socket.socket(tls_sock.family, tls_sock.type, tls_sock.proto, fileno=tls_sock.detach())
        self.sock.settimeout(self.timeout)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> FtpRaw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ control channel

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_line(self, line: str | bytes) -> None:
        raw = line.encode("utf-8") if isinstance(line, str) else line
        self.send_raw(raw + b"\r\n")

    def send(self, line: str | bytes) -> Reply:
        """Send one command and read its reply."""
        self.send_line(line)
        return self.read_reply()

    def expect(self, line: str | bytes, *codes: int) -> Reply:
        """Send one command; fail unless the reply code is one of ``codes``."""
        reply = self.send(line)
        if reply.code not in codes:
            raise FtpRawError(f"{line!r}: expected {codes}, got {reply}")
        return reply

    def read_reply(self) -> Reply:
        """One reply, multi-line ones included (RFC 959 §4.2)."""
        first = self._read_line()
        match = _REPLY_START.match(first)
        if match is None:
            raise FtpRawError(f"not an FTP reply line: {first!r}")
        code = match.group(1)
        lines = [first]
        if match.group(2) == b"-":
            while True:
                line = self._read_line()
                lines.append(line)
                if line.startswith(code + b" "):
                    break
        return Reply(int(code), [line.decode("utf-8", "replace") for line in lines])

    def _read_line(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line.rstrip(b"\r\n")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unfinished line {bytes(self._buffer)!r}")
            self._buffer += chunk

    def expect_silence(self, seconds: float) -> None:
        """Assert that nothing arrives for ``seconds`` (e.g. no greeting before the ClientHello)."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return
        finally:
            self.sock.settimeout(self.timeout)
        raise FtpRawError(f"expected silence, received {data!r}")

    def wait_closed(self, *, allow_data: bool = False) -> str:
        """Read until the server closes; return ``close_notify``, ``eof`` (bare FIN) or ``reset``.

        Bytes received meanwhile fail the test unless ``allow_data`` (e.g. a TLS alert).
        """
        if self._buffer and not allow_data:
            raise FtpRawError(f"expected the connection to close, had unread {bytes(self._buffer)!r}")
        self._buffer.clear()
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise
            except ssl.SSLEOFError:
                return "eof"
            except (ssl.SSLError, ConnectionError):
                return "reset"
            if not data:
                return "close_notify" if self.tls else "eof"
            if not allow_data:
                raise FtpRawError(f"expected the connection to close, received {data!r}")

    # ------------------------------------------------------------------ login and protection

    def login(self, user: str = "alice", password: str = "secret") -> Reply:
        self.expect(f"USER {user}", 331)
        return self.expect(f"PASS {password}", 230)

    def prot_p(self) -> None:
        self.expect("PBSZ 0", 200)
        self.expect("PROT P", 200)
        self.protect = True

    # ------------------------------------------------------------------ data connection setup

    def pasv(self) -> DataPlan:
        reply = self.expect("PASV", 227)
        match = _PASV_NUMBERS.search(reply.lines[0])
        assert match is not None, reply
        n = [int(x) for x in match.groups()]
        return DataPlan(passive=(".".join(map(str, n[:4])), n[4] * 256 + n[5]))

    def epsv(self) -> DataPlan:
        reply = self.expect("EPSV", 229)
        match = _EPSV_PORT.search(reply.lines[0])
        assert match is not None, reply
        host = self.sock.getpeername()[0]
        return DataPlan(passive=(host, int(match.group(2))))

    def _listener(self) -> socket.socket:
        local = self.sock.getsockname()[0]
        family = socket.AF_INET6 if ":" in local else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.bind((local, 0))
        listener.listen(1)
        listener.settimeout(self.timeout)
        return listener

    def port(self) -> DataPlan:
        listener = self._listener()
        host, number = listener.getsockname()[:2]
        h = host.replace(".", ",")
        try:
            self.expect(f"PORT {h},{number >> 8},{number & 0xFF}", 200)
        except BaseException:
            listener.close()
            raise
        return DataPlan(listener=listener)

    def eprt(self) -> DataPlan:
        listener = self._listener()
        host, number = listener.getsockname()[:2]
        af = 2 if ":" in host else 1
        try:
            self.expect(f"EPRT |{af}|{host}|{number}|", 200)
        except BaseException:
            listener.close()
            raise
        return DataPlan(listener=listener)

    def plan(self, mode: str) -> DataPlan:
        return {"pasv": self.pasv, "epsv": self.epsv, "port": self.port, "eprt": self.eprt}[mode]()

    def open_tcp(self, plan: DataPlan, *, source_address: tuple[str, int] | None = None) -> socket.socket:
        """The TCP part of the data connection: connect (passive) or accept (active)."""
        if plan.passive is not None:
            return socket.create_connection(plan.passive, timeout=self.timeout, source_address=source_address)
        assert plan.listener is not None
        conn, _ = plan.listener.accept()
        conn.settimeout(self.timeout)
        plan.close()
        return conn

    def secure_data(self, sock: socket.socket, *, session_reuse: bool = True) -> ssl.SSLSocket:
        """TLS client on the data socket (RFC 4217 §7), offering the control session unless told not to."""
        assert self.context is not None
        conn = self.context.wrap_socket(
            sock,
            server_hostname=self.server_hostname,
            session=self.session if session_reuse else None,
            suppress_ragged_eofs=False,
        )
        conn.settimeout(self.timeout)
        return conn

    def data_connect(
        self,
        plan: DataPlan,
        protect: bool | None = None,
        *,
        session_reuse: bool = True,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        sock = self.open_tcp(plan, source_address=source_address)
        if protect if protect is not None else self.protect:
            try:
                return self.secure_data(sock, session_reuse=session_reuse)
            except BaseException:
                sock.close()
                raise
        return sock

    # ------------------------------------------------------------------ transfers

    def transfer(
        self,
        command: str | bytes,
        *,
        mode: str = "epsv",
        upload: bytes | None = None,
        protect: bool | None = None,
        session_reuse: bool = True,
        end: str = "close_notify",
    ) -> Transfer:
        """Run one data command from PASV/EPSV/PORT/EPRT to the final reply; nothing is asserted.

        ``end`` says how an upload ends: ``close_notify`` (orderly TLS close) or ``tcp_close`` (bare
        TCP close without close_notify, i.e. a truncated upload).
        """
        protect = self.protect if protect is None else protect
        plan = self.plan(mode)
        sock: socket.socket | None = None
        try:
            if plan.passive is not None:
                sock = self.open_tcp(plan)  # like curl: connect before the transfer command
            first = self.send(command)
            if not first.preliminary:
                return Transfer(first)
            if sock is None:
                sock = self.open_tcp(plan)
            result = Transfer(first)
            if protect:
                tls_sock = self.secure_data(sock, session_reuse=session_reuse)
                sock = tls_sock
                result.data_tls = True
                result.session_reused = tls_sock.session_reused
            if upload is None:
                result.data, result.clean_close = _read_all(sock)
                _finish(sock, result.clean_close)
            else:
                sock.sendall(upload)
                if end == "close_notify":
                    _finish(sock, True)
                elif end != "tcp_close":
                    raise ValueError(f"unknown end {end!r}")
            sock.close()
            sock = None
            result.final = self.read_reply()
            return result
        finally:
            plan.close()
            if sock is not None:
                sock.close()

    def transfer_ok(self, command: str, **kwargs: Any) -> Transfer:
        """:meth:`transfer`, failing unless the replies are 150 then 226."""
        result = self.transfer(command, **kwargs)
        if result.codes[0] != 150 or result.final is None or result.final.code != 226:
            raise FtpRawError(f"{command!r}: expected 150/226, got {result.first} / {result.final}")
        return result

    def retr(self, path: str, **kwargs: Any) -> bytes:
        result = self.transfer_ok(f"RETR {path}", **kwargs)
        assert result.clean_close, "download ended without close_notify"
        return result.data

    def stor(self, path: str, data: bytes, **kwargs: Any) -> Transfer:
        return self.transfer_ok(f"STOR {path}", upload=data, **kwargs)

    def list(self, path: str = "", **kwargs: Any) -> str:
        return self.transfer_ok(f"LIST {path}".rstrip(), **kwargs).data.decode("utf-8")

    def nlst(self, path: str = "", **kwargs: Any) -> list[str]:
        text = self.transfer_ok(f"NLST {path}".rstrip(), **kwargs).data.decode("utf-8")
        return [line for line in text.split("\r\n") if line]

    def mlsd(self, path: str = "", **kwargs: Any) -> list[str]:
        text = self.transfer_ok(f"MLSD {path}".rstrip(), **kwargs).data.decode("utf-8")
        return [line for line in text.split("\r\n") if line]


def _read_all(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything until the end; True if it ended cleanly (close_notify under TLS, FIN otherwise)."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(256 * 1024)
        except ssl.SSLEOFError:
            return b"".join(chunks), False
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


def _finish(sock: socket.socket, clean: bool | None) -> None:
    """Answer or send close_notify on a TLS data socket (best effort: the peer may be gone)."""
    if isinstance(sock, ssl.SSLSocket) and clean:
        with contextlib.suppress(OSError, ValueError):
            sock.unwrap()
