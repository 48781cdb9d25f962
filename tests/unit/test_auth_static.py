"""Unit tests for pyftps.auth.static.StaticAuthenticator."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pytest
from argon2 import PasswordHasher, Type

from pyftps.auth.base import Authenticator, Permission, Principal
from pyftps.auth.passwords import CONCURRENT_VERIFICATIONS, cheap_hasher, hash_password
from pyftps.auth.static import StaticAuthenticator

ALICE = Principal("alice", "/srv/ftp/alice", Permission.all())
BOB = Principal("bob", "/srv/ftp/bob", Permission.read_only())


class CountingHasher(PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifies += 1
        return super().verify(hash, password)


class BarrierHasher(PasswordHasher):
    """Every verification waits for *parties* others: deadlocks (BrokenBarrierError) if serialised."""

    def __init__(self, parties: int) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        self.barrier = threading.Barrier(parties, timeout=10)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.barrier.wait()
        return super().verify(hash, password)


@pytest.fixture
def auth() -> StaticAuthenticator:
    return StaticAuthenticator.from_plain(
        {"alice": ("wonderland", ALICE), "bob": ("builder", BOB)}, hasher=cheap_hasher()
    )


def test_is_an_authenticator(auth: StaticAuthenticator) -> None:
    checked: Authenticator = auth
    assert checked.authenticate("alice", "wonderland") == ALICE


def test_success_returns_the_principal(auth: StaticAuthenticator) -> None:
    assert auth.authenticate("alice", "wonderland") is ALICE
    principal = auth.authenticate("bob", "builder")
    assert principal == BOB
    assert principal is not None and principal.permissions == Permission.LIST | Permission.READ


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "builder"), ("alice", ""), ("Alice", "wonderland"), ("carol", "wonderland"), ("", "")],
)
def test_failures_return_none(auth: StaticAuthenticator, user: str, password: str) -> None:
    assert auth.authenticate(user, password) is None


def test_unknown_user_costs_one_verification() -> None:
    hasher = CountingHasher()
    auth = StaticAuthenticator.from_plain({"alice": ("wonderland", ALICE)}, hasher=hasher)
    auth.authenticate("alice", "wrong")
    assert hasher.verifies == 1
    auth.authenticate("mallory", "wrong")
    assert hasher.verifies == 2


def test_plain_passwords_are_not_kept(auth: StaticAuthenticator) -> None:
    stored = [entry[0] for entry in auth._users.values()]
    assert all(value.startswith("$argon2id$") for value in stored)
    assert "wonderland" not in repr(auth) and "$argon2" not in repr(auth)
    assert auth.user_names == ["alice", "bob"]


def test_accepts_prehashed_users() -> None:
    hasher = cheap_hasher()
    auth = StaticAuthenticator({"alice": (hash_password("pw", hasher=hasher), ALICE)}, hasher=hasher)
    assert auth.authenticate("alice", "pw") is ALICE


def test_rejects_plain_password_in_constructor() -> None:
    with pytest.raises(ValueError, match="not an argon2 hash"):
        StaticAuthenticator({"alice": ("wonderland", ALICE)}, hasher=cheap_hasher())


def test_rejects_mismatched_principal() -> None:
    with pytest.raises(ValueError, match="principal named 'bob'"):
        StaticAuthenticator.from_plain({"alice": ("pw", BOB)}, hasher=cheap_hasher())


@pytest.mark.parametrize("name", ["al ice", "a:b", "a/b", ""])
def test_rejects_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="user name"):
        StaticAuthenticator.from_plain({name: ("pw", Principal(name, "/h"))}, hasher=cheap_hasher())


def test_rejects_empty_password() -> None:
    with pytest.raises(ValueError, match="empty"):
        StaticAuthenticator.from_plain({"alice": ("", ALICE)}, hasher=cheap_hasher())


def test_users_mapping_is_copied() -> None:
    users = {"alice": ("pw", ALICE)}
    auth = StaticAuthenticator.from_plain(users, hasher=cheap_hasher())
    users.clear()
    assert auth.authenticate("alice", "pw") is ALICE


def test_parallel_logins_verify_concurrently() -> None:
    threads = 8
    plain = {"alice": ("wonderland", ALICE), "bob": ("builder", BOB)}
    # Verifications meet in groups as large as the server lets run at once (one per core, >= 2).
    auth = StaticAuthenticator.from_plain(plain, hasher=BarrierHasher(CONCURRENT_VERIFICATIONS))
    attempts = [("alice", "wonderland"), ("bob", "builder"), ("alice", "nope"), ("eve", "x")] * 2
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda a: auth.authenticate(*a), attempts))
    assert results == [ALICE, BOB, None, None] * 2
