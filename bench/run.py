"""Benchmark pyftps against vsftpd, ProFTPD (mod_tls) and pyftpdlib over loopback explicit FTPS.

    bash bench/setup.sh && .venv/bin/python bench/run.py [--quick] [--only SCENARIO] [--servers ...]

Not part of the test suite: it makes no timed assertions, it only measures and writes
bench/results/latest.json and bench/results/latest.md. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import pwd
import re
import resource
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers
import report
import scale
import scenarios
from peers import (
    ALL_PEERS,
    BENCH_DIR,
    REPO,
    BenchEnv,
    Peer,
    PeerUnavailable,
    Ports,
    Pyftps,
    RunningServer,
    free_port,
    port_block,
)

BENCH_USER = "benchuser"
# Debian 12 hashes local passwords with yescrypt (~50 ms of CPU per check), which would make vsftpd's and
# ProFTPD's session rates measure crypt(3) more than the server. SHA-512 crypt (5000 rounds, ~2 ms) keeps
# their logins cheap; pyftps checks argon2id hashes and pyftpdlib compares plain text.
CRYPT_METHOD = "SHA512"
NEEDS_UNIX_USER = ("vsftpd", "proftpd")
# Memory is measured on a freshly started server: a Python server reuses the heap that an earlier
# round's sessions left free, which would make later rounds look cheaper than the first.
FRESH_SERVER = {"idle_memory", "idle_10k", "scale_1000"}
# Heavy scenarios (bench/scale.py) run only when named with --only.
OPT_IN = set(scale.SCENARIOS)
scenarios.SCENARIOS.update(scale.SCENARIOS)
# pyftps's connection limits must admit idle_10k's sessions (all from one address and one user).
peers.PYFTPS_CONNECTION_LIMIT = max(peers.PYFTPS_CONNECTION_LIMIT, scale.IDLE_SESSIONS + 1000)
# scale_1000 holds ~1000 passive ports at once: a wide block above every server's own 64-port block.
WIDE_PASSIVE = {"scale_1000": (61440, 64999)}
PROFILED = ("RETR", "STOR", "LIST", "MLSD", "sessions")
PROFILE_SECONDS = 5.0
RAW_SCENARIOS = {"raw_download": False, "raw_upload": True}  # name -> receiver writes a file


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------------ machine


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine_info(peers: list[Peer]) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = match.group(1) if match else "?"
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = "?"
    with contextlib.suppress(OSError):
        match = re.search(r'^PRETTY_NAME="(.+)"$', Path("/etc/os-release").read_text(), re.M)
        os_name = match.group(1) if match else "?"
    info = {
        "CPU": f"{cpu} x {os.cpu_count()}",
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "OS / kernel": f"{os_name} / {platform.release()}",
        "Python": platform.python_version(),
        "OpenSSL (Python ssl)": ssl.OPENSSL_VERSION,
        "OpenSSL (system)": _first_line(["openssl", "version"]),
        "curl": _first_line(["curl", "--version"]),
        "load average (1/5/15 min) when the report was written": " ".join(
            f"{v:.2f}" for v in os.getloadavg()
        ),
    }
    for peer in peers:
        with contextlib.suppress(Exception):
            info[peer.name] = peer.version()
    return info


# ------------------------------------------------------------------------------------------ environment


def raise_fd_limit() -> None:
    """Idle-session scenarios hold 1000+ sockets in this process and in the servers it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@contextlib.contextmanager
def bench_user(home: Path, password: str) -> Iterator[str | None]:
    """A local unix account for vsftpd and ProFTPD; removed afterwards if this run created it."""
    if os.geteuid() != 0:
        yield None
        return
    created = False
    try:
        pwd.getpwnam(BENCH_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/bash", BENCH_USER],
            check=True,
        )
        created = True
    try:
        subprocess.run(["usermod", "--home", str(home), BENCH_USER], check=True, capture_output=True)
        subprocess.run(
            ["chpasswd", "--crypt-method", CRYPT_METHOD],
            input=f"{BENCH_USER}:{password}",
            text=True,
            check=True,
        )
        yield BENCH_USER
    finally:
        if created:
            subprocess.run(["userdel", BENCH_USER], check=False, capture_output=True)
        else:
            subprocess.run(["usermod", "--lock", BENCH_USER], check=False, capture_output=True)


