"""Data connections resume the control session without reading ``.session`` for each of them.

Every read of ``SSLObject.session`` copies the session and leaks the copy on CPython < 3.12.7
(gh-116810): a mirror of 100,000 files would leak that many copies. The client reads it again only
when the control connection's session id changes (a new channel, a new ticket).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from pyftps.client import Client
from pyftps.tls.channel import TLSChannel
from tests.client.conftest import CertPair, pyftps_server, run


def test_transfers_resume_with_one_read_of_the_session(
    tmp_path: Path, cert_pair: CertPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[ssl.SSLSession | None] = []
    getter = TLSChannel.session.fget
    assert getter is not None

    def counting(channel: TLSChannel) -> ssl.SSLSession | None:
        session = getter(channel)
        reads.append(session)
        return session

    monkeypatch.setattr(TLSChannel, "session", property(counting))

    async def scenario() -> None:
        async with pyftps_server(tmp_path, cert_pair) as srv:
            (srv.root / "a.txt").write_bytes(b"alpha")
            login = srv.login("explicit")
            async with await Client.connect(srv.host, srv.port("explicit"), **login) as client:
                # The server requires data connections to resume this session (its default), so
                # each of these succeeds only with the control connection's session.
                for _ in range(5):
                    chunks = [chunk async for chunk in client.open_read("a.txt")]
                    assert b"".join(chunks) == b"alpha"
                    assert await client.nlst() == ["a.txt"]

    run(scenario())
    client_reads = [session for session in reads if session is not None]
    assert 1 <= len(client_reads) <= 2  # the first session, and once more if a later ticket replaced it
