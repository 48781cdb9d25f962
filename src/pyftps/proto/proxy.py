"""Sans-IO parser and builders for HAProxy's PROXY protocol v1 and v2 (haproxy doc/proxy-protocol.txt)."""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyftps.proto.errors import LocalProtocolError

Address = tuple[str, int]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

V1_PREFIX = b"PROXY "
# "PROXY UNKNOWN" + two full-length IPv6 addresses + two 5-digit ports + CRLF: the spec's worst case (§2.1)
V1_MAX_LINE = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEADER_LEN = 16  # signature, ver_cmd, fam, 2-byte length (§2.2)
V2_MAX_HEADER = V2_HEADER_LEN + 0xFFFF
_MIN_HEADER = len(b"PROXY UNKNOWN\r\n")  # no header of either version is shorter (v2: 16 bytes)

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_FAM_UNSPEC, _FAM_TCP4, _FAM_TCP6 = 0x00, 0x11, 0x21
# Every assigned fam value (UNSPEC; TCP/UDP over IPv4, IPv6; UNIX stream/datagram); others must be rejected.
_ASSIGNED_FAMILIES = frozenset({0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32})
# The families a TCP server can use under the PROXY command, with their address block sizes.
_ADDRESS_LEN = {_FAM_UNSPEC: 0, _FAM_TCP4: 12, _FAM_TCP6: 36}
_TLV_HEADER = 3  # type, 2-byte big-endian length

_V1_PORT = re.compile(rb"[0-9]{1,5}")
_V1_HOST = {4: re.compile(rb"[0-9.]{7,15}"), 6: re.compile(rb"[0-9A-Fa-f:.]{2,45}")}


class ProxyProtocolError(ValueError):
    """The bytes in front of the connection are not a valid PROXY header: drop the connection."""


@dataclass(frozen=True, slots=True)
class ProxyResult:
    """A complete header; ``source`` is None when the real connection addresses apply (LOCAL, UNKNOWN)."""

    source: Address | None
    destination: Address | None
    version: int  # 1 (text) or 2 (binary)
    local: bool  # v2 LOCAL command: the proxy's own connection, e.g. a health check
    tlvs: tuple[tuple[int, bytes], ...]  # v2 type-length-value extensions, raw, in order
    rest: bytes  # bytes that followed the header: they belong to the next layer (FTP, TLS)


