"""A value derived once per object, remembered by the object's identity for as long as it lives."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["IdentityMemo"]

K = TypeVar("K")
V = TypeVar("V")


class IdentityMemo(Generic[K, V]):
    """``derive(key)``, computed once per key object and forgotten when that object is.

    For objects handed out again and again on a hot path, such as a cached user's frozen login, whose
    derived value would otherwise be rebuilt each time. Keys are hashed by ``id`` (equal keys are not
    compared, and need not be hashable) and held weakly, so they must support weak references. The
    weak reference's callback drops an entry as its key is freed, before the ``id`` can be reused,
    and the memo holds exactly the keys still in use: after a burst of logins it does not keep a
    thousand dead ones alive (they pin allocator arenas). A value must not refer to its key, or the
    key never dies.
    """

    __slots__ = ("_derive", "_known")

    def __init__(self, derive: Callable[[K], V]) -> None:
        self._derive = derive
        self._known: dict[int, tuple[weakref.ref[K], V]] = {}

    def __call__(self, key: K) -> V:
        known = self._known.get(id(key))
        if known is not None:
            return known[1]
        value = self._derive(key)
        self._known[id(key)] = (weakref.ref(key, self._forget_callback(id(key))), value)
        return value

    def __len__(self) -> int:
        return len(self._known)

    def _forget_callback(self, ident: int) -> Callable[[weakref.ref[K]], None]:
        known = self._known  # not self: the callback must not keep the memo alive

        def forget(ref: weakref.ref[K]) -> None:
            # Runs in whichever thread dropped the key. Should a new key take the id meanwhile, at
            # worst its fresh entry is dropped too and derived again: a memo may forget.
            entry = known.get(ident)
            if entry is not None and entry[0] is ref:
                del known[ident]

        return forget
