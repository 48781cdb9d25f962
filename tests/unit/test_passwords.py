"""Unit tests for pyftps.auth.passwords: argon2id hashing, the dummy hash, generation, user names."""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher, Type, extract_parameters

from pyftps.auth import passwords
from pyftps.auth.passwords import (
    cheap_hasher,
    default_hasher,
    dummy_hash,
    generate_password,
    hash_password,
    make_hasher,
    needs_rehash,
    validate_user_name,
    verify_dummy,
    verify_password,
)


class CountingHasher(PasswordHasher):
    """A cheap hasher that counts verifications, to check that every path does exactly one."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID)
        self.verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifies += 1
        return super().verify(hash, password)


@pytest.fixture
def hasher() -> PasswordHasher:
    return cheap_hasher()


def test_roundtrip(hasher: PasswordHasher) -> None:
    stored = hash_password("correct horse", hasher=hasher)
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse", hasher=hasher)


def test_hashes_are_salted(hasher: PasswordHasher) -> None:
    assert hash_password("same", hasher=hasher) != hash_password("same", hasher=hasher)


def test_wrong_password(hasher: PasswordHasher) -> None:
    stored = hash_password("secret", hasher=hasher)
    assert verify_password(stored, "Secret", hasher=hasher) is False
    assert verify_password(stored, "", hasher=hasher) is False


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "secret",
        "$2b$12$abcdefghijklmnopqrstuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu",  # bcrypt
        "$argon2id$v=19$m=8,t=1,p=1$xx$yy",  # argon2 shaped but corrupt
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",  # truncated
        "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\u00e9",  # non-ASCII
    ],
)
def test_garbage_hash_is_false_not_an_error(hasher: PasswordHasher, garbage: str) -> None:
    assert verify_password(garbage, "secret", hasher=hasher) is False
    assert needs_rehash(garbage, hasher=hasher) is True


def test_non_string_hash_is_false(hasher: PasswordHasher) -> None:
    assert verify_password(None, "secret", hasher=hasher) is False  # type: ignore[arg-type]


def test_unreadable_hash_costs_one_verification() -> None:
    counting = CountingHasher()
    assert verify_password("not a hash", "pw", hasher=counting) is False
    assert counting.verifies == 2  # the refused real one plus the dummy that burns the time


def test_empty_password_is_not_hashed(hasher: PasswordHasher) -> None:
    with pytest.raises(ValueError, match="empty"):
        hash_password("", hasher=hasher)


def test_unicode_is_normalised(hasher: PasswordHasher) -> None:
    composed = "caf\u00e9"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert verify_password(hash_password(composed, hasher=hasher), decomposed, hasher=hasher)


def test_undecodable_bytes_do_not_crash(hasher: PasswordHasher) -> None:
    # A PASS argument decoded with surrogateescape carries lone surrogates.
    raw = b"pa\xffss".decode("utf-8", "surrogateescape")
    stored = hash_password(raw, hasher=hasher)
    assert verify_password(stored, raw, hasher=hasher)
    assert not verify_password(stored, "pa\ufffdss", hasher=hasher)
    assert not verify_password(hash_password("x", hasher=hasher), raw, hasher=hasher)
    verify_dummy(raw, hasher=hasher)


def test_needs_rehash_tracks_parameters(hasher: PasswordHasher) -> None:
    stored = hash_password("pw", hasher=hasher)
    assert needs_rehash(stored, hasher=hasher) is False
    assert needs_rehash(stored, hasher=make_hasher(time_cost=2, memory_cost=8)) is True


def test_real_default_parameters() -> None:
    """The one test that pays for production parameters (~0.1-0.5 s per hash)."""
    hasher = default_hasher()
    assert hasher is default_hasher()
    assert (hasher.type, hasher.time_cost, hasher.memory_cost, hasher.parallelism) == (Type.ID, 3, 65536, 1)
    stored = hash_password("production secret")
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
    assert verify_password(stored, "production secret")
    assert not verify_password(stored, "production secreT")
    assert not needs_rehash(stored)
    assert needs_rehash(hash_password("pw", hasher=cheap_hasher()))


def test_dummy_hash_matches_hasher_parameters(hasher: PasswordHasher) -> None:
    dummy = dummy_hash(hasher)
    assert dummy is dummy_hash(cheap_hasher())  # built once per parameter set, then cached
    assert extract_parameters(dummy) == extract_parameters(hash_password("pw", hasher=hasher))
    other = make_hasher(time_cost=2, memory_cost=16)
    assert extract_parameters(dummy_hash(other)).time_cost == 2


def test_verify_dummy_costs_one_verification_and_never_matches() -> None:
    counting = CountingHasher()
    for guess in ("", "password", "\udcff", "x" * 10_000):
        assert verify_dummy(guess, hasher=counting) is None  # type: ignore[func-returns-value]
    assert counting.verifies == 4


def test_generate_password() -> None:
    generated = {generate_password() for _ in range(200)}
    assert len(generated) == 200
    alphabet = set(passwords._PASSWORD_ALPHABET)
    for password in generated:
        assert len(password) == 20
        assert set(password) <= alphabet
    assert not alphabet & set("0O1lIo")
    assert len(generate_password(32)) == 32
    with pytest.raises(ValueError, match="at least"):
        generate_password(4)


@pytest.mark.parametrize(
    "name", ["alice", "Alice", "a", "x" * 64, "user.name-1_2@example.com", "j\u00fcrgen"]
)
def test_valid_user_names(name: str) -> None:
    assert validate_user_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "1-64"),
        ("x" * 65, "1-64"),
        ("al ice", "whitespace"),
        ("alice\t", "whitespace"),
        ("\u00a0alice", "whitespace"),
        ("ali\x00ce", "control"),
        ("ali\x7fce", "control"),
        ("ali\u200bce", "control"),  # zero-width space: invisible look-alike
        ("a/b", "'/'"),
        ("a:b", "':'"),
    ],
)
def test_invalid_user_names(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        validate_user_name(name)


def test_concurrent_verifications_are_bounded_by_the_cores() -> None:
    # Each argon2id verification holds 64 MiB: a flood of logins must queue, not multiply that.
    import os
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from pyftps.auth import passwords

    lock, running, peak = threading.Lock(), [0], [0]

    class CountingHasher:
        def verify(self, stored: str, password: bytes) -> bool:
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.02)
            with lock:
                running[0] -= 1
            return True

    hasher: Any = CountingHasher()
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda _: passwords.verify_password("$argon2id$x", "pw", hasher=hasher), range(48))
        )
    assert all(results)
    assert peak[0] <= max(2, os.cpu_count() or 1)  # 16 without the bound
