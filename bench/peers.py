"""The servers under test: how to configure, start, observe (CPU, memory) and stop each one.

Every server runs on loopback high ports from its own configuration in a temporary directory, in its own
process group, so that stopping it also stops every session process a forking server left behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PROFTPD_PREFIX = BENCH_DIR / ".peers" / "proftpd"
VSFTPD = Path("/usr/sbin/vsftpd")
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 15.0
PYFTPS_CONNECTION_LIMIT = 5000


class PeerUnavailable(Exception):
    """The peer is not installed or cannot run here; the message says why (shown as a skip)."""


@dataclass(frozen=True)
class BenchEnv:
    """What every server shares: one certificate, one served directory, one account."""

    workdir: Path  # temporary directory of this run
    root: Path  # the directory every server serves (owned by the bench user)
    cert: Path
    key: Path
    user: str
    password: str


@dataclass(frozen=True)
class Ports:
    control: int
    passive: tuple[int, int]


# ------------------------------------------------------------------------------------------ /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (forking servers keep one or two processes per session)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process tree, including descendants that already exited and were reaped.

    Summing utime+stime+cutime+cstime over the live processes counts every process once: a reaped
    child's time (and its own reaped children's) lives on in its parent's cutime/cstime.
    """
    ticks = 0
    for member in process_tree(pid):
        fields = _stat_fields(member)
        if fields is not None:
            ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / CLK_TCK


