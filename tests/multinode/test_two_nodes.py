"""Two pyftps nodes behind HAProxy (PROXY v2) sharing PostgreSQL and S3: see conftest.py for the layout.

Files written through one node are served by the other (S3), a ban earned on one node holds on the
other (PostgreSQL), and both nodes log the real client address (127.0.0.1), not HAProxy's (127.0.0.9).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from pyftps.client import SyncClient
from pyftps.client.errors import FTPError
from tests.multinode.conftest import BAN_AFTER, PROXY_SOURCE, PUBLIC, Cluster

# is_banned answers are cached per node for one second (docs/multinode.md); allow a few of those.
BAN_PROPAGATION_SECONDS = 5.0


def test_a_file_uploaded_through_node_a_is_listed_and_downloaded_through_node_b(
    cluster: Cluster, tmp_path: Path
) -> None:
    payload = os.urandom(256 * 1024 + 17)
    source = tmp_path / "up.bin"
    source.write_bytes(payload)
    a, b = cluster.nodes["a"], cluster.nodes["b"]

    with SyncClient.connect(PUBLIC, a.front, **cluster.client_options()) as client:  # PROT P by default
        client.upload(source, "shared.bin")

    target = tmp_path / "down.bin"
    with SyncClient.connect(PUBLIC, b.front, **cluster.client_options()) as client:
        entries = {entry.name: entry for entry in client.list("/")}
        assert "shared.bin" in entries
        client.download("shared.bin", target)
    assert target.read_bytes() == payload

    # Each transfer really went through its own node (not, say, the other node's passive range).
    assert a.wait_for_log(lambda r: r.get("command") == "STOR" and r.get("code") == 226)
    assert b.wait_for_log(lambda r: r.get("command") == "RETR" and r.get("code") == 226)
    assert not [r for r in b.log_records() if r.get("command") == "STOR"]
    assert not [r for r in a.log_records() if r.get("command") == "RETR"]
    for node in (a, b):  # the data connections were TLS-protected
        assert node.wait_for_log(
            lambda r: r.get("command") == "PROT" and r.get("arg") == "P" and r.get("code") == 200
        )


def test_both_nodes_log_the_real_client_address_not_the_proxy(cluster: Cluster) -> None:
    for node in cluster.nodes.values():
        with SyncClient.connect(PUBLIC, node.front, **cluster.client_options()) as client:
            client.list("/")

    connected = re.compile(r"session \S+: connected from (\S+) port \d+ via (\S+) \(explicit\)")
    for node in cluster.nodes.values():
        # The client's own TCP source address behind HAProxy is 127.0.0.1; HAProxy's is 127.0.0.9.
        sessions = node.wait_for_log(lambda r: bool(connected.search(str(r.get("msg")))))
        assert sessions, f"node {node.name} logged no proxied session"
        for record in sessions:
            match = connected.search(record["msg"])
            assert match is not None
            assert (match[1], match[2]) == (PUBLIC, PROXY_SOURCE), record
        commands = node.wait_for_log(lambda r: r.get("command") in ("MLSD", "LIST") and r.get("code") == 226)
        assert commands, f"node {node.name} logged no listing"
        assert {record["peer"] for record in commands} == {PUBLIC}
        assert not [r for r in node.log_records() if PROXY_SOURCE in str(r.get("peer"))]
        assert not [r for r in node.log_records() if f"from {PROXY_SOURCE}" in str(r.get("msg"))]


def test_a_ban_earned_through_node_a_holds_on_node_b(fresh_cluster: Cluster) -> None:
    cluster = fresh_cluster  # its own database: the ban on 127.0.0.1 must not reach other tests
    a, b = cluster.nodes["a"], cluster.nodes["b"]

    for attempt in range(1, BAN_AFTER + 1):
        with pytest.raises(FTPError) as failed:
            SyncClient.connect(PUBLIC, a.front, **cluster.client_options(password="wrong")).close()
        # 530 for a wrong password; the failure that earns the ban is answered 421 and closed.
        assert failed.value.code == (421 if attempt == BAN_AFTER else 530), failed.value
    assert a.wait_for_log(lambda r: r.get("command") == "PASS" and r.get("peer") == PUBLIC)

    deadline = time.monotonic() + BAN_PROPAGATION_SECONDS
    while True:
        try:
            SyncClient.connect(PUBLIC, b.front, **cluster.client_options()).close()
        except FTPError as error:
            refused = error
            break
        assert time.monotonic() < deadline, "node B still admits the address banned on node A"
        time.sleep(0.2)
    assert refused.code == 421, refused

    refusals = b.wait_for_log(lambda r: f"refused {PUBLIC}" in str(r.get("msg")))
    assert refusals, "node B did not log the refusal of the real client address"
