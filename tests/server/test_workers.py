"""``pyftps serve --workers 2`` as a real process: shared listeners, limits, bans, signals, restarts."""

from __future__ import annotations

import ftplib
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import LOOPBACK, free_port, free_port_range
from tests.support.processes import RunningProcess, ports_accept, running_process

USER, PASSWORD = "worker", "s3cret-workers"
MAX_PER_IP = 3
BAN_AFTER = 3
WAIT = 30.0  # upper bound on waiting for the server to log something; never a measured duration


@dataclass
class Workers:
    process: RunningProcess
    port: int
    passive: tuple[int, int]
    metrics: tuple[int, int]  # worker 0's and worker 1's metrics ports
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """The matches of ``pattern`` in the log once there are ``count`` of them (bounded wait)."""
        deadline = time.monotonic() + WAIT
        while True:
            found = list(re.finditer(pattern, self.text()))
            if len(found) >= count:
                return found
            if time.monotonic() > deadline or not self.process.is_running():
                raise AssertionError(f"no {count} x {pattern!r} in the log:\n{self.text()}")
            time.sleep(0.05)

    def worker_pids(self) -> dict[int, int]:
        pids: dict[int, int] = {}
        for match in re.finditer(r"worker (\d+) \(pid (\d+)\) started", self.text()):
            pids[int(match[1])] = int(match[2])  # the latest start of each worker wins
        return pids

    def logins_served(self, worker: int) -> float:
        url = f"http://{LOOPBACK}:{self.metrics[worker]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        # Logins, not sessions: readiness probes open sessions too. No sample before the first login.
        found = re.findall(r'^pyftps_logins_total\{result="ok"\} (\S+)$', text, re.MULTILINE)
        return sum(float(value) for value in found)


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(server: Workers, source: str = LOOPBACK) -> ftplib.FTP_TLS:
    ftp = ftplib.FTP_TLS(context=_context(), timeout=20, source_address=(source, 0))
    ftp.connect(LOOPBACK, server.port)
    return ftp


