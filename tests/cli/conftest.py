"""A pyftps server for the command-line tests, and ways to run the client commands against it.

- ``server``: an in-process pyftps server (explicit and implicit listeners on ephemeral ports, user
  ``alice`` rooted at a fresh directory) on its own event loop thread, so the commands under test can
  run ``asyncio.run`` in the test's thread; stopped after the test.
- ``cli``: runs ``pyftps ARGS...`` through ``add_client_commands`` and ``run_client_command`` on a
  local parser (the way ``pyftps.cli`` calls them) and returns the exit code, stdout and stderr.
- Every test runs with a fresh ``HOME`` (no ``~/.netrc``), no ``PYFTPS_*`` variables and no prompt.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyftps.client.commands import add_client_commands, run_client_command
from pyftps.tls.certs import ensure_self_signed
from tests.client.conftest import PASSWORD, USER, CertPair, RunningServer, pyftps_server

HOST = "127.0.0.1"
MODES = ["explicit", "implicit"]
SCHEMES = {"explicit": "ftpes", "implicit": "ftps"}
WRONG_PASSWORD = "hunter2-not-it"
SECRETS = (PASSWORD, WRONG_PASSWORD)  # never in any output of any command


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass(frozen=True)
class CliServer:
    running: RunningServer

    @property
    def root(self) -> Path:
        return self.running.root

    @property
    def cafile(self) -> Path:
        return self.running.cafile

    def url(
        self, mode: str, path: str = "", *, user: str | None = USER, password: str | None = PASSWORD
    ) -> str:
        """``ftpes://`` (explicit) or ``ftps://`` (implicit) URL of ``path`` below the login directory."""
        auth = ""
        if user is not None:
            auth = urllib.parse.quote(user, safe="")
            if password is not None:
                auth += ":" + urllib.parse.quote(password, safe="")
            auth += "@"
        return f"{SCHEMES[mode]}://{auth}{HOST}:{self.running.port(mode)}/{path}"


@pytest.fixture(scope="session")
def cli_cert(tmp_path_factory: pytest.TempPathFactory) -> CertPair:
    return CertPair(*ensure_self_signed(tmp_path_factory.mktemp("cli-tls")))


@pytest.fixture(scope="session")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate that did not sign the server's: trusting it must fail."""
    return CertPair(*ensure_self_signed(tmp_path_factory.mktemp("cli-wrong-ca"))).cert


@pytest.fixture
def server(tmp_path: Path, cli_cert: CertPair) -> Iterator[CliServer]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    context = pyftps_server(tmp_path / "srv", cli_cert)
    try:
        running = asyncio.run_coroutine_threadsafe(context.__aenter__(), loop).result(10)
        try:
            yield CliServer(running)
        finally:
            asyncio.run_coroutine_threadsafe(context.__aexit__(None, None, None), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME without .netrc, no credentials in the environment, and never a password prompt."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PYFTPS_PASSWORD", raising=False)
    monkeypatch.delenv("PYFTPS_USER", raising=False)

    def no_prompt(prompt: str = "") -> str:
        raise AssertionError(f"unexpected password prompt: {prompt}")

    monkeypatch.setattr(getpass, "getpass", no_prompt)
    return home


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pyftps")
    sub = parser.add_subparsers(dest="command", required=True)
    add_client_commands(sub)
    return parser


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``cli("get", url, dest, "--cafile", path)`` → Result(exit code, stdout, stderr)."""

    def invoke(*argv: object) -> Result:
        capsys.readouterr()
        try:
            code = run_client_command(build_parser().parse_args([str(a) for a in argv]))
        except SystemExit as exit_:  # argparse usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
        assert code is not None
        out, err = capsys.readouterr()
        for secret in SECRETS:
            assert secret not in out + err, f"a password was printed: {out + err}"
        return Result(code, out, err)

    return invoke


@pytest.fixture(autouse=True)
def _restore_pyftps_log_level() -> Iterator[None]:
    """``--debug`` sets the ``pyftps`` logger to DEBUG for the process; tests share one process."""
    logger = logging.getLogger("pyftps")
    saved = logger.level
    yield
    logger.setLevel(saved)
