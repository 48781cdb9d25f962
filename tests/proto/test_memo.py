"""IdentityMemo: one derivation per key object, by identity, starting over at its limit."""

from __future__ import annotations

from pyftps.proto.memo import IdentityMemo


def test_derives_once_per_object_even_for_equal_unhashable_keys() -> None:
    calls: list[object] = []

    def derive(key: list[int]) -> int:
        calls.append(key)
        return sum(key)

    memo = IdentityMemo(derive, limit=8)
    first, twin = [1, 2], [1, 2]
    assert memo(first) == memo(first) == 3
    assert memo(twin) == 3
    assert calls == [first, twin]  # equal but distinct objects are derived apart


def test_starts_over_at_its_limit() -> None:
    calls = 0

    def derive(key: object) -> int:
        nonlocal calls
        calls += 1
        return calls

    memo = IdentityMemo(derive, limit=2)
    keys = [object(), object(), object()]
    assert [memo(key) for key in keys] == [1, 2, 3]  # the third emptied the memo first
    assert memo(keys[2]) == 3
    assert memo(keys[0]) == 4  # forgotten, derived again