def pss_kib(pid: int) -> int:
    """Proportional set size of a process tree in KiB (``/proc/<pid>/smaps_rollup``)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
    return total


# ------------------------------------------------------------------------------------------ servers


@dataclass
class RunningServer:
    """A started server: its address, its process (group leader) and its log."""

    peer: Peer
    port: int
    passive: tuple[int, int]
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        return self.peer.name

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def pss_kib(self) -> int:
        return pss_kib(self.pid)

    def processes(self) -> int:
        return len(process_tree(self.pid))

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the whole process group, SIGKILL after a grace period."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        # Session processes of forking servers may outlive their master: end the rest of the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


class Peer(ABC):
    """One FTPS server implementation."""

    name: str = ""
    mlsd: bool = True  # offers MLSD
    errors_on_stdin: bool = False  # vsftpd writes its start-up errors to file descriptor 0
    # vsftpd's session processes end up orphaned (re-parented to init), so CPU they used is not in the
    # server's tree once a session has ended: per-session CPU is then only a lower bound.
    orphans_sessions: bool = False

    def check(self) -> None:  # noqa: B027 (optional hook: most peers need no check)
        """Raise :class:`PeerUnavailable` when the server cannot run here."""

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def command(self, env: BenchEnv, ports: Ports, confdir: Path) -> tuple[list[str], dict[str, str]]:
        """argv and extra environment; writes any configuration file into ``confdir``."""

    def start(self, env: BenchEnv, ports: Ports) -> RunningServer:
        confdir = env.workdir / f"server-{self.name}"
        confdir.mkdir(parents=True, exist_ok=True)
        argv, extra_env = self.command(env, ports, confdir)
        log_path = confdir / "server.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=log if self.errors_on_stdin else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=confdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **extra_env},
                start_new_session=True,
            )
        server = RunningServer(self, ports.control, ports.passive, process, log_path)
        try:
            _wait_for_greeting(server)
        except BaseException:
            server.stop()
            raise
        return server


def _wait_for_greeting(server: RunningServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not server.alive():
            raise PeerUnavailable(f"{server.name} exited at start-up:\n{server.log_tail()}")
        try:
            with socket.create_connection((HOST, server.port), timeout=2) as sock:
                greeting = sock.recv(512)
                if greeting.startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
                last = RuntimeError(f"unexpected greeting {greeting!r}")
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise PeerUnavailable(f"{server.name} did not greet on port {server.port}: {last}\n{server.log_tail()}")


class Pyftps(Peer):
    name = "pyftps"

    def __init__(self) -> None:
        self._help: str | None = None
        self.source: Path | None = None  # a snapshot's src/ directory; None: the work tree (editable install)
        self.label = "work tree"

    def use_source(self, source: Path, label: str) -> None:
        self.source, self.label, self._help = source, label, None

    def _env(self) -> dict[str, str]:
        return {} if self.source is None else {"PYTHONPATH": str(self.source)}

    def version(self) -> str:
        code = "import importlib.metadata as m, pyftps; print(m.version('pyftps'), pyftps.__file__)"
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, **self._env()},
            check=False,
        )
        version, _, path = out.stdout.strip().partition(" ")
        return f"pyftps {version or '?'} ({self.label}: {Path(path).parent.parent if path else '?'})"

    def command(self, env: BenchEnv, ports: Ports, confdir: Path) -> tuple[list[str], dict[str, str]]:
        return [*self.base_argv(env, ports, confdir), *self.limit_flags()], self._env()

    def base_argv(self, env: BenchEnv, ports: Ports, confdir: Path) -> list[str]:
        return [
            sys.executable, "-m", "pyftps", "serve",
            "--root", str(env.root),
            "--host", HOST,
            "--port", str(ports.control),
            "--implicit-port", "0",
            "--passive-ports", f"{ports.passive[0]}-{ports.passive[1]}",
            "--cert", str(env.cert),
            "--key", str(env.key),
            "--user", f"{env.user}:{env.password}",
            "--state-dir", str(confdir / "state"),
            "--login-delay", "0",
            "--log-level", "WARNING",
        ]  # fmt: skip

    def limit_flags(self) -> list[str]:
        """Connection limits high enough for the idle-session scenario (the defaults allow 20 per
        address and 10 per user: hardening against guessing, not a capacity limit). The peers run
        unlimited too (vsftpd max_clients/max_per_ip 0, ProFTPD MaxInstances 4000, pyftpdlib 0)."""
        if self._help is None:
            out = subprocess.run(
                [sys.executable, "-m", "pyftps", "serve", "--help"],
                capture_output=True,
                text=True,
                check=False,
            )
            self._help = out.stdout
        flags = []
        for flag in ("--max-connections", "--max-per-ip", "--max-per-user"):
            if flag in self._help:  # older trees lack them
                flags += [flag, str(PYFTPS_CONNECTION_LIMIT)]
        return flags


class Pyftpdlib(Peer):
    name = "pyftpdlib"

    def check(self) -> None:
        probe = subprocess.run(
            [sys.executable, "-c", "import pyftpdlib, OpenSSL"], capture_output=True, check=False
        )
        if probe.returncode:
            raise PeerUnavailable("pyftpdlib/pyopenssl not in the venv (bash bench/setup.sh)")

    def version(self) -> str:
        out = subprocess.run(
            [sys.executable, "-c", "import pyftpdlib; print(pyftpdlib.__ver__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        return f"pyftpdlib {out.stdout.strip() or '?'}"

    def command(self, env: BenchEnv, ports: Ports, confdir: Path) -> tuple[list[str], dict[str, str]]:
        return [
            sys.executable, str(BENCH_DIR / "pyftpdlib_server.py"),
            HOST, str(ports.control), str(ports.passive[0]), str(ports.passive[1]),
            str(env.cert), str(env.key), env.user, env.password, str(env.root),
        ], {}  # fmt: skip


class Vsftpd(Peer):
    name = "vsftpd"
    mlsd = False
    errors_on_stdin = True
    orphans_sessions = True

    def check(self) -> None:
        if not VSFTPD.exists():
            raise PeerUnavailable("vsftpd is not installed (bash bench/setup.sh)")

    def version(self) -> str:
        # vsftpd prints its version on file descriptor 0.
        out = subprocess.run(
            f"{VSFTPD} -v 0>&1",
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        return out.stdout.strip() or "vsftpd ?"

    def command(self, env: BenchEnv, ports: Ports, confdir: Path) -> tuple[list[str], dict[str, str]]:
        conf = confdir / "vsftpd.conf"
        empty = confdir / "empty"
        empty.mkdir(exist_ok=True)
        empty.chmod(0o755)
        settings = {
            "listen": "YES",
            "listen_ipv6": "NO",
            "listen_address": HOST,
            "listen_port": ports.control,
            "background": "NO",
            "anonymous_enable": "NO",
            "local_enable": "YES",
            "write_enable": "YES",
            "local_umask": "022",
            "local_root": env.root,
            "userlist_enable": "NO",
            "pam_service_name": "vsftpd",
            "secure_chroot_dir": empty,
            "seccomp_sandbox": "NO",
            "isolate": "NO",
            "isolate_network": "NO",
            "pasv_enable": "YES",
            "pasv_min_port": ports.passive[0],
            "pasv_max_port": ports.passive[1],
            "max_clients": 0,
            "max_per_ip": 0,
            "idle_session_timeout": 900,
            "data_connection_timeout": 300,
            "xferlog_enable": "NO",
            "vsftpd_log_file": confdir / "vsftpd.xfer.log",
            "ssl_enable": "YES",
            "rsa_cert_file": env.cert,
            "rsa_private_key_file": env.key,
            "ssl_tlsv1": "YES",  # 3.0.3: "TLS 1.0 and later"; newer builds split it per version
            "ssl_sslv2": "NO",
            "ssl_sslv3": "NO",
            "require_ssl_reuse": "YES",
            "force_local_data_ssl": "YES",
            "force_local_logins_ssl": "YES",
            "allow_anon_ssl": "NO",
            "ssl_ciphers": "HIGH",
        }
        for option, value in (("ssl_tlsv1_1", "NO"), ("ssl_tlsv1_2", "YES"), ("ssl_tlsv1_3", "YES")):
            if _vsftpd_knows(option):  # an unknown option makes vsftpd refuse to start
                settings[option] = value
        conf.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        # The config path carries "pyftps-bench" (temp dir name): bench/setup.sh spares such processes.
        return [str(VSFTPD), str(conf)], {}


def _vsftpd_knows(option: str) -> bool:
    """Whether this vsftpd build parses ``option`` (3.0.3 predates ssl_tlsv1_3, but negotiates TLS 1.3)."""
    try:
        return option.encode() in VSFTPD.read_bytes()
    except OSError:
        return False


class Proftpd(Peer):
    name = "proftpd"

    binary = PROFTPD_PREFIX / "usr" / "sbin" / "proftpd"
    modules = PROFTPD_PREFIX / "usr" / "lib" / "proftpd"

    def _env(self) -> dict[str, str]:
        libs = [
            PROFTPD_PREFIX / "usr" / "lib" / "x86_64-linux-gnu",
            PROFTPD_PREFIX / "lib" / "x86_64-linux-gnu",
            self.modules,
        ]
        return {"LD_LIBRARY_PATH": ":".join(str(p) for p in libs)}

    def check(self) -> None:
        if not self.binary.exists() or not (self.modules / "mod_tls.so").exists():
            raise PeerUnavailable(f"ProFTPD/mod_tls not unpacked in {PROFTPD_PREFIX} (bash bench/setup.sh)")

    def version(self) -> str:
        out = subprocess.run(
            [str(self.binary), "-v"],
            capture_output=True,
            text=True,
            env={**os.environ, **self._env()},
            check=False,
        )
        text = (out.stdout + out.stderr).strip()
        match = re.search(r"ProFTPD Version \S+", text)
        return (match.group(0) if match else text or "ProFTPD ?") + " (mod_tls)"

    def command(self, env: BenchEnv, ports: Ports, confdir: Path) -> tuple[list[str], dict[str, str]]:
        conf = confdir / "proftpd.conf"
        conf.write_text(
            f"""\
