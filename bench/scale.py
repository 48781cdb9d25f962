"""Scale scenarios (issue 5): 10,000 idle TLS sessions on one server, and 1000 clients transferring at once.

Both need more sockets than one client process should hold, so the client side is spread over several
forked processes: ``idle_10k`` runs raw asyncio + ``ssl`` sessions (AUTH TLS, USER/PASS, then idle),
``scale_1000`` runs ftplib :class:`~scenarios.ResumingFTP` clients in threads (PROT P, resumed data
sessions). Processes report through a queue and wait on shared events, so every phase (open, NOOP,
transfer, close) starts for all clients at once and is timed by this process.

Both are opt-in (``--only idle_10k``, ``--only scale_1000``) and run on a freshly started server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ftplib
import io
import math
import multiprocessing
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

from peers import HOST, BenchEnv, RunningServer, process_tree
from scenarios import CHUNK, Figures, ResumingFTP, Settings, Skip, client_context

IDLE_SESSIONS = 10_000
IDLE_PROCESSES = 4
IDLE_CONCURRENCY = 32  # sessions being opened at once, per client process
SCALE_CLIENTS = 1000
SCALE_PROCESSES = 8
# Connects + logins in flight per client process. All 1000 at once overflow the servers' accept
# queues (listen backlog: pyftps 512, pyftpdlib 100); with SYN cookies a dropped final ACK leaves the
# client "connected" and waiting for a greeting that never comes. The transfers still start together.
SCALE_LOGINS_AT_ONCE = 12
SCALE_FILE = "scale-1m.bin"
SCALE_SIZE = 1 << 20
PHASE_TIMEOUT = 600.0
FORKING = ("vsftpd", "proftpd")  # one process per session


def rss_kib(server: RunningServer) -> int:
    """Resident memory of the server's process tree (VmRSS summed)."""
    total = 0
    for pid in process_tree(server.pid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


class _Peak:
    """Samples the server's RSS every 0.2 s in a thread; ``peak`` is the highest seen."""

    def __init__(self, server: RunningServer) -> None:
        self.server, self.peak = server, rss_kib(server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_kib(self.server))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, rss_kib(self.server))


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _wait(event: Any) -> None:
    if not event.wait(PHASE_TIMEOUT):
        raise TimeoutError("the bench never started the next phase")


# ------------------------------------------------------------------------------------------ idle_10k


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        if len(line) >= 4 and line[:3].isdigit() and line[3:4] == b" ":
            return line


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> bytes:
    writer.write(line.encode() + b"\r\n")
    return await _reply(reader)


