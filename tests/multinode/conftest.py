"""Two pyftps nodes sharing PostgreSQL and S3 behind a real HAProxy speaking PROXY protocol v2.

The deployment mirrors docs/multinode.md, shrunk onto loopback:

- PostgreSQL (``tests.postgres.conftest``) holds users, failed-login counters and bans; each cluster
  gets its own database, so a ban earned in one test never leaks into another.
- SeaweedFS (``tests.s3.conftest``) is the S3 bucket; the user's home is ``s3://BUCKET/<fresh prefix>``.
- Node A listens on 127.0.0.2, node B on 127.0.0.3; HAProxy listens on 127.0.0.1 (the "public"
  address). Each node announces ``--masquerade-address 127.0.0.1`` and its own passive range; HAProxy
  binds the *same port numbers* on 127.0.0.1 and forwards them (``server`` without a port keeps the
  frontend's port) to the node's address. That is why nodes and HAProxy need different loopback
  addresses: both bind the same passive port numbers, which only works on distinct IPs. (A node binds
  its passive listeners on the address the PROXY'd control connection arrived on, 127.0.0.2/3.)
- There is one control frontend per node (front A -> node A, front B -> node B) instead of one
  balanced frontend, so each test decides which node it talks to.
- HAProxy connects to the nodes from ``source 127.0.0.9``, and the nodes trust only 127.0.0.9 as a
  proxy (``--proxy-trusted 127.0.0.9/32``). The test client connects from 127.0.0.1, so "the real
  client address" (127.0.0.1) and "the proxy's address" (127.0.0.9) differ, and the logs can show
  both (``connected from 127.0.0.1 ... via 127.0.0.9``).

HAProxy must be installed (Debian: ``apt-get install haproxy``); without it the tests are skipped,
or fail when the ``CI`` environment variable is set.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.postgres.conftest import PostgresServer, postgres_server  # noqa: F401  (fixture re-export)
from tests.s3.conftest import ACCESS_KEY, BUCKET, SECRET_KEY, SeaweedFS, fresh_prefix, s3  # noqa: F401
from tests.support.certs import CertPaths, make_self_signed_cert
from tests.support.ports import PASSIVE_HIGH, PASSIVE_LOW
from tests.support.processes import RunningProcess, ports_accept, running_process

PUBLIC = "127.0.0.1"  # HAProxy's frontends, and the address the test client connects from
NODE_HOSTS = {"a": "127.0.0.2", "b": "127.0.0.3"}
PROXY_SOURCE = "127.0.0.9"  # HAProxy's source address towards the nodes
PASSIVE_PER_NODE = 8
USER = "carol"
PASSWORD = "carol-multinode-password"
BAN_AFTER = 3
START_TIMEOUT = 30.0


def haproxy_binary() -> str:
    """``haproxy`` on PATH (or /usr/sbin, which a non-root PATH may lack); skip, or fail on CI."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        reason = "HAProxy is not installed: apt-get install haproxy"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (required when CI is set)", pytrace=False)
        pytest.skip(f"multi-node tests skipped: {reason}")
    return found


def _all_bind(hosts: tuple[str, ...], ports: range) -> bool:
    with ExitStack() as stack:
        try:
            for host in hosts:
                for port in ports:
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((host, port))
        except OSError:
            return False
    return True


def free_block(count: int, hosts: tuple[str, ...], attempts: int = 200) -> int:
    """The first port of ``count`` consecutive ports that bind on every one of ``hosts`` right now.

    Drawn below the kernel's ephemeral range (like ``free_port_range``), so no outgoing connection
    takes one of them meanwhile.
    """
    rng = random.SystemRandom()
    for _ in range(attempts):
        first = rng.randint(PASSIVE_LOW, PASSIVE_HIGH - count + 1)
        if _all_bind(hosts, range(first, first + count)):
            return first
    raise RuntimeError(f"no {count} consecutive ports free on {hosts}")


@dataclass
class Node:
    name: str
    host: str  # where the node listens
    port: int  # its explicit FTPS port on ``host``
    front: int  # HAProxy's frontend port for it on PUBLIC
    passive: tuple[int, int]  # the same numbers on the node's host and on PUBLIC
    process: RunningProcess | None = None

    def log_records(self) -> list[dict[str, Any]]:
        """The node's JSON log lines so far (stderr)."""
        assert self.process is not None
        records = []
        for line in self.process.stderr_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """The matching log records, waiting (bounded) for at least one: lines land just after replies."""
        deadline = time.monotonic() + timeout
        while True:
            found = [record for record in self.log_records() if predicate(record)]
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)


@dataclass
class Cluster:
    nodes: dict[str, Node]
    cert: CertPaths
    user: str
    password: str
    prefix: str  # the user's home in the bucket
    haproxy: RunningProcess | None = None

    def client_options(self, **overrides: Any) -> dict[str, Any]:
        options: dict[str, Any] = {
            "mode": "explicit",
            "user": self.user,
            "password": self.password,
            "cafile": str(self.cert.cafile),
            "timeout": 10.0,
        }
        options.update(overrides)
        return options

    def output(self) -> str:
        parts = [n.process.output(60) for n in self.nodes.values() if n.process is not None]
        if self.haproxy is not None:
            parts.append(self.haproxy.output(60))
        return "\n".join(parts)


