"""``pyftps serve --workers N``: pre-forked worker processes sharing the control listeners.

One Python process serves sessions on one core (TLS handshakes and the event loop hold the GIL), so
a node with more cores runs N workers. The parent binds the explicit and implicit listeners, creates
the shared state, then forks; every worker runs the ordinary asyncio server on the inherited sockets.

Why inherited sockets rather than ``SO_REUSEPORT``: the listeners exist once, bound by the parent,
so a port that is taken fails at start-up, port 0 means one port for all, and connections waiting
in the accept queue survive a worker's death (with ``SO_REUSEPORT`` each socket has its own queue,
and the connections queued on a dead worker's socket are reset). The price is that every idle
worker wakes for each connection and all but one find nothing to accept; with a handful of workers
that costs far less than a TLS handshake. A busy worker also accepts less, which balances load.

What the workers share (created before forking):
- connection limits: :class:`~pyftps.server.shared_limits.SharedConnectionCounter` in shared
  memory, so the global, per-address and per-user limits hold exactly across workers;
- login bans: an SQLite file in the state directory (``bans.db``, emptied at start like the
  in-memory guard), unless a PostgreSQL ban store is configured, which is shared already;
- passive ports: the configured range is split into one disjoint sub-range per worker, so a
  PASV/EPSV port is only bound by the worker that owns the session.

Per worker (documented limitation): per-user bandwidth limits and quota accounting, the credential
cache, and metrics: worker i serves ``/metrics`` and ``/healthz`` on the metrics port + i (or its own
free port when the metrics port is 0). The parent serves no sessions: it restarts a worker that
died (with back-off, after giving back the connections it held), forwards SIGHUP (reload) and
SIGTERM (drain) or SIGINT (stop) to the workers, and exits once they all have.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyftps.config import ServerConfig
from pyftps.server.app import Listeners, bind_listeners
from pyftps.server.data import split_port_range
from pyftps.server.shared_limits import SharedConnectionCounter

log = logging.getLogger("pyftps.workers")

_SIGNALS = {signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT}
_STABLE_AFTER = 30.0  # a worker that ran this long resets the restart back-off
_MAX_BACKOFF = 30.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True, slots=True)
class WorkerShare:
    """What one worker receives from the parent: its index and the state shared with its siblings."""

    index: int
    counter: SharedConnectionCounter
    passive_ports: tuple[int, int] | None  # this worker's own sub-range (None: any free port)
    ban_file: Path | None  # None when PostgreSQL shares the bans
    listeners: Listeners
    metrics_listen: tuple[str, int] | None


def ban_file_for(config: ServerConfig) -> Path | None:
    if config.database_url is not None and not config.database_url.lower().startswith("sqlite"):
        return None  # PostgreSQL: bans are shared by every node already
    return config.state_dir / "bans.db"


def run_workers(
    config: ServerConfig,
    context: ssl.SSLContext,
    reload: Callable[[], ServerConfig] | None,
    serve: Callable[[ServerConfig, ssl.SSLContext, Callable[[], ServerConfig] | None, WorkerShare], int],
) -> int:
    """Bind, fork ``config.workers`` workers running ``serve``, supervise them; the parent's exit code."""
    workers = config.workers
    try:
        ranges = split_port_range(config.passive_ports, workers) if config.passive_ports else None
    except ValueError as error:
        print(f"pyftps: {error}", file=sys.stderr)
        return 2
    try:
        listeners = bind_listeners(config, listen=False)  # the first worker's server listens
    except OSError as error:
        print(f"pyftps: cannot listen: {error}", file=sys.stderr)
        return 2
    ban_file = ban_file_for(config)
    if ban_file is not None:
        _fresh_ban_file(ban_file, config)
    counter = SharedConnectionCounter(config.limits, workers)
    for sock in listeners:
        if sock is not None:
            host, port = sock.getsockname()[:2]
            log.info("bound %s port %s for %d workers", host, port, workers)

    def share(index: int) -> WorkerShare:
        metrics = config.metrics_listen
        if metrics is not None and metrics[1]:
            metrics = (metrics[0], metrics[1] + index)
        return WorkerShare(index, counter, ranges[index] if ranges else None, ban_file, listeners, metrics)

    supervisor = _Supervisor(workers, lambda index: serve(config, context, reload, share(index)), counter)
    try:
        return supervisor.run(listeners)
    finally:
        for sock in listeners:
            if sock is not None:
                sock.close()


