"""Socket-free pieces of the command line: the mirror plan, exit codes, progress bars, local sinks."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

import pyftps.client.commands as commands
from pyftps.client.commands import exit_code_for
from pyftps.client.credentials import CommandFailure
from pyftps.client.errors import (
    CertificateRejected,
    ConnectionClosed,
    FTPTimeout,
    PermanentError,
    ProtocolViolation,
    TransferTruncated,
    TransientError,
    UsageError,
)
from pyftps.client.mirror import FileState, LocalSink, Tree, make_plan, remote_join, safe_name, same_file
from pyftps.client.progress import Display, wants_progress
from tests.cli.conftest import CliServer, Result


def tree(files: dict[str, tuple[int, float]], dirs: set[str] | None = None) -> Tree:
    return Tree({p: FileState(*state) for p, state in files.items()}, set(dirs or ()))


def test_plan_copies_new_and_changed_files_only() -> None:
    source = tree({"a": (1, 10.2), "d/b": (2, 20.0), "d/e/c": (3, 30.0), "new": (4, 1.0)}, {"d", "d/e"})
    target = tree({"a": (1, 10.9), "d/b": (2, 21.0), "d/e/c": (4, 30.0), "old": (1, 1.0)}, {"d", "z"})
    plan = make_plan(source, target, delete=False)
    assert plan.copy == ["d/b", "d/e/c", "new"]  # "a" differs by a fraction of a second only
    assert plan.unchanged == 1 and plan.make_dirs == ["d/e"]
    assert plan.delete_files == [] and plan.delete_dirs == [] and plan.conflicts == []
    deleting = make_plan(source, target, delete=True)
    assert deleting.delete_files == ["old"] and deleting.delete_dirs == ["z"]


def test_plan_orders_directories_and_handles_conflicts() -> None:
    source = tree({"x/f": (1, 1.0), "y": (1, 1.0)}, {"x", "p", "p/q", "p/q/r"})
    target = tree({"x": (5, 5.0), "gone/deep/f": (1, 1.0)}, {"y", "gone", "gone/deep"})
    plan = make_plan(source, target, delete=False)
    assert plan.conflicts == ["x", "y"]  # a file where a directory goes, and the reverse
    assert plan.make_dirs == ["p", "p/q", "p/q/r"] and plan.copy == []
    resolved = make_plan(source, target, delete=True)  # --delete clears what is in the way first
    assert resolved.conflicts == []
    assert resolved.delete_files == ["gone/deep/f", "x"]
    assert resolved.delete_dirs == ["y", "gone/deep", "gone"]  # children before parents
    assert resolved.make_dirs == ["p", "p/q", "p/q/r", "x"] and resolved.copy == ["x/f", "y"]


def test_same_file_and_names() -> None:
    assert same_file(FileState(3, 100.9), FileState(3, 100.0))
    assert not same_file(FileState(3, 101.0), FileState(3, 100.0))
    assert same_file(FileState(3, None), FileState(3, 5.0))  # time unknown: size decides
    assert not same_file(FileState(None, None), FileState(3, None))
    assert remote_join("", "a") == "a" and remote_join("/", "a") == "/a" and remote_join("d/", "a") == "d/a"
    assert safe_name("ok.txt") and safe_name(".hidden")
    for bad in ("", ".", "..", "a/b", "a\0b"):
        assert not safe_name(bad)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PermanentError(550, "No such file"), 1),
        (UsageError(None, "bad"), 2),
        (CommandFailure(2, "usage"), 2),
        (CertificateRejected(None, "certificate verify failed"), 3),
        (ConnectionClosed(None, "gone"), 3),
        (FTPTimeout(None, "slow"), 3),  # a TimeoutError too, but an FTP failure first
        (ProtocolViolation(None, "odd"), 3),
        (TransferTruncated(None, "no close_notify"), 3),
        (PermissionError(13, "Permission denied"), 4),
        (TransientError(421, "busy"), 5),
        (CommandFailure(6, "partial"), 6),
        (RuntimeError("bug"), 70),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(error: BaseException, code: int) -> None:
    assert exit_code_for(error) == code


def test_local_sink_opens_only_when_data_arrives(tmp_path: Path) -> None:
    path = tmp_path / "f"
    with LocalSink(path):
        pass  # a refused transfer: nothing written, nothing created
    assert not path.exists()
    sink = LocalSink(path)
    with sink:
        sink.finish()  # an empty file that did arrive
    assert path.read_bytes() == b""
    path.write_bytes(b"0123456789")
    sink = LocalSink(path, offset=4)
    with sink as stream:
        stream.write(b"ab")
        sink.finish()
    assert path.read_bytes() == b"0123ab"


def test_progress_bars_on_a_terminal() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    with Display(True, console) as display:
        display.overall("mirror", 3000)
        bar = display.bar("file.bin", 2000, start=500)
        bar.update(700)
        bar.update(1500)
        bar.finish()
        display.note("a note")
    text = buffer.getvalue()
    assert "mirror" in text and "a note" in text and "kB" in text
    quiet = Display(False)
    with quiet:
        quiet.bar("x", None).update(5)  # a no-op without a terminal
    assert not quiet.enabled


def test_wants_progress_only_on_a_terminal_without_quiet() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_progress(False, Tty())
    assert not wants_progress(True, Tty())
    assert not wants_progress(False, io.StringIO())


def test_commands_with_progress_bars_enabled(
    server: CliServer, cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "wants_progress", lambda quiet: not quiet)
    (server.root / "site").mkdir()
    (server.root / "site" / "a.bin").write_bytes(b"a" * 50_000)
    assert cli("get", server.url("explicit", "site/a.bin"), tmp_path / "a.bin", "--insecure").code == 0
    assert cli("mirror", server.url("implicit", "site"), tmp_path / "m", "--insecure").code == 0
    assert (tmp_path / "m" / "a.bin").read_bytes() == b"a" * 50_000
    failed = cli("get", server.url("explicit", "nope"), tmp_path / "n", "--insecure")
    assert failed.code == 1 and "550" in failed.err and "Traceback" not in failed.err
