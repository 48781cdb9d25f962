"""``pyftps mirror`` both ways against pyftps, explicit and implicit: only changed files move.

"Not transferred" is proven by content: an unchanged file (same size, same second) gets different
bytes on the side that would be overwritten, and must keep them after the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

import pyftps.client.mirror as mirror_module
from pyftps.client.connection import Client
from pyftps.client.credentials import Endpoint
from tests.cli.conftest import MODES, CliServer, Result

Cli = Callable[..., Result]
T0 = 1_600_000_000
T1 = 1_650_000_000


def write(path: Path, data: bytes, mtime: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    """Relative path → (content, whole-second mtime) of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): (p.read_bytes(), int(p.stat().st_mtime))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def source_tree(root: Path) -> None:
    write(root / "same.txt", b"s" * 100, T0)
    write(root / "touched.txt", b"t" * 100, T0)  # will get a new mtime, same size
    write(root / "grown.txt", b"g" * 100, T0)  # will get a new size, same mtime
    write(root / "sub" / "deep.bin", os.urandom(70_000), T0)
    write(root / "sub" / "inner" / "x.txt", b"x", T0)
    (root / "emptydir").mkdir()


def change_source(root: Path) -> None:
    write(root / "touched.txt", b"T" * 100, T1)
    write(root / "grown.txt", b"G" * 101, T0)
    write(root / "sub" / "new.txt", b"new", T0)


def count_connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the control connections mirror opens (one scans and copies, the others only copy)."""
    opened = [0]
    real = mirror_module.connect

    async def counting(endpoint: Endpoint) -> Client:
        opened[0] += 1
        return await real(endpoint)

    monkeypatch.setattr(mirror_module, "connect", counting)
    return opened


@pytest.mark.parametrize("mode", MODES)
def test_mirror_download_copies_only_changed_files(
    mode: str, server: CliServer, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote, local = server.root / "site", tmp_path / "local"
    source_tree(remote)
    url = server.url(mode, "site")
    ca = ("--cafile", server.cafile)

    opened = count_connections(monkeypatch)
    first = cli("mirror", url, local, "--parallel", "3", *ca)
    assert first.code == 0, first.err
    assert opened == [3]  # five files, three workers, each on its own connection
    assert snapshot(local) == snapshot(remote)  # contents and times
    assert (local / "emptydir").is_dir()

    change_source(remote)
    write(remote / "same.txt", b"S" * 100, T0)  # same size and time: must not be fetched
    write(local / "extra.txt", b"only here", T0)
    write(local / "olddir" / "y.txt", b"y", T0)

    dry = cli("mirror", url, local, "--delete", "--dry-run", *ca)
    assert dry.code == 0, dry.err
    assert dry.out.splitlines() == [
        "delete extra.txt",
        "delete olddir/y.txt",
        "rmdir olddir/",
        "get grown.txt",
        "get sub/new.txt",
        "get touched.txt",
    ]
    assert (local / "extra.txt").exists() and (local / "touched.txt").read_bytes() == b"t" * 100

    second = cli("mirror", url, local, "--delete", "--parallel", "3", *ca)
    assert second.code == 0, second.err
    after = snapshot(local)
    assert after["same.txt"] == (b"s" * 100, T0)  # untouched: the old bytes are still there
    assert after["touched.txt"] == (b"T" * 100, T1)
    assert after["grown.txt"] == (b"G" * 101, T0)
    assert after["sub/new.txt"] == (b"new", T0)
    assert "extra.txt" not in after and not (local / "olddir").exists()
    assert not list(local.rglob("*.pyftps-part"))
    expected = snapshot(remote)
    expected["same.txt"] = (b"s" * 100, T0)
    assert after == expected


@pytest.mark.parametrize("mode", MODES)
def test_mirror_reverse_uploads_only_changed_files(
    mode: str, server: CliServer, cli: Cli, tmp_path: Path
) -> None:
    local, remote = tmp_path / "local", server.root / "backup" / "site"
    source_tree(local)
    url = server.url(mode, "backup/site")  # does not exist yet: created
    ca = ("--cafile", server.cafile)

    first = cli("mirror", "--reverse", local, url, "--parallel", "3", *ca)
    assert first.code == 0, first.err
    assert snapshot(remote) == snapshot(local)  # MFMT gave every upload the local time
    assert (remote / "emptydir").is_dir()

    change_source(local)
    write(remote / "same.txt", b"S" * 100, T0)  # same size and time: must not be sent
    write(remote / "extra.txt", b"only there", T0)
    write(remote / "olddir" / "y.txt", b"y", T0)

    second = cli("mirror", "--reverse", local, url, "--delete", "--parallel", "3", *ca)
    assert second.code == 0, second.err
    after = snapshot(remote)
    assert after["same.txt"] == (b"S" * 100, T0)  # not uploaded again
    assert after["touched.txt"] == (b"T" * 100, T1)
    assert after["grown.txt"] == (b"G" * 101, T0)
    assert after["sub/new.txt"] == (b"new", T0)
    assert "extra.txt" not in after and not (remote / "olddir").exists()

    again = cli("mirror", "--reverse", local, url, "--dry-run", *ca)
    assert again.code == 0 and again.out == ""  # everything matches now


def test_mirror_partial_failure_is_exit_6(server: CliServer, cli: Cli, tmp_path: Path) -> None:
    remote, local = server.root / "site", tmp_path / "local"
    write(remote / "ok.txt", b"ok", T0)
    write(remote / "clash", b"a file here", T0)
    (local / "clash").mkdir(parents=True)  # a directory where the file must go
    result = cli("mirror", server.url("implicit", "site"), local, "--insecure")
    assert result.code == 6
    assert result.err.splitlines() == ["pyftps: mirror clash: a file and a directory have this name"]
    assert (local / "ok.txt").read_bytes() == b"ok"


def test_mirror_missing_remote_directory_is_exit_1(server: CliServer, cli: Cli, tmp_path: Path) -> None:
    result = cli("mirror", server.url("explicit", "nowhere"), tmp_path / "local", "--insecure")
    assert result.code == 1
    assert result.err.splitlines() == ["pyftps: mirror /nowhere: 550 /nowhere: no such file or directory"]


def test_mirror_reverse_of_a_missing_local_directory_is_exit_4(
    server: CliServer, cli: Cli, tmp_path: Path
) -> None:
    result = cli("mirror", "--reverse", tmp_path / "nothing", server.url("explicit", "x"), "--insecure")
    assert result.code == 4
    assert result.err.splitlines() == [f"pyftps: mirror {tmp_path / 'nothing'}: No such file or directory"]
