"""``pyftps serve``: turn command-line choices into a running server on embedded defaults.

On a fresh machine it creates a state directory with a self-signed certificate and an SQLite user
database holding a first user (its generated password is printed once), and serves a data directory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import signal
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pyftps.auth.anonymous import AnonymousAuthenticator
from pyftps.auth.base import Authenticator, Permission, Principal
from pyftps.auth.cache import CachingAuthenticator
from pyftps.auth.passwords import generate_password
from pyftps.auth.records import UserStoreError
from pyftps.auth.static import StaticAuthenticator
from pyftps.auth.stores import open_login_guard, open_user_store
from pyftps.config import ServerConfig, VhostConfig
from pyftps.server.app import Server, port_is_bindable
from pyftps.server.data import PassivePorts
from pyftps.server.http import MetricsHTTPServer
from pyftps.server.logs import XferLog
from pyftps.server.memory import pin_mmap_threshold
from pyftps.server.metrics import Metrics
from pyftps.server.vhosts import VirtualHost, VirtualHosts
from pyftps.tls.certs import ensure_self_signed, load_certificate_info
from pyftps.tls.contexts import TLSConfigError, server_context

if TYPE_CHECKING:
    from pyftps.prefork import WorkerShare

log = logging.getLogger("pyftps")

FIRST_USER = "admin"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pyftps"


def pick_port(host: str, wanted: int | None, preferred: int, fallback: int) -> int | None:
    """``None`` from the command line means "default": the standard port when we may bind it."""
    if wanted is not None:
        return wanted or None  # 0 disables the listener
    if port_is_bindable(host, preferred):
        return preferred
    log.warning(
        "port %d is not available to this process (privileges or in use): using %d", preferred, fallback
    )
    return fallback


def build_authenticator(config: ServerConfig) -> Authenticator:
    # Repeat logins skip argon2id (0.2-0.3 s of CPU and 64 MiB each); failures never do.
    users = CachingAuthenticator(_users(config), ttl=config.credential_cache_ttl)
    if config.anonymous_root is None:
        return users
    config.anonymous_root.mkdir(parents=True, exist_ok=True)
    log.warning(
        "anonymous login is enabled (%s) on %s",
        "read-write" if config.anonymous_write else "read-only",
        config.anonymous_root,
    )
    writable = Permission.LIST | Permission.READ | Permission.WRITE | Permission.MKDIR
    return AnonymousAuthenticator(
        users, str(config.anonymous_root), writable if config.anonymous_write else None
    )


def _users(config: ServerConfig) -> Authenticator:
    if config.users:
        home = str(config.root)
        return StaticAuthenticator.from_plain(
            {u.name: (u.password, Principal(u.name, home, Permission.all())) for u in config.users}
        )
    store = open_user_store(config.user_database)
    if store.count_users() == 0:
        password = generate_password()
        store.add_user(FIRST_USER, password, str(config.root), Permission.all())
        # Printed once, to the terminal only: it is not stored anywhere in clear.
        print(
            f"Created the first user {FIRST_USER!r} with password {password!r} "
            f"(shown once; change it with: pyftps user passwd {FIRST_USER})",
            file=sys.stderr,
        )
    return store


def build_vhosts(config: ServerConfig, *, running: VirtualHosts | None = None) -> VirtualHosts:
    """The ``[[vhost]]`` tables as hosts: user stores opened, roots created, certificates loaded.

    With ``running`` (SIGHUP) a host already served keeps its user store and root and only its
    certificate is read again (changing those needs a restart); added hosts are opened.
    """
    hosts: list[VirtualHost] = []
    for spec in config.vhosts:
        context = None
        if spec.cert_file is not None and spec.key_file is not None:
            context = server_context(
                spec.cert_file, spec.key_file, num_tickets=1, client_cafile=config.client_ca_file
            )
        current = running.find(spec.names[0]) if running is not None else None
        if current is not None:
            hosts.append(dataclasses.replace(current, ssl_context=context))
            continue
        spec.root.mkdir(parents=True, exist_ok=True)
        users = open_user_store(spec.users) if spec.users else _users(config)
        hosts.append(
            VirtualHost.confined(
                spec.names,
                spec.root,
                users,
                context,
                cache=lambda inner: CachingAuthenticator(inner, ttl=config.credential_cache_ttl),
                wrap=_anonymous(config, spec),
            )
        )
        log.info("virtual host %s (%s) serving %s", spec.names[0], ", ".join(spec.names), spec.root)
    return VirtualHosts(hosts)


def _anonymous(config: ServerConfig, spec: VhostConfig) -> Callable[[Authenticator], Authenticator] | None:
    root = spec.anonymous_root
    if root is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    writable = Permission.LIST | Permission.READ | Permission.WRITE | Permission.MKDIR
    permissions = writable if config.anonymous_write else None
    return lambda users: AnonymousAuthenticator(users, str(root), permissions)


def build_tls(config: ServerConfig) -> tuple[Path, ssl.SSLContext]:
    """The certificate files and a server context; raises TLSConfigError with the file's name."""
    cert_file, key_file = config.cert_file, config.key_file
    if cert_file is None or key_file is None:
        cert_file, key_file = ensure_self_signed(config.state_dir / "tls")
    # One ticket per control connection: the data connection's session id then proves which
    # control connection it resumed (with two, the first ticket's id differs; see tls.contexts).
    return cert_file, server_context(cert_file, key_file, num_tickets=1, client_cafile=config.client_ca_file)


