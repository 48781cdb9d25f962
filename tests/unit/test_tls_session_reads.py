"""The reuse check reads ``.session`` at most once: each read leaks a copy on CPython < 3.12.7 (gh-116810)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from pyftps.tls.contexts import ReuseVerdict, data_session_matches

CONTROL_ID = b"c" * 32


@dataclass
class FakeData:
    """A handshaken server-side data connection that counts reads of ``.session``."""

    reused: bool
    tls_version: str
    session_id: bytes | None
    reads: list[int] = field(default_factory=list)

    @property
    def session_reused(self) -> bool:
        return self.reused

    def version(self) -> str:
        return self.tls_version

    @property
    def session(self) -> Any:
        self.reads.append(1)
        return None if self.session_id is None else type("Session", (), {"id": self.session_id})()


@pytest.mark.parametrize(
    ("data", "control_id", "verdict", "reads"),
    [
        (FakeData(False, "TLSv1.3", b"x" * 32), CONTROL_ID, ReuseVerdict.REFUSED, 0),
        (FakeData(True, "TLSv1.2", b"x" * 32), CONTROL_ID, ReuseVerdict.REUSED_UNVERIFIED, 0),
        (FakeData(True, "TLSv1.3", CONTROL_ID), None, ReuseVerdict.REUSED_UNVERIFIED, 0),
        (FakeData(True, "TLSv1.3", CONTROL_ID), CONTROL_ID, ReuseVerdict.SAME_SESSION, 1),
        (FakeData(True, "TLSv1.3", b"o" * 32), CONTROL_ID, ReuseVerdict.OTHER_SESSION, 1),
        (FakeData(True, "TLSv1.3", None), CONTROL_ID, ReuseVerdict.REFUSED, 1),
    ],
)
def test_the_session_is_read_only_when_needed_and_once(
    data: FakeData, control_id: bytes | None, verdict: ReuseVerdict, reads: int
) -> None:
    assert data_session_matches(control_id, cast(ssl.SSLObject, data)) is verdict
    assert len(data.reads) == reads
