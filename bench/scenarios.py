"""The measurements. Each scenario runs one repetition against one running server and returns figures.

A scenario raises :class:`Skip` when the server does not support what it measures; any other exception
is recorded as an error for that repetition. Clients: curl (``--ssl-reqd -k --tlsv1.3``, which resumes
the control session on data connections by itself) and ftplib with :class:`ResumingFTP`.
"""

from __future__ import annotations

import contextlib
import ftplib
import json
import multiprocessing
import os
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lean
from peers import BENCH_DIR, HOST, BenchEnv, RunningServer

CHUNK = 256 * 1024
BIG_FILE = "big.bin"
LIST_DIR = "list2000"
LIST_FILES = 2000
SETTLE = 0.3  # seconds for a forking server to reap a finished session before reading its CPU time
CLIENT_TIMEOUT = 60.0
DOWNLOADER_NICE = 10

Figures = dict[str, float | str]  # numbers, and the text of a first error where useful


class Skip(Exception):
    """The server cannot do what this scenario measures (not an error)."""


@dataclass(frozen=True)
class Settings:
    file_size: int
    idle_sessions: int
    session_seconds: float
    session_clients: int
    list_reps: int
    latency_seconds: float
    latency_downloads: int


QUICK = Settings(64 << 20, 200, 5.0, 4, 20, 5.0, 4)
FULL = Settings(512 << 20, 1000, 10.0, 4, 50, 10.0, 4)


# ------------------------------------------------------------------------------------------ fixtures


def prepare_root(env: BenchEnv, settings: Settings) -> None:
    """The shared served directory: the transfer file and a directory of 2000 small files."""
    big = env.root / BIG_FILE
    if not big.exists() or big.stat().st_size != settings.file_size:
        block = os.urandom(1 << 20)  # incompressible; no server here compresses, but be safe
        with big.open("wb") as out:
            for _ in range(settings.file_size >> 20):
                out.write(block)
    listing = env.root / LIST_DIR
    listing.mkdir(exist_ok=True)
    for i in range(LIST_FILES):
        path = listing / f"file-{i:05d}.dat"
        if not path.exists():
            path.write_bytes(b"x" * (i % 97))


def client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the bench's own self-signed certificate
    return context


class ResumingFTP(ftplib.FTP_TLS):
    """ftplib client whose PROT P data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            control = self.sock
            assert isinstance(control, ssl.SSLSocket)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=control.session)
        return conn, size


def login(server: RunningServer, env: BenchEnv, *, prot_p: bool = True) -> ResumingFTP:
    ftp = ResumingFTP(context=client_context(), timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(HOST, server.port)
        ftp.login(env.user, env.password)  # AUTH TLS first
        if prot_p:
            ftp.prot_p()
    except BaseException:
        ftp.close()
        raise
    return ftp


def _close_data(conn: socket.socket) -> None:
    """Answer the server's close_notify (a server that just drops TCP is tolerated here)."""
    if isinstance(conn, ssl.SSLSocket):
        with contextlib.suppress(OSError, ValueError):
            conn.unwrap()
    conn.close()


def _quit(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        ftp.close()


def _mbps(size: int, seconds: float) -> float:
    return size / 1e6 / seconds if seconds > 0 else float("nan")


def _cpu_per_gb(cpu: float, size: int) -> float:
    return cpu / (size / 1e9)


# ------------------------------------------------------------------------------------------ transfers


def _curl_argv(server: RunningServer, env: BenchEnv, path: str) -> list[str]:
    return [
        "curl", "-sS", "--ssl-reqd", "-k", "--tlsv1.3", "--ftp-pasv", "--ftp-method", "nocwd",
        "--max-time", "600", "-u", f"{env.user}:{env.password}",
        "-w", "%{time_starttransfer} %{time_total} %{speed_download} %{speed_upload} "
              "%{size_download} %{size_upload}",
        f"ftp://{HOST}:{server.port}/{path}",
    ]  # fmt: skip


def _run_curl(argv: list[str]) -> list[float]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=700, check=False)
    if out.returncode:
        raise RuntimeError(f"curl exit {out.returncode}: {out.stderr.strip()[:300]}")
    return [float(v) for v in out.stdout.split()]