# File descriptors a session may hold at once: its control socket, plus a passive listener or a
# data socket while it transfers. The rest (listeners, logs, databases, files) fits in the reserve.
_FDS_PER_SESSION = 2
_FD_RESERVE = 64


def raise_open_file_limit(max_connections: int | None) -> int | None:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (many idle sessions need many sockets).

    Logs a warning when even the hard limit is short of what ``max_connections`` sessions may need.
    Returns the soft limit now in force (None where the platform has no such limit).
    """
    try:
        import resource
    except ImportError:  # Windows has no RLIMIT_NOFILE
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit still has a kernel ceiling (fs.nr_open, 2**20 by default).
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, error)
    if max_connections is not None and soft != resource.RLIM_INFINITY:
        needed = max_connections * _FDS_PER_SESSION + _FD_RESERVE
        if soft < needed:
            log.warning(
                "open-file limit %d (hard limit %d) is below the %d that %d connections may need: "
                "raise it (ulimit -Hn, LimitNOFILE=) or lower --max-connections",
                soft,
                hard,
                needed,
                max_connections,
            )
    return soft


def run_server(config: ServerConfig, *, reload: Callable[[], ServerConfig] | None = None) -> int:
    config.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config.root.mkdir(parents=True, exist_ok=True)
    try:
        cert_file, context = build_tls(config)
    except TLSConfigError as error:
        print(f"pyftps: {error}", file=sys.stderr)
        return 2
    info = load_certificate_info(cert_file)
    raise_open_file_limit(config.limits.max_total)
    pin_mmap_threshold()  # before any worker forks: copy buffers go back to the system when freed
    if config.workers > 1:
        from pyftps.prefork import run_workers

        try:
            _check_vhosts(config)  # here, once: a bad host must stop start-up, not crash-loop workers
        except (ValueError, OSError, UserStoreError) as error:
            print(f"pyftps: virtual host: {error}", file=sys.stderr)
            return 2

        log.info(
            "certificate %s (SHA-256 %s, valid until %s)", cert_file, info.fingerprint, info.not_after.date()
        )
        _prepare_users(config)  # the first user is created (and its password printed) once, here
        # --user accounts are hashed once, here, not in every worker (no I/O: safe to fork).
        users = build_authenticator(config) if config.users else None
        return run_workers(config, context, reload, functools.partial(serve_process, authenticator=users))
    authenticator = build_authenticator(config)
    try:
        vhosts = build_vhosts(config)
    except (ValueError, OSError, UserStoreError) as error:  # TLSConfigError is a ValueError
        print(f"pyftps: virtual host: {error}", file=sys.stderr)
        return 2
    guard = open_login_guard(config.database_url, config.bans)  # shared by all nodes on PostgreSQL
    xferlog = XferLog(config.xferlog) if config.xferlog is not None else None
    server = Server(
        config,
        authenticator=authenticator,
        ssl_context=context,
        guard=guard,
        metrics=Metrics(),
        xferlog=xferlog,
        vhosts=vhosts,
    )
    log.info(
        "certificate %s (SHA-256 %s, valid until %s)", cert_file, info.fingerprint, info.not_after.date()
    )
    try:
        return asyncio.run(_serve(server, reload))
    except KeyboardInterrupt:
        return 0
    finally:
        if xferlog is not None:
            xferlog.close()


def _check_vhosts(config: ServerConfig) -> None:
    """What build_vhosts would fail on, checked without keeping anything open across a fork."""
    for spec in config.vhosts:
        if spec.cert_file is not None and spec.key_file is not None:
            server_context(spec.cert_file, spec.key_file, num_tickets=1, client_cafile=config.client_ca_file)
        spec.root.mkdir(parents=True, exist_ok=True)
        if spec.users:
            open_user_store(spec.users).close()


def _prepare_users(config: ServerConfig) -> None:
    """Create the user store (and first user) in the parent; each worker opens its own afterwards."""
    if config.users:
        return
    store = _users(config)
    close = getattr(store, "close", None)
    if close is not None:
        close()  # a database connection must not cross the fork


def serve_process(
    config: ServerConfig,
    context: ssl.SSLContext,
    reload: Callable[[], ServerConfig] | None,
    share: WorkerShare,
    *,
    authenticator: Authenticator | None = None,
) -> int:
    """One worker of ``--workers N``: the ordinary server on the parent's listeners and shared limits."""
    if authenticator is None:
        authenticator = build_authenticator(config)
    guard = open_login_guard(config.database_url, config.bans, shared_file=share.ban_file)
    xferlog = XferLog(config.xferlog) if config.xferlog is not None else None
    server = Server(
        config,
        authenticator=authenticator,
        ssl_context=context,
        guard=guard,
        metrics=Metrics(),
        xferlog=xferlog,
        counter=share.counter,
        passive_ports=PassivePorts(share.passive_ports),
        listeners=share.listeners,
        vhosts=build_vhosts(config),
    )
    if share.passive_ports is not None:
        log.info("worker %d: passive ports %d-%d", share.index, *share.passive_ports)
    try:
        return asyncio.run(_serve(server, reload, metrics_listen=share.metrics_listen))
    except KeyboardInterrupt:
        return 0
    finally:
        if xferlog is not None:
            xferlog.close()