def session(server: Workers) -> int:
    """AUTH TLS, login, PASV, QUIT; returns the passive port offered."""
    ftp = connect(server)
    try:
        ftp.login(USER, PASSWORD)
        reply = ftp.sendcmd("PASV")
        numbers = [int(n) for n in re.findall(r"\d+", reply.split("(", 1)[1])]
        ftp.quit()
    finally:
        ftp.close()
    return numbers[4] * 256 + numbers[5]


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    port = free_port()
    passive = free_port_range(4)
    metrics_low, _ = free_port_range(2)
    log_dir = tmp_path / "logs"
    argv = [
        sys.executable, "-m", "pyftps", "serve",
        "--workers", "2",
        "--host", LOOPBACK,
        "--port", str(port),
        "--implicit-port", "0",
        "--passive-ports", f"{passive[0]}-{passive[1]}",
        "--state-dir", str(tmp_path / "state"),
        "--user", f"{USER}:{PASSWORD}",
        "--metrics-listen", f"{LOOPBACK}:{metrics_low}",
        "--max-per-ip", str(MAX_PER_IP),
        "--ban-after", str(BAN_AFTER),
        "--login-delay", "0",
        "--log-level", "INFO",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFTPS_")}
    ready = ports_accept(LOOPBACK, port, metrics_low, metrics_low + 1)
    with running_process(argv, ready, timeout=WAIT, name="pyftps", env=env, log_dir=log_dir) as process:
        yield Workers(process, port, passive, (metrics_low, metrics_low + 1), log_dir / "pyftps.stderr")


def serve_until(server: Workers, done: Callable[[], bool], limit: int = 400) -> list[int]:
    """Run sessions one after another until ``done()``; the passive ports they were offered."""
    ports = []
    while not done():
        assert len(ports) < limit, "the condition never held"
        ports.append(session(server))
    return ports


def test_sessions_limits_passive_ports_and_bans_across_two_workers(workers: Workers) -> None:
    both = workers.wait_for(r"worker (\d): passive ports (\d+)-(\d+)", 2)
    ranges = {int(m[1]): (int(m[2]), int(m[3])) for m in both}
    low, high = workers.passive
    assert ranges == {0: (low, low + 1), 1: (low + 2, high)}  # disjoint halves of the range

    # Many sessions, until both workers have served some (each counts its own in /metrics).
    ports = serve_until(workers, lambda: min(workers.logins_served(0), workers.logins_served(1)) >= 3)
    assert len(ports) >= 6 and all(low <= port <= high for port in ports)

    # The per-address limit holds exactly, whichever worker accepted each connection.
    with ExitStack() as stack:
        for _ in range(MAX_PER_IP):
            ftp = connect(workers)
            stack.callback(ftp.close)
            assert ftp.welcome is not None and ftp.welcome.startswith("220")
        for _ in range(4):
            with pytest.raises(ftplib.error_temp, match="421 Too many connections from your address"):
                connect(workers).close()
    session(workers)  # the slots were given back

    # Failed logins from one address, wherever they land, ban it on both workers.
    attacker = "127.0.0.2"
    for _ in range(BAN_AFTER):
        ftp = connect(workers, attacker)
        with pytest.raises((ftplib.error_perm, ftplib.error_temp)):  # 530, then 421 for the banning one
            ftp.login(USER, "wrong")
        ftp.close()
    for _ in range(8):  # with two workers, all eight on one worker would be a 1 in 128 chance
        with pytest.raises(ftplib.error_temp, match="421 Too many failed logins"):
            connect(workers, attacker).close()
    assert session(workers)  # other addresses are not affected


def test_reload_restart_and_drain(workers: Workers) -> None:
    workers.wait_for(r"metrics and health on", 2)
    parent = workers.process.pid

    os.kill(parent, signal.SIGHUP)
    workers.wait_for(r"reloaded settings and certificate", 2)
    session(workers)

    pids = workers.worker_pids()
    assert set(pids) == {0, 1}
    os.kill(pids[0], signal.SIGKILL)
    workers.wait_for(rf"worker 0 \(pid {pids[0]}\) was killed by SIGKILL; restarting it")
    workers.wait_for(r"worker 0 \(pid \d+\) started", 2)
    restarted = workers.worker_pids()
    assert restarted[0] != pids[0] and restarted[1] == pids[1]
    workers.wait_for(r"metrics and health on", 3)  # the new worker 0 serves again
    serve_until(workers, lambda: workers.logins_served(0) >= 1)  # the new worker 0 takes sessions
    session(workers)

    os.kill(parent, signal.SIGTERM)
    assert workers.process.proc.wait(timeout=WAIT) == 0
    workers.wait_for(r"all workers have exited")
    for pid in restarted.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _serve_once(
    tmp_path: Path, passive_ports: int, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], tuple[int, int]]:
    """``pyftps serve`` with a fresh passive range, run to its end (tests of refused start-ups)."""
    low, high = free_port_range(passive_ports)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYFTPS_")}
    argv = [
        sys.executable, "-m", "pyftps", "serve",
        *extra,
        "--host", LOOPBACK,
        "--port", str(free_port()),
        "--implicit-port", "0",
        "--passive-ports", f"{low}-{high}",
        "--state-dir", str(tmp_path / "state"),
        "--user", f"{USER}:{PASSWORD}",
    ]  # fmt: skip
    result = subprocess.run(
        argv,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return result, (low, high)


def test_a_passive_range_smaller_than_the_workers_is_refused_at_start(tmp_path: Path) -> None:
    # The environment and --workers are the same setting.
    result, (low, high) = _serve_once(tmp_path, 2, env={"PYFTPS_SERVER_WORKERS": "3"})
    assert result.returncode == 2
    assert f"passive port range {low}-{high} has 2 port(s), fewer than the 3 workers" in result.stderr
    assert "Traceback" not in result.stderr


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_do_not_outlive_a_killed_parent(workers: Workers) -> None:
    workers.wait_for(r"metrics and health on", 2)
    pids = workers.worker_pids()
    os.kill(workers.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT
    while any(_alive(pid) for pid in pids.values()):
        assert time.monotonic() < deadline, f"workers {pids} outlived their parent"
        time.sleep(0.05)


@pytest.mark.parametrize("count", ["1", "2"])
def test_a_broken_virtual_host_stops_start_up_instead_of_crash_looping_workers(
    tmp_path: Path, count: str
) -> None:
    (tmp_path / "users.db").write_text("not a database\n")  # well-formed URL, unusable store
    config = tmp_path / "pyftps.toml"
    config.write_text(
        "[[vhost]]\n"
        'names = ["a.test"]\n'
        f'root = "{tmp_path / "a"}"\n'
        f'users = "sqlite:///{tmp_path / "users.db"}"\n'
    )
    result, _ = _serve_once(tmp_path, 4, "--config", str(config), "--workers", count)
    assert result.returncode == 2, result.stderr
    assert "pyftps: virtual host:" in result.stderr
    assert "Traceback" not in result.stderr