class ProxyHeaderParser:
    """Incremental parser for one connection's PROXY header; between feeds it keeps < 107 or 16+65535 B."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scanned = 0  # v1: bytes already searched for the line feed
        self._done = False
        self._error: str | None = None

    def feed(self, data: bytes) -> ProxyResult | None:
        """Add received bytes: None while the header is incomplete, the result once it is."""
        if self._done:
            raise LocalProtocolError("the PROXY header is already complete")
        if self._error is not None:
            raise ProxyProtocolError(self._error)
        self._buf += data
        try:
            result = self._parse()
        except ProxyProtocolError as error:
            self._error = str(error)
            self._buf = bytearray()
            raise
        if result is not None:
            self._done = True
            self._buf = bytearray()
        return result

    @property
    def want(self) -> int:
        """How many bytes may be read next without reading past the header (0 once complete or failed).

        A reader that must leave what follows the header in the socket (a data connection handed to
        TLS afterwards) calls ``recv(want)`` and feeds the bytes until ``feed`` returns the result.
        """
        if self._done or self._error is not None:
            return 0
        buf = self._buf
        if not buf:
            return _MIN_HEADER
        if buf[0] == V2_SIGNATURE[0]:
            if len(buf) < V2_HEADER_LEN:
                return V2_HEADER_LEN - len(buf)
            return V2_HEADER_LEN + int.from_bytes(buf[14:16], "big") - len(buf)
        crlf = 1 if buf.endswith(b"\r") else 2  # the line ends with CRLF
        return min(max(_MIN_HEADER - len(buf), crlf), V1_MAX_LINE - len(buf))

    def _parse(self) -> ProxyResult | None:
        buf = self._buf
        if not buf:
            return None
        if buf[0] == V1_PREFIX[0]:
            _expect_prefix(buf, V1_PREFIX, "bad PROXY v1 signature")
            return self._parse_v1()
        if buf[0] == V2_SIGNATURE[0]:
            _expect_prefix(buf, V2_SIGNATURE, "bad PROXY v2 signature")
            return self._parse_v2()
        raise ProxyProtocolError("no PROXY protocol header")

    def _parse_v1(self) -> ProxyResult | None:
        buf = self._buf
        end = buf.find(b"\n", self._scanned, V1_MAX_LINE)
        if end < 0:
            if len(buf) >= V1_MAX_LINE:
                raise ProxyProtocolError("PROXY v1 line without CRLF within 107 bytes")
            self._scanned = len(buf)
            return None
        return _parse_v1_line(bytes(buf[: end + 1]), bytes(buf[end + 1 :]))

    def _parse_v2(self) -> ProxyResult | None:
        buf = self._buf
        if len(buf) < V2_HEADER_LEN:
            return None
        ver_cmd, family = buf[12], buf[13]
        length = int.from_bytes(buf[14:16], "big")
        if ver_cmd >> 4 != 2:
            raise ProxyProtocolError("unsupported PROXY protocol version")
        command = ver_cmd & 0x0F
        if command not in (_V2_LOCAL, _V2_PROXY):
            raise ProxyProtocolError("unsupported PROXY v2 command")
        if family not in _ASSIGNED_FAMILIES:
            raise ProxyProtocolError("invalid PROXY v2 address family")
        if command == _V2_PROXY:
            if family not in _ADDRESS_LEN:
                raise ProxyProtocolError("unsupported PROXY v2 address family")
            if length < _ADDRESS_LEN[family]:
                raise ProxyProtocolError("PROXY v2 length shorter than its addresses")
        end = V2_HEADER_LEN + length
        if len(buf) < end:
            return None
        body, rest = bytes(buf[V2_HEADER_LEN:end]), bytes(buf[end:])
        if command == _V2_LOCAL:  # the block, family included, is ignored (§2.2)
            return ProxyResult(None, None, 2, True, (), rest)
        return _v2_proxy(family, body, rest)


def _expect_prefix(buf: bytearray, prefix: bytes, message: str) -> None:
    size = min(len(buf), len(prefix))
    if buf[:size] != prefix[:size]:
        raise ProxyProtocolError(message)


def _parse_v1_line(line: bytes, rest: bytes) -> ProxyResult:
    if not line.endswith(b"\r\n") or b"\r" in line[:-2]:
        raise ProxyProtocolError("PROXY v1 line not ended by CRLF")
    fields = line[:-2].split(b" ")
    if fields[1] == b"UNKNOWN":  # whatever follows is ignored; the real addresses apply (§2.1)
        return ProxyResult(None, None, 1, False, (), rest)
    if fields[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("unsupported PROXY v1 protocol")
    if len(fields) != 6:
        raise ProxyProtocolError("malformed PROXY v1 line")
    version = 4 if fields[1] == b"TCP4" else 6
    source = _v1_address(fields[2], fields[4], version)
    destination = _v1_address(fields[3], fields[5], version)
    return ProxyResult(source, destination, 1, False, (), rest)


def _v1_address(host: bytes, port: bytes, version: int) -> Address:
    if not _V1_PORT.fullmatch(port) or int(port) > 0xFFFF:
        raise ProxyProtocolError("bad port in PROXY v1 line")
    if not _V1_HOST[version].fullmatch(host):
        raise ProxyProtocolError("bad address in PROXY v1 line")
    try:
        address = ipaddress.ip_address(host.decode("ascii"))
    except ValueError:
        raise ProxyProtocolError("bad address in PROXY v1 line") from None
    if address.version != version:
        raise ProxyProtocolError("address family mismatch in PROXY v1 line")
    return str(address), int(port)


def _v2_proxy(family: int, body: bytes, rest: bytes) -> ProxyResult:
    source: Address | None = None
    destination: Address | None = None
    if family == _FAM_TCP4:
        src4, dst4, sport, dport = struct.unpack_from("!4s4sHH", body)
        source = str(ipaddress.IPv4Address(src4)), sport
        destination = str(ipaddress.IPv4Address(dst4)), dport
    elif family == _FAM_TCP6:
        src6, dst6, sport, dport = struct.unpack_from("!16s16sHH", body)
        source = str(ipaddress.IPv6Address(src6)), sport
        destination = str(ipaddress.IPv6Address(dst6)), dport
    tlvs = _parse_tlvs(body[_ADDRESS_LEN[family] :])
    return ProxyResult(source, destination, 2, False, tlvs, rest)


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Split the bytes after the addresses into TLVs, each bounded by the header's length (§2.2.7)."""
    tlvs: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _TLV_HEADER:
            raise ProxyProtocolError("truncated PROXY v2 TLV")
        kind = data[offset]
        start = offset + _TLV_HEADER
        end = start + int.from_bytes(data[offset + 1 : start], "big")
        if end > len(data):
            raise ProxyProtocolError("PROXY v2 TLV overflows the header")
        tlvs.append((kind, data[start:end]))
        offset = end
    return tuple(tlvs)