def snapshot_pyftps(rev: str, workdir: Path) -> tuple[Path, str]:
    """``src/`` of a git revision, unpacked into the work dir (read-only git commands only).

    Several people edit the work tree at once; a committed revision gives a stable, named subject.
    """
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    target = workdir / f"pyftps-{commit}"
    target.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "src", f"git {commit}"


def worktree_label() -> str:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "src"], check=False)
    return f"work tree at {head or '?'}{' with uncommitted changes in src/' if dirty.returncode else ''}"


def choose_subject(rev: str | None, workdir: Path) -> None:
    """Point the pyftps peer at a git revision's snapshot, or label the work tree it runs from."""
    subject = ALL_PEERS["pyftps"]
    if not isinstance(subject, Pyftps):
        return
    if rev:
        source, label = snapshot_pyftps(rev, workdir)
        subject.use_source(source, label)
        sys.path.insert(0, str(source))  # the certificate helper comes from the same snapshot
    else:
        subject.label = worktree_label()
    log(f"pyftps under test: {subject.version()}")


def make_env(workdir: Path, user: str, password: str) -> BenchEnv:
    from pyftps.tls.certs import ensure_self_signed  # the project's own ECDSA P-256 certificate

    cert, key = ensure_self_signed(workdir / "tls", ["localhost"])
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    return BenchEnv(workdir=workdir, root=root, cert=cert, key=key, user=user, password=password)


def chown_tree(path: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for current, dirs, files in os.walk(path):
        os.chown(current, entry.pw_uid, entry.pw_gid)
        for name in [*dirs, *files]:
            os.chown(os.path.join(current, name), entry.pw_uid, entry.pw_gid)


# ------------------------------------------------------------------------------------------ run


class Bench:
    def __init__(self, args: argparse.Namespace, env: BenchEnv, peers: list[Peer]) -> None:
        self.args = args
        self.env = env
        self.settings = scenarios.QUICK if args.quick else scenarios.FULL
        self.peers = peers
        self.servers: dict[str, RunningServer] = {}
        self.ports: dict[str, Ports] = {}
        self.runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)
        log(text)

    def start_all(self) -> None:
        for index, peer in enumerate(self.peers):
            try:
                peer.check()
                ports = Ports(free_port(), port_block(index))
                self.ports[peer.name] = ports
                self.servers[peer.name] = peer.start(self.env, ports)
                log(f"started {peer.name} on port {ports.control} (pid {self.servers[peer.name].pid})")
            except PeerUnavailable as error:
                self.note(f"{peer.name}: skipped: {error}")

    def stop_all(self) -> None:
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                server.stop()

    def restart(self, name: str, passive: tuple[int, int] | None = None) -> RunningServer:
        server = self.servers[name]
        server.stop()
        ports = Ports(free_port(), passive or self.ports[name].passive)
        self.servers[name] = server.peer.start(self.env, ports)
        return self.servers[name]

    def ensure_running(
        self, name: str, *, fresh: bool = False, passive: tuple[int, int] | None = None
    ) -> RunningServer:
        server = self.servers[name]
        wrong_ports = server.passive != (passive or self.ports[name].passive)
        if server.alive():
            return self.restart(name, passive) if fresh or wrong_ports else server
        code = server.process.returncode
        self.note(f"{name} had exited (code {code}); restarted. Log:\n{server.log_tail()}")
        return self.restart(name, passive)

    def record(self, scenario: str, server: str, entry: dict[str, Any]) -> None:
        self.runs.setdefault(scenario, {}).setdefault(server, []).append(entry)

    def run_one(self, scenario: str, name: str, rnd: int) -> None:
        server = self.ensure_running(name, fresh=scenario in FRESH_SERVER, passive=WIDE_PASSIVE.get(scenario))
        try:
            figures = scenarios.SCENARIOS[scenario](server, self.env, self.settings)
        except scenarios.Skip as skip:
            self.note(f"{scenario} on {name}: skipped: {skip}")
            return
        except Exception as error:
            alive = server.alive()
            detail = "".join(traceback.format_exception_only(error)).strip()
            self.record(scenario, name, {"round": rnd, "error": detail})
            self.note(
                f"{scenario} on {name} (round {rnd}): ERROR {detail}"
                + ("" if alive else f"; the server exited. Log:\n{server.log_tail()}")
            )
            return
        self.record(scenario, name, {"round": rnd, "figures": figures})
        shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()}
        log(f"  {scenario:<12} {name:<10} {shown}")

    def run_raw(self, scenario: str, rnd: int) -> None:
        try:
            figures = scenarios.raw_tls(self.env, self.settings, upload=RAW_SCENARIOS[scenario])
        except Exception as error:
            self.note(f"{scenario} (round {rnd}): ERROR {error!r}")
            return
        self.record(scenario, report.RAW, {"round": rnd, "figures": figures})
        log(f"  {scenario:<12} {report.RAW:<10} {{'mbps': {figures['mbps']:.0f}}}")

    def run_rounds(self, chosen: list[str]) -> None:
        names = list(self.servers)
        transfer = any(s.startswith(("retr", "stor")) for s in chosen)
        for rnd in range(1, self.args.rounds + 1):
            order = names[rnd - 1 :] + names[: rnd - 1] if names else []  # rotate the order each round
            log(f"round {rnd}/{self.args.rounds}: {', '.join(order)}")
            if transfer:
                for raw in RAW_SCENARIOS:
                    self.run_raw(raw, rnd)
            for scenario in chosen:
                for name in order:
                    self.run_one(scenario, name, rnd)