def haproxy_config(nodes: dict[str, Node]) -> str:
    lines = [
        "global",
        "    maxconn 256",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 30s",
        "    timeout server 30s",
    ]
    for node in nodes.values():
        low, high = node.passive
        lines += [
            f"frontend control_{node.name}",
            f"    bind {PUBLIC}:{node.front}",
            f"    default_backend control_{node.name}",
            f"backend control_{node.name}",
            f"    source {PROXY_SOURCE}",
            f"    server ftp_{node.name} {node.host}:{node.port} send-proxy-v2",
            f"frontend passive_{node.name}",
            f"    bind {PUBLIC}:{low}-{high}",
            f"    default_backend passive_{node.name}",
            f"backend passive_{node.name}",
            f"    source {PROXY_SOURCE}",
            f"    server ftp_{node.name} {node.host} send-proxy-v2  # no port: the frontend's port",
        ]
    return "\n".join(lines) + "\n"


def _environment() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYFTPS_")},
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def _create_database(server: PostgresServer) -> str:
    import psycopg

    name = f"multinode_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.dsn(name)


def _add_user(dsn: str, home: str, env: dict[str, str]) -> None:
    added = subprocess.run(
        [sys.executable, "-m", "pyftps", "user", "--database", dsn, "add", USER, "--home", home],
        input=f"{PASSWORD}\n", capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert added.returncode == 0, f"pyftps user add failed:\n{added.stdout}\n{added.stderr}"


def _node_argv(node: Node, dsn: str, endpoint: str, cert: CertPaths, directory: Path) -> list[str]:
    low, high = node.passive
    return [
        sys.executable, "-m", "pyftps", "serve", "--host", node.host, "--port", str(node.port),
        "--implicit-port", "0", "--passive-ports", f"{low}-{high}", "--masquerade-address", PUBLIC,
        "--proxy-trusted", f"{PROXY_SOURCE}/32", "--database", dsn, "--s3-endpoint", endpoint,
        "--cert", str(cert.cert), "--key", str(cert.key), "--state-dir", str(directory / "state"),
        "--root", str(directory / "root"), "--login-delay", "0", "--ban-after", str(BAN_AFTER),
        "--log-format", "json",
    ]  # fmt: skip


@contextmanager
def two_node_cluster(postgres: PostgresServer, seaweed: SeaweedFS, directory: Path) -> Iterator[Cluster]:
    """Start its own database, user, two nodes and HAProxy; stop everything on exit."""
    haproxy = haproxy_binary()
    env = _environment()
    cert = make_self_signed_cert(directory / "certs")  # one certificate for every node
    dsn = _create_database(postgres)
    prefix = fresh_prefix("multinode")
    _add_user(dsn, f"s3://{BUCKET}/{prefix}", env)

    # Ports: 2 node control ports + 2 frontends + 2 passive ranges, one block free on all addresses.
    hosts = (PUBLIC, *NODE_HOSTS.values())
    first = free_block(4 + 2 * PASSIVE_PER_NODE, hosts)
    nodes: dict[str, Node] = {}
    for index, (name, host) in enumerate(NODE_HOSTS.items()):
        low = first + 4 + index * PASSIVE_PER_NODE
        nodes[name] = Node(name, host, first + index, first + 2 + index, (low, low + PASSIVE_PER_NODE - 1))
    cluster = Cluster(nodes, cert, USER, PASSWORD, prefix)

    config = directory / "haproxy.cfg"
    config.write_text(haproxy_config(nodes))
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(config)], check=False, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, (
        f"bad HAProxy config:\n{config.read_text()}\n{checked.stdout}{checked.stderr}"
    )

    with ExitStack() as stack:
        for node in nodes.values():
            node_dir = directory / f"node-{node.name}"
            node.process = stack.enter_context(
                running_process(
                    _node_argv(node, dsn, seaweed.endpoint, cert, node_dir),
                    ports_accept(node.host, node.port),
                    START_TIMEOUT,
                    name=f"pyftps-{node.name}",
                    env=env,
                    log_dir=node_dir / "logs",
                )
            )
        fronts = [node.front for node in nodes.values()]
        cluster.haproxy = stack.enter_context(
            running_process(
                [haproxy, "-db", "-f", str(config)],  # -db: foreground, no daemon; SIGTERM stops it
                ports_accept(PUBLIC, *fronts),
                START_TIMEOUT,
                name="haproxy",
                log_dir=directory / "haproxy-logs",
            )
        )
        try:
            yield cluster
        except BaseException as error:
            if not isinstance(error, GeneratorExit | KeyboardInterrupt):
                error.add_note(cluster.output())
            raise


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer,  # noqa: F811
    s3: SeaweedFS,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    """Two nodes behind HAProxy, shared by the tests of a module that earn no ban."""
    with two_node_cluster(postgres_server, s3, tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture
def fresh_cluster(
    postgres_server: PostgresServer,  # noqa: F811
    s3: SeaweedFS,  # noqa: F811
    tmp_path: Path,
) -> Iterator[Cluster]:
    """Two nodes behind HAProxy with their own database: for a test that bans the client address."""
    with two_node_cluster(postgres_server, s3, tmp_path / "cluster") as running:
        yield running
