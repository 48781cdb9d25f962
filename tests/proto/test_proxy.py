"""Examples from haproxy's proxy-protocol.txt and property tests for pyftps.proto.proxy (PROXY v1 and v2)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyftps.proto.errors import LocalProtocolError
from pyftps.proto.proxy import (
    V1_MAX_LINE,
    V1_PREFIX,
    V2_MAX_HEADER,
    V2_SIGNATURE,
    ProxyHeaderParser,
    ProxyProtocolError,
    ProxyResult,
    build_v1,
    build_v2,
    is_trusted,
    trusted_networks,
)

SIG = V2_SIGNATURE
FFFF6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
PAYLOAD = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # what follows: a TLS ClientHello's first bytes


def parse(data: bytes) -> ProxyResult | None:
    return ProxyHeaderParser().feed(data)


def v2(ver_cmd: int, fam: int, body: bytes) -> bytes:
    return SIG + bytes((ver_cmd, fam)) + len(body).to_bytes(2, "big") + body


def tlv(kind: int, value: bytes) -> bytes:
    return bytes((kind,)) + len(value).to_bytes(2, "big") + value


# --- examples (proxy-protocol.txt §2.1, §2.2) ---------------------------------------------------------

# The haproxy v2 header captured in front of an HTTP request (TCP over IPv4, no TLV).
HAPROXY_V2_CAPTURE = bytes.fromhex("0d0a0d0a000d0a515549540a 2111000c ac130001 ac130003 a652 0050")
SSL_TLV = tlv(0x20, b"\x07\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"CN=client"))
IPV6_BODY = (
    ipaddress.IPv6Address("2001:db8::1").packed
    + ipaddress.IPv6Address("2001:db8::ffff").packed
    + (51000).to_bytes(2, "big")
    + (990).to_bytes(2, "big")
)

EXAMPLES: list[tuple[bytes, ProxyResult]] = [
    (
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        ProxyResult(("192.168.0.1", 56324), ("192.168.0.11", 443), 1, False, (), b""),
    ),
    (
        f"PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n".encode(),
        ProxyResult((FFFF6, 65535), (FFFF6, 65535), 1, False, (), b""),
    ),
    (
        b"PROXY TCP6 2001:DB8::1 ::ffff:192.0.2.1 0 21\r\n",
        ProxyResult(("2001:db8::1", 0), ("::ffff:c000:201", 21), 1, False, (), b""),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyResult(None, None, 1, False, (), b"")),
    # The worst case of §2.1: exactly 107 bytes, and what follows UNKNOWN is ignored.
    (
        f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n".encode(),
        ProxyResult(None, None, 1, False, (), b""),
    ),
    (
        HAPROXY_V2_CAPTURE,
        ProxyResult(("172.19.0.1", 42578), ("172.19.0.3", 80), 2, False, (), b""),
    ),
    (
        v2(0x21, 0x11, bytes([10, 0, 0, 1, 192, 0, 2, 7, 0xC0, 0, 0x03, 0xDE]) + tlv(1, b"ftp") + SSL_TLV),
        ProxyResult(
            ("10.0.0.1", 49152),
            ("192.0.2.7", 990),
            2,
            False,
            ((0x01, b"ftp"), (0x20, SSL_TLV[3:])),
            b"",
        ),
    ),
    (
        v2(0x21, 0x21, IPV6_BODY + tlv(0x02, b"ftp.example.com") + tlv(0x04, b"\0" * 5) + tlv(0x05, b"")),
        ProxyResult(
            ("2001:db8::1", 51000),
            ("2001:db8::ffff", 990),
            2,
            False,
            ((0x02, b"ftp.example.com"), (0x04, b"\0" * 5), (0x05, b"")),
            b"",
        ),
    ),
    # LOCAL: haproxy's health check; the block is ignored whatever it holds, TLVs included.
    (v2(0x20, 0x00, b""), ProxyResult(None, None, 2, True, (), b"")),
    (v2(0x20, 0x11, IPV6_BODY[:12] + tlv(0x04, b"xx")), ProxyResult(None, None, 2, True, (), b"")),
    (v2(0x20, 0x12, b"\xff\xff"), ProxyResult(None, None, 2, True, (), b"")),  # not even TLV-shaped
    # PROXY over UNSPEC: the real addresses apply; the block holds only TLVs.
    (v2(0x21, 0x00, b""), ProxyResult(None, None, 2, False, (), b"")),
    (
        v2(0x21, 0x00, tlv(0x04, b"\0\0\0\0") + tlv(0xE0, b"custom")),
        ProxyResult(None, None, 2, False, ((0x04, b"\0\0\0\0"), (0xE0, b"custom")), b""),
    ),
]
EXAMPLE_IDS = [f"ex{i}" for i in range(len(EXAMPLES))]


@pytest.mark.parametrize(("header", "expected"), EXAMPLES, ids=EXAMPLE_IDS)
def test_spec_examples(header: bytes, expected: ProxyResult) -> None:
    assert parse(header) == expected


def test_haproxy_capture_keeps_the_request_behind_it() -> None:
    """The capture was followed by an HTTP request: those bytes come back untouched in ``rest``."""
    request = b"GET / HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
    result = parse(HAPROXY_V2_CAPTURE + request)
    assert result is not None
    assert result.source == ("172.19.0.1", 42578)
    assert result.rest == request


@pytest.mark.parametrize(("header", "expected"), EXAMPLES, ids=EXAMPLE_IDS)
def test_split_at_every_byte_boundary(header: bytes, expected: ProxyResult) -> None:
    stream = header + PAYLOAD
    for cut in range(len(stream) + 1):
        parser = ProxyHeaderParser()
        first = parser.feed(stream[:cut])
        if cut < len(header):
            assert first is None
            result = parser.feed(stream[cut:])
            assert result is not None
            assert result.rest == PAYLOAD
        else:
            assert first is not None
            assert first.rest == stream[len(header) : cut]  # the rest of the stream goes straight on
            result = first
        assert result == dataclasses.replace(expected, rest=result.rest)


@pytest.mark.parametrize(("header", "expected"), EXAMPLES, ids=EXAMPLE_IDS)
def test_byte_by_byte_completes_exactly_at_the_end_of_the_header(
    header: bytes, expected: ProxyResult
) -> None:
    parser = ProxyHeaderParser()
    for index in range(len(header) - 1):
        assert parser.feed(header[index : index + 1]) is None
    assert parser.feed(header[-1:]) == expected


def read_with_want(stream: bytes) -> tuple[ProxyResult, int]:
    """Read like a socket reader that must not consume past the header: ``recv(want)`` at a time."""
    parser = ProxyHeaderParser()
    position = 0
    while True:
        size = parser.want
        assert size > 0
        chunk = stream[position : position + size]
        assert chunk, "the reader would block: want asked for bytes past the end of the header"
        position += len(chunk)
        result = parser.feed(chunk)
        if result is not None:
            assert parser.want == 0
            return result, position


@pytest.mark.parametrize(("header", "expected"), EXAMPLES, ids=EXAMPLE_IDS)
def test_reading_by_want_never_reads_past_the_header(header: bytes, expected: ProxyResult) -> None:
    result, consumed = read_with_want(header + PAYLOAD)
    assert consumed == len(header)
    assert result == expected  # rest is empty: the payload stays in the (simulated) socket


def test_want_before_and_after() -> None:
    parser = ProxyHeaderParser()
    assert parser.want == len(b"PROXY UNKNOWN\r\n")
    parser.feed(SIG)
    assert parser.want == 4
    parser.feed(b"\x21\x11\x00\x0c")
    assert parser.want == 12
    v1 = ProxyHeaderParser()
    v1.feed(b"PROXY TCP4 1")
    assert v1.want == 3  # "PROXY UNKNOWN\r\n" is the shortest line
    v1.feed(b"0.0.0.1 10.0.0.2 1 2\r")
    assert v1.want == 1
    long = ProxyHeaderParser()
    long.feed(V1_PREFIX + b"x" * (V1_MAX_LINE - len(V1_PREFIX) - 1))
    assert long.want == 1  # never past the 107-byte bound
    failed = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError):
        failed.feed(b"USER x\r\n")
    assert failed.want == 0


def test_empty_feeds_are_harmless() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"") is None
    assert parser.feed(b"PROXY ") is None
    assert parser.feed(b"") is None
    assert parser.feed(b"UNKNOWN\r\n") == ProxyResult(None, None, 1, False, (), b"")


def test_feeding_after_completion_is_a_caller_bug() -> None:
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY UNKNOWN\r\nUSER x\r\n") is not None
    with pytest.raises(LocalProtocolError):
        parser.feed(b"more")


def test_errors_are_sticky() -> None:
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError, match="no PROXY protocol header"):
        parser.feed(b"USER anonymous\r\n")
    with pytest.raises(ProxyProtocolError, match="no PROXY protocol header"):
        parser.feed(b"PROXY UNKNOWN\r\n")


# --- malformed headers ---------------------------------------------------------------------------------

V4_BODY = bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2])

MALFORMED: list[tuple[bytes, str]] = [
    # Not a PROXY header at all: a client talking straight to the listener.
    (b"USER anonymous\r\n", "no PROXY protocol header"),
    (PAYLOAD, "no PROXY protocol header"),
    (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
    (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
    (b" PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
    (b"PROXY\r\n", "bad PROXY v1 signature"),
    (b"PROXYTCP4", "bad PROXY v1 signature"),
    (b"PASS x\r\n", "bad PROXY v1 signature"),
    # v1 line and fields (§2.1).
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "CRLF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", "CRLF"),
    (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "CRLF"),
    (b"PROXY UNKNOWN\rx\r\n", "CRLF"),
    (b"PROXY \r\n", "unsupported PROXY v1 protocol"),
    (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported PROXY v1 protocol"),
    (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported PROXY v1 protocol"),
    (b"PROXY UNKNOWNX\r\n", "unsupported PROXY v1 protocol"),
    (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "unsupported PROXY v1 protocol"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "malformed"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1_0 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 000001 2\r\n", "bad port"),
    ("PROXY TCP4 1.2.3.4 5.6.7.8 \u0661 2\r\n".encode(), "bad port"),  # an Arabic-Indic digit
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 0x10 2\r\n", "bad port"),
    (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "bad address"),
    (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "bad address"),
    (b"PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "bad address"),
    (b"PROXY TCP4 ::1 ::1 1 2\r\n", "bad address"),
    (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "address family mismatch"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad address"),
    (b"PROXY TCP6 ::1::2 ::1 1 2\r\n", "bad address"),
    (b"PROXY TCP6 [::1] ::1 1 2\r\n", "bad address"),
    # v2 (§2.2).
    (b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + V4_BODY, "bad PROXY v2 signature"),
    (b"\r\n\r\n\r\n", "bad PROXY v2 signature"),
    (b"\r\nUSER x\r\n", "bad PROXY v2 signature"),
    (v2(0x11, 0x11, V4_BODY), "unsupported PROXY protocol version"),
    (v2(0x31, 0x11, V4_BODY), "unsupported PROXY protocol version"),
    (v2(0x01, 0x11, V4_BODY), "unsupported PROXY protocol version"),
    (v2(0x22, 0x11, V4_BODY), "unsupported PROXY v2 command"),
    (v2(0x2F, 0x00, b""), "unsupported PROXY v2 command"),
    (v2(0x21, 0x13, V4_BODY), "invalid PROXY v2 address family"),
    (v2(0x21, 0x41, V4_BODY), "invalid PROXY v2 address family"),
    (v2(0x20, 0x10, b""), "invalid PROXY v2 address family"),
    (v2(0x21, 0x12, V4_BODY), "unsupported PROXY v2 address family"),  # UDP
    (v2(0x21, 0x31, b"\0" * 216), "unsupported PROXY v2 address family"),  # UNIX stream
    (v2(0x21, 0x11, V4_BODY[:11]), "shorter than its addresses"),
    (v2(0x21, 0x21, IPV6_BODY[:35]), "shorter than its addresses"),
    (v2(0x21, 0x11, b""), "shorter than its addresses"),
    (v2(0x21, 0x11, V4_BODY + b"\x04"), "truncated PROXY v2 TLV"),
    (v2(0x21, 0x11, V4_BODY + b"\x04\x00"), "truncated PROXY v2 TLV"),
    (v2(0x21, 0x11, V4_BODY + tlv(0x04, b"") + b"\x01\x00"), "truncated PROXY v2 TLV"),
    (v2(0x21, 0x11, V4_BODY + b"\x04\x00\x05abc"), "TLV overflows the header"),
    (v2(0x21, 0x11, V4_BODY + b"\x04\xff\xff"), "TLV overflows the header"),
    (v2(0x21, 0x00, b"\x04\x00\x01"), "TLV overflows the header"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed_headers_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(data + PAYLOAD)


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed_headers_are_refused_byte_by_byte(data: bytes, message: str) -> None:
    """Fed slowly, the same input is refused, at the latest once its last byte arrives."""
    parser = ProxyHeaderParser()
    with pytest.raises(ProxyProtocolError, match=message):
        for index in range(len(data)):
            parser.feed(data[index : index + 1])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (PAYLOAD[:1], "no PROXY protocol header"),  # a TLS record: refused on its first byte
        (b"U", "no PROXY protocol header"),
        (b"PROXX", "bad PROXY v1 signature"),
        (b"\r\n\r\n\x00\r\nQUIX", "bad PROXY v2 signature"),
        (v2(0x11, 0x11, b"")[:16], "unsupported PROXY protocol version"),
        (v2(0x21, 0x11, b"")[:16], "shorter than its addresses"),  # before waiting for a body
    ],
)
def test_refusal_comes_as_soon_as_the_bytes_prove_it(data: bytes, message: str) -> None:
    with pytest.raises(ProxyProtocolError, match=message):
        parse(data)


# --- bounded buffering ----------------------------------------------------------------------------------


def test_v1_line_without_crlf_is_refused_at_107_bytes() -> None:
    parser = ProxyHeaderParser()
    line = V1_PREFIX + b"UNKNOWN " + b"1" * 200
    for index in range(V1_MAX_LINE - 1):
        assert parser.feed(line[index : index + 1]) is None
    with pytest.raises(ProxyProtocolError, match="107 bytes"):
        parser.feed(line[V1_MAX_LINE - 1 : V1_MAX_LINE])


def test_v1_crlf_just_past_the_limit_is_refused() -> None:
    too_long = f"PROXY UNKNOWN {FFFF6} {FFFF6} 65535 655350\r\n".encode()
    assert len(too_long) == V1_MAX_LINE + 1
    with pytest.raises(ProxyProtocolError, match="107 bytes"):
        parse(too_long)
    with pytest.raises(ProxyProtocolError, match="107 bytes"):
        parse(V1_PREFIX + b"x" * 1_000_000)  # one huge read is cut off the same way


def _max_v2(value_byte: bytes) -> bytes:
    """A PROXY/UNSPEC header of the largest length: one TLV filling 65535 bytes."""
    header = v2(0x21, 0x00, tlv(0x04, value_byte * (0xFFFF - 3)))
    assert len(header) == V2_MAX_HEADER
    return header


def test_v2_largest_header_completes_at_16_plus_65535_bytes() -> None:
    header = _max_v2(b"\0")
    parser = ProxyHeaderParser()
    for index in range(V2_MAX_HEADER - 1):
        assert parser.feed(header[index : index + 1]) is None
    result = parser.feed(header[-1:] + PAYLOAD)
    assert result is not None
    assert result.tlvs == ((0x04, b"\0" * (0xFFFF - 3)),)
    assert result.rest == PAYLOAD


def test_v2_largest_header_with_a_bad_tlv_fails_when_complete() -> None:
    header = v2(0x21, 0x00, b"\x04\xff\xff" + b"\0" * (0xFFFF - 3))
    parser = ProxyHeaderParser()
    assert parser.feed(header[:-1]) is None
    with pytest.raises(ProxyProtocolError, match="overflows"):
        parser.feed(header[-1:])


# --- builders --------------------------------------------------------------------------------------------


def test_builders_produce_the_spec_bytes() -> None:
    assert build_v1(("192.168.0.1", 56324), ("192.168.0.11", 443)) == EXAMPLES[0][0]
    assert build_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert build_v2(("172.19.0.1", 42578), ("172.19.0.3", 80)) == HAPROXY_V2_CAPTURE
    assert build_v2(None, None, local=True) == SIG + b"\x20\x00\x00\x00"
    assert build_v2(None, None, tlvs=[(0x04, b"ab")]) == v2(0x21, 0x00, tlv(0x04, b"ab"))


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (("10.0.0.1", 1), ("::1", 2)),
        (("10.0.0.1", -1), ("10.0.0.2", 2)),
        (("10.0.0.1", 1), ("10.0.0.2", 65536)),
        (("fe80::1%eth0", 1), ("fe80::2", 2)),
        (("example.com", 1), ("10.0.0.2", 2)),
    ],
)
def test_builders_refuse_what_no_header_can_carry(src: tuple[str, int], dst: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        build_v1(src, dst)
    with pytest.raises(ValueError):
        build_v2(src, dst)


@pytest.mark.parametrize(
    "tlvs",
    [[(256, b"")], [(-1, b"")], [(1, b"x" * 0x10000)], [(1, b"x" * 40000), (2, b"y" * 40000)]],
)
def test_build_v2_refuses_tlvs_that_do_not_fit(tlvs: list[tuple[int, bytes]]) -> None:
    with pytest.raises(ValueError):
        build_v2(("10.0.0.1", 1), ("10.0.0.2", 2), tlvs=tlvs)


# --- trusted proxies --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "trusted", "expected"),
    [
        ("10.1.2.3", ["10.0.0.0/8"], True),
        ("10.1.2.3", ["192.0.2.1", "10.1.2.3"], True),
        ("10.1.2.3", ["10.1.2.4", "192.0.2.0/24"], False),
        ("::ffff:10.1.2.3", ["10.0.0.0/8"], True),  # a dual-stack socket's view of an IPv4 proxy
        ("10.1.2.3", ["::ffff:10.1.2.3"], True),
        ("10.1.2.3", ["::ffff:10.0.0.0/104"], True),
        ("10.1.2.3", ["::ffff:10.0.0.0/104", "::/0"], True),
        ("11.1.2.3", ["::ffff:10.0.0.0/104"], False),
        ("2001:db8::5", ["2001:db8::/32"], True),
        ("2001:db9::5", ["2001:db8::/32"], False),
        ("2001:db8::5", ["0.0.0.0/0"], False),
        ("10.1.2.3", ["::/0"], False),
        ("10.1.2.3", [], False),
        ("?", ["0.0.0.0/0"], False),
        ("/run/pyftps.sock", ["0.0.0.0/0"], False),
        ("", ["0.0.0.0/0"], False),
    ],
)
def test_is_trusted(peer: str, trusted: list[str], expected: bool) -> None:
    assert is_trusted(peer, trusted) is expected


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "10.0.0.0/33", "proxy.example.com", "", "10.0.0.0/8 x"])
def test_bad_trusted_entries_are_configuration_errors(entry: str) -> None:
    with pytest.raises(ValueError, match="bad trusted proxy entry"):
        trusted_networks([entry])
    with pytest.raises(ValueError, match="bad trusted proxy entry"):
        is_trusted("10.0.0.1", [entry])


def test_trusted_networks_normalises_mapped_entries() -> None:
    assert trusted_networks(["::ffff:192.0.2.0/120", " 10.0.0.1 "]) == (
        ipaddress.IPv4Network("192.0.2.0/24"),
        ipaddress.IPv4Network("10.0.0.1/32"),
    )


# --- properties ------------------------------------------------------------------------------------------

_V1_ALPHABET = b"PROXY TCP46UNKOW0123456789.:abcdef\r\n"
_noise = st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from(list(_V1_ALPHABET)), max_size=120).map(bytes),
)
_prefixes = st.sampled_from(
    [
        b"",
        V1_PREFIX,
        b"PROXY TCP4 ",
        b"PROXY TCP6 ",
        SIG,
        SIG + b"\x21\x11",
        SIG + b"\x21\x00\x00",
        SIG + b"\x20",
    ]
)


def _feed_chunks(data: bytes, cuts: list[int]) -> None:
    """Feed ``data`` in chunks: only None, a result or ProxyProtocolError, and None only under the bound."""
    parser = ProxyHeaderParser()
    bound = V1_MAX_LINE if data[:1] == b"P" else V2_MAX_HEADER
    fed = 0
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        fed += end - start
        try:
            result = parser.feed(data[start:end])
        except ProxyProtocolError:
            return
        if result is not None:
            assert data[:end].endswith(result.rest)
            return
        assert fed < bound
        assert 0 < parser.want <= bound - fed


@settings(max_examples=150, deadline=None)
@given(prefix=_prefixes, noise=_noise, data=st.data())
def test_random_bytes_only_ever_raise_proxy_protocol_error(
    prefix: bytes, noise: bytes, data: st.DataObject
) -> None:
    stream = prefix + noise
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    _feed_chunks(stream, cuts)


@settings(max_examples=120, deadline=None)
@given(header=st.sampled_from([h for h, _ in EXAMPLES]), data=st.data())
def test_mutated_headers_only_ever_raise_proxy_protocol_error(header: bytes, data: st.DataObject) -> None:
    mutated = bytearray(header + PAYLOAD)
    for _ in range(data.draw(st.integers(1, 4))):
        mutated[data.draw(st.integers(0, len(mutated) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    _feed_chunks(bytes(mutated), [cut])


def _endpoint_pairs(version: Literal[4, 6]) -> st.SearchStrategy[tuple[tuple[str, int], tuple[str, int]]]:
    endpoint = st.tuples(st.ip_addresses(v=version).map(str), st.integers(0, 65535))
    return st.tuples(endpoint, endpoint)


_pairs = st.one_of(_endpoint_pairs(4), _endpoint_pairs(6))
_tlvs = st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=64)), max_size=8)


@settings(max_examples=80, deadline=None)
@given(pair=_pairs, rest=st.binary(max_size=64), cut=st.integers(0, 200))
def test_v1_round_trip(pair: tuple[tuple[str, int], tuple[str, int]], rest: bytes, cut: int) -> None:
    src, dst = pair
    header = build_v1(src, dst)
    assert len(header) <= V1_MAX_LINE
    stream = header + rest
    parser = ProxyHeaderParser()
    result = parser.feed(stream[:cut]) or parser.feed(stream[cut:])
    assert result is not None
    assert (result.source, result.destination, result.version, result.local) == (src, dst, 1, False)
    assert result.rest + (stream[cut:] if cut >= len(header) else b"") == rest
    assert read_with_want(stream) == (dataclasses.replace(result, rest=b""), len(header))


@settings(max_examples=80, deadline=None)
@given(
    pair=st.one_of(st.none(), _pairs),
    tlvs=_tlvs,
    local=st.booleans(),
    rest=st.binary(max_size=64),
    cut=st.integers(0, 800),
)
def test_v2_round_trip(
    pair: tuple[tuple[str, int], tuple[str, int]] | None,
    tlvs: list[tuple[int, bytes]],
    local: bool,
    rest: bytes,
    cut: int,
) -> None:
    src, dst = pair if pair is not None else (None, None)
    header = build_v2(src, dst, tlvs=tlvs, local=local)
    stream = header + rest
    parser = ProxyHeaderParser()
    result = parser.feed(stream[:cut]) or parser.feed(stream[cut:])
    assert result is not None
    if local:
        assert result == ProxyResult(None, None, 2, True, (), result.rest)
    else:
        assert result == ProxyResult(src, dst, 2, False, tuple(tlvs), result.rest)
    assert result.rest + (stream[cut:] if cut >= len(header) else b"") == rest
    assert read_with_want(stream) == (dataclasses.replace(result, rest=b""), len(header))
