"""Fixtures for the sans-IO protocol tests: fresh in-memory sessions driven by :mod:`tests.proto.harness`."""

from __future__ import annotations

import pytest

from tests.proto.harness import Harness


@pytest.fixture
def h() -> Harness:
    """An explicit session right after its greeting: PLAIN, nobody logged in, default policy."""
    return Harness()


@pytest.fixture
def ready() -> Harness:
    """An explicit session after AUTH TLS, PBSZ 0, PROT P and a login as alice (all permissions)."""
    return Harness.ready()


@pytest.fixture
def manual() -> Harness:
    """Like ``ready``, but transfers keep running until the test ends them."""
    return Harness.ready(auto_transfer=False)
