"""Server CPU per FTPS session, pyftps against pyftpdlib (issue #5, "Session rate").

    .venv/bin/python bench/session_cpu.py [--sessions 300] [--clients 4] [--runs 5] [--rev HEAD~3]
    .venv/bin/python bench/session_cpu.py --servers pyftps --profile /tmp/pyftps.prof  # cProfile in-process

Each server runs on loopback from a temporary directory (the bench's own ECDSA P-256 certificate). A run
opens ``--sessions`` sessions one after the other from one client process, then the same number split
over ``--clients`` parallel processes; every session is what the bench's ``sessions`` scenario does
(ftplib, TLS 1.3: AUTH TLS, USER/PASS, PWD, QUIT). The figure is the server's utime+stime from
``/proc/<pid>/stat`` over the run divided by the sessions: CPU, not wall time, so it stays stable on a
busy machine. The median of ``--runs`` runs is printed. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import ftplib
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import (
    ALL_PEERS,
    HOST,
    BenchEnv,
    Ports,
    RunningServer,
    _wait_for_greeting,
    cpu_seconds,
    free_port,
    port_block,
)
from scenarios import client_context

USER, PASSWORD = "bench", "bench-password"


def one_session(port: int, context: Any) -> None:
    ftp = ftplib.FTP_TLS(context=context, timeout=10)
    try:
        ftp.connect(HOST, port)
        ftp.login(USER, PASSWORD)
        ftp.pwd()
        ftp.quit()
    finally:
        ftp.close()


def _client(port: int, count: int) -> None:
    context = client_context()
    for _ in range(count):
        one_session(port, context)


def run_sessions(port: int, sessions: int, clients: int) -> None:
    """``sessions`` in sequence, then ``sessions`` spread over ``clients`` processes at once."""
    _client(port, sessions)
    fork = multiprocessing.get_context("fork")
    share, rest = divmod(sessions, clients)
    workers = [fork.Process(target=_client, args=(port, share + (i < rest))) for i in range(clients)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"a client process failed (exit code {worker.exitcode})")


def make_env(workdir: Path) -> BenchEnv:
    from pyftps.tls.certs import ensure_self_signed

    cert, key = ensure_self_signed(workdir / "tls", ["localhost"])
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    return BenchEnv(workdir=workdir, root=root, cert=cert, key=key, user=USER, password=PASSWORD)


def start_profiled(env: BenchEnv, ports: Ports, output: Path) -> RunningServer:
    """pyftps under cProfile in-process; stopped with SIGINT so that the profile gets written."""
    peer = ALL_PEERS["pyftps"]
    confdir = env.workdir / "server-pyftps-profiled"
    confdir.mkdir(parents=True, exist_ok=True)
    argv, extra = peer.command(env, ports, confdir)
    assert argv[1:3] == ["-m", "pyftps"]
    # CPU time, not wall time: on a loaded machine wall time mostly shows who was descheduled.
    code = (
        "import cProfile, sys, time; from pyftps.cli import main; "
        "profile = cProfile.Profile(time.process_time); "
        f"sys.argv = ['pyftps', *sys.argv[1:]]; profile.runcall(main, sys.argv[1:]); "
        f"profile.dump_stats({str(output)!r})"
    )
    argv = [argv[0], "-c", code, *argv[3:]]
    log_path = confdir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=confdir, env={**os.environ, **extra}
        )
    server = RunningServer(peer, ports.control, ports.passive, process, log_path)
    _wait_for_greeting(server)
    return server


def _client_cpu() -> float:
    """CPU seconds of this process and its reaped children: the client side of every session."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(server: RunningServer, sessions: int, clients: int) -> tuple[float, float]:
    """Server and client CPU milliseconds per session over one run (2 x ``sessions`` sessions)."""
    before, client_before = cpu_seconds(server.pid), _client_cpu()
    run_sessions(server.port, sessions, clients)
    client = (_client_cpu() - client_before) * 1000 / (2 * sessions)
    time.sleep(0.2)  # the last QUITs are processed
    return (cpu_seconds(server.pid) - before) * 1000 / (2 * sessions), client


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--servers", nargs="+", default=["pyftps", "pyftpdlib"], choices=["pyftps", "pyftpdlib"]
    )
    parser.add_argument("--sessions", type=int, default=300, help="per half-run (sequential, parallel)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", type=Path, help="run pyftps under cProfile and write the stats here")
    parser.add_argument("--rev", help="measure pyftps as of this git revision (its src/), not the work tree")
    args = parser.parse_args(argv)
    results: dict[str, list[float]] = {}
    client_runs: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="pyftps-session-cpu-") as tmp:
        env = make_env(Path(tmp))
        if args.rev is not None:
            from run import snapshot_pyftps

            source, label = snapshot_pyftps(args.rev, Path(tmp))
            ALL_PEERS["pyftps"].use_source(source, label)  # type: ignore[attr-defined]
        for index, name in enumerate(args.servers):
            ports = Ports(free_port(), port_block(index + 40))
            if args.profile is not None and name == "pyftps":
                server = start_profiled(env, ports, args.profile)
            else:
                server = ALL_PEERS[name].start(env, ports)
            try:
                _client(server.port, 20)  # warm up: credential cache, imports, allocator
                pairs = [measure(server, args.sessions, args.clients) for _ in range(args.runs)]
                runs = [server_ms for server_ms, _ in pairs]
                client_runs[name] = [client_ms for _, client_ms in pairs]
            finally:
                if args.profile is not None and name == "pyftps":
                    server.process.send_signal(signal.SIGINT)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        server.process.wait(timeout=30)
                server.stop()
            results[name] = runs
            shown = " ".join(f"{r:.2f}" for r in runs)
            client_ms = statistics.median(client_runs[name])
            print(
                f"{name:10s} CPU ms/session: median {statistics.median(runs):.2f}  (runs: {shown}); "
                f"client CPU ms/session {client_ms:.2f}"
            )
    if client_runs:
        # Every bench client (ftplib, like the `sessions` scenario) runs on the same cores as the server,
        # so no server, however cheap, can exceed cores / client CPU per session on this machine.
        cores = os.cpu_count() or 1
        client_ms = min(statistics.median(runs) for runs in client_runs.values())
        print(
            f"ceiling on this machine for any server: {cores} cores / {client_ms:.2f} ms of client CPU "
            f"= {cores * 1000 / client_ms:.0f} sessions/s"
        )
    if len(results) == 2:
        ratio = statistics.median(results["pyftps"]) / statistics.median(results["pyftpdlib"])
        print(f"pyftps / pyftpdlib CPU per session: {ratio:.2f}")
    if args.profile is not None:
        print(f"profile written to {args.profile} (python -m pstats {args.profile})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
