"""The asyncio FTPS client: explicit (RFC 4217) and implicit (MS-FTPS §3.1) sessions, login, file
commands and transfers, driven by the sans-IO :class:`~pyftps.proto.client_session.ClientSession`
(RFC 959; RFC 2228 §3; RFC 2389; RFC 3659; RFC 7151 §3.2).

One command runs at a time on the control connection (a lock; streams hold it until closed). When
an error leaves a command without its reply, the session can no longer be trusted and the control
connection is dropped: later calls raise :class:`~pyftps.client.errors.ConnectionClosed`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from pyftps.client import data as _data
from pyftps.client.control import Control, reply_number, reply_path, reply_time
from pyftps.client.data import (
    Progress,
    ReadStream,
    WriteStream,
    copy_from_file,
    copy_to_file,
    open_local,
)
from pyftps.client.errors import (
    CertificateMismatch,
    CertificateRejected,
    ConnectionClosed,
    FTPError,
    FTPTimeout,
    PermanentError,
    ProtocolViolation,
    TLSFailure,
    UsageError,
    error_for_reply,
)
from pyftps.client.transport import Stream
from pyftps.proto.client_session import ClientSession, Mode, Security
from pyftps.proto.errors import RemoteProtocolError
from pyftps.proto.grammar import format_time_val
from pyftps.proto.listing import RemoteEntry, parse_list_line, parse_mlsx_line
from pyftps.proto.replies import Reply
from pyftps.tls.certs import certificate_fingerprint
from pyftps.tls.channel import TLSChannel
from pyftps.tls.contexts import TLSCertificateError, TLSConfigError, TLSError, client_context
from pyftps.tls.session_id import session_id

__all__ = ["Client", "Progress"]

log = logging.getLogger("pyftps.client")

ModeName = Literal["explicit", "implicit", "plain"]
Entries = list[RemoteEntry]  # aliases: Client.list shadows the builtin in the class body
Lines = list[str]
DEFAULT_PORTS = {Mode.EXPLICIT: 21, Mode.IMPLICIT: 990, Mode.PLAIN: 21}
_OWN_METHODS = frozenset({"AUTH", "CCC", "REIN", "QUIT", "ABOR"})  # quote() refuses these


@dataclass(frozen=True, slots=True)
class _Options:
    host: str
    port: int
    mode: Mode
    user: str
    password: str = field(repr=False)
    auth: str
    protect: bool
    passive: bool
    timeout: float
    server_hostname: str | None
    host_header: str | None
    fingerprint: str | None  # lower-case hex of the pinned leaf's SHA-256


def _pin(fingerprint: str | None) -> str | None:
    if fingerprint is None:
        return None
    digest = "".join(fingerprint.split()).replace(":", "").lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UsageError(None, "fingerprint must be a SHA-256 digest: 64 hex digits, colons optional")
    return digest


def _context(
    mode: Mode, cafile: str | os.PathLike[str] | None, insecure: bool, pin: str | None
) -> ssl.SSLContext | None:
    """TLS 1.2 minimum (RFC 8996); verification on unless ``insecure``; a pin alone needs no CA."""
    if mode is Mode.PLAIN:
        return None
    try:
        if pin is not None and cafile is None:
            return client_context(insecure=True)  # the pinned digest is the check (_handshake)
        return client_context(cafile=cafile, insecure=insecure)
    except TLSConfigError as error:
        raise UsageError(None, str(error)) from None


class Client:
    """An FTPS client session; create it with :meth:`connect`, end it with :meth:`quit` or ``async with``."""

    def __init__(self, control: Control, options: _Options, ctx: ssl.SSLContext | None) -> None:
        self._ctl = control
        self._session = control.session
        self._opts = options
        self._ssl_context = ctx
        self._control_cert: bytes | None = None
        self._saved_session: ssl.SSLSession | None = None  # control session kept across CCC
        # (channel, session id, session): reading TLSChannel.session copies the session and leaks the copy
        # before CPython 3.12.7 (gh-116810), once per data connection; the id is read without it.
        self._current_session: tuple[TLSChannel, bytes, ssl.SSLSession] | None = None
        self._epsv_ok: bool | None = None
        self._eprt_ok: bool | None = None
        self.data_session_reused: bool | None = None  # did the last data handshake resume (4217 §10.2)?
        self.greeting: Reply | None = None

    # ------------------------------------------------------------------ connecting

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int | None = None,
        *,
        mode: ModeName = "explicit",
        user: str,
        password: str,
        cafile: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        fingerprint: str | None = None,
        auth: Literal["TLS", "SSL"] = "TLS",
        protect: bool = True,
        passive: bool = True,
        timeout: float = 30.0,
        server_hostname: str | None = None,
        host_header: str | None = None,
    ) -> Client:
        """Connect, secure the control connection, log in and set the data protection level.

        ``mode``: ``explicit`` (AUTH TLS, port 21), ``implicit`` (TLS at once, port 990) or ``plain``
        (no TLS at all: only on explicit request). ``fingerprint`` pins the server certificate's
        SHA-256 (then no CA is needed). ``protect=False`` asks for clear data (PROT C, explicit only).
        """
        try:
            mode_value = Mode(mode)
        except ValueError:
            raise UsageError(None, f"mode must be explicit, implicit or plain, not {mode!r}") from None
        if auth.upper() not in ("TLS", "SSL"):
            raise UsageError(None, "auth must be TLS or SSL")
        if mode_value is Mode.IMPLICIT and not protect:
            raise UsageError(
                None, "implicit FTPS always protects data: the client never sends PROT (MS-FTPS §3.1.5.1)"
            )
        pin = _pin(fingerprint)
        options = _Options(
            host, port or DEFAULT_PORTS[mode_value], mode_value, user, password, auth.upper(), protect,
            passive, timeout, server_hostname, host_header, pin,
        )  # fmt: skip
        ctx = _context(mode_value, cafile, insecure, pin)
        try:
            control = await Stream.connect(host, options.port, timeout=timeout)
        except TimeoutError:
            raise FTPTimeout(None, f"connecting to {host} port {options.port} timed out") from None
        except OSError as error:
            raise ConnectionClosed(None, f"cannot connect to {host} port {options.port}: {error}") from None
        client = cls(Control(control, ClientSession(mode_value), timeout=timeout), options, ctx)
        try:
            if mode_value is Mode.IMPLICIT:
                await client._handshake()  # MS-FTPS §3.1.5.1: no plaintext greeting to wait for
            client.greeting = await client._ctl.read_greeting()
            await client._start_session()
        except BaseException:
            client._ctl.abort()
            raise
        return client

    async def _start_session(self) -> None:
        """HOST, AUTH, login, PBSZ/PROT: after connect and after REIN (7151 §3.2.2; 4217 §4, §9)."""
        mode, opts = self._opts.mode, self._opts
        if opts.host_header and mode is not Mode.IMPLICIT:
            await self._host()  # before AUTH on explicit, so the server can pick its certificate (7151 §4)
        if mode is Mode.EXPLICIT:
            reply = await self._ctl.command("AUTH", opts.auth)  # a 334 raises ProtocolViolation (4217 §4.2)
            if reply.code != 234:
                raise ProtocolViolation(
                    reply.code, f"AUTH {opts.auth} must be answered with 234: {reply.text}"
                )
            await self._handshake()
        if opts.host_header and mode is Mode.IMPLICIT:
            await self._host()  # only after the handshake; the server compares it with SNI (7151 §4)
        await self._login()
        if mode is Mode.EXPLICIT:
            # PBSZ 0 always precedes PROT (4217 §9), after AUTH SSL too (CONFORMANCE §7.2 PROJ).
            await self._ctl.command("PBSZ", "0")
            level = "P" if opts.protect else "C"
            reply = await self._ctl.command("PROT", level, expect=(2, 4, 5))
            if not reply.is_success:
                if opts.protect:
                    raise error_for_reply(reply, "the server refused PROT P")
                log.info("server refused PROT C (%s); transfers will switch to PROT P", reply.code)

    async def _host(self) -> None:
        assert self._opts.host_header is not None
        reply = await self._ctl.command("HOST", self._opts.host_header, expect=(2, 4, 5))
        if not reply.is_success and reply.code not in (500, 502):  # old servers do not know HOST
            raise error_for_reply(reply, "HOST was refused")

    async def _login(self) -> None:
        reply = await self._ctl.command("USER", self._opts.user, expect=(2, 3))
        if reply.code == 331:
            reply = await self._ctl.command("PASS", self._opts.password, expect=(2, 3))
        if not reply.is_success:
            raise PermanentError(
                reply.code, f"login needs an account (ACCT), which is not supported: {reply.text}"
            )

    async def _handshake(self) -> None:
        ctx = self._ssl_context
        if ctx is None:
            raise UsageError(None, "a plain session cannot start TLS")
        hostname = self._server_hostname
        try:
            tls = await self._ctl.stream.start_tls(ctx, hostname)
        except TLSCertificateError as error:
            raise CertificateRejected(None, str(error)) from None
        except TLSError as error:
            raise TLSFailure(None, str(error)) from None
        except TimeoutError:
            raise FTPTimeout(None, "TLS handshake on the control connection timed out") from None
        except OSError as error:
            raise ConnectionClosed(None, f"connection lost during the TLS handshake: {error}") from None
        cert = tls.peer_certificate_der
        pin = self._opts.fingerprint
        if pin is not None and (
            cert is None or certificate_fingerprint(cert).replace(":", "").lower() != pin
        ):
            # 4217 §10.3: completed but unacceptable → a protected QUIT, then close.
            with contextlib.suppress(OSError, TLSError, TimeoutError):
                await self._ctl.stream.send(b"QUIT\r\n")
            raise CertificateMismatch(
                None, "the server certificate does not match the pinned SHA-256 fingerprint"
            )
        self._control_cert = cert
        self._session.tls_established()

    @property
    def _server_hostname(self) -> str:
        """SNI and the name the certificate must match: the vhost name when one is given (7151 §4)."""
        return self._opts.server_hostname or self._opts.host_header or self._opts.host

    # ------------------------------------------------------------------ the control connection

    @property
    def timeout(self) -> float:
        return self._opts.timeout

    @property
    def passive(self) -> bool:
        return self._opts.passive

    @property
    def session(self) -> ClientSession:
        """The protocol state (read-only use: security, prot, login, features)."""
        return self._session

    @property
    def closed(self) -> bool:
        return self._ctl.closed

    def _tls_session(self) -> ssl.SSLSession | None:
        """What data connections resume: the control session (4217 §10.2), kept across CCC."""
        tls = self._ctl.stream.tls
        if tls is None:
            return self._saved_session
        current = session_id(tls.ssl_object)
        if current is None:
            return None
        known = self._current_session
        if known is None or known[0] is not tls or known[1] != current:
            session = tls.session  # a new channel or a new ticket (a new session id): read it
            if session is None:
                return None
            known = self._current_session = (tls, current, session)
        return known[2]

    # ------------------------------------------------------------------ simple commands

    async def features(self) -> dict[str, str]:
        """FEAT as ``{LABEL: parameters}`` (RFC 2389 §3.2), asked once per login."""
        async with self._ctl.exclusive():
            return dict(await self._features())

    async def _features(self) -> dict[str, str]:
        if self._session.features is None:
            reply = await self._ctl.command("FEAT", expect=(2, 4, 5))
            if not reply.is_success:
                self._session.features = {}
        return self._session.features or {}

    async def noop(self) -> Reply:
        async with self._ctl.exclusive():
            return await self._ctl.command("NOOP")

    async def quote(self, verb: str, arg: str | None = None) -> Reply:
        """Send a command the session allows and return its final reply, whatever its code.

        Commands that change the channel have their own methods (their replies need TLS work).
        """
        if verb.upper() in _OWN_METHODS:
            raise UsageError(None, f"use the client's own method for {verb.upper()}, not quote()")
        async with self._ctl.exclusive():
            return await self._ctl.command(verb, arg, expect=(1, 2, 3, 4, 5))

    async def pwd(self) -> str:
        async with self._ctl.exclusive():
            return reply_path(await self._ctl.command("PWD"))

    async def cwd(self, path: str) -> None:
        async with self._ctl.exclusive():
            await self._ctl.command("CWD", path)

    async def mkdir(self, path: str) -> str:
        """MKD; returns the server's name for the new directory (257), or ``path`` if it gave none."""
        async with self._ctl.exclusive():
            reply = await self._ctl.command("MKD", path)
            try:
                return reply_path(reply)
            except ProtocolViolation:
                return path

    async def rmdir(self, path: str) -> None:
        async with self._ctl.exclusive():
            await self._ctl.command("RMD", path)

    async def delete(self, path: str) -> None:
        async with self._ctl.exclusive():
            await self._ctl.command("DELE", path)

    async def rename(self, source: str, target: str) -> None:
        async with self._ctl.exclusive():
            await self._ctl.command("RNFR", source, expect=(3,))
            await self._ctl.command("RNTO", target)

    async def _type_image(self) -> None:
        if self._session.transfer_type != "I":
            await self._ctl.command("TYPE", "I")

    async def size(self, path: str) -> int:
        """SIZE in TYPE I: the exact octet count a download sends (RFC 3659 §4)."""
        async with self._ctl.exclusive():
            await self._type_image()
            return reply_number(await self._ctl.command("SIZE", path))

    async def mtime(self, path: str) -> float:
        """MDTM as POSIX time (RFC 3659 §3; UTC)."""
        async with self._ctl.exclusive():
            return reply_time(await self._ctl.command("MDTM", path))

    async def set_mtime(self, path: str, when: float | _dt.datetime) -> None:
        """MFMT (draft-somers-ftp-mfxx; CONFORMANCE §4.7): set the modification time."""
        stamp = when.timestamp() if isinstance(when, _dt.datetime) else float(when)
        async with self._ctl.exclusive():
            await self._ctl.command("MFMT", f"{format_time_val(stamp)} {path}")

    async def stat(self, path: str) -> RemoteEntry:
        """Facts about one name: MLST when FEAT lists it (RFC 3659 §7), else SIZE and MDTM."""
        async with self._ctl.exclusive():
            if "MLST" in await self._features():
                reply = await self._ctl.command("MLST", path)
                lines = [line for line in reply.lines[1:-1] if line.startswith(" ")]
                if not lines:
                    raise ProtocolViolation(reply.code, "MLST reply without a facts line")
                return self._entry(parse_mlsx_line, lines[0])
            await self._type_image()
            size = reply_number(await self._ctl.command("SIZE", path))
            mtime = reply_time(await self._ctl.command("MDTM", path))
            return RemoteEntry(name=path, is_dir=False, size=size, mtime=mtime, facts={})

    @staticmethod
    def _entry(parser: Callable[[str], RemoteEntry], line: str) -> RemoteEntry:
        try:
            return parser(line)
        except RemoteProtocolError as error:
            raise ProtocolViolation(None, f"malformed MLSx line: {error.text}") from None

    # ------------------------------------------------------------------ listings

    async def list(self, path: str = ".") -> Entries:
        """Directory entries: MLSD when FEAT has MLST (RFC 3659 §7), else LIST parsed best-effort."""
        arg = None if path in ("", ".") else path
        async with self._ctl.exclusive():
            if "MLST" in await self._features():
                lines = await self._listing("MLSD", arg)
                entries = [self._mlsd_entry(line) for line in lines]
                kinds = ("cdir", "pdir")
                return [e for e in entries if e is not None and e.facts.get("type", "").lower() not in kinds]
            now = time.time()
            parsed = [parse_list_line(line, now=now) for line in await self._listing("LIST", arg)]
            return [e for e in parsed if e is not None and e.name not in (".", "..")]

    @staticmethod
    def _mlsd_entry(line: str) -> RemoteEntry | None:
        try:
            return parse_mlsx_line(line)
        except RemoteProtocolError as error:
            log.warning("skipping a malformed MLSD line (%s): %r", error.text, line[:120])
            return None

    async def nlst(self, path: str = ".") -> Lines:
        """NLST: bare names usable as arguments (RFC 1123 §4.1.2.7)."""
        async with self._ctl.exclusive():
            return await self._listing("NLST", None if path in ("", ".") else path)

    async def _listing(self, verb: str, arg: str | None) -> Lines:
        conn = await _data.open_data(self, verb, arg)
        chunks = bytearray()
        try:
            while chunk := await conn.read():
                chunks += chunk
            await conn.finish(upload=False)
        except BaseException:
            await self._abandon(conn)
            raise
        text = chunks.decode("utf-8", "surrogateescape")  # names round-trip into later commands
        return [line.removesuffix("\r") for line in text.split("\n") if line.strip("\r")]

    async def _abandon(self, conn: _data.DataConnection) -> None:
        """After a failure mid-transfer: ABOR if the control connection is still in step, else drop it."""
        if conn.done or self._ctl.closed:
            return
        try:
            await conn.abort()
        except FTPError:
            self._ctl.abort()
        except BaseException:
            self._ctl.abort()
            raise

    # ------------------------------------------------------------------ transfers

    async def download(
        self,
        path: str,
        dest: str | os.PathLike[str] | BinaryIO,
        *,
        offset: int = 0,
        progress: Progress | None = None,
    ) -> int:
        """RETR into a file or path; ``offset`` resumes with REST (RFC 3659 §5). Returns the bytes received.

        A path is opened for writing at ``offset`` (truncated there); a file object is written at its
        current position. Raises TransferTruncated if the data ended without close_notify.
        """
        async with self._ctl.exclusive():
            await self._type_image()
            conn = await _data.open_data(self, "RETR", path, rest=offset)
            try:
                # Opened only now: a refused RETR must not create or truncate the local file.
                with open_local(dest, "write", offset) as sink:
                    return await copy_to_file(conn, sink, progress)
            except BaseException:
                await self._abandon(conn)
                raise

    async def upload(
        self,
        src: str | os.PathLike[str] | BinaryIO,
        path: str,
        *,
        append: bool = False,
        offset: int = 0,
        progress: Progress | None = None,
    ) -> int:
        """STOR (APPE with ``append``) from a file or path; ``offset`` resumes with REST (RFC 3659 §5.3).

        With ``offset`` the source is read from that position (a path is opened there, a file object
        is seeked) and the server writes from the same offset. Returns the bytes sent.
        """
        if append and offset:
            raise UsageError(None, "REST cannot be combined with APPE (RFC 3659 §5.3): use offset or append")
        with open_local(src, "read", offset) as source:
            async with self._ctl.exclusive():
                await self._type_image()
                conn = await _data.open_data(self, "APPE" if append else "STOR", path, rest=offset)
                try:
                    return await copy_from_file(conn, source, progress)
                except BaseException:
                    await self._abandon(conn)
                    raise

    def open_read(self, path: str, offset: int = 0) -> ReadStream:
        """Stream a download: ``async with client.open_read(p) as chunks: async for chunk in chunks``."""
        return ReadStream(self, path, offset)

    def open_write(self, path: str, *, append: bool = False) -> WriteStream:
        """Stream an upload: ``async with client.open_write(p) as w: await w.write(b"...")``."""
        return WriteStream(self, path, append)

    # ------------------------------------------------------------------ security and session control

    async def ccc(self) -> None:
        """CCC: after 200, close TLS both ways and go on in plaintext; data keep PROT P (RFC 4217 §5)."""
        async with self._ctl.exclusive():
            tls = self._ctl.stream.tls
            await self._ctl.command("CCC")
            if tls is not None:
                self._saved_session = tls.session  # data connections still resume it (4217 §5)
            await self._ctl.stop_tls()

    async def reinitialize(self) -> None:
        """REIN, then start again: implicit sessions run a new handshake on the same socket and read a
        new greeting (MS-FTPS §3.1.5.3); explicit ones AUTH again. Logs in again either way."""
        async with self._ctl.exclusive():
            await self._ctl.command("REIN")
            self._saved_session = None  # REIN clears the TLS session (RFC 4217 §13)
            if self._session.security.needs_close:
                await self._ctl.stop_tls()
            if self._session.security is Security.IMPLICIT_WAIT:
                await self._handshake()
                self.greeting = await self._ctl.read_greeting()
            await self._start_session()

    async def quit(self) -> None:
        """QUIT (221, possibly multi-line), close_notify under TLS, close. Safe to call twice."""
        if self._ctl.closed:
            return
        try:
            async with self._ctl.exclusive():
                with contextlib.suppress(FTPError):
                    await self._ctl.command("QUIT", expect=(2, 4, 5))
                await self._ctl.stream.aclose()
        finally:
            self._ctl.abort()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.quit()
        except FTPError:
            self._ctl.abort()

    def __repr__(self) -> str:
        opts = self._opts
        state = "closed" if self.closed else self._session.security.value
        return f"<Client {opts.mode.value} {opts.user}@{opts.host}:{opts.port} {state}>"
