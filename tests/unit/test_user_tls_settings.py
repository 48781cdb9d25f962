"""Per-user TLS overrides and max_sessions: the user store, the session counter and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyftps.auth.base import Permission, UserTLSPolicy
from pyftps.auth.passwords import cheap_hasher
from pyftps.auth.sqlite import SqliteUserStore
from pyftps.cli import main
from pyftps.proto.policy import CCCPolicy
from pyftps.server.guard import ConnectionCounter, ConnectionLimits

OVERRIDES = {
    "require_tls_for_login": True,
    "require_protected_data": False,
    "ccc": "always",
    "data_reuse": "warn",
}


def test_store_round_trip(tmp_path: Path) -> None:
    with SqliteUserStore(tmp_path / "users.db", hasher=cheap_hasher()) as store:
        store.add_user("carol", "pw", str(tmp_path), Permission.all(), settings=OVERRIDES)
        record = store.get_user("carol")
        assert record is not None and record.settings == OVERRIDES
        expected = UserTLSPolicy(True, False, CCCPolicy.ALWAYS, "warn")
        assert record.principal().tls == expected
        principal = store.authenticate("carol", "pw")
        assert principal is not None and principal.tls == expected
        store.add_user("dave", "pw", str(tmp_path))
        dave = store.authenticate("dave", "pw")
        assert dave is not None and dave.tls == UserTLSPolicy() and dave.tls.inherits_all


@pytest.mark.parametrize(
    "bad", [{"ccc": "sometimes"}, {"data_reuse": "on"}, {"require_tls_for_login": "yes"}]
)
def test_store_refuses_malformed_overrides(tmp_path: Path, bad: dict[str, object]) -> None:
    with SqliteUserStore(tmp_path / "users.db", hasher=cheap_hasher()) as store:
        with pytest.raises(ValueError):
            store.add_user("carol", "pw", str(tmp_path), settings=bad)
        store.add_user("carol", "pw", str(tmp_path))
        with pytest.raises(ValueError):
            store.update_user("carol", settings=bad)
        record = store.get_user("carol")
        assert record is not None and record.settings == {}


def test_try_login_with_a_per_user_limit() -> None:
    counter = ConnectionCounter(ConnectionLimits(max_per_user=2))
    assert counter.try_login("frank", 1) is None
    refusal = counter.try_login("frank", 1)
    assert refusal is not None and refusal.code == 530
    assert counter.try_login("frank") is None  # the server-wide limit (2) for a user without one
    assert counter.try_login("frank") is not None
    for _ in range(2):
        counter.logout("frank")
    assert counter.try_login("frank", 1) is None
    for _ in range(4):  # a user's own limit may be higher than the server's
        assert counter.try_login("erin", 5) is None
    assert counter.try_login("erin", 5) is None
    assert counter.try_login("erin", 5) is not None
    assert counter.try_login("zed", 0) is not None  # 0: this user may not log in at all


def _cli(tmp_path: Path, *args: str) -> int:
    return main(["user", "--state-dir", str(tmp_path), *args])


def test_cli_sets_shows_and_clears_overrides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with SqliteUserStore(tmp_path / "users.db", hasher=cheap_hasher()) as store:
        store.add_user("carol", "pw", str(tmp_path))
    assert _cli(tmp_path, "set", "carol", "--require-tls-login", "yes", "--require-prot-p", "no") == 0
    assert _cli(tmp_path, "set", "carol", "--ccc", "never", "--data-reuse", "off", "--max-sessions", "2") == 0
    capsys.readouterr()
    assert _cli(tmp_path, "list") == 0
    listed = capsys.readouterr().out
    assert "tls-login=yes prot-p=no ccc=never reuse=off" in listed
    with SqliteUserStore(tmp_path / "users.db", hasher=cheap_hasher()) as store:
        record = store.get_user("carol")
        assert record is not None
        assert record.settings == {
            "require_tls_for_login": True,
            "require_protected_data": False,
            "ccc": "never",
            "data_reuse": "off",
            "max_sessions": 2,
        }
    assert _cli(tmp_path, "set", "carol", "--ccc", "inherit", "--require-tls-login", "inherit") == 0
    assert _cli(tmp_path, "set", "carol", "--require-prot-p", "inherit", "--data-reuse", "inherit") == 0
    with SqliteUserStore(tmp_path / "users.db", hasher=cheap_hasher()) as store:
        record = store.get_user("carol")
        assert record is not None and record.settings == {"max_sessions": 2}
    capsys.readouterr()
    assert _cli(tmp_path, "list") == 0
    assert "tls-login" not in capsys.readouterr().out


def test_cli_refuses_an_unknown_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _cli(tmp_path, "set", "carol", "--ccc", "sometimes")
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