def profile_pyftps(bench: Bench, out_dir: Path) -> None:
    """py-spy the pyftps server during each of PROFILED; write folded stacks and the top functions.

    Transfers and listings repeat inside one logged-in session and py-spy attaches after the login, so
    the profile shows the data path, not argon2; the session-rate profile is the session scenario itself.
    """
    spy = Path(sys.executable).parent / "py-spy"
    server = bench.servers.get("pyftps")
    if server is None or not spy.exists():
        bench.note("profile: skipped (no pyftps server or no .venv/bin/py-spy; bash bench/setup.sh)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    for what in PROFILED:
        folded = out_dir / f"profile-{what.lower()}.folded"
        folded.unlink(missing_ok=True)
        spied: list[subprocess.Popen[bytes]] = []

        argv = [
            str(spy), "record", "--pid", str(server.pid), "--rate", "250", "--format", "raw",
            "--output", str(folded), "--nonblocking", "--threads",
        ]  # fmt: skip

        def attach(argv: list[str] = argv, into: list[subprocess.Popen[bytes]] = spied) -> None:
            into.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            time.sleep(1.0)  # py-spy needs a moment to attach

        try:
            if what == "sessions":
                attach()
                scenarios.session_rate(server, bench.env, bench.settings)
            else:
                scenarios.repeat_in_session(server, bench.env, what, PROFILE_SECONDS, attach)
        finally:
            for proc in spied:
                proc.send_signal(signal.SIGINT)  # py-spy writes its output and exits
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if folded.exists():
            text = summarize_folded(folded)
            (out_dir / f"profile-{what.lower()}.txt").write_text(text)
            log(f"profile of pyftps during {what}:\n{text}")
        else:
            err = spied[0].stderr.read().decode() if spied and spied[0].stderr else ""
            bench.note(f"profile {what}: py-spy wrote nothing: {err.strip()[:300]}")


def summarize_folded(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's folded stacks."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r" \((.*?)/([^/]+:\d+)\)$", r" (\2)", f) for f in stack.split(";")[1:]]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] = self_counts.get(frames[-1], 0) + count
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + count
    lines = [f"{total} samples (all threads, idle excluded)", "", "self%  function"]
    for frame, count in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / total:5.1f}  {frame}")
    lines += ["", "incl%  function"]
    for frame, count in sorted(incl_counts.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{100 * count / total:5.1f}  {frame}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 MiB file, 200 idle sessions, shorter loops")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(scenarios.SCENARIOS),
        help="run only this scenario (repeatable)",
    )
    parser.add_argument(
        "--servers", nargs="+", choices=sorted(ALL_PEERS), default=list(ALL_PEERS), help="servers to run"
    )
    parser.add_argument("--rounds", type=int, default=3, help="repetitions, servers alternating (default 3)")
    parser.add_argument(
        "--pyftps-rev",
        metavar="REV",
        help="benchmark pyftps as committed at this git revision (e.g. HEAD) instead of the work tree",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy pyftps during " + ", ".join(PROFILED))
    parser.add_argument(
        "--pyftps-workers",
        metavar="N",
        help="run pyftps with --workers N (PYFTPS_SERVER_WORKERS; 'auto' for one per CPU)",
    )
    parser.add_argument(
        "--pyftps-cache-ttl",
        metavar="S",
        help="pyftps credential cache TTL (PYFTPS_USERS_CACHE_TTL); 0 makes every login pay argon2id (cold)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="output directory")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    chosen = [s for s in scenarios.SCENARIOS if s in (args.only or ()) or (not args.only and s not in OPT_IN)]
    peers = [ALL_PEERS[name] for name in args.servers]
    raise_fd_limit()
    # Through the environment: pyftps serve reads PYFTPS_* and the peers ignore them.
    if args.pyftps_workers is not None:
        os.environ["PYFTPS_SERVER_WORKERS"] = args.pyftps_workers
    if args.pyftps_cache_ttl is not None:
        os.environ["PYFTPS_USERS_CACHE_TTL"] = args.pyftps_cache_ttl
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="pyftps-bench-"))
    workdir.chmod(0o755)  # the bench user's sessions must reach the served directory
    password = secrets.token_urlsafe(12)
    log(f"working in {workdir}")
    choose_subject(args.pyftps_rev, workdir)
    bench: Bench | None = None
    try:
        with bench_user(workdir / "root", password) as unix_user:
            if unix_user is None:
                skipped = [p for p in peers if p.name in NEEDS_UNIX_USER]
                peers = [p for p in peers if p.name not in NEEDS_UNIX_USER]
            env = make_env(workdir, unix_user or BENCH_USER, password)
            bench = Bench(args, env, peers)
            if unix_user is None:
                for peer in skipped:
                    bench.note(f"{peer.name}: skipped: needs root to create a local user")
            log("preparing files")
            scenarios.prepare_root(env, bench.settings)
            if unix_user is not None:
                chown_tree(env.root, unix_user)
            try:
                bench.start_all()
                bench.run_rounds(chosen)
                if args.profile:
                    profile_pyftps(bench, args.out)
            finally:
                bench.stop_all()
            data = {
                "meta": {
                    "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "quick": args.quick,
                    "rounds": args.rounds,
                    "scenarios": chosen,
                    "settings": vars(bench.settings),
                    "machine": machine_info(peers),
                    "duration_s": time.monotonic() - started,
                    "unix_password_hash": CRYPT_METHOD,
                    "repo": str(REPO),
                },
                "servers": list(bench.servers),
                "runs": bench.runs,
                "notes": bench.notes,
            }
            json_path, md_path = report.write(data, args.out)
            log(f"wrote {json_path} and {md_path}")
    finally:
        if bench is not None:
            bench.stop_all()
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
