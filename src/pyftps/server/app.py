"""The server: wires configuration, TLS, backends and listeners; start-up → serve → graceful stop."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyftps.auth.base import Authenticator, Principal
from pyftps.auth.stores import BanGuard
from pyftps.config import ServerConfig
from pyftps.server.accept import serve
from pyftps.server.context import ServerContext, StorageFactory
from pyftps.server.control import ControlConnection
from pyftps.server.data import PassivePorts
from pyftps.server.guard import ConnectionCounter, LoginGuard
from pyftps.server.logs import XferLog
from pyftps.server.metrics import Metrics
from pyftps.server.quota import Quota, QuotaTracker, home_scanner
from pyftps.server.throttle import SharedBandwidth
from pyftps.server.vhosts import VirtualHosts
from pyftps.storage.factory import StorageFactory as HomeStorage

log = logging.getLogger("pyftps.server")

Listeners = tuple[socket.socket | None, socket.socket | None]  # explicit, implicit


class Server:
    """An FTPS server with an explicit and an implicit listener (either may be disabled)."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        authenticator: Authenticator,
        ssl_context: ssl.SSLContext | None,
        storage_for: StorageFactory | None = None,
        guard: BanGuard | None = None,
        metrics: Metrics | None = None,
        xferlog: XferLog | None = None,
        counter: ConnectionCounter | None = None,
        passive_ports: PassivePorts | None = None,
        listeners: Listeners | None = None,
        vhosts: VirtualHosts | None = None,
    ) -> None:
        self.config = config
        self._listeners = listeners  # bound by a pre-fork parent (--workers); else start() binds
        homes = _homes(config)  # one S3 client for every user's storage and quota scans
        self.context = ServerContext(
            config=config,
            ssl_context=ssl_context,
            authenticator=authenticator,
            storage_for=storage_for or (lambda principal: homes.for_home(principal.home)),
            passive_ports=passive_ports or PassivePorts(config.passive_ports),
            op_executor=ThreadPoolExecutor(max_workers=16, thread_name_prefix="pyftps-op"),
            transfer_executor=ThreadPoolExecutor(
                max_workers=config.max_transfer_threads, thread_name_prefix="pyftps-data"
            ),
            guard=guard or LoginGuard(config.bans),
            counter=counter or ConnectionCounter(config.limits),
            metrics=metrics if metrics is not None else Metrics(process_metrics=False),
            xferlog=xferlog,
            quotas=QuotaTracker(
                home_scanner(homes.s3_usage), rescan_after=config.quota_rescan, background_rescans=True
            ),
        )
        # Their threads' memory (stacks, frame chunks, malloc caches) goes back once quiet.
        self.context.trimmer.renew_pool(self.context, "transfer_executor")
        self.context.trimmer.renew_pool(self.context, "op_executor")
        self.context.metrics.set_active_callbacks(
            sessions=lambda: len(self.context.connections), transfers=lambda: self.context.running_transfers
        )
        # A user's rate comes from their record (read when their bucket is created), else the default.
        self._rates: dict[str, tuple[int | None, int | None]] = {}
        self.context.upload_bandwidth = SharedBandwidth(
            config.upload_rate, rate_for=lambda user: self.rate_for(user, upload=True)
        )
        self.context.download_bandwidth = SharedBandwidth(
            config.download_rate, rate_for=lambda user: self.rate_for(user, upload=False)
        )
        self.context.on_login = self._remember_limits
        self._set_vhosts(vhosts or VirtualHosts(), ssl_context)
        self._servers: list[asyncio.AbstractServer] = []
        self.explicit_address: tuple[str, int] | None = None
        self.implicit_address: tuple[str, int] | None = None

    @property
    def accepting(self) -> bool:
        """True while every listener accepts sessions (``/healthz``); False once draining or stopped."""
        return bool(self._servers) and all(server.is_serving() for server in self._servers)

    def _remember_limits(self, principal: Principal) -> None:
        limits = principal.limits
        self._rates[principal.name] = (limits.upload_rate, limits.download_rate)
        if limits.quota_bytes is not None or limits.quota_files is not None:  # a directory or s3:// alike
            self.context.quotas.register(
                principal.name, principal.home, Quota(limits.quota_bytes, limits.quota_files)
            )
        else:
            self.context.quotas.forget(principal.name)

    def rate_for(self, user: str, *, upload: bool) -> float | None:
        up, down = self._rates.get(user, (None, None))
        chosen = up if upload else down
        default = self.config.upload_rate if upload else self.config.download_rate
        return chosen if chosen is not None else default

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        explicit, implicit = self._listeners or bind_listeners(self.config)
        # server.accept: no Task per accepted connection where the loop allows it.
        if explicit is not None:
            server = await serve(loop, explicit, lambda: ControlConnection(self.context, implicit=False))
            self._servers.append(server)
            self.explicit_address = explicit.getsockname()[:2]
        if implicit is not None:
            server = await serve(loop, implicit, lambda: ControlConnection(self.context, implicit=True))
            self._servers.append(server)
            self.implicit_address = implicit.getsockname()[:2]

    def reload(
        self, config: ServerConfig, ssl_context: ssl.SSLContext | None, vhosts: VirtualHosts | None = None
    ) -> None:
        """New settings and certificates for sessions opened from now on; live sessions keep theirs.

        Listener addresses, limits and the ban policy are fixed at start-up (changing them needs a
        restart); everything a session reads (policy, timeouts, TLS contexts, virtual hosts) is
        taken from here. Without ``vhosts`` the current hosts stay, presented by the new context.
        """
        self.config = config
        self.context.config = config
        self.context.ssl_context = ssl_context
        self._set_vhosts(vhosts if vhosts is not None else self.context.vhosts, ssl_context)

    def _set_vhosts(self, vhosts: VirtualHosts, ssl_context: ssl.SSLContext | None) -> None:
        self.context.vhosts = vhosts
        vhosts.attach(ssl_context)  # SNI presents a host's certificate (RFC 7151 §4)

    async def drain(self, timeout: float) -> None:
        """SIGTERM: stop accepting, let running transfers finish (up to ``timeout``), then stop."""
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.context.connections and loop.time() < deadline:
            for connection in list(self.context.connections):
                assert isinstance(connection, ControlConnection)
                connection.close_if_idle("Server shutting down; please reconnect later.")
            await asyncio.sleep(0.1)
        await self.stop()

    async def stop(self) -> None:
        """Stop accepting, close every session, release the threads."""
        for server in self._servers:
            server.close()
        for connection in list(self.context.connections):
            assert isinstance(connection, ControlConnection)
            connection._abort_connection("server stopping")
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self.context.trimmer.cancel()
        self.context.op_executor.shutdown(wait=False, cancel_futures=True)
        self.context.transfer_executor.shutdown(wait=False, cancel_futures=True)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def bind_listeners(config: ServerConfig, *, listen: bool = True) -> Listeners:
    """The explicit and implicit control listeners the configuration asks for (None: disabled).

    ``listen=False`` only binds: serving the socket (``server.accept``) starts listening, so a
    pre-fork parent's port accepts connections once a worker serves them, not while workers start.
    """
    host = config.host
    explicit = (
        _listen(host, config.explicit_port, listen=listen) if config.explicit_port is not None else None
    )
    try:
        implicit = (
            _listen(host, config.implicit_port, listen=listen) if config.implicit_port is not None else None
        )
    except BaseException:
        if explicit is not None:
            explicit.close()
        raise
    return explicit, implicit


def _listen(host: str, port: int, *, listen: bool = True) -> socket.socket:
    """A listening socket; ``::`` also accepts IPv4 (dual stack) where the system allows it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when sock.proto says TCP,
    # and with Nagle on, a 226 sent right after a 150 waits for the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host, port))
        if listen:
            sock.listen(socket.SOMAXCONN)  # the kernel caps it (net.core.somaxconn); 512 overflowed in bursts
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def port_is_bindable(host: str, port: int) -> bool:
    try:
        _listen(host, port).close()
    except OSError:
        return False
    return True


def ensure_directories(*paths: Path) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)


def _homes(config: ServerConfig) -> HomeStorage:
    """Each user's backend from their home: a directory, or s3://bucket/prefix (per-user choice)."""
    return HomeStorage(
        fsync=config.fsync,
        s3_endpoint=config.s3_endpoint,
        s3_region=config.s3_region,
        s3_allow_backslash=config.s3_allow_backslash,
    )
