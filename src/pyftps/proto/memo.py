"""A value derived once per object and remembered by the object's identity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["IdentityMemo"]

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """``derive(key)``, computed once per key object (hashing by ``id``, so unhashable keys work too).

    For objects handed out again and again on a hot path, such as a cached user's frozen login, whose
    derived value would otherwise be rebuilt each time. An ``id`` can be reused once its object is
    gone, which the identity check catches. Keys are few and long-lived, so a memo that reaches
    ``limit`` holds stale ones: it starts over. It holds its keys until then.
    """

    __slots__ = ("_derive", "_known", "_limit")

    def __init__(self, derive: Callable[[K], V], *, limit: int) -> None:
        self._derive = derive
        self._limit = limit
        self._known: dict[int, tuple[K, V]] = {}

    def __call__(self, key: K) -> V:
        known = self._known.get(id(key))
        if known is None or known[0] is not key:
            if len(self._known) >= self._limit:
                self._known.clear()
            known = self._known[id(key)] = (key, self._derive(key))
        return known[1]
