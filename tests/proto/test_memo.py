"""IdentityMemo: one derivation per key object, by identity, forgotten with the object."""

from __future__ import annotations

import gc
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyftps.proto.memo import IdentityMemo


class Key:
    """Equal to every other Key and unhashable: the memo must go by identity alone."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key)


def test_derives_once_per_object_even_for_equal_unhashable_keys() -> None:
    calls: list[Key] = []

    def derive(key: Key) -> int:
        calls.append(key)
        return len(calls)

    memo = IdentityMemo(derive)
    first, twin = Key(), Key()
    assert memo(first) == memo(first) == 1
    assert memo(twin) == 2
    assert calls == [first, twin]  # equal but distinct objects are derived apart


def test_an_entry_goes_with_its_key_without_a_collection() -> None:
    memo: IdentityMemo[Key, int] = IdentityMemo(lambda key: key.value)
    keep = Key(1)
    memo(keep)
    gc.disable()  # freed by reference counting, not left for the cycle collector
    try:
        for value in range(1000):
            memo(Key(value))  # each dies at once, so ids are reused too
            assert len(memo) <= 2
    finally:
        gc.enable()
    assert len(memo) == 1 and memo(keep) == 1


@given(st.lists(st.integers(0, 9), max_size=60))
def test_a_reused_id_never_returns_another_keys_value(picks: list[int]) -> None:
    """Keys are dropped and made in a random order, so new keys often land on a dead key's id."""
    memo: IdentityMemo[Key, int] = IdentityMemo(lambda key: key.value)
    live: dict[int, Key] = {}
    for n, pick in enumerate(picks):
        if pick in live and n % 2:
            del live[pick]
        else:
            live.setdefault(pick, Key(n))
        _check(memo, live.values())
    assert len(memo) == len(live)


def _check(memo: IdentityMemo[Key, int], keys: Iterable[Key]) -> None:
    for key in keys:  # in a function: the loop variable must not keep the last key alive
        assert memo(key) == key.value


def test_keys_must_support_weak_references() -> None:
    memo: IdentityMemo[object, int] = IdentityMemo(lambda key: 1)
    with pytest.raises(TypeError):
        memo(3.5)  # a float has no weak references
