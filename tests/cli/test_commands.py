"""``pyftps ls/get/put/rm/mkdir/mv`` against an in-process pyftps server, explicit (``ftpes://``) and
implicit (``ftps://``), through ``run_client_command`` as ``pyftps.cli`` calls it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pyftps.tls.certs import certificate_fingerprint
from tests.cli.conftest import MODES, CliServer, Result

Cli = Callable[..., Result]
MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z


def payload(size: int, seed: int = 1) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "big")).digest(size)


def one_line(result: Result) -> str:
    """The single stderr line of a failed command (never a traceback)."""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


@pytest.mark.parametrize("mode", MODES)
def test_put_ls_get_roundtrip(mode: str, server: CliServer, cli: Cli, tmp_path: Path) -> None:
    data = payload(200_000)
    src = tmp_path / "report.bin"
    src.write_bytes(data)
    os.utime(src, (MTIME, MTIME))
    ca = ("--cafile", server.cafile)

    assert cli("put", src, server.url(mode, "report.bin"), *ca).code == 0
    remote = server.root / "report.bin"
    assert remote.read_bytes() == data
    assert int(remote.stat().st_mtime) == MTIME  # MFMT after the upload

    listing = cli("ls", server.url(mode), *ca)
    assert listing.code == 0, listing.err
    assert listing.out.splitlines() == ["-         200000 2023-11-14T22:13:20Z report.bin"]

    long = cli("ls", "-l", server.url(mode), *ca)
    assert long.code == 0 and long.out.startswith("-rw-") and long.out.rstrip().endswith(" report.bin")

    as_json = cli("ls", "--json", server.url(mode), *ca)
    (entry,) = json.loads(as_json.out)
    assert entry["name"] == "report.bin" and entry["type"] == "file" and entry["size"] == 200_000
    assert entry["mtime"] == "2023-11-14T22:13:20Z" and entry["mtime_epoch"] == MTIME

    dest = tmp_path / "down"
    dest.mkdir()
    assert cli("get", server.url(mode, "report.bin"), dest, *ca).code == 0  # into a directory
    assert (dest / "report.bin").read_bytes() == data
    assert int((dest / "report.bin").stat().st_mtime) == MTIME  # the remote time carried over


@pytest.mark.parametrize("mode", MODES)
def test_mkdir_mv_rm(mode: str, server: CliServer, cli: Cli, tmp_path: Path) -> None:
    ca = ("--cafile", server.cafile)
    (server.root / "old.txt").write_text("x")
    assert cli("mkdir", server.url(mode, "top"), *ca).code == 0
    assert (server.root / "top").is_dir()
    again = cli("mkdir", server.url(mode, "top"), *ca)
    assert again.code == 1 and one_line(again).startswith("pyftps: mkdir /top: 550 ")
    assert cli("mkdir", "-p", server.url(mode, "top/a/b"), *ca).code == 0
    assert cli("mkdir", "-p", server.url(mode, "top/a/b"), *ca).code == 0  # like mkdir -p: no error
    assert (server.root / "top" / "a" / "b").is_dir()

    assert cli("mv", server.url(mode, "old.txt"), "top/a/new.txt", *ca).code == 0
    assert (server.root / "top" / "a" / "new.txt").read_text() == "x"
    assert not (server.root / "old.txt").exists()
    same_server = server.url(mode, "top/renamed.txt")
    assert cli("mv", server.url(mode, "top/a/new.txt"), same_server, *ca).code == 0
    assert (server.root / "top" / "renamed.txt").exists()

    assert cli("rm", server.url(mode, "top/renamed.txt"), *ca).code == 0
    assert not (server.root / "top" / "renamed.txt").exists()
    not_a_file = cli("rm", server.url(mode, "top"), *ca)  # one file only without -r
    assert not_a_file.code == 1 and (server.root / "top").is_dir()
    (server.root / "top" / "a" / "deep.txt").write_text("y")
    assert cli("rm", "-r", server.url(mode, "top"), *ca).code == 0
    assert list(server.root.iterdir()) == []


@pytest.mark.parametrize("mode", MODES)
def test_put_several_files_into_a_directory(mode: str, server: CliServer, cli: Cli, tmp_path: Path) -> None:
    (server.root / "in").mkdir()
    files = []
    for index in range(3):
        path = tmp_path / f"f{index}.txt"
        path.write_text(f"file {index}")
        files.append(path)
    assert cli("put", *files, server.url(mode, "in"), "--insecure").code == 0
    assert sorted(p.name for p in (server.root / "in").iterdir()) == ["f0.txt", "f1.txt", "f2.txt"]
    assert (server.root / "in" / "f2.txt").read_text() == "file 2"


@pytest.mark.parametrize("mode", MODES)
def test_certificates_insecure_and_fingerprint(
    mode: str, server: CliServer, cli: Cli, wrong_ca: Path, tmp_path: Path
) -> None:
    (server.root / "a.txt").write_text("a")
    refused = cli("ls", server.url(mode), "--cafile", wrong_ca)
    assert refused.code == 3
    line = one_line(refused)
    assert line.startswith("pyftps: ls /: ") and "certificate" in line.lower()

    system_cas = cli("ls", server.url(mode))  # the self-signed certificate is in no system store
    assert system_cas.code == 3

    assert cli("ls", server.url(mode), "--insecure").code == 0

    pinned = cli("ls", server.url(mode), "--fingerprint", certificate_fingerprint(server.cafile.read_bytes()))
    assert pinned.code == 0, pinned.err
    wrong_pin = cli("ls", server.url(mode), "--fingerprint", "ab" * 32)
    assert wrong_pin.code == 3 and "fingerprint" in one_line(wrong_pin)
    bad_pin = cli("ls", server.url(mode), "--fingerprint", "xyz")
    assert bad_pin.code == 2
    missing_ca = cli("ls", server.url(mode), "--cafile", tmp_path / "nope.pem")
    assert missing_ca.code == 2


@pytest.mark.parametrize("mode", MODES)
def test_missing_remote_file_is_exit_1_with_the_reply(
    mode: str, server: CliServer, cli: Cli, tmp_path: Path
) -> None:
    ca = ("--cafile", server.cafile)
    dest = tmp_path / "never.bin"
    got = cli("get", server.url(mode, "x"), dest, *ca)
    assert got.code == 1
    assert one_line(got) == "pyftps: get /x: 550 /x: no such file or directory"
    assert not dest.exists()  # a refused RETR creates no local file
    assert cli("rm", server.url(mode, "x"), *ca).code == 1
    assert cli("ls", server.url(mode, "x"), *ca).code == 1
    assert cli("mv", server.url(mode, "x"), "y", *ca).code == 1


@pytest.mark.parametrize("mode", MODES)
def test_resume_download_and_upload(mode: str, server: CliServer, cli: Cli, tmp_path: Path) -> None:
    ca = ("--cafile", server.cafile)
    data = payload(300_000, seed=2)
    cut = 123_457
    (server.root / "big.bin").write_bytes(data)
    partial = tmp_path / "big.bin"
    # A different prefix proves that only the rest was fetched (REST cut), not the whole file again.
    partial.write_bytes(b"\0" * cut)
    assert cli("get", "--resume", server.url(mode, "big.bin"), partial, *ca).code == 0
    assert partial.read_bytes() == b"\0" * cut + data[cut:]
    complete = cli("get", "--resume", server.url(mode, "big.bin"), partial, *ca)
    assert complete.code == 0 and "already complete" in complete.err
    assert partial.read_bytes() == b"\0" * cut + data[cut:]

    local = tmp_path / "up.bin"
    local.write_bytes(data)
    (server.root / "up.bin").write_bytes(b"\1" * cut)  # an interrupted upload
    assert cli("put", "--resume", local, server.url(mode, "up.bin"), *ca).code == 0
    assert (server.root / "up.bin").read_bytes() == b"\1" * cut + data[cut:]
    assert cli("put", local, server.url(mode, "up.bin"), *ca).code == 0  # without --resume: all of it
    assert (server.root / "up.bin").read_bytes() == data


def test_get_to_stdout_and_active_mode(server: CliServer, cli: Cli) -> None:
    (server.root / "note.txt").write_text("to stdout\n")
    result = cli("get", server.url("explicit", "note.txt"), "-", "--cafile", server.cafile, "--active")
    assert result.code == 0, result.err
    assert result.out == "to stdout\n"


def test_auth_ssl(server: CliServer, cli: Cli) -> None:
    (server.root / "a.txt").write_text("a")
    result = cli("ls", server.url("explicit"), "--cafile", server.cafile, "--auth-ssl")
    assert result.code == 0, result.err
    assert result.out.rstrip().endswith("a.txt")


def test_local_errors_are_exit_4(server: CliServer, cli: Cli, tmp_path: Path) -> None:
    missing = cli("put", tmp_path / "missing.txt", server.url("explicit", "m.txt"), "--insecure")
    assert missing.code == 4
    assert one_line(missing) == f"pyftps: put {tmp_path / 'missing.txt'}: No such file or directory"
    (server.root / "a.txt").write_text("a")
    unwritable = cli("get", server.url("explicit", "a.txt"), tmp_path / "no-dir" / "a.txt", "--insecure")
    assert unwritable.code == 4 and "No such file or directory" in one_line(unwritable)
    into_missing_dir = cli("get", server.url("explicit", "a.txt"), f"{tmp_path}/new-dir/", "--insecure")
    assert into_missing_dir.code == 4
    assert one_line(into_missing_dir) == f"pyftps: get {tmp_path}/new-dir/a.txt: No such file or directory"


def test_usage_errors_are_exit_2(server: CliServer, cli: Cli, tmp_path: Path) -> None:
    plain = cli("ls", f"ftp://127.0.0.1:{server.running.explicit_port}/")
    assert plain.code == 2 and "--plain" in one_line(plain)
    assert cli("ls", "http://example.invalid/").code == 2
    assert cli("ls").code == 2  # argparse: URL missing
    assert cli("mirror", "--parallel", "0", server.url("explicit"), tmp_path).code == 2
    assert cli("mirror", tmp_path, server.url("explicit"), "--insecure").code == 2  # needs --reverse
    assert cli("rm", "-r", server.url("explicit", ""), "--insecure").code == 2  # never the root
    assert cli("put", tmp_path, server.url("explicit"), "--insecure").code == 2  # a directory
    assert cli("get", server.url("explicit", ""), "--insecure").code == 2  # no file named


def test_plain_ftp_needs_the_opt_in(server: CliServer, cli: Cli) -> None:
    # The server requires TLS for login, so --plain gets as far as the server's refusal (5xx).
    result = cli("ls", f"ftp://alice:pw@127.0.0.1:{server.running.explicit_port}/", "--plain")
    assert result.code == 1 and one_line(result).startswith("pyftps: ls /: 5")


def test_interrupt_is_exit_130(server: CliServer, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyftps.client.commands as commands

    async def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "connect", interrupted)
    result = cli("ls", server.url("explicit"), "--insecure")
    assert result.code == 130 and one_line(result) == "pyftps: ls /: interrupted"


def test_debug_shows_the_traceback(server: CliServer, cli: Cli) -> None:
    result = cli("get", server.url("explicit", "x"), "--insecure", "--debug")
    assert result.code == 1
    assert "Traceback" in result.err and "PermanentError" in result.err
    assert result.err.rstrip().splitlines()[-1] == "pyftps: get /x: 550 /x: no such file or directory"


def test_tls_first_on_an_explicit_port_is_exit_3(server: CliServer, cli: Cli) -> None:
    wrong_port = f"ftps://127.0.0.1:{server.running.explicit_port}/"  # implicit URL, explicit listener
    result = cli("ls", wrong_port, "--insecure", "--timeout", "3")
    assert result.code == 3
    assert one_line(result).startswith("pyftps: ls /: ")


def test_every_subcommand_documents_the_exit_codes(cli: Cli) -> None:
    for command in ("ls", "get", "put", "mirror", "rm", "mkdir", "mv"):
        shown = cli(command, "--help")
        assert shown.code == 0
        assert "exit codes:" in shown.out and "6    partial failure" in shown.out
        assert "--cafile" in shown.out and "--insecure" in shown.out and "--quiet" in shown.out