ServerName              "pyftps bench ProFTPD"
ServerType              standalone
DefaultServer           on
UseIPv6                 off
DefaultAddress          {HOST}
SocketBindTight         on
Port                    {ports.control}
PassivePorts            {ports.passive[0]} {ports.passive[1]}
User                    {env.user}
Group                   {env.user}
Umask                   022
MaxInstances            4000
MaxLoginAttempts        3
UseReverseDNS           off
WtmpLog                 off
RequireValidShell       off
AuthOrder               mod_auth_unix.c
AllowOverwrite          on
TimeoutIdle             900
TimeoutNoTransfer       900
DefaultRoot             {env.root}
DefaultChdir            {env.root}
PidFile                 {confdir}/proftpd.pid
ScoreboardFile          {confdir}/proftpd.scoreboard
DelayTable              {confdir}/proftpd.delay
SystemLog               {confdir}/proftpd.system.log
TransferLog             none
ModulePath              {self.modules}
LoadModule              mod_tls.c
<IfModule mod_tls.c>
  TLSEngine             on
  TLSLog                {confdir}/tls.log
  TLSProtocol           TLSv1.2 TLSv1.3
  TLSRequired           on
  TLSECCertificateFile  {env.cert}
  TLSECCertificateKeyFile {env.key}
  TLSVerifyClient       off
  TLSRenegotiate        none
  # No NoSessionReuseRequired: data connections must resume the control session (the default).
  TLSOptions            NoEmptyFragments
</IfModule>
<Directory {env.root}>
  <Limit ALL>
    AllowAll
  </Limit>
</Directory>
"""
        )
        return [str(self.binary), "--nodaemon", "--config", str(conf)], self._env()


ALL_PEERS: dict[str, Peer] = {p.name: p for p in (Pyftps(), Pyftpdlib(), Vsftpd(), Proftpd())}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_block(index: int, size: int = 64) -> tuple[int, int]:
    """A passive range per server, away from the kernel's ephemeral range (32768-60999 by default)."""
    low = 61000 + index * size
    return low, low + size - 1