def _fresh_ban_file(path: Path, config: ServerConfig) -> None:
    """Start with no bans, as the in-memory guard does, and create the schema once, before forking."""
    from pyftps.auth.sqlite_bans import SqliteLoginGuard

    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    SqliteLoginGuard(path, config.bans).close()


class _Supervisor:
    def __init__(self, workers: int, body: Callable[[int], int], counter: SharedConnectionCounter) -> None:
        self.workers = workers
        self.body = body
        self.counter = counter
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.started: dict[int, float] = {}  # worker index -> when it was (re)started
        self.streak: dict[int, int] = {}  # worker index -> quick deaths in a row
        self.due: dict[int, float] = {}  # worker index -> when to restart it
        self.stopping = False

    def run(self, listeners: Listeners) -> int:
        # Signals wait in a queue read by sigtimedwait: no handler runs between fork and exec-free
        # worker start-up, and nothing is missed while the parent forks.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for index in range(self.workers):
                self._start(index)
            while self.pids or (self.due and not self.stopping):
                now = time.monotonic()
                for index, when in list(self.due.items()):
                    if when <= now and not self.stopping:
                        del self.due[index]
                        self._start(index)
                wait = min([1.0, *(when - now for when in self.due.values())])
                info = signal.sigtimedwait(_SIGNALS, max(wait, 0.01))
                if info is not None:
                    self._on_signal(info.si_signo, listeners)
                self._reap()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        log.info("all workers have exited")
        return 0

    def _start(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _die_with_parent(parent)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                for signum in _SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                self.counter.bind(index)
                log.info("worker %d (pid %d) started", index, os.getpid())
                code = self.body(index)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.pids[pid] = index
        self.started[index] = time.monotonic()

    def _on_signal(self, signum: int, listeners: Listeners) -> None:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: reloading %d workers", len(self.pids))
            self._forward(signal.SIGHUP)
        elif signum in (signal.SIGTERM, signal.SIGINT):
            if not self.stopping:
                log.info("%s: stopping %d workers", signal.Signals(signum).name, len(self.pids))
            self.stopping = True
            self.due.clear()
            self._forward(signum)
            # Our copies of the listeners would keep the ports open (and queueing) after the workers
            # close theirs: close them so new connections are refused once the workers stop accepting.
            for sock in listeners:
                if sock is not None:
                    _close_quietly(sock)

    def _forward(self, signum: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):  # exited; reaped next
                os.kill(pid, signum)

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.pids.clear()
                return
            if pid == 0:
                return
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            self.counter.release_worker(index)  # its sessions are gone: give back their slots
            how = _describe(status)
            if self.stopping:
                log.info("worker %d (pid %d) %s", index, pid, how)
                continue
            ran = time.monotonic() - self.started.get(index, 0.0)
            streak = 0 if ran >= _STABLE_AFTER else self.streak.get(index, 0) + 1
            self.streak[index] = streak
            delay = min(_MAX_BACKOFF, 0.5 * 2 ** max(streak - 1, 0)) if streak else 0.0
            log.warning("worker %d (pid %d) %s; restarting it in %.1f s", index, pid, how, delay)
            self.due[index] = time.monotonic() + delay


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM (a drain) to this worker if the parent dies, so no orphan keeps the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: a SIGKILLed parent leaves its workers to be stopped by hand
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()
