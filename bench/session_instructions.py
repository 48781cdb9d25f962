"""User-space instructions per FTPS session of pyftps, counted by callgrind: a figure load cannot move.

    .venv/bin/python bench/session_instructions.py [--sessions 150] [--rev 445ed6b --rev HEAD]

CPU time per session (``bench/session_cpu.py``) swings by 10-20 % on this shared machine, more than
most single changes save. Here each revision's server runs under ``valgrind --tool=callgrind`` with
counting switched on only while ``--sessions`` sessions run one after the other (the ``sessions``
scenario: ftplib, AUTH TLS, USER/PASS, PWD, QUIT), so imports, start-up and warm-up are left out.
The count repeats to within ~0.2 % from run to run. Printed per revision: the total and its split
by shared object (libcrypto is the TLS handshake; libpython the interpreter). Kernel work is not
counted. Each server runs ~50x slower under valgrind: 150 sessions take about a minute. Not part
of the test suite.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import ALL_PEERS, HOST, Ports, free_port, port_block
from session_cpu import _client, make_env

_START_TIMEOUT = 300.0  # valgrind start-up of the interpreter and pyftps


def _wait_for_greeting(port: int) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=5) as sock:
                if sock.recv(100).startswith(b"220"):
                    return
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"no greeting on port {port} under valgrind")


def count(source: Path | None, label: str, sessions: int, workdir: Path, index: int) -> Path:
    """Run ``sessions`` sessions against pyftps from ``source`` (None: the work tree); the callgrind file."""
    env = make_env(workdir)
    peer = ALL_PEERS["pyftps"]
    if source is not None:
        peer.use_source(source, label)  # type: ignore[attr-defined]
    ports = Ports(free_port(), port_block(20 + index))
    confdir = workdir / f"server-{index}"
    confdir.mkdir()
    argv, extra = peer.command(env, ports, confdir)
    output = workdir / f"callgrind-{index}.out"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={output}", *argv]
    with (confdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=confdir, env={**os.environ, **extra},
            start_new_session=True,
        )  # fmt: skip
    try:
        _wait_for_greeting(ports.control)
        _client(ports.control, 10)  # warm up: credential cache, first-use imports
        time.sleep(1)
        subprocess.run(["callgrind_control", "--instr=on", str(process.pid)], check=True, capture_output=True)
        _client(ports.control, sessions)
        time.sleep(2)  # the last QUIT is processed
        subprocess.run(
            ["callgrind_control", "--instr=off", str(process.pid)], check=True, capture_output=True
        )
        subprocess.run(["callgrind_control", "--dump", str(process.pid)], check=True, capture_output=True)
        time.sleep(2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return output


def self_cost_by_object(output: Path) -> collections.Counter[str]:
    """Instructions spent in each shared object's own code, from every file callgrind wrote for ``output``."""
    costs: collections.Counter[str] = collections.Counter()
    for path in output.parent.glob(output.name + "*"):
        names: dict[str, str] = {}
        current, after_call = "?", False
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("ob=", "cob=")):
                match = re.match(r"c?ob=\((\d+)\)(?: (.*))?", line)
                if match and match.group(2):
                    names[match.group(1)] = match.group(2)
                if line.startswith("ob="):
                    current = names.get(match.group(1), "?") if match else line[3:]
            elif line.startswith("calls="):
                after_call = True  # the next cost line is the call's inclusive cost, not self cost
            elif line[:1].isdigit() or line[:1] in "+-*":
                if after_call:
                    after_call = False
                    continue
                fields = line.split()
                if len(fields) >= 2 and fields[1].isdigit():
                    costs[Path(current).name] += int(fields[1])
    return costs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=150)
    parser.add_argument(
        "--rev", action="append", default=[], help="a git revision to count (repeatable); none: the work tree"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pyftps-session-instructions-") as tmp:
        targets: list[tuple[Path | None, str]] = [(None, "work tree")]
        if args.rev:
            from run import snapshot_pyftps

            targets = [snapshot_pyftps(rev, Path(tmp)) for rev in args.rev]
        for index, (source, label) in enumerate(targets):
            workdir = Path(tmp) / f"run-{index}"
            workdir.mkdir()
            costs = self_cost_by_object(count(source, label, args.sessions, workdir, index))
            total = sum(costs.values())
            split = ", ".join(
                f"{name} {value / args.sessions / 1e6:.3f}" for name, value in costs.most_common(4)
            )
            print(
                f"{label}: {total / args.sessions / 1e6:.3f} M instructions per session ({split})", flush=True
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
