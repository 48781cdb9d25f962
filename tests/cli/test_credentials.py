"""Where the command line finds a password: the URL, ``$PYFTPS_PASSWORD`` with ``--user``, a netrc
file; never printed (the ``cli`` fixture checks every output for the passwords)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli.conftest import PASSWORD, USER, WRONG_PASSWORD, CliServer, Result

Cli = Callable[..., Result]


@pytest.fixture
def listed(server: CliServer) -> CliServer:
    (server.root / "a.txt").write_text("a")
    return server


def test_user_option_with_the_password_from_the_environment(
    listed: CliServer, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYFTPS_PASSWORD", PASSWORD)
    for mode in ("explicit", "implicit"):
        result = cli("ls", listed.url(mode, user=None), "--user", USER, "--cafile", listed.cafile)
        assert result.code == 0, result.err
        assert result.out.rstrip().endswith("a.txt")
    url_user = cli("ls", listed.url("explicit", password=None), "--cafile", listed.cafile)
    assert url_user.code == 0, url_user.err


def test_netrc_file_option_and_home_netrc(
    listed: CliServer, cli: Cli, tmp_path: Path, clean_environment: Path
) -> None:
    entry = f"machine 127.0.0.1\n  login {USER}\n  password {PASSWORD}\n"
    netrc_file = tmp_path / "creds"
    netrc_file.write_text(entry)
    netrc_file.chmod(0o600)
    for mode in ("explicit", "implicit"):
        result = cli("ls", listed.url(mode, user=None), "--netrc-file", netrc_file, "--cafile", listed.cafile)
        assert result.code == 0, result.err
    # --user with the netrc entry's login takes the password from there too.
    with_user = cli(
        "ls", listed.url("explicit", user=None), "--user", USER, "--netrc-file", netrc_file, "--insecure"
    )
    assert with_user.code == 0, with_user.err

    home_netrc = clean_environment / ".netrc"
    home_netrc.write_text(entry)
    home_netrc.chmod(0o600)
    assert cli("ls", listed.url("implicit", user=None), "--cafile", listed.cafile).code == 0
    home_netrc.chmod(0o644)  # readable by others: refused, as ftp(1) and Python's netrc do
    too_open = cli("ls", listed.url("implicit", user=None), "--cafile", listed.cafile)
    assert too_open.code == 2 and "permissions too open" in too_open.err
    missing = cli("ls", listed.url("explicit", user=None), "--netrc-file", tmp_path / "none", "--insecure")
    assert missing.code == 2 and "netrc file not found" in missing.err


def test_malformed_netrc_does_not_echo_its_tokens(listed: CliServer, cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad-netrc"
    bad.write_text(f"machine 127.0.0.1 login {USER} password {PASSWORD} bogus-token\n")
    result = cli("ls", listed.url("explicit", user=None), "--netrc-file", bad, "--insecure")
    assert result.code == 2 and "malformed" in result.err


def test_no_password_without_a_terminal_is_a_usage_error(listed: CliServer, cli: Cli) -> None:
    result = cli("ls", listed.url("explicit", password=None), "--insecure")
    assert result.code == 2
    assert result.err.splitlines() == [
        "pyftps: ls: no password for alice: set PYFTPS_PASSWORD, add a netrc entry for 127.0.0.1, "
        "or run on a terminal"
    ]


def test_prompt_on_a_terminal(listed: CliServer, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass
    import sys

    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return PASSWORD

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    result = cli("ls", listed.url("explicit", password=None), "--insecure")
    assert result.code == 0, result.err
    assert prompts == ["Password for alice@127.0.0.1: "]


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_wrong_password_is_refused_and_never_printed(
    mode: str, listed: CliServer, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_url = cli("get", listed.url(mode, "a.txt", password=WRONG_PASSWORD), "--insecure", "--debug")
    assert in_url.code == 1 and "530" in in_url.err.splitlines()[-1]
    monkeypatch.setenv("PYFTPS_PASSWORD", WRONG_PASSWORD)
    from_env = cli("ls", listed.url(mode, user=None), "--user", USER, "--insecure")
    assert from_env.code == 1
    assert from_env.err.startswith("pyftps: ls /: 530 ")


def test_redacted_urls() -> None:
    from pyftps.client.credentials import redact_url

    assert redact_url("ftps://alice:s3cret@host:990/dir") == "ftps://alice:***@host:990/dir"
    assert redact_url("ftps://alice@host/dir") == "ftps://alice@host/dir"
    assert "s3cret" not in redact_url("ftps://a:s3cret@[::1/x")
