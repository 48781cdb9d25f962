"""One control connection on asyncio: bytes ↔ TLS ↔ :class:`~pyftps.proto.session.ServerSession` ↔ actions.

TLS runs over ``SSLObject`` + ``MemoryBIO`` (:class:`~pyftps.tls.channel.TLSChannel`) on the raw
TCP transport, so one socket can be wrapped (AUTH, implicit accept) and unwrapped (CCC, REIN) as
RFC 4217 §5/§13 and MS-FTPS §3.2.5.3 require; asyncio's own TLS cannot unwrap.

Actions run strictly in order from one queue. ``Sleep`` and ``StopTLS`` pause the queue until their
time passes or the peer's close_notify arrives; operations run in worker threads and their results
re-enter through the session, so replies always leave in the order the session decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pyftps.auth.base import Principal
from pyftps.proto import actions as a
from pyftps.proto.codes import ReplyCode
from pyftps.proto.policy import SessionPolicy
from pyftps.proto.proxy import ProxyHeaderParser, ProxyProtocolError, is_trusted
from pyftps.proto.replies import Reply
from pyftps.proto.security import TLSState
from pyftps.proto.session import ServerSession
from pyftps.server.accept import release_transport
from pyftps.server.context import ServerContext
from pyftps.server.data import DataChannel, PendingData
from pyftps.server.guard import BANNED
from pyftps.server.login import Identity
from pyftps.server.logs import CommandTracker, command_log, xfer_entry
from pyftps.server.ops import run_storage_op
from pyftps.server.timers import timer_queue
from pyftps.server.transfers import TransferRunner
from pyftps.storage.base import Storage
from pyftps.tls.certs import certificate_fingerprint
from pyftps.tls.channel import TLSChannel
from pyftps.tls.contexts import TLSError, wrap_data_socket
from pyftps.tls.session_id import session_id

log = logging.getLogger("pyftps.session")
command_logger = logging.getLogger("pyftps.command")
_READ_SIZE = 32 * 1024  # bytes per recv on a control connection


class ControlConnection(asyncio.Protocol):
    def __init__(self, server: ServerContext, *, implicit: bool) -> None:
        self.server = server
        # Captured once: a reload (SIGHUP) applies to new sessions; data connections must use the
        # SSLContext of their control connection or TLS session resumption fails.
        self.config = server.config
        self.ssl_context = server.ssl_context
        self._server_context = server.ssl_context  # for a handshake when no virtual host has its own
        self._host_from_sni = False  # the virtual host was chosen by SNI, not HOST
        self.implicit = implicit
        self._mode = "implicit" if implicit else "explicit"  # for metrics and logs
        self.id = server.next_session_id()
        self.loop = asyncio.get_running_loop()
        self._time = _clock(self.loop)  # loop.time(), without its Python frame (~35 calls a session)
        self.transport: asyncio.Transport | None = None
        self.session: ServerSession | None = None
        self.identity = Identity(server, self.id)
        self._data: DataChannel | None = None  # see the data property
        self._data_host: str | None = None  # where passive listeners bind; set once the peer is known
        self.tls: TLSChannel | None = None
        self._control_id: bytes | None = None  # see tls_control_session_id
        self._control_id_from: TLSChannel | None = None  # the channel whose id is still to be read
        self._actions: deque[a.Action] = deque()
        self._paused = False  # a Sleep or a TLS close is in progress
        self._running = False
        self._carry = b""  # bytes that followed the peer's close_notify
        # Output of one data_received leaves in one transport.write: each send on loopback wakes the
        # peer, so replies, TLS records and close_notify of one batch share a system call.
        self._batch: list[bytes] | None = None
        # One loop timer serves every connection's deadlines (server/timers.py): cheap to move.
        timers = timer_queue(self.loop)
        self._guard = timers.timer(self._guard_expired)  # handshake / TLS close / PROXY deadline
        self._guard_reason = ""
        self._idle = timers.timer(self._idle_tick)
        self._sleep: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._transfer: TransferRunner | None = None
        self._counted_ip: str | None = None  # holds a slot in the per-IP connection count
        self._commands = CommandTracker()  # pairs commands with final replies (logs, latency)
        self._tls_started = 0.0
        self._proxy: ProxyHeaderParser | None = None  # set while a trusted proxy's header is awaited
        self.via: str | None = None  # the load balancer the client came through, if any
        self.closed = False

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if hasattr(transport, "max_size"):
            # The selector transport reads into a fresh 256 KiB bytes object per recv: above the
            # pinned mmap threshold (server.memory) that is mmap + mremap + munmap for a 12-byte
            # command. Control input is commands and TLS records; two records per read is plenty.
            transport.max_size = _READ_SIZE
        peer = transport.get_extra_info("peername") or ("?", 0)
        local = transport.get_extra_info("sockname") or ("0.0.0.0", 0)
        self.peer, self.local = peer, local
        if self.config.proxy_trusted and is_trusted(str(peer[0]), self.config.proxy_trusted):
            # A trusted load balancer speaks first (PROXY protocol); nothing is sent before it did.
            self._proxy = ProxyHeaderParser()
            self.server.connections.add(self)
            self._arm_guard(self.config.proxy_header_timeout, "PROXY header timeout")
            return
        self._accept_peer(peer, local)

    def _proxy_received(self, data: bytes) -> None:
        assert self._proxy is not None
        proxy_ip = str(self.peer[0])
        try:
            result = self._proxy.feed(data)
        except ProxyProtocolError as error:
            self._abort_connection(f"bad PROXY header from {proxy_ip}: {error}")
            return
        if result is None:
            return
        self._disarm_guard()
        self._proxy = None
        self.via = proxy_ip
        peer = result.source or self.peer
        local = result.destination or self.local
        self._accept_peer(peer, local, bind_host=str(self.local[0]))
        if result.rest and not self.closed:
            self._receive(result.rest)

    def _accept_peer(
        self, peer: tuple[Any, ...], local: tuple[Any, ...], *, bind_host: str | None = None
    ) -> None:
        """The client is known (directly or through PROXY): apply bans and limits, then greet."""
        assert self.transport is not None
        self.peer = peer
        config = self.config
        ip = str(peer[0])
        refusal = (
            BANNED if self.server.guard.is_banned(ip, self._time()) else self.server.counter.try_open(ip)
        )
        if refusal is not None:
            if not self.implicit:  # an implicit client expects TLS first: it just sees the close
                self.transport.write(refusal.line())
            self.transport.close()
            self.server.metrics.connection_refused("banned" if refusal is BANNED else "limit")
            log.info("session %s: refused %s: %s", self.id, ip, refusal.text)
            self._shutdown("refused")
            return
        self._counted_ip = ip
        self.server.connections.add(self)
        self.server.metrics.session_opened(self._mode)
        policy = _traced_policy(config.session)
        self.session = ServerSession(
            policy,
            implicit=self.implicit,
            peer_host=ip,
            local_host=str(local[0]),
            ipv6=":" in str(local[0]) and not str(local[0]).startswith("::ffff:"),
            now=self._time(),
        )
        self._data_host = bind_host or str(local[0])  # passive listeners: never on the proxy's address
        via = f" via {self.via}" if self.via else ""
        log.info("session %s: connected from %s port %s%s (%s)", self.id, ip, peer[1], via, self._mode)
        self._call(self.session.start)

    @property
    def data(self) -> DataChannel | None:
        """The session's data endpoint, made at its first use (most sessions never open one)."""
        if self._data is None and self._data_host is not None and not self.closed:
            assert self.session is not None
            self._data = DataChannel(
                self.server.passive_ports,
                local_host=self._data_host,
                peer_host=self.session.peer_host,
                # The listener's setting, as the session started: a login's TLS overrides leave it.
                allow_foreign=self.session.policy.allow_foreign_data_address,
                timeout=self.config.data_connect_timeout,
                on_accepted=self._data_accepted,
                trusted_proxies=self.config.proxy_trusted,
            )
        return self._data

    def data_received(self, data: bytes) -> None:
        if self._batch is not None:  # nested (PROXY header followed by data)
            self._receive(data)
            return
        self._batch = []
        try:
            self._receive(data)
        finally:
            # _write_batch(), inlined: once per read, the most frequent call of a session.
            batch, self._batch = self._batch, None
            transport = self.transport
            if batch and transport is not None and not transport.is_closing():
                transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def _receive(self, data: bytes) -> None:
        if self._proxy is not None:
            self._proxy_received(data)
            return
        if self.closed or self.session is None:
            return
        if self.tls is not None:
            try:
                self.tls.feed(data)
            except TLSError:
                self._abort_connection("TLS input after close")
                return
            self._drive_tls()
        elif not self._paused:
            self._call(self.session.receive_data, data)
        else:
            self._carry += data  # arrives while a Sleep holds the queue; parsed when it ends

    def eof_received(self) -> bool | None:
        if self.tls is not None and not self.closed:
            self.tls.feed_eof()
            self._drive_tls()
        self._shutdown("client closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._shutdown("connection lost" if exc else "closed")
        if self.transport is not None:
            release_transport(self.transport)

    # ------------------------------------------------------------------ TLS

    def _start_tls(self, initial: bytes) -> None:
        # HOST before AUTH: the host's certificate (RFC 7151 §4); its tickets are then sealed with
        # the host's keys. Data connections are wrapped with this creating context: OpenSSL accepts
        # tickets only there, even after SNI switched the certificate (see server.vhosts).
        vhost = self.identity.vhost
        context = vhost.ssl_context if vhost is not None and vhost.ssl_context else self._server_context
        self.ssl_context = context
        if context is None:
            self._abort_connection("no TLS context")
            return
        self.tls = TLSChannel.server(context)
        self._tls_started = self._time()
        self._arm_guard(self.config.handshake_timeout, "TLS handshake timeout")
        if initial:  # else nothing to do before the ClientHello arrives
            self.tls.feed(initial)
            self._drive_tls()

    def _drive_tls(self) -> None:
        tls = self.tls
        if tls is None or self.closed:
            return
        try:
            if not tls.handshake_complete:
                done = tls.handshake()
                # TLS 1.3 tickets leave now, not with the next reply: the send also carries the ACK
                # of the client's Finished, without which a Nagle client (ftplib) holds its next
                # command for the delayed ACK (measured: 5x fewer sessions per second).
                self._flush_tls()
                if not done:
                    return
                self._tls_established(tls)
                if self.tls is not tls:
                    return
            if tls.closing:
                if tls.try_finish_close():
                    self._flush_tls()
                    self._tls_closed(tls)
                return
            plaintext = tls.read()
            if out := tls.pending_output():  # _flush_tls(), inlined: once per record received
                self._write(out)
        except TLSError as error:
            self._flush_tls()
            self._abort_connection(str(error))
            return
        if plaintext and self.session is not None:
            self._call(self.session.receive_data, plaintext)
        if tls.peer_closed or tls.truncated:
            self._shutdown("client ended TLS on the control connection")

    @property
    def tls_control_session_id(self) -> bytes | None:
        """The control TLS session's id, for the data connections' reuse check (RFC 4217 §10.2).

        Read at the first data connection, not at each handshake: most sessions never open one,
        and the read goes through OpenSSL's getters (not ``.session``, which leaks on 3.11). The
        id cannot change in between: the control connection issues its tickets in the handshake.
        """
        channel = self._control_id_from
        if channel is not None:
            self._control_id_from = None
            self._control_id = session_id(channel.ssl_object)
        return self._control_id

    def _tls_established(self, tls: TLSChannel) -> None:
        self._control_id, self._control_id_from = None, tls
        fingerprint, subject = _client_certificate(tls)
        info = a.TLSInfo(
            version=tls.version or "",
            cipher=(tls.cipher or ("", "", 0))[0],
            sni=tls.sni,
            client_fingerprint=fingerprint,
            client_subject=subject,
        )
        log.info("session %s: TLS established (%s, %s)", self.id, info.version, info.cipher)
        seconds = self._time() - self._tls_started
        self.server.metrics.tls_handshake("control", info.version, info.cipher, seconds)
        self._disarm_guard()
        assert self.session is not None
        if info.sni and self.identity.vhost is None and self.session.state.host is None:
            self._select_host(info.sni, by_sni=True)  # implicit FTPS has only SNI (RFC 7151 §4)
        self._call(self.session.tls_established, info)

    def _tls_closed(self, tls: TLSChannel) -> None:
        self._carry += tls.leftover()
        self.tls = None
        if self.session is None or self.session.state.tls is not TLSState.CLEARED:
            # REIN clears the TLS session (RFC 4217 §13); after CCC, PROT P data still resumes it.
            self._control_id, self._control_id_from = None, None
            if self._host_from_sni:
                self._select_host(None)  # and the host that its SNI chose
        else:
            self._control_id = self.tls_control_session_id  # read now: the channel is let go
        self._disarm_guard()
        self._paused = False
        self._run_actions()
        self._resume_plaintext()

    def _flush_tls(self) -> None:
        if self.tls is not None and self.transport is not None:
            out = self.tls.pending_output()
            if out:
                self._write(out)

    def _write(self, data: bytes) -> None:
        """To the socket, or to the current batch (:meth:`data_received`) to leave with the rest."""
        if self._batch is not None:
            self._batch.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def _write_batch(self) -> None:
        """Send what the batch holds (one write); before a close, so nothing is left behind."""
        batch, self._batch = self._batch, None
        if batch and self.transport is not None and not self.transport.is_closing():
            self.transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def _resume_plaintext(self) -> None:
        """Bytes parked during a pause go to the session once nothing holds the queue any more."""
        if self._paused or self.tls is not None or not self._carry or self.session is None:
            return
        carry, self._carry = self._carry, b""
        self._call(self.session.receive_data, carry)

    # ------------------------------------------------------------------ actions

    def _call(self, method: object, *args: object) -> None:
        """Call a session method with ``now`` and run the actions; a bug becomes 451 and a close."""
        if self.closed:
            return
        try:
            actions = method(*args, self._time())  # type: ignore[operator]
        except Exception as error:
            log.error("session %s: internal error", self.id, exc_info=error)
            self._send(Reply.of(ReplyCode.LOCAL_ERROR, "Internal error; closing connection.").to_bytes())
            self._close_gracefully()
            return
        self._actions.extend(actions)
        self._run_actions()

    def _run_actions(self) -> None:
        if self._running:
            return
        self._running = True
        actions = self._actions
        try:
            while actions and not self._paused and not self.closed:
                action = actions.popleft()
                # Replies and command starts are two thirds of all actions: run here, not in _execute.
                if type(action) is a.SendReply:
                    reply = action.reply
                    self._send(reply.to_bytes())
                    self._replied(reply.code)
                elif type(action) is a.CommandStarted:
                    state = self.session.state if self.session is not None else None
                    user = (state.user or state.pending_user) if state is not None else None
                    self._commands.begin(action.verb, action.arg, self._time(), user)
                else:
                    self._execute(action)
        finally:
            self._running = False
        if not self._paused and not self.closed:
            # The idle timer follows the session's own deadline (RFC 1123 §4.1.3.2).
            deadline = self.session.next_deadline() if self.session is not None else None
            if deadline is None:
                self._idle.cancel()
            else:
                self._idle.set(deadline)

    def _execute(self, action: a.Action) -> None:
        """Every action but SendReply and CommandStarted (:meth:`_run_actions` runs those)."""
        match action:
            # Cases are tried in order: the actions every session sees come first.
            case a.DropDataChannel():
                if self._data is not None:
                    self._data.close()
            case a.Close():
                self._close_gracefully()
            case a.SendRaw(data):
                self._send(data)
            case a.StartTLS(initial):
                self._start_tls(initial + self._take_carry())
            case a.StopTLS():
                self._stop_tls()
            case a.Sleep(seconds):
                self._paused = True
                self._sleep = self.loop.call_later(seconds, self._wake)
            case a.RunOp(a.Authenticate() as op):
                # A cached login is answered here and now: no Task, no extra turn of the loop.
                assert self.session is not None
                protected = self.session.state.tls.protected
                result = self.identity.password_now(op, str(self.peer[0]), protected=protected)
                if result is None:
                    self._spawn(self._run_op(op))
                else:
                    self._call(self.session.op_done, result)
            case a.RunOp(a.OpenPassive()):
                assert self.session is not None
                self._call(self.session.op_done, self._open_passive())
            case a.RunOp(a.Transfer() as transfer):
                # Created now, not in the task: an ABOR in the same batch must find it (959 §4.1.3).
                self._transfer = TransferRunner(self, transfer)
                self._spawn(self._run_transfer(self._transfer))
            case a.RunOp(op):
                self._spawn(self._run_op(op))
            case a.AbortTransfer():
                if self._transfer is not None:
                    self._transfer.abort()
            case a.EndLogin():
                self.identity.release()
            case a.SelectHost(name):
                self._select_host(name)

    def _select_host(self, name: str | None, *, by_sni: bool = False) -> None:
        """HOST, SNI or REIN: the virtual host the next login is for (None or unknown: the default)."""
        vhost = self.server.vhosts.find(name)
        if vhost is not self.identity.vhost:
            log.info("session %s: virtual host %s", self.id, vhost.name if vhost else "(default)")
        self.identity.vhost, self._host_from_sni = vhost, by_sni and vhost is not None

    def _replied(self, code: int) -> None:
        """Count the reply; a final reply also ends its command: latency histogram and command log."""
        metrics = self.server.metrics
        done = self._commands.reply(code, self._time())
        if done is None:
            metrics.reply(code)
            return
        metrics.command_replied(code, done.verb, done.seconds)
        if not command_logger.isEnabledFor(logging.INFO):
            return  # command_log() would return at once: spare the call and its arguments
        command_log(
            command_logger,
            session=self.id,
            peer=str(self.peer[0]),
            user=done.user,
            verb=done.verb,
            arg=done.arg,
            code=done.code,
            seconds=done.seconds,
        )

    def _take_carry(self) -> bytes:
        carry, self._carry = self._carry, b""
        return carry

    def _wake(self) -> None:
        self._sleep = None
        self._paused = False
        self._run_actions()
        self._resume_plaintext()

    def _stop_tls(self) -> None:
        tls = self.tls
        if tls is None:
            return
        self._paused = True
        self._arm_guard(self.config.tls_close_timeout, "TLS close timeout")
        try:
            tls.start_close()
            self._flush_tls()
        except TLSError as error:
            self._abort_connection(str(error))
            return
        self._drive_tls()

    def _send(self, data: bytes) -> None:
        transport = self.transport
        # In a batch, _write_batch() checks the transport once for the whole batch.
        if transport is None or (self._batch is None and transport.is_closing()):
            return
        if self.tls is not None:
            try:
                data = self.tls.encrypt(data)
            except TLSError:
                return
            if not data:
                return
        if self._batch is not None:  # _write(), inlined: once per reply
            self._batch.append(data)
        else:
            transport.write(data)

    @property
    def principal(self) -> Principal | None:
        return self.identity.principal

    @property
    def storage(self) -> Storage | None:
        return self.identity.storage

    # ------------------------------------------------------------------ operations

    def _spawn(self, coroutine: object) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_op(self, op: a.Op) -> None:
        assert self.session is not None
        result: a.OpResult
        if isinstance(op, a.Authenticate):  # password_now() could not answer it (_execute)
            protected = self.session.state.tls.protected
            result = await self.identity.password_in_worker(op, str(self.peer[0]), protected=protected)
        elif isinstance(op, a.CertificateLogin):
            result = await self.identity.certificate(op, str(self.peer[0]))
        elif self.storage is None:
            result = a.OpFailed(ReplyCode.NOT_LOGGED_IN, "Please log in with USER and PASS first.")
        else:
            user = self.principal.name if self.principal is not None else None
            measure = user is not None and self.server.quotas.tracks(user)
            result = await self.loop.run_in_executor(
                self.server.op_executor,
                functools.partial(run_storage_op, self.storage, op, self.id, measure_freed=measure),
            )
            if isinstance(op, (a.DeleteFile, a.RenamePath)) and isinstance(result, a.OpOk):
                freed = result.value  # the size of the file deleted or replaced, else None
                if isinstance(freed, int) and user is not None:
                    self.server.quotas.deleted(user, freed)
                result = a.OpOk()
        if not self.closed:
            self._call(self.session.op_done, result)

    def _open_passive(self) -> a.OpResult:
        assert self.data is not None
        try:
            return a.OpOk(self.data.open_passive())
        except OSError as error:
            log.warning("session %s: cannot open a passive port: %s", self.id, error)
            return a.OpFailed(ReplyCode.CANT_OPEN_DATA, "Cannot open a passive data port.")
        except Exception as error:
            log.warning("session %s: cannot open a passive port: %s", self.id, error)
            return a.OpFailed(ReplyCode.CANT_OPEN_DATA, "Cannot open a passive data port.")

    async def _run_transfer(self, runner: TransferRunner) -> None:
        assert self.session is not None
        started = self._time()
        self.server.running_transfers += 1
        try:
            outcome = await runner.run()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # whatever goes wrong, the session gets an outcome, or it waits forever
            log.error("session %s: transfer failed unexpectedly", self.id, exc_info=error)
            moved = runner.transfer.progress.bytes_done
            outcome = a.TransferOutcome(moved, ReplyCode.LOCAL_ERROR, "Local error in processing.")
        finally:
            self._transfer = None
            self.server.running_transfers -= 1
            self.server.went_quiet(self.loop)
        self._record_transfer(runner.transfer, outcome, self._time() - started)
        if not self.closed:
            self._call(self.session.transfer_done, outcome)

    def _record_transfer(self, transfer: a.Transfer, outcome: a.TransferOutcome, seconds: float) -> None:
        server, moved = self.server, outcome.bytes_done
        result = "ok" if outcome.ok else "aborted" if outcome.aborted else "failed"
        server.metrics.transfer(
            transfer.kind.value,
            result,
            bytes_in=moved if transfer.kind.upload else 0,
            bytes_out=0 if transfer.kind.upload else moved,
            prot="P" if transfer.protect else "C",
            seconds=seconds,
        )
        if server.xferlog is not None:
            user = self.principal.name if self.principal is not None else ""
            entry = xfer_entry(
                transfer,
                outcome,
                remote_host=str(self.peer[0]),
                username=user,
                seconds=seconds,
                tls=self.tls_control_session_id is not None or self.tls is not None,
            )
            if entry is not None:
                server.xferlog.write(entry)

    def _data_accepted(self, sock: socket.socket) -> PendingData:
        """A passive data connection arrived: under PROT P start the TLS handshake right away."""
        sock.setblocking(True)
        context = self.ssl_context
        if self.session is None or self.session.state.prot != "P" or context is None:
            return PendingData(sock)
        sock.settimeout(self.config.handshake_timeout)
        conn = wrap_data_socket(context, sock)
        return PendingData(conn, self.server.transfer_executor.submit(conn.do_handshake))

    def data_connected(self) -> None:
        """Called by the transfer runner once the data connection exists (the 150 goes out now)."""
        if self.session is not None and not self.closed:
            self._call(self.session.data_connected)

    # ------------------------------------------------------------------ timers and closing

    def _idle_tick(self) -> None:
        if self.session is not None:
            self._call(self.session.tick)

    def _arm_guard(self, seconds: float, reason: str) -> None:
        """A deadline for a TLS handshake or close: past it, the connection is dropped."""
        self._guard_reason = reason
        self._guard.set_in(seconds)

    def _guard_expired(self) -> None:
        self._abort_connection(self._guard_reason)

    def _disarm_guard(self) -> None:
        self._guard.cancel()

    def close_if_idle(self, text: str) -> bool:
        """Server draining: a session with no transfer running gets 421 and is closed (True)."""
        if self.closed:
            return True
        if self._transfer is not None:
            return False
        self._send(Reply.of(ReplyCode.SERVICE_NOT_AVAILABLE, text).to_bytes())
        self._close_gracefully()
        return True

    def _close_gracefully(self) -> None:
        """After QUIT or a 421: close_notify under TLS (RFC 8446 §6.1), then close."""
        if self.tls is not None and self.tls.handshake_complete:
            with contextlib.suppress(TLSError):
                self.tls.start_close()
            self._flush_tls()
        self._write_batch()
        if self.transport is not None:
            self.transport.close()
        self._shutdown("closed by server")

    def _abort_connection(self, reason: str) -> None:
        log.info("session %s: dropping connection: %s", self.id, reason)
        self._write_batch()  # replies and alerts decided before the abort still leave first
        if self.transport is not None:
            self.transport.abort()
        self._shutdown(reason)

    def _shutdown(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._guard.close()
        self._idle.close()
        if self._sleep is not None:
            self._sleep.cancel()
        self.server.connections.discard(self)
        if not self.server.connections:
            self.server.went_quiet(self.loop)
        self.identity.release()
        ip, self._counted_ip = self._counted_ip, None
        if ip is not None:
            self.server.counter.close(ip)
            self.server.metrics.session_closed(self._mode)
        if self.tls is not None and not self.tls.handshake_complete:
            self.server.metrics.tls_handshake_failed("control")  # error, timeout or peer gone
        if self._transfer is not None:
            self._transfer.abort()  # losing the control connection acts as ABOR (RFC 959 §4.1.1)
        if self._data is not None:
            self._data.close()
        self._write_batch()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        log.info("session %s: closed (%s)", self.id, reason)


_TRACED: dict[int, tuple[SessionPolicy, SessionPolicy]] = {}  # id(policy) -> (policy, traced)


def _traced_policy(policy: SessionPolicy) -> SessionPolicy:
    """``policy`` with command tracing on (the command log), made once per configuration."""
    known = _TRACED.get(id(policy))
    if known is None or known[0] is not policy:
        if len(_TRACED) > 8:  # reloads: keep only recent configurations
            _TRACED.clear()
        known = _TRACED[id(policy)] = (policy, replace(policy, trace_commands=True))
    return known[1]


def _clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """``loop.time``; for asyncio's own loops the ``time.monotonic`` it returns, called directly."""
    if type(loop).time is asyncio.BaseEventLoop.time:
        return time.monotonic
    return loop.time


def _client_certificate(tls: TLSChannel) -> tuple[str | None, str | None]:
    """Fingerprint and subject CN of a client certificate, only when the TLS layer verified it."""
    der = tls.peer_certificate_der
    if not der:
        return None, None
    try:
        details = tls.ssl_object.getpeercert()  # empty unless the chain was verified (CERT_OPTIONAL)
    except ValueError:
        return None, None
    if not details:
        return None, None
    names = [pair for rdn in details.get("subject", ()) for pair in rdn if isinstance(pair, tuple)]
    subject = next((value for key, value in names if key == "commonName"), None)
    return certificate_fingerprint(der), str(subject) if subject else None