def _reload(server: Server, reload: Callable[[], ServerConfig] | None) -> None:
    """SIGHUP: re-read settings and certificate files for new sessions; a bad file keeps the old ones."""
    try:
        config = reload() if reload is not None else server.config
        cert_file, context = build_tls(config)
        vhosts = build_vhosts(config, running=server.context.vhosts)
    except (ValueError, OSError, UserStoreError) as error:  # SettingsError, TLSConfigError: ValueErrors
        log.error("reload failed, keeping the current settings: %s", error)
        return
    server.reload(config, context, vhosts)
    if server.context.xferlog is not None:
        server.context.xferlog.reopen()  # logrotate moved the file away
    info = load_certificate_info(cert_file)
    log.info("reloaded settings and certificate %s (SHA-256 %s)", cert_file, info.fingerprint)


async def _serve(
    server: Server,
    reload: Callable[[], ServerConfig] | None,
    *,
    metrics_listen: tuple[str, int] | Literal["config"] | None = "config",
) -> int:
    try:
        await server.start()
    except OSError as error:
        print(f"pyftps: cannot listen: {error}", file=sys.stderr)
        return 2
    config = server.config
    if server.explicit_address:
        log.info("explicit FTPS (AUTH TLS) on %s port %s", *server.explicit_address)
    else:
        log.info("explicit FTPS listener disabled")
    if server.implicit_address:
        log.info("implicit FTPS (TLS from the first byte) on %s port %s", *server.implicit_address)
    else:
        log.info("implicit FTPS listener disabled")
    log.info("serving %s; state in %s", config.root, config.state_dir)
    http = MetricsHTTPServer(server.context.metrics.registry, lambda: server.accepting)
    if metrics_listen == "config":
        metrics_listen = config.metrics_listen
    if metrics_listen is not None:
        try:
            log.info("metrics and health on http://%s:%s/", *await http.start(*metrics_listen))
        except OSError as error:
            print(f"pyftps: cannot listen for metrics: {error}", file=sys.stderr)
            await server.stop()
            return 2
    stop, drain = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGTERM, drain.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, server, reload)
    waiters = [loop.create_task(stop.wait()), loop.create_task(drain.wait())]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    if drain.is_set():
        log.info("SIGTERM: draining (running transfers may finish within %.0f s)", config.drain_timeout)
        await server.drain(config.drain_timeout)
    else:
        log.info("stopping")
        await server.stop()
    await http.stop()  # last: /healthz answered 503 while draining
    return 0