def _transfer_figures(size: int, data_seconds: float, total_seconds: float, cpu: float) -> Figures:
    """``mbps``: data phase; ``mbps_total``: command to 226; ``cpu_s_per_gb``: server CPU over that span
    (read while the session is still open, so a forking server's session processes are counted)."""
    return {
        "mbps": _mbps(size, data_seconds),
        "mbps_total": _mbps(size, total_seconds),
        "cpu_s_per_gb": _cpu_per_gb(cpu, size),
    }


def _curl_figures(size: int, start: float, total: float, speed: float) -> Figures:
    """Server CPU is not read around curl runs: a forking server's session processes have exited by
    then, and vsftpd's are not always reaped by a process in the server's tree (their time is lost)."""
    return {"mbps": _mbps(size, total - start), "mbps_total": _mbps(size, total), "curl_mbps": speed / 1e6}


def retr_curl(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    start, total, speed, _, got, _ = _run_curl([*_curl_argv(server, env, BIG_FILE), "-o", "/dev/null"])
    if int(got) != settings.file_size:
        raise RuntimeError(f"curl received {int(got)} of {settings.file_size} bytes")
    return _curl_figures(settings.file_size, start, total, speed)


@dataclass(frozen=True)
class _Timed:
    size: int
    begin: float  # command sent
    first: float  # first data byte
    last: float  # last data byte (uploads: the server's close_notify answered ours)
    end: float  # 226 read


def _retr_once(ftp: ResumingFTP) -> _Timed:
    begin = time.perf_counter()
    conn, _ = ftp.ntransfercmd(f"RETR {BIG_FILE}")
    buffer = bytearray(CHUNK)
    received, first = 0, 0.0
    while count := conn.recv_into(buffer):
        if not received:
            first = time.perf_counter()
        received += count
    last = time.perf_counter()
    _close_data(conn)
    ftp.voidresp()
    return _Timed(received, begin, first, last, time.perf_counter())


def _stor_once(ftp: ResumingFTP, source: Path, name: str) -> _Timed:
    begin = time.perf_counter()
    conn, _ = ftp.ntransfercmd(f"STOR {name}")
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    first, sent = time.perf_counter(), 0
    with source.open("rb", buffering=0) as stream:
        while count := stream.readinto(buffer):
            conn.sendall(view[:count])
            sent += count
    _close_data(conn)
    last = time.perf_counter()
    ftp.voidresp()
    return _Timed(sent, begin, first, last, time.perf_counter())


def retr_ftplib(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    ftp = login(server, env)
    try:
        ftp.voidcmd("TYPE I")
        cpu0 = server.cpu_seconds()  # after login: argon2/PAM/crypt costs are not transfer costs
        timed = _retr_once(ftp)
        cpu = server.cpu_seconds() - cpu0
    finally:
        _quit(ftp)
    if timed.size != settings.file_size:
        raise RuntimeError(f"received {timed.size} of {settings.file_size} bytes")
    return _transfer_figures(timed.size, timed.last - timed.first, timed.end - timed.begin, cpu)


def stor_curl(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    name = f"up-curl-{server.name}.bin"
    try:
        start, total, _, speed, _, sent = _run_curl(
            [*_curl_argv(server, env, name), "-T", str(env.root / BIG_FILE)]
        )
        stored = (env.root / name).stat().st_size
    finally:
        with contextlib.suppress(OSError):
            (env.root / name).unlink()
    if int(sent) != settings.file_size or stored != settings.file_size:
        raise RuntimeError(f"curl sent {int(sent)}, server stored {stored} of {settings.file_size} bytes")
    return _curl_figures(settings.file_size, start, total, speed)


def stor_ftplib(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    """Data phase: from the first byte sent until the server's close_notify answers ours (all consumed)."""
    name = f"up-ftplib-{server.name}.bin"
    ftp = login(server, env)
    try:
        ftp.voidcmd("TYPE I")
        cpu0 = server.cpu_seconds()
        timed = _stor_once(ftp, env.root / BIG_FILE, name)
        cpu = server.cpu_seconds() - cpu0
        _quit(ftp)
        stored = (env.root / name).stat().st_size
    finally:
        ftp.close()
        with contextlib.suppress(OSError):
            (env.root / name).unlink()
    if stored != settings.file_size:
        raise RuntimeError(f"server stored {stored} of {settings.file_size} bytes")
    figures = _transfer_figures(settings.file_size, timed.last - timed.first, timed.end - timed.begin, cpu)
    figures["reply_ms"] = (timed.end - timed.last) * 1000  # after the data: the 226 (fsync, rename) comes
    return figures


# ------------------------------------------------------------------------------------------ raw TLS


def raw_tls(env: BenchEnv, settings: Settings, *, upload: bool) -> Figures:
    """Python ``ssl`` sender → receiver over loopback; ``upload`` makes the receiver write a file."""
    script = str(BENCH_DIR / "rawtls.py")
    out = env.workdir / "raw-upload.bin" if upload else Path("-")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    receiver = subprocess.Popen(
        [sys.executable, script, "receive", str(env.cert), str(env.key), str(out)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        subprocess.run(
            [sys.executable, script, "send", str(port), str(env.root / BIG_FILE)], check=True, timeout=600
        )
        result: dict[str, Any] = json.loads(receiver.stdout.readline())
        receiver.wait(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        if upload:
            with contextlib.suppress(OSError):
                out.unlink()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result["bytes"] != settings.file_size:
        raise RuntimeError(f"raw TLS moved {result['bytes']} of {settings.file_size} bytes")
    return {
        "mbps": _mbps(result["bytes"], result["seconds"]),
        "cpu_s_per_gb_both_ends": _cpu_per_gb(cpu, result["bytes"]),
    }


# ------------------------------------------------------------------------------------------ sessions


def _session_loop(port: int, credentials: tuple[str, str], window: tuple[float, float], out: Any) -> None:
    """One client process: AUTH TLS, USER/PASS, PWD, QUIT in a loop (a full handshake each time).

    The lean client (bench/lean.py), not ftplib: ftplib cost more CPU per session than the servers.
    """
    user, password = credentials
    start_at, stop_at = window
    context = client_context()
    done = errors = 0
    last_error = ""
    while time.monotonic() < start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    while time.monotonic() < stop_at:
        try:
            lean.session(port, context, user, password)
            if time.monotonic() <= stop_at:
                done += 1
        except (OSError, EOFError, lean.ReplyError) as error:
            errors += 1
            last_error = f"{type(error).__name__}: {error}"
    out.put((done, errors, last_error, time.process_time() - cpu0))


def session_rate(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    context = multiprocessing.get_context("fork")
    results: Any = context.Queue()
    start_at = time.monotonic() + 0.5
    stop_at = start_at + settings.session_seconds
    workers = [
        context.Process(
            target=_session_loop,
            args=(server.port, (env.user, env.password), (start_at, stop_at), results),
        )
        for _ in range(settings.session_clients)
    ]
    for worker in workers:
        worker.start()
    try:
        while time.monotonic() < start_at:
            time.sleep(0.01)
        cpu0 = server.cpu_seconds()
        outcomes = [results.get(timeout=settings.session_seconds + 60) for _ in workers]
        time.sleep(SETTLE)
        cpu = server.cpu_seconds() - cpu0
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
                worker.join()
    done = sum(o[0] for o in outcomes)
    errors = sum(o[1] for o in outcomes)
    if errors and not done:
        raise RuntimeError(f"every session failed: {next(o[2] for o in outcomes if o[2])}")
    figures: Figures = {
        "per_s": done / settings.session_seconds,
        "errors": float(errors),
    }
    per_session = cpu * 1000 / done if done else float("nan")
    if done:
        # The clients share the server's cores: cores / client CPU per session bounds any server's rate here.
        client_ms = sum(o[3] for o in outcomes) * 1000 / done
        figures["client_cpu_ms_per_session"] = client_ms
        figures["ceiling_per_s"] = (os.cpu_count() or 1) * 1000 / client_ms
    if server.peer.orphans_sessions:
        figures["cpu_ms_per_session_lower_bound"] = per_session
    else:
        figures["cpu_ms_per_session"] = per_session
    if errors:
        figures["last_error"] = next(o[2] for o in outcomes if o[2])
    return figures


def _wait_settled(server: RunningServer, processes: int, timeout: float = 30.0) -> None:
    """Until a forking server is back to its idle process count (or the timeout)."""
    deadline = time.monotonic() + timeout
    while server.processes() > processes and time.monotonic() < deadline:
        time.sleep(0.1)


def idle_memory(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    """Open N logged-in TLS control sessions (4 opener threads), read the server's PSS, close them."""
    count = settings.idle_sessions
    processes = server.processes()
    context = client_context()
    # One session first: pyftps verifies an argon2id hash once per user, then answers repeat logins
    # from its credential cache; that first verification is reported apart, not inside the opening time.
    first = time.perf_counter()
    lean.session(server.port, context, env.user, env.password, CLIENT_TIMEOUT)
    first_session = time.perf_counter() - first
    time.sleep(0.5)
    pss0 = server.pss_kib()
    sessions: list[lean.LeanControl] = []
    failures: list[str] = []
    lock = threading.Lock()

    def open_one(_: int) -> None:
        try:
            ftp = lean.LeanControl(server.port, context, CLIENT_TIMEOUT)
            try:
                ftp.login(env.user, env.password)
            except BaseException:
                ftp.close()
                raise
        except (OSError, EOFError, lean.ReplyError) as error:
            with lock:
                failures.append(f"{type(error).__name__}: {error}")
            return
        with lock:
            sessions.append(ftp)

    try:
        begin, client_cpu0 = time.perf_counter(), time.process_time()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(open_one, range(count)))
        elapsed = time.perf_counter() - begin
        client_cpu = time.process_time() - client_cpu0
        time.sleep(1.0)
        pss1 = server.pss_kib()
        alive = server.alive()
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda f: f.close(), sessions))
        _wait_settled(server, processes)
    if not alive:
        raise RuntimeError(f"server died with {len(sessions)} sessions open")
    if len(failures) > count // 100:
        raise RuntimeError(f"{len(failures)} of {count} sessions failed to open, first: {failures[0]}")
    figures: Figures = {
        "kib_per_session": (pss1 - pss0) / len(sessions),
        "open_seconds": elapsed,
        "open_seconds_per_1000": elapsed * 1000 / len(sessions),
        # This process opened them (4 threads) on the server's cores: its CPU is part of every server's time.
        "client_cpu_seconds_per_1000": client_cpu * 1000 / len(sessions),
        "first_session_seconds": first_session,
        "pss_idle_mib": pss0 / 1024,
        "pss_loaded_mib": pss1 / 1024,
        "opened": float(len(sessions)),
        "failed": float(len(failures)),
    }
    if failures:
        figures["first_failure"] = failures[0]
    return figures


# ------------------------------------------------------------------------------------------ listings


def _list_once(ftp: ResumingFTP, command: str) -> int:
    """One LIST/MLSD over PROT P; the number of lines received."""
    try:
        conn, _ = ftp.ntransfercmd(command)
    except ftplib.error_perm as error:
        if str(error).startswith(("500", "502", "504")):
            raise Skip(f"{command} not supported: {error}") from None
        raise
    lines = 0
    buffer = bytearray(CHUNK)
    while count := conn.recv_into(buffer):
        lines += buffer.count(b"\n", 0, count)
    _close_data(conn)
    ftp.voidresp()
    return lines


def _listing(server: RunningServer, env: BenchEnv, settings: Settings, command: str) -> Figures:
    """Wall time of one listing (median, min) and the server's CPU per listing (``cpu_ms``).

    Wall times swing with whatever else loads the machine; the CPU figure much less. It is read
    while the session is still open, so a forking server's session process is counted too.
    """
    ftp = login(server, env)
    try:
        ftp.cwd(LIST_DIR)
        ftp.voidcmd("TYPE A")
        times: list[float] = []
        entries = 0
        _list_once(ftp, command)  # warms caches; not counted
        cpu = server.cpu_seconds()
        for _ in range(settings.list_reps):
            begin = time.perf_counter()
            entries = _list_once(ftp, command)
            times.append((time.perf_counter() - begin) * 1000)
        cpu = server.cpu_seconds() - cpu
    finally:
        _quit(ftp)
    if entries < LIST_FILES:
        raise RuntimeError(f"{command} returned {entries} lines, expected at least {LIST_FILES}")
    return {
        "ms": statistics.median(times),
        "ms_min": min(times),
        "cpu_ms": cpu * 1000 / settings.list_reps,
        "entries": float(entries),
    }


def list_2000(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    return _listing(server, env, settings, "LIST")


def mlsd_2000(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    if not server.peer.mlsd:
        raise Skip(f"{server.name} has no MLSD")
    return _listing(server, env, settings, "MLSD")


# ------------------------------------------------------------------------------------------ latency


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _noop_times(ftp: ftplib.FTP, until: float, pause: float) -> list[float]:
    times = []
    while time.monotonic() < until:
        begin = time.perf_counter()
        ftp.voidcmd("NOOP")
        times.append((time.perf_counter() - begin) * 1000)
        time.sleep(pause)
    return times


def _download_loop(port: int, credentials: tuple[str, str], window: tuple[float, float], out: Any) -> None:
    """One client process: one login, then RETR of the big file again and again; bytes inside the window."""
    user, password = credentials
    start_at, stop_at = window
    # Below the server and the NOOP client in CPU priority: on 2 cores, 4 downloaders at normal priority
    # would make the NOOP figure measure the client's own scheduling delays rather than the server.
    os.nice(DOWNLOADER_NICE)
    moved, error = 0, ""
    ftp = ResumingFTP(context=client_context(), timeout=CLIENT_TIMEOUT)
    try:
        ftp.connect(HOST, port)
        ftp.login(user, password)
        ftp.prot_p()
        ftp.voidcmd("TYPE I")
        buffer = bytearray(CHUNK)
        while time.monotonic() < stop_at:
            conn, _ = ftp.ntransfercmd(f"RETR {BIG_FILE}")
            while count := conn.recv_into(buffer):
                now = time.monotonic()
                if now >= stop_at:
                    break
                if now >= start_at:
                    moved += count
            else:
                _close_data(conn)
                ftp.voidresp()
                continue
            conn.close()  # the window is over: drop the transfer mid-file
            break
    except (OSError, EOFError, ftplib.Error) as failure:
        error = f"{type(failure).__name__}: {failure}"
    finally:
        ftp.close()
    out.put((moved, error))


def noop_latency(server: RunningServer, env: BenchEnv, settings: Settings) -> Figures:
    """NOOP round trips on one session while N ftplib PROT P downloads (own processes) run flat out.

    The downloaders log in before the window opens, so login costs (argon2, PAM) stay out of it.
    """
    context = multiprocessing.get_context("fork")
    results: Any = context.Queue()
    ftp = login(server, env, prot_p=False)
    try:
        idle = _noop_times(ftp, time.monotonic() + 1.0, 0.005)
        start_at = time.monotonic() + 3.0  # time for N logins and for the downloads to reach speed
        stop_at = start_at + settings.latency_seconds
        workers = [
            context.Process(
                target=_download_loop,
                args=(server.port, (env.user, env.password), (start_at, stop_at), results),
            )
            for _ in range(settings.latency_downloads)
        ]
        for worker in workers:
            worker.start()
        try:
            while time.monotonic() < start_at:
                time.sleep(0.01)
            loaded = _noop_times(ftp, stop_at, 0.01)
            outcomes = [results.get(timeout=60) for _ in workers]
        finally:
            for worker in workers:
                worker.join(timeout=10)
                if worker.is_alive():
                    worker.kill()
                    worker.join()
    finally:
        _quit(ftp)
    errors = [e for _, e in outcomes if e]
    if errors:
        raise RuntimeError(f"downloads failed: {errors[0]}")
    return {
        "p99_ms": _percentile(loaded, 0.99),
        "p50_ms": _percentile(loaded, 0.50),
        "max_ms": max(loaded),
        "idle_p99_ms": _percentile(idle, 0.99),
        "noops": float(len(loaded)),
        "download_mbps": sum(m for m, _ in outcomes) / 1e6 / settings.latency_seconds,
    }


def repeat_in_session(
    server: RunningServer, env: BenchEnv, what: str, seconds: float, ready: Callable[[], None]
) -> int:
    """Log in once, call ``ready()`` (e.g. attach a profiler), then repeat RETR, STOR, LIST or MLSD."""
    ftp = login(server, env)
    name = f"up-profile-{server.name}.bin"
    count = 0
    try:
        if what in ("LIST", "MLSD"):
            ftp.cwd(LIST_DIR)
            ftp.voidcmd("TYPE A")
        else:
            ftp.voidcmd("TYPE I")
        ready()
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if what == "RETR":
                _retr_once(ftp)
            elif what == "STOR":
                _stor_once(ftp, env.root / BIG_FILE, name)
            else:
                _list_once(ftp, what)
            count += 1
    finally:
        _quit(ftp)
        with contextlib.suppress(OSError):
            (env.root / name).unlink()
    return count


Scenario = Callable[[RunningServer, BenchEnv, Settings], Figures]

SCENARIOS: dict[str, Scenario] = {
    "retr_curl": retr_curl,
    "retr_ftplib": retr_ftplib,
    "stor_curl": stor_curl,
    "stor_ftplib": stor_ftplib,
    "sessions": session_rate,
    "idle_memory": idle_memory,
    "list": list_2000,
    "mlsd": mlsd_2000,
    "latency": noop_latency,
}
