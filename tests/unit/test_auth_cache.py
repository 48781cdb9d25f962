"""The verified-credential cache: hits only with the right password, expiry, bounds, no password kept."""

from __future__ import annotations

from pyftps.auth.base import Principal
from pyftps.auth.cache import CachingAuthenticator


class _Store:
    def __init__(self) -> None:
        self.calls = 0
        self.password = "right"

    def authenticate(self, username: str, password: str) -> Principal | None:
        self.calls += 1
        return Principal(username, "/home") if username == "alice" and password == self.password else None


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_repeat_login_with_the_right_password_is_served_from_the_cache() -> None:
    store, clock = _Store(), _Clock()
    cache = CachingAuthenticator(store, ttl=60, clock=clock)
    assert cache.authenticate("alice", "right") is not None
    assert cache.authenticate("alice", "right") is not None
    assert store.calls == 1


def test_wrong_passwords_and_unknown_users_always_reach_the_store() -> None:
    store = _Store()
    cache = CachingAuthenticator(store, clock=_Clock())
    cache.authenticate("alice", "right")
    for _ in range(3):
        assert cache.authenticate("alice", "wrong") is None
        assert cache.authenticate("mallory", "right") is None
    assert store.calls == 7


def test_entries_expire_so_a_changed_password_takes_effect() -> None:
    store, clock = _Store(), _Clock()
    cache = CachingAuthenticator(store, ttl=60, clock=clock)
    cache.authenticate("alice", "right")
    store.password = "new"
    clock.now = 61
    assert cache.authenticate("alice", "right") is None
    assert cache.authenticate("alice", "new") is not None


def test_forget_drops_a_user_at_once_and_the_size_is_bounded() -> None:
    store = _Store()
    cache = CachingAuthenticator(store, max_entries=2, clock=_Clock())
    cache.authenticate("alice", "right")
    cache.forget("alice")
    cache.authenticate("alice", "right")
    assert store.calls == 2
    store.password = "b"
    cache.authenticate("alice", "b")
    store.password = "c"
    cache.authenticate("alice", "c")
    assert len(cache._entries) == 2  # the oldest entry was evicted


def test_the_password_is_not_kept() -> None:
    cache = CachingAuthenticator(_Store(), clock=_Clock())
    cache.authenticate("alice", "right")
    assert all(b"right" not in key[1] for key in cache._entries)


def test_parallel_logins_with_the_same_credentials_verify_once() -> None:
    import threading

    release = threading.Event()

    class _Slow(_Store):
        def authenticate(self, username: str, password: str) -> Principal | None:
            release.wait(10)
            return super().authenticate(username, password)

    store = _Slow()
    cache = CachingAuthenticator(store, ttl=60, clock=_Clock())
    results: list[Principal | None] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.authenticate("alice", "right")))
        for _ in range(4)
    ]
    wrong = threading.Thread(target=lambda: results.append(cache.authenticate("alice", "wrong")))
    for thread in [*threads, wrong]:
        thread.start()
    for _ in range(1000):  # until both verifications have started (the others wait or hit the cache)
        if len(cache._running) == 2:
            break
        threading.Event().wait(0.01)
    release.set()
    for thread in [*threads, wrong]:
        thread.join(10)
    assert store.calls == 2  # one argon2id per distinct password
    assert sorted(p is not None for p in results) == [False, True, True, True, True]


def test_without_a_ttl_every_login_reaches_the_store() -> None:
    store = _Store()
    cache = CachingAuthenticator(store, ttl=0, clock=_Clock())
    for _ in range(3):
        assert cache.authenticate("alice", "right") is not None
    assert store.calls == 3
