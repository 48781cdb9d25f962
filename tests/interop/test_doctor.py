"""``pyftps doctor`` against vsftpd and pyftps: the findings an operator would act on.

vsftpd (explicit, and implicit) requires TLS session reuse on data connections and runs with a
self-signed RSA certificate; pyftps offers both ports, requires reuse, lists MLST and offers CCC.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pyftps.client.doctor import (
    Report,
    Status,
    add_doctor_command,
    classify_pasv,
    diagnose,
    render_text,
    run_doctor,
)
from tests.interop.conftest import FtpServer
from tests.support.peers import Peer, started
from tests.support.ports import LOOPBACK, free_port

pytestmark = pytest.mark.interop

TIMEOUT = 5.0
OK, INFO, WARN, FAIL, SKIP = Status.OK, Status.INFO, Status.WARN, Status.FAIL, Status.SKIP


@pytest.fixture
def vsftpd_explicit() -> Iterator[Peer]:
    with started("vsftpd") as peer:
        yield peer


@pytest.fixture
def vsftpd_implicit() -> Iterator[Peer]:
    with started("vsftpd", implicit=True) as peer:
        yield peer


def status(report: Report, check: str) -> Status:
    assert check in report.findings, f"no finding {check!r}:\n{render_text(report)}"
    return report.findings[check].status


def assert_secret_hidden(report: Report, password: str) -> None:
    assert password not in render_text(report, verbose=True)
    assert password not in json.dumps(report.to_dict())


def test_vsftpd_explicit(vsftpd_explicit: Peer) -> None:
    peer = vsftpd_explicit
    report = diagnose(
        peer.host,
        peer.port,
        implicit_port=None,
        user=peer.user,
        password=peer.password,
        cafile=peer.cafile,
        timeout=TIMEOUT,
    )
    text = render_text(report)
    assert report.exit_code == 0, text
    assert status(report, "explicit.port") is OK and "vsFTPd" in report.findings["explicit.port"].summary
    assert status(report, "auth.tls") is OK
    assert status(report, "login") is OK and status(report, "pbsz_prot") is OK
    assert status(report, "data.transfer") is OK and report.findings["data.transfer"].facts["reused"] is True
    reuse = report.findings["data.reuse"]
    assert (reuse.status, reuse.facts["required"]) == (WARN, True), text
    assert "522" in reuse.summary and "ftplib" in reuse.advice
    assert status(report, "tls.1.2") is OK and report.findings["tls.1.2"].facts["accepted"] is True
    for old in ("tls.1.0", "tls.1.1"):  # refused, or the local OpenSSL could not even offer it
        assert status(report, old) in (OK, SKIP), text
    assert status(report, "cert.self_signed") is WARN
    assert status(report, "cert.trust") is OK and status(report, "cert.hostname") is OK
    assert status(report, "pasv") is OK and status(report, "epsv") is OK
    assert report.findings["ccc"].facts == {"accepted": False, "offered": False}  # 500: vsftpd has no CCC
    assert status(report, "rein") is INFO  # 502 REIN not implemented
    assert_secret_hidden(report, peer.password)


def test_vsftpd_implicit_needs_prot_p(vsftpd_implicit: Peer) -> None:
    peer = vsftpd_implicit
    report = diagnose(
        peer.host,
        None,
        implicit_port=peer.port,
        primary="implicit",
        user=peer.user,
        password=peer.password,
        cafile=peer.cafile,
        timeout=TIMEOUT,
    )
    text = render_text(report)
    assert status(report, "implicit.port") is OK, text
    assert "explicit.port" not in report.findings and "ccc" not in report.findings
    prot = report.findings["pbsz_prot"]
    assert (prot.status, prot.facts["needs_prot"]) == (WARN, True), text
    assert "522" in prot.summary
    assert report.findings["data.reuse"].facts["required"] is True


def test_pyftps_both_ports(pyftps_server: FtpServer) -> None:
    server = pyftps_server
    login: dict[str, Any] = {
        "user": server.user,
        "password": server.password,
        "cafile": server.cafile,
        "timeout": TIMEOUT,
    }
    report = diagnose(server.host, server.port, implicit_port=server.implicit_port, **login)
    text = render_text(report)
    assert report.exit_code == 0, text
    assert status(report, "explicit.port") is OK and status(report, "implicit.port") is OK
    assert status(report, "auth.tls") is OK and status(report, "auth.ssl") is OK
    feat = report.findings["feat"].facts["features"]
    assert isinstance(feat, list) and "MLST" in feat and "CCC" in feat
    assert report.findings["data.reuse"].facts["required"] is True, text
    assert report.findings["ccc"].facts == {"accepted": True, "offered": True}, text
    assert status(report, "rein") is OK, text
    assert status(report, "tls.1.3") is OK and status(report, "tls.1.2") is OK
    assert_secret_hidden(report, server.password)

    # The same server judged from its implicit port: PROT P is implied, REIN re-handshakes.
    report = diagnose(
        server.host, server.port, implicit_port=server.implicit_port, primary="implicit", **login
    )
    prot = report.findings["pbsz_prot"]
    assert (prot.status, prot.facts["needs_prot"]) == (OK, False), render_text(report)
    assert status(report, "rein") is OK and status(report, "data.transfer") is OK


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pyftps")
    add_doctor_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["doctor", *argv])


def _doctor_cli(argv: list[str], password: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``python -m pyftps doctor`` once cli.py wires it; until then run_doctor on this test's own parser."""
    env = dict(os.environ, PYFTPS_PASSWORD=password)
    command = [sys.executable, "-m", "pyftps", "doctor"]
    if subprocess.run([*command, "--help"], capture_output=True, env=env, check=False).returncode == 0:
        done = subprocess.run(
            [*command, *argv], capture_output=True, text=True, env=env, timeout=60, check=False
        )
        return done.returncode, done.stdout
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYFTPS_PASSWORD", password)
        code = run_doctor(_parse(argv))
    assert code is not None
    return code, capsys.readouterr().out


def test_cli_json(vsftpd_explicit: Peer, capsys: pytest.CaptureFixture[str]) -> None:
    peer = vsftpd_explicit
    url = f"ftpes://{peer.user}@{peer.host}:{peer.port}"
    argv = [url, "--implicit-port", "0", "--cafile", str(peer.cafile), "--timeout", str(TIMEOUT), "--json"]
    code, out = _doctor_cli(argv, peer.password, capsys)
    assert peer.password not in out
    report = json.loads(out)
    assert code == report["exit_code"] == 0, out
    findings = {f["check"]: f for f in report["findings"]}
    assert findings["data.reuse"]["status"] == "warn" and findings["data.reuse"]["facts"]["required"] is True
    assert findings["cert.self_signed"]["status"] == "warn"


def test_nothing_reachable_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()
    assert run_doctor(_parse([f"ftps://{LOOPBACK}:{closed}", "--explicit-port", str(closed)])) == 3
    out = capsys.readouterr().out
    assert "[FAIL] implicit.port" in out and "nothing reachable" in out
    assert run_doctor(argparse.Namespace(command="serve")) is None


def test_classify_pasv_nat() -> None:
    status_, summary, advice = classify_pasv("10.0.0.5", "8.8.8.8", reachable=False)
    assert status_ is FAIL and "NAT" in summary and "masquerade" in advice
    assert classify_pasv("127.0.0.1", "127.0.0.1", reachable=True)[0] is OK
    assert classify_pasv("0.0.0.0", "127.0.0.1", reachable=False)[0] is FAIL
    assert classify_pasv("192.0.2.7", "127.0.0.1", reachable=False)[0] is FAIL
