"""Anonymous login: only the anonymous names, any password, read-only by default; others fall through."""

from __future__ import annotations

from pyftps.auth.anonymous import AnonymousAuthenticator
from pyftps.auth.base import Permission, Principal


class _Inner:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def authenticate(self, username: str, password: str) -> Principal | None:
        self.calls.append(username)
        return Principal(username, "/home/" + username) if password == "right" else None


def test_anonymous_names_get_a_read_only_principal_with_any_password() -> None:
    inner = _Inner()
    auth = AnonymousAuthenticator(inner, "/srv/pub")
    for name in ("anonymous", "ftp", "Anonymous"):
        principal = auth.authenticate(name, "someone@example.org")
        assert principal is not None
        assert principal.home == "/srv/pub"
        assert principal.permissions == Permission.read_only()
    assert inner.calls == []


def test_other_users_go_to_the_real_store() -> None:
    inner = _Inner()
    auth = AnonymousAuthenticator(inner, "/srv/pub")
    assert auth.authenticate("alice", "right") == Principal("alice", "/home/alice")
    assert auth.authenticate("alice", "wrong") is None
    assert inner.calls == ["alice", "alice"]


def test_write_access_only_when_asked() -> None:
    writable = Permission.LIST | Permission.READ | Permission.WRITE
    principal = AnonymousAuthenticator(_Inner(), "/srv/in", writable).authenticate("ftp", "")
    assert principal is not None and Permission.WRITE in principal.permissions
    assert Permission.DELETE not in principal.permissions