async def _open_idle(
    port: int, user: str, password: str, context: ssl.SSLContext
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for line, code in ((None, b"220"), ("AUTH TLS", b"234")):
            reply = await (_command(reader, writer, line) if line else _reply(reader))
            if not reply.startswith(code):
                raise ConnectionError(f"{line or 'greeting'}: {reply!r}")
        await writer.start_tls(context, server_hostname=HOST)
        for line, code in ((f"USER {user}", b"331"), (f"PASS {password}", b"230")):
            reply = await _command(reader, writer, line)
            if not reply.startswith(code):
                raise ConnectionError(f"{line.split()[0]}: {reply!r}")
    except BaseException:
        writer.transport.abort()
        raise
    return reader, writer


async def _idle_client(count: int, port: int, credentials: tuple[str, str], out: Any, events: Any) -> None:
    go_noop, go_close = events
    context = client_context()
    gate = asyncio.Semaphore(IDLE_CONCURRENCY)
    errors: list[str] = []

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        async with gate:
            try:
                return await asyncio.wait_for(_open_idle(port, *credentials, context), 120)
            except (OSError, EOFError, TimeoutError, ssl.SSLError) as error:
                errors.append(f"{type(error).__name__}: {error}")
                return None

    opened = [s for s in await asyncio.gather(*(one() for _ in range(count))) if s is not None]
    out.put(("opened", len(opened), errors[:1], len(errors)))
    await asyncio.to_thread(_wait, go_noop)

    async def noop(session: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> bool:
        try:
            return (await asyncio.wait_for(_command(*session, "NOOP"), 120)).startswith(b"200")
        except (OSError, EOFError, TimeoutError, ssl.SSLError):
            return False

    answered = sum(await asyncio.gather(*(noop(s) for s in opened)))
    out.put(("noop", answered, [], 0))
    await asyncio.to_thread(_wait, go_close)
    for _, writer in opened:
        writer.transport.abort()


def _idle_process(count: int, port: int, credentials: tuple[str, str], out: Any, events: Any) -> None:
    try:
        asyncio.run(_idle_client(count, port, credentials, out, events))
    except BaseException as error:  # the parent must hear about it, or it waits for ever
        out.put(("crashed", 0, [f"{type(error).__name__}: {error}"], 1))


def idle_10k(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    """10,000 logged-in idle TLS sessions: failures, time to open, PSS per session, NOOP from all."""
    if server.name in FORKING:
        raise Skip(f"{server.name} forks a process per session (~1-2 MiB each): not run at 10,000")
    context = multiprocessing.get_context("fork")
    out: Any = context.Queue()
    go_noop, go_close = context.Event(), context.Event()
    time.sleep(0.5)
    pss0, rss0 = server.pss_kib(), rss_kib(server)
    shares = _split(IDLE_SESSIONS, IDLE_PROCESSES)
    workers = [
        context.Process(
            target=_idle_process,
            args=(share, server.port, (env.user, env.password), out, (go_noop, go_close)),
        )
        for share in shares
    ]
    begin = time.perf_counter()
    for worker in workers:
        worker.start()
    try:
        opened, failures, first = _collect(out, len(workers), "opened")
        open_seconds = time.perf_counter() - begin
        time.sleep(1.0)
        pss1, rss1 = server.pss_kib(), rss_kib(server)
        go_noop.set()
        answered, _, _ = _collect(out, len(workers), "noop")
        alive = server.alive()
    finally:
        go_noop.set()
        go_close.set()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
                worker.join()
    if not alive:
        raise RuntimeError(f"server died with {opened} sessions open")
    figures: Figures = {
        "opened": float(opened),
        "failed": float(failures),
        "noop_answered": float(answered),
        "open_seconds": open_seconds,
        "open_seconds_per_1000": open_seconds * 1000 / max(opened, 1),
        "kib_per_session": (pss1 - pss0) / max(opened, 1),
        "rss_kib_per_session": (rss1 - rss0) / max(opened, 1),
        "pss_idle_mib": pss0 / 1024,
        "pss_loaded_mib": pss1 / 1024,
    }
    if first:
        figures["first_failure"] = first
    return figures


def _collect(out: Any, workers: int, phase: str) -> tuple[int, int, str]:
    """Sum one phase's reports from every client process (a crash counts as a report)."""
    done = failures = 0
    first = ""
    for _ in range(workers):
        kind, count, errors, failed = out.get(timeout=PHASE_TIMEOUT)
        if kind == "crashed":
            raise RuntimeError(f"a client process crashed: {errors[0]}")
        if kind != phase:
            raise RuntimeError(f"expected {phase!r} from a client process, got {kind!r}")
        done += count
        failures += failed
        first = first or (errors[0] if errors else "")
    return done, failures, first


# ------------------------------------------------------------------------------------------ scale_1000


def _scale_client(
    index: int, port: int, credentials: tuple[str, str], phases: _Phases
) -> tuple[float, float, str]:
    """One client: log in, wait for everyone, RETR then STOR 1 MiB; (login s, transfer s, error)."""
    gate, logged_in, start = phases
    ftp = ResumingFTP(context=client_context(), timeout=120)
    login, error = float("nan"), ""
    with gate:
        begin = time.perf_counter()
        try:
            ftp.connect(HOST, port)
            ftp.login(*credentials)
            ftp.prot_p()
            ftp.voidcmd("TYPE I")
            login = time.perf_counter() - begin
        except (OSError, EOFError, ftplib.Error) as failure:
            error = f"login: {type(failure).__name__}: {failure}"
    try:
        logged_in.wait()
    except threading.BrokenBarrierError:
        error = error or "the other clients never logged in"
    if error:
        ftp.close()
        return login, float("nan"), error
    start.wait()
    began = time.perf_counter()
    try:
        conn, _ = ftp.ntransfercmd(f"RETR {SCALE_FILE}")
        received = 0
        buffer = bytearray(CHUNK)
        while count := conn.recv_into(buffer):
            received += count
        _unwrap(conn)
        ftp.voidresp()
        if received != SCALE_SIZE:
            raise ftplib.Error(f"RETR returned {received} bytes, not {SCALE_SIZE}")
        ftp.storbinary(f"STOR up-scale-{index}.bin", io.BytesIO(_PAYLOAD), CHUNK)
        ftp.quit()
        return login, time.perf_counter() - began, ""
    except (OSError, EOFError, ftplib.Error) as failure:
        return login, float("nan"), f"{type(failure).__name__}: {failure}"
    finally:
        ftp.close()


_PAYLOAD = os.urandom(SCALE_SIZE)
_Phases = tuple[threading.Semaphore, threading.Barrier, threading.Event]


def _unwrap(conn: Any) -> None:
    """Answer the server's close_notify (a server that just drops TCP is tolerated here)."""
    if isinstance(conn, ssl.SSLSocket):
        with contextlib.suppress(OSError, ValueError):
            conn.unwrap()
    conn.close()


def _scale_process(
    clients: tuple[int, int], port: int, credentials: tuple[str, str], out: Any, go: Any
) -> None:
    first, count = clients
    results: list[tuple[float, float, str]] = [(float("nan"), float("nan"), "not run")] * count
    logged_in = threading.Barrier(count + 1, timeout=PHASE_TIMEOUT)
    start = threading.Event()
    phases = (threading.Semaphore(SCALE_LOGINS_AT_ONCE), logged_in, start)

    def run(slot: int) -> None:
        results[slot] = _scale_client(first + slot, port, credentials, phases)

    threads = [threading.Thread(target=run, args=(slot,), daemon=True) for slot in range(count)]
    try:
        for thread in threads:
            thread.start()
        logged_in.wait()  # every client of this process has logged in (or failed to)
        out.put(("ready", first, []))
        _wait(go)
    except BaseException as error:  # the parent must hear about it, or it waits for ever
        logged_in.abort()
        out.put(("crashed", first, [f"{type(error).__name__}: {error}"]))
        return
    finally:
        start.set()
    for thread in threads:
        thread.join(PHASE_TIMEOUT)
    out.put(("done", first, results))


def scale_1000(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    """1000 clients log in (TLS, PROT P), then all at once RETR and STOR 1 MiB each.

    Reports successes and failures, aggregate throughput (2 MiB per success over the wall time from
    the start signal to the last client done), p50/p99 per-client completion, the server's CPU
    seconds in that phase, and server RSS idle, at its peak and 5 s after every client has gone.
    """
    source = env.root / SCALE_FILE
    if not source.exists() or source.stat().st_size != SCALE_SIZE:
        source.write_bytes(os.urandom(SCALE_SIZE))
        os.chmod(source, 0o644)  # forking servers serve it as the bench user
    context = multiprocessing.get_context("fork")
    out: Any = context.Queue()
    go = context.Event()
    time.sleep(0.5)
    processes = server.processes()
    rss_idle = rss_kib(server)
    peak = _Peak(server)
    shares = _split(SCALE_CLIENTS, SCALE_PROCESSES)
    firsts = [sum(shares[:i]) for i in range(len(shares))]
    workers = [
        context.Process(
            target=_scale_process, args=((first, share), server.port, (env.user, env.password), out, go)
        )
        for first, share in zip(firsts, shares, strict=True)
    ]
    results: list[tuple[float, float, str]] = []
    try:
        begin = time.perf_counter()
        for worker in workers:
            worker.start()
        for _ in workers:
            kind, _, errors = out.get(timeout=PHASE_TIMEOUT)
            if kind == "crashed":
                raise RuntimeError(f"a client process crashed: {errors[0]}")
        login_seconds = time.perf_counter() - begin
        cpu_before = server.cpu_seconds()
        go.set()
        started = time.perf_counter()
        for _ in workers:
            kind, _, chunk = out.get(timeout=PHASE_TIMEOUT)
            if kind == "crashed":
                raise RuntimeError(f"a client process crashed: {chunk[0]}")
            results += chunk
        wall, transfer_cpu = time.perf_counter() - started, server.cpu_seconds() - cpu_before
    finally:
        go.set()
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
                worker.join()
        rss_peak = peak.stop()
        for index in range(SCALE_CLIENTS):
            with contextlib.suppress(OSError):
                (env.root / f"up-scale-{index}.bin").unlink()
    deadline = time.monotonic() + 30
    while server.processes() > processes and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(5.0)  # pyftps hands freed memory back 2 s after its last transfer or session ends
    rss_after = rss_kib(server)
    if not server.alive():
        raise RuntimeError("the server died under 1000 clients")
    figures = _scale_figures(results, wall, login_seconds)
    figures.update(
        rss_idle_mib=rss_idle / 1024,
        rss_peak_mib=rss_peak / 1024,
        rss_after_mib=rss_after / 1024,
        server_cpu_s=transfer_cpu,  # steadier than throughput on a shared machine
    )
    return figures


def _scale_figures(results: list[tuple[float, float, str]], wall: float, login_seconds: float) -> Figures:
    done = sorted(t for _, t, e in results if not e)
    failures = [e for _, _, e in results if e]
    logins = sorted(t for t, _, _ in results if not math.isnan(t))
    figures: Figures = {
        "clients": float(len(results)),
        "succeeded": float(len(done)),
        "failed": float(len(failures)),
        "login_phase_seconds": login_seconds,
        "login_p99_s": _percentile(logins, 0.99),
        "wall_seconds": wall,
        "throughput_mbps": len(done) * 2 * SCALE_SIZE / 1e6 / wall if wall > 0 else float("nan"),
        "p50_s": _percentile(done, 0.50),
        "p99_s": _percentile(done, 0.99),
        "max_s": done[-1] if done else float("nan"),
    }
    if failures:
        figures["first_failure"] = failures[0]
    return figures


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(fraction * len(values)))]


SCENARIOS: dict[str, Any] = {"idle_10k": idle_10k, "scale_1000": scale_1000}