# ---------------------------------------------------------------------- builders


def build_v1(src: Address | None, dst: Address | None) -> bytes:
    """A v1 line; without both addresses, ``PROXY UNKNOWN``."""
    if src is None or dst is None:
        return b"PROXY UNKNOWN\r\n"
    source, destination = _endpoints(src, dst)
    proto = "TCP4" if source.version == 4 else "TCP6"
    return f"PROXY {proto} {source} {destination} {src[1]} {dst[1]}\r\n".encode("ascii")


def build_v2(
    src: Address | None,
    dst: Address | None,
    *,
    tlvs: Iterable[tuple[int, bytes]] = (),
    local: bool = False,
) -> bytes:
    """A v2 header: TCP over IPv4/IPv6, or UNSPEC without addresses; ``local`` sends the LOCAL command."""
    if src is None or dst is None:
        family, block = _FAM_UNSPEC, b""
    else:
        source, destination = _endpoints(src, dst)
        family = _FAM_TCP4 if source.version == 4 else _FAM_TCP6
        block = source.packed + destination.packed + struct.pack("!HH", src[1], dst[1])
    for kind, value in tlvs:
        if not 0 <= kind <= 0xFF or len(value) > 0xFFFF:
            raise ValueError("TLV type must fit a byte and its value 65535 bytes")
        block += bytes((kind,)) + len(value).to_bytes(2, "big") + value
    if len(block) > 0xFFFF:
        raise ValueError("PROXY v2 header longer than 16 + 65535 bytes")
    ver_cmd = 0x20 | (_V2_LOCAL if local else _V2_PROXY)
    return V2_SIGNATURE + bytes((ver_cmd, family)) + len(block).to_bytes(2, "big") + block


def _endpoints(
    src: Address, dst: Address
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    source, destination = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if source.version != destination.version:
        raise ValueError("source and destination must be of the same address family")
    for address in (source, destination):
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            raise ValueError("scoped IPv6 addresses cannot be carried")
    for port in (src[1], dst[1]):
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port out of range: {port}")
    return source, destination


# ---------------------------------------------------------------------- trusted proxies


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Parse trusted-proxy entries (addresses or CIDR networks); a bad entry raises ValueError naming it.

    Host bits set (``10.0.0.1/8``) are refused as a likely typo; IPv4-mapped IPv6 entries become IPv4.
    """
    networks: list[Network] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=True)
        except ValueError as error:
            raise ValueError(f"bad trusted proxy entry {entry!r}: {error}") from None
        mapped = network.network_address.ipv4_mapped if isinstance(network, ipaddress.IPv6Network) else None
        if mapped is not None and network.prefixlen >= 96:
            network = ipaddress.IPv4Network((mapped, network.prefixlen - 96))
        networks.append(network)
    return tuple(networks)


def is_trusted(peer_ip: str, trusted: Sequence[str]) -> bool:
    """Whether the TCP peer is one of the configured proxies (IPv4-mapped IPv6 peers compare as IPv4)."""
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False  # not an IP peer at all (a UNIX socket, "?"): never a trusted proxy
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted_networks(trusted))
