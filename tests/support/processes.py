"""Run a helper process (our server, pyftpdlib, vsftpd...) for the length of a test and always stop it.

``running_process`` starts the command in its own process group with stdout/stderr going to
files, waits until a readiness check passes, and on exit sends SIGTERM to the group, waits,
then SIGKILLs. Whatever the process printed is attached to start-up errors and to exceptions
raised inside the ``with`` block, and is available as ``RunningProcess.output()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_SECONDS = 5.0


class ProcessStartError(RuntimeError):
    """The process exited or did not become ready in time; the message carries its output."""


def tcp_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a TCP connection to ``host:port`` succeeds (it is closed again at once)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ports_accept(host: str, *ports: int) -> Callable[[], bool]:
    """Readiness check: every one of ``ports`` on ``host`` accepts TCP connections."""
    return lambda: all(tcp_accepts(host, port) for port in ports)


def _tail(path: Path, max_lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no output file>"
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines = [f"... ({len(lines) - max_lines} earlier lines omitted)", *lines[-max_lines:]]
    return "\n".join(lines) if lines else "<empty>"


@dataclass
class RunningProcess:
    """A started helper process and the files holding what it printed."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    stopped_by_us: bool = field(default=False, init=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def output(self, max_lines: int = 200) -> str:
        """The command line, exit status and the tail of stdout and stderr, for failure messages."""
        status = "running" if self.proc.poll() is None else f"exit status {self.proc.returncode}"
        return (
            f"=== {self.name} (pid {self.proc.pid}, {status}) ===\n$ {' '.join(self.argv)}\n"
            f"--- stdout ---\n{_tail(self.stdout_path, max_lines)}\n"
            f"--- stderr ---\n{_tail(self.stderr_path, max_lines)}"
        )

    def _signal_group(self, sig: int) -> None:
        # The process leads its own group (start_new_session), so this reaches its children too.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL. Idempotent."""
        if self.proc.poll() is None:
            self.stopped_by_us = True
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        # Children that outlived the leader (forking servers) go too.
        self._signal_group(signal.SIGKILL)
        return self.proc.returncode


@contextmanager
def running_process(
    argv: Sequence[str],
    ready: Callable[[], bool],
    timeout: float = 10.0,
    *,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path | None = None,
    poll_interval: float = 0.05,
) -> Iterator[RunningProcess]:
    """Start ``argv``, wait until ``ready()`` is true (at most ``timeout`` s), yield, then stop it.

    Raises ``ProcessStartError`` with the captured output when the process exits first or the
    deadline passes. Output files go to ``log_dir`` (kept) or to a temporary directory that is
    removed afterwards.
    """
    argv = [os.fspath(a) for a in argv]
    label = name or Path(argv[0]).name
    with tempfile.TemporaryDirectory(prefix="proc-") as tmp:
        out_dir = log_dir if log_dir is not None else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        stdout_path = out_dir / f"{label}.stdout"
        stderr_path = out_dir / f"{label}.stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        handle = RunningProcess(label, argv, proc, stdout_path, stderr_path)
        try:
            _wait_ready(handle, ready, timeout, poll_interval)
            try:
                yield handle
            except BaseException as exc:
                if not isinstance(exc, GeneratorExit | KeyboardInterrupt):
                    exc.add_note(handle.output())
                raise
        finally:
            handle.stop()


def _wait_ready(
    handle: RunningProcess, ready: Callable[[], bool], timeout: float, poll_interval: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not handle.is_running():
            raise ProcessStartError(f"{handle.name} exited before it was ready\n{handle.output()}")
        if ready():
            return
        if time.monotonic() >= deadline:
            raise ProcessStartError(f"{handle.name} was not ready after {timeout:g} s\n{handle.output()}")
        time.sleep(poll_interval)
