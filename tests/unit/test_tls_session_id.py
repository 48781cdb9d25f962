"""session_id() gives what ``.session.id`` gives, without the copy the getter leaks before CPython 3.12.7."""

from __future__ import annotations

import ctypes
import ssl

import pytest

from pyftps.tls import session_id as module
from pyftps.tls.certs import ensure_self_signed
from pyftps.tls.contexts import server_context, wrap_control_bio, wrap_data_bio
from pyftps.tls.session_id import session_id

Pair = tuple[ssl.SSLObject, ssl.SSLObject]
Contexts = tuple[ssl.SSLContext, ssl.SSLContext, ssl.SSLContext]


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Contexts:
    cert, key = ensure_self_signed(tmp_path_factory.mktemp("tls"), ["localhost"])
    client = ssl.create_default_context(cafile=str(cert))
    tls12 = ssl.create_default_context(cafile=str(cert))
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    return server_context(cert, key, num_tickets=1), client, tls12


def _handshake(server: ssl.SSLObject, client: ssl.SSLObject, bios: list[ssl.MemoryBIO]) -> None:
    server_in, server_out, client_in, client_out = bios
    for _ in range(10):
        done = True
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                done = False
        client_in.write(server_out.read())
        server_in.write(client_out.read())
        if done:
            return
    raise AssertionError("no handshake")


def _pair(
    contexts: Contexts,
    *,
    data: bool = False,
    session: ssl.SSLSession | None = None,
    tls12: bool = False,
) -> Pair:
    server_ctx, client_ctx = contexts[0], contexts[2 if tls12 else 1]
    bios = [ssl.MemoryBIO() for _ in range(4)]
    server = wrap_data_bio(server_ctx, bios[0], bios[1]) if data else None
    server = server or wrap_control_bio(server_ctx, bios[0], bios[1], server_side=True)
    client = client_ctx.wrap_bio(bios[2], bios[3], server_hostname="localhost", session=session)
    _handshake(server, client, bios)
    server.write(b"220 ok\r\n")  # TLS 1.3: the client has its ticket once it read past the handshake
    bios[2].write(bios[1].read())
    assert client.read(100) == b"220 ok\r\n"
    return server, client


def _expected(obj: ssl.SSLObject) -> bytes | None:
    session = obj.session
    return session.id if session is not None else None


@pytest.mark.parametrize("tls12", [False, True])
def test_the_same_id_as_the_session_getter_on_both_sides_and_on_resumed_data_connections(
    contexts: Contexts, tls12: bool
) -> None:
    server, client = _pair(contexts, tls12=tls12)
    assert session_id(server) == _expected(server)
    assert session_id(client) == _expected(client)
    data_server, data_client = _pair(contexts, data=True, session=client.session, tls12=tls12)
    assert data_client.session_reused
    assert session_id(data_server) == _expected(data_server)
    if not tls12:
        assert session_id(data_server) == session_id(server)  # what the same-session check relies on


def test_no_session_before_the_handshake(contexts: Contexts) -> None:
    obj = contexts[0].wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=True)
    assert session_id(obj) == _expected(obj)


@pytest.mark.skipif(module._direct_reader() is None, reason="the session getter does not leak here")
def test_reading_the_id_does_not_leak(contexts: Contexts) -> None:
    class MallInfo(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip

    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        pytest.skip("needs glibc's mallinfo2")
    mallinfo2.restype = MallInfo
    server, _ = _pair(contexts)

    def in_use_after(reads: int, read: object) -> int:
        before = mallinfo2().uordblks
        for _ in range(reads):
            read(server)  # type: ignore[operator]
        return int(mallinfo2().uordblks - before)

    assert in_use_after(2000, _expected) > 500_000  # the control: the getter's copies stay
    assert in_use_after(2000, session_id) < 50_000


def test_an_unexpected_layout_falls_back_to_the_getter(
    contexts: Contexts, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = _pair(contexts)
    monkeypatch.setattr(module, "_CTX", 2)  # the check now looks at the wrong word
    assert session_id(server) == _expected(server)
