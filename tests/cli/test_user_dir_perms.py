"""`pyftps user set NAME --dir-perm PATH=PERMS` and `--clear-dir-perm PATH`; how `user list` shows rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.sqlite import SqliteUserStore
from pyftps.cli import main
from pyftps.proto.permissions import DirectoryRule, Permission


def run(capsys: pytest.CaptureFixture[str], state: Path, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["user", "--state-dir", str(state), *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A user database holding carol (read-only), made through the CLI."""
    monkeypatch.setattr("sys.stdin", io.StringIO("carol-pw\n"))
    state = tmp_path / "state"
    code, _, err = run(capsys, state, "add", "carol", "--home", str(tmp_path / "carol"), "--perms", "ro")
    assert code == 0, err
    return state


def rules_of(state: Path) -> tuple[DirectoryRule, ...]:
    with SqliteUserStore(state / "users.db", hasher=cheap_hasher()) as store:
        record = store.get_user("carol")
        assert record is not None
        return record.principal().directory_rules


def test_set_list_and_clear_rules(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, state, "set", "carol", "--dir-perm", "/incoming/=list,write", "--dir-perm", "/pub=ro"
    )
    assert code == 0, err
    assert rules_of(state) == (
        DirectoryRule("/incoming", Permission.LIST | Permission.WRITE),
        DirectoryRule("/pub", Permission.read_only()),
    )
    code, out, _ = run(capsys, state, "list")
    assert code == 0
    assert out.rstrip("\n").split("\t")[2:] == ["list,read", "enabled", "/incoming=list,write /pub=list,read"]

    # A clear runs before the sets of the same call; a set replaces the rule of the same path.
    code, _, err = run(
        capsys, state, "set", "carol", "--clear-dir-perm", "/pub/", "--dir-perm", "/incoming=write"
    )
    assert code == 0, err
    assert rules_of(state) == (DirectoryRule("/incoming", Permission.WRITE),)

    code, _, err = run(capsys, state, "set", "carol", "--clear-dir-perm", "all", "--dir-perm", "/x=none")
    assert code == 0, err
    assert rules_of(state) == (DirectoryRule("/x", Permission(0)),)
    _, out, _ = run(capsys, state, "list")
    assert out.rstrip("\n").endswith("\t/x=-")

    assert run(capsys, state, "set", "carol", "--clear-dir-perm", "all")[0] == 0
    assert rules_of(state) == ()
    _, out, _ = run(capsys, state, "list")
    assert out.rstrip("\n").split("\t")[2:] == ["list,read", "enabled"]  # no rules: no column


def test_other_changes_keep_the_rules(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, state, "set", "carol", "--dir-perm", "/in=write")[0] == 0
    assert run(capsys, state, "set", "carol", "--perms", "all", "--quota-files", "5")[0] == 0
    assert rules_of(state) == (DirectoryRule("/in", Permission.WRITE),)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dir-perm", "/in"], "wants PATH=PERMS"),
        (["--dir-perm", "=write"], "wants PATH=PERMS"),
        (["--dir-perm", "in=write"], "must be absolute"),
        (["--dir-perm", "/a/../b=write"], "must not contain '..'"),
        (["--dir-perm", "/in=write,fly"], "unknown permission 'fly'"),
        (["--clear-dir-perm", "/nope"], "no directory rule for /nope"),
    ],
)
def test_bad_rules_are_refused_with_one_line(
    state: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run(capsys, state, "set", "carol", "--dir-perm", "/keep=ro")[0] == 0
    code, out, err = run(capsys, state, "set", "carol", *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and message in err, err
    assert rules_of(state) == (DirectoryRule("/keep", Permission.read_only()),)  # nothing was written
