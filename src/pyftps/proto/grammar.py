"""Parse/format pairs for FTP arguments and reply texts, shared by server and client (RFC 959 §5.3.2;
1123 §4.1.2.6; 2228 §3; 2389 §3.2; 2428 §2-3; 3659 §2.3, §5.3; 4217 §9; 7151 §3.1)."""

# Conventions shared by every function here:
# - parse_* functions raise only RemoteProtocolError: the code is the reply the server sends back
#   (501 syntax, 504 unsupported parameter, 522 unsupported network protocol).  The client-side
#   parsers (PASV/EPSV/FEAT replies, time-vals in replies) use 501 too; for them the code only says
#   "the peer's text was malformed" and is never put on the wire.
# - format_* functions raise LocalProtocolError when our own caller hands them impossible values.
# - Decimal fields are matched with [0-9] rather than str.isdigit(), which accepts "²" or "٣", and
#   their length is bounded before int() so no input can hit int's digit limit.

from __future__ import annotations

import calendar
import datetime as _dt
import enum
import ipaddress
import math
import re
from collections.abc import Sequence
from decimal import ROUND_FLOOR, Decimal
from typing import Final, Literal

from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "TransferType",
    "format_eprt_arg",
    "format_epsv_reply_text",
    "format_pasv_reply_text",
    "format_port_arg",
    "format_time_val",
    "parse_chmod_mode",
    "parse_eprt_arg",
    "parse_epsv_arg",
    "parse_epsv_reply",
    "parse_feat_reply",
    "parse_host_arg",
    "parse_mfmt_arg",
    "parse_mode_arg",
    "parse_pasv_reply",
    "parse_pbsz_arg",
    "parse_port_arg",
    "parse_prot_arg",
    "parse_rest_arg",
    "parse_stru_arg",
    "parse_time_val",
    "parse_type_arg",
]

_DIGITS: Final = re.compile(r"[0-9]+")
_BYTE: Final = r"([0-9]{1,3})"
# PORT h1,h2,h3,h4,p1,p2 (959 §5.3.2); blanks around the numbers are tolerated because real
# clients send them.  RFC 959's <number> is 1..255 but 0 is needed in practice (digest §7 item 22).
_COMMA: Final = r"[ \t]*,[ \t]*"
_PORT_ARG: Final = re.compile(r"[ \t]*" + _BYTE + (_COMMA + _BYTE) * 5 + r"[ \t]*")
# The 227 text is not standardised: scan for six comma-separated numbers anywhere (1123 §4.1.2.6).
_SIX_NUMBERS: Final = re.compile(r"(?<![0-9])" + _BYTE + (_COMMA + _BYTE) * 5 + r"(?![0-9])")
# 229 text MUST carry (<d><d><d><port><d>) with one delimiter repeated (2428 §3).
_EPSV_REPLY: Final = re.compile(r"\(([!-~])\1\1([0-9]{1,5})\1\)")
_TIME_VAL: Final = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})(?:\.([0-9]+))?")
_LDH_LABEL: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
# time-val has four year digits (3659 §2.3): 1000-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
_MIN_TS: Final = -30610224000
_MAX_TS: Final = 253402300799
_MAX_FRACTION_DIGITS: Final = 9
_AF_UNSUPPORTED: Final = "Network protocol not supported, use (1,2)"  # 2428 §2: list in parentheses


class TransferType(enum.Enum):
    """The representation types we implement (1123 §4.1.2.13 minimum: A N, I, L 8)."""

    ASCII = "A"
    IMAGE = "I"


# --- addresses ---------------------------------------------------------------------------------


def _local_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Our own address as a value; IPv4-mapped IPv6 is unwrapped and a zone id dropped (peer can't use it)."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError as exc:
        raise LocalProtocolError(f"not an IP address: {host!r}") from exc
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _host_port_bytes(host: str, port: int) -> list[int]:
    addr = _local_ip(host)
    if not isinstance(addr, ipaddress.IPv4Address):
        raise LocalProtocolError(f"PORT/PASV carry IPv4 only (use EPRT/EPSV): {host!r}")
    _check_local_port(port)
    return [*addr.packed, port >> 8, port & 0xFF]


def _check_local_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise LocalProtocolError(f"port out of range: {port!r}")


def _six_to_host_port(groups: Sequence[str], what: str) -> tuple[str, int]:
    values = [int(g) for g in groups]  # at most 3 digits each, guaranteed by the regexes
    if any(v > 255 for v in values):
        raise RemoteProtocolError(501, f"{what}: numbers must be 0-255")
    port = values[4] * 256 + values[5]
    if port == 0:
        raise RemoteProtocolError(501, f"{what}: port 0 is not a usable port")
    return ".".join(str(v) for v in values[:4]), port


def parse_port_arg(arg: str) -> tuple[str, int]:
    """``PORT h1,h2,h3,h4,p1,p2`` -> (dotted quad, port) (959 §4.1.2, §5.3.2); syntax errors -> 501."""
    match = _PORT_ARG.fullmatch(arg)
    if match is None:
        raise RemoteProtocolError(501, "PORT syntax: h1,h2,h3,h4,p1,p2")
    return _six_to_host_port(match.groups(), "PORT")


def format_port_arg(host: str, port: int) -> str:
    """The PORT argument for an IPv4 ``host`` and ``port`` 1..65535 (959 §5.3.2)."""
    return ",".join(str(v) for v in _host_port_bytes(host, port))


def format_pasv_reply_text(host: str, port: int) -> str:
    """The 227 reply text, with the customary parentheses (959 §4.2.2, §4.1.2)."""
    return f"Entering Passive Mode ({format_port_arg(host, port)})."


def parse_pasv_reply(text: str) -> tuple[str, int]:
    """(host, port) from a 227 text; the six numbers may appear anywhere, with or without parentheses.

    RFC 1123 §4.1.2.6 requires clients to scan for the numbers because servers differ.
    """
    match = _SIX_NUMBERS.search(text)
    if match is None:
        raise RemoteProtocolError(501, "227 reply without h1,h2,h3,h4,p1,p2")
    return _six_to_host_port(match.groups(), "227 reply")


def _parse_port_number(text: str, what: str) -> int:
    if _DIGITS.fullmatch(text) is None or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise RemoteProtocolError(501, f"{what}: port must be 1-65535")
    return int(text)


def parse_eprt_arg(arg: str) -> tuple[int, str, int]:
    """``EPRT <d><af><d><addr><d><port><d>`` -> (af, normalised address, port) (2428 §2).

    The structure is checked first so that ``|3|x|5|`` gets 522 (unsupported af) rather than 501.
    """
    if not arg or not "!" <= arg[0] <= "~":  # the delimiter is any of ASCII 33-126 (2428 §2)
        raise RemoteProtocolError(501, "EPRT syntax: <d><af><d><address><d><port><d>")
    parts = arg.split(arg[0])
    if len(parts) != 5 or parts[0] or parts[4]:
        raise RemoteProtocolError(501, "EPRT syntax: <d><af><d><address><d><port><d>")
    _, af_text, addr_text, port_text, _ = parts
    if _DIGITS.fullmatch(af_text) is None:
        raise RemoteProtocolError(501, "EPRT: the address family must be a number")
    af_value = af_text.lstrip("0")
    if af_value not in ("1", "2"):
        raise RemoteProtocolError(522, _AF_UNSUPPORTED)
    af = int(af_value)
    try:
        # 1 = IPv4 dotted quad, 2 = IPv6 text form (2428 §2); a zone id means nothing to us.
        if af == 1:
            addr = str(ipaddress.IPv4Address(addr_text))
        elif "%" in addr_text:
            raise ValueError("zone id")
        else:
            addr = ipaddress.IPv6Address(addr_text).compressed
    except ValueError as exc:
        raise RemoteProtocolError(501, "EPRT: invalid network address") from exc
    return af, addr, _parse_port_number(port_text, "EPRT")


def format_eprt_arg(host: str, port: int) -> str:
    """The EPRT argument with ``|`` delimiters, af chosen from the address (2428 §2)."""
    addr = _local_ip(host)
    _check_local_port(port)
    af = 1 if isinstance(addr, ipaddress.IPv4Address) else 2
    return f"|{af}|{addr.compressed}|{port}|"


def parse_epsv_arg(arg: str | None) -> int | Literal["ALL"] | None:
    """``EPSV [<af>|ALL]`` (2428 §3): None without argument, ``"ALL"``, or the af 1/2.

    Another af number is 522 with the supported list (2428 §3 MUST); anything else is 501.
    """
    text = (arg or "").strip(" ")
    if not text:
        return None
    if text.upper() == "ALL":
        return "ALL"
    if _DIGITS.fullmatch(text) is None:
        raise RemoteProtocolError(501, "EPSV takes no argument, an address family or ALL")
    af = text.lstrip("0")
    if af not in ("1", "2"):
        raise RemoteProtocolError(522, _AF_UNSUPPORTED)
    return int(af)


def format_epsv_reply_text(port: int) -> str:
    """The 229 text: first two fields empty, port in the third (2428 §3 MUST)."""
    _check_local_port(port)
    return f"Entering Extended Passive Mode (|||{port}|)"


def parse_epsv_reply(text: str) -> int:
    """The port from a 229 text ``(<d><d><d><port><d>)`` with any delimiter (2428 §3)."""
    match = _EPSV_REPLY.search(text)
    if match is None:
        raise RemoteProtocolError(501, "229 reply without (<d><d><d><port><d>)")
    return _parse_port_number(match.group(2), "229 reply")


# --- time-val (3659 §2.3) ------------------------------------------------------------------------


def format_time_val(ts: float, fraction_digits: int = 0) -> str:
    """``YYYYMMDDHHMMSS[.fff]`` in UTC for POSIX time ``ts`` (3659 §2.3).

    Digits beyond the requested precision are truncated, never rounded up, so we never claim a later
    time than the file has.  The float is read through its shortest repr, so a value that came from
    :func:`parse_time_val` formats back to the same digits.  Times outside years 1000-9999, which the
    grammar cannot express, are clamped to the nearest representable one rather than breaking a listing.
    """
    if not 0 <= fraction_digits <= _MAX_FRACTION_DIGITS:
        raise LocalProtocolError(f"fraction_digits must be 0-{_MAX_FRACTION_DIGITS}")
    if math.isnan(ts):
        raise LocalProtocolError("timestamp is NaN")
    scale = 10**fraction_digits
    exact = min(max(Decimal(repr(float(ts))), Decimal(_MIN_TS)), Decimal(_MAX_TS + 1))
    units = int((exact * scale).to_integral_value(rounding=ROUND_FLOOR))
    units = min(units, (_MAX_TS + 1) * scale - 1)
    seconds, fraction = divmod(units, scale)
    text = (_EPOCH + _dt.timedelta(seconds=seconds)).strftime("%Y%m%d%H%M%S")
    if fraction_digits:
        text += f".{fraction:0{fraction_digits}d}"
    return text


def parse_time_val(text: str) -> float:
    """POSIX time of ``YYYYMMDDHHMMSS[.F+]`` (UTC, 3659 §2.3); anything else -> 501.

    The calendar is checked for real (no 30 February); second 60 is allowed for a leap second and,
    as POSIX time has none, counts as the first second of the next minute.
    """
    match = _TIME_VAL.fullmatch(text)
    if match is None:
        raise RemoteProtocolError(501, "time-val must be YYYYMMDDHHMMSS[.F+]")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    if year < 1000 or second > 60:
        raise RemoteProtocolError(501, "time-val out of range")
    try:
        _dt.datetime(year, month, day, hour, minute, min(second, 59))
    except ValueError as exc:
        raise RemoteProtocolError(501, "time-val is not a calendar date") from exc
    whole = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    fraction = match.group(7)
    if not fraction:
        return float(whole)
    # Decimal arithmetic then one correctly rounded conversion: the float's repr gives the digits back.
    return float(Decimal(whole) + Decimal("0." + fraction[:_MAX_FRACTION_DIGITS]))


def parse_mfmt_arg(arg: str) -> tuple[float, str]:
    """``MFMT <time-val> SP <pathname>`` -> (POSIX time, pathname); the pathname keeps its spaces.

    MFMT comes from the expired draft-somers-ftp-mfxx (digest §4.7, §7 item 18); after the single
    separator every character belongs to the pathname (2640 §3.1).
    """
    time_text, sep, path = arg.partition(" ")
    if not sep or not path:
        raise RemoteProtocolError(501, "MFMT syntax: MFMT <time-val> <pathname>")
    return parse_time_val(time_text), path


# --- simple parameters ---------------------------------------------------------------------------


def parse_type_arg(arg: str | None) -> TransferType:
    """``TYPE A [N] | I | L 8`` (959 §5.3.2; 1123 §4.1.2.13); other valid codes -> 504, garbage -> 501."""
    tokens = [t.upper() for t in (arg or "").split(" ") if t]
    if not tokens or len(tokens) > 2:
        raise RemoteProtocolError(501, "TYPE syntax: A [N|T|C] | E [N|T|C] | I | L <byte-size>")
    code, param = tokens[0], (tokens[1] if len(tokens) == 2 else None)
    if code in ("A", "E") and param in (None, "N", "T", "C"):
        if code == "A" and param in (None, "N"):
            return TransferType.ASCII
        raise RemoteProtocolError(504, "Only TYPE A N, I and L 8 are implemented")
    if code == "I" and param is None:
        return TransferType.IMAGE
    if code == "L" and param is not None and _DIGITS.fullmatch(param):
        if param.lstrip("0") == "8":  # L 8 is the same as I on 8-bit hosts (1123 §4.1.2.13)
            return TransferType.IMAGE
        raise RemoteProtocolError(504, "Only TYPE A N, I and L 8 are implemented")
    if len(code) == 1 and code.isascii() and code.isalpha() and code != "L" and param is None:
        # A type code we do not know (CONFORMANCE check 70); "L" alone lacks its byte size (501).
        raise RemoteProtocolError(504, "Only TYPE A N, I and L 8 are implemented")
    raise RemoteProtocolError(501, "TYPE syntax: A [N|T|C] | E [N|T|C] | I | L <byte-size>")


def parse_mode_arg(arg: str | None) -> Literal["S"]:
    """``MODE S`` only (1123 §4.1.2.13 minimum); B and C are valid but not implemented -> 504."""
    code = (arg or "").strip(" ").upper()
    if code == "S":
        return "S"
    if code in ("B", "C"):
        raise RemoteProtocolError(504, "Only MODE S is implemented")
    raise RemoteProtocolError(501, "MODE syntax: S | B | C")


def parse_stru_arg(arg: str | None) -> Literal["F"]:
    """``STRU F`` only (1123 §4.1.2.13: R only where files have records); R and P -> 504."""
    code = (arg or "").strip(" ").upper()
    if code == "F":
        return "F"
    if code in ("R", "P"):
        raise RemoteProtocolError(504, "Only STRU F is implemented")
    raise RemoteProtocolError(501, "STRU syntax: F | R | P")


def parse_rest_arg(arg: str | None) -> int:
    """``REST <offset>`` in MODE S: decimal octets to skip, at most 20 digits (3659 §5.3)."""
    text = (arg or "").strip(" ")
    # 20 digits cover any 64-bit offset; range errors belong to the transfer command (3659 §5.3).
    if _DIGITS.fullmatch(text) is None or len(text) > 20:
        raise RemoteProtocolError(501, "REST takes a decimal byte offset")
    return int(text)


def parse_pbsz_arg(arg: str | None) -> int:
    """``PBSZ <decimal>`` 0..2^32-1 (2228 §3 says 1.., 4217 §9 requires 0; digest §7 item 5)."""
    text = (arg or "").strip(" ")
    if _DIGITS.fullmatch(text) is None or len(text) > 20 or int(text) > 2**32 - 1:
        raise RemoteProtocolError(501, "PBSZ takes a decimal 0-4294967295")
    return int(text)


def parse_prot_arg(arg: str | None) -> str:
    """``PROT C|S|E|P`` (2228 §3) upper-cased; another single letter -> 504, anything else -> 501.

    Whether S and E are refused (536, 4217 §9) is the server's policy, not grammar.
    """
    text = (arg or "").strip(" ")
    if len(text) != 1 or not ("A" <= text.upper() <= "Z"):
        raise RemoteProtocolError(501, "PROT syntax: C | S | E | P")
    level = text.upper()
    if level not in "CSEP":
        raise RemoteProtocolError(504, "PROT level must be C, S, E or P")
    return level


def parse_chmod_mode(text: str) -> int:
    """Octal permission bits of ``SITE CHMOD``: 1-4 octal digits, at most 0o777.

    Setuid, setgid and sticky bits are refused: a client must not be able to create setuid files.
    """
    if re.fullmatch(r"[0-7]{1,4}", text) is None or int(text, 8) > 0o777:
        raise RemoteProtocolError(501, "mode must be octal 0-777")
    return int(text, 8)


# --- HOST (7151 §3.1) ----------------------------------------------------------------------------


def _valid_a_label(label: str) -> bool:
    """An ``xn--`` label must decode to non-ASCII Unicode and encode back to itself (IDNA A-label)."""
    encoded = label[4:].lower()
    try:
        decoded = encoded.encode("ascii").decode("punycode")
        return not decoded.isascii() and decoded.encode("punycode").decode("ascii") == encoded
    except (UnicodeError, ValueError, OverflowError):
        return False


def parse_host_arg(arg: str | None) -> str:
    """``HOST <hostname>``: LDH/A-label domain, IPv4 literal or ``[IPv6]`` literal, lower-cased.

    A port suffix MUST get 501 (7151 §3.1).  IPv6 literals come back compressed in brackets so the
    caller can compare them with its own addresses.
    """
    text = arg or ""
    if text.startswith("["):
        inner, close, rest = text[1:].partition("]")
        if not close or rest:
            raise RemoteProtocolError(501, "HOST: a bracketed IPv6 literal takes no port")
        try:
            if "%" in inner:
                raise ValueError("zone id")
            return f"[{ipaddress.IPv6Address(inner).compressed}]"
        except ValueError as exc:
            raise RemoteProtocolError(501, "HOST: invalid IPv6 literal") from exc
    if ":" in text:
        raise RemoteProtocolError(501, "HOST takes no port; IPv6 literals go in brackets")
    labels = text.split(".")
    if not text or len(text) > 253 or not all(_LDH_LABEL.fullmatch(label) for label in labels):
        raise RemoteProtocolError(501, "HOST: not a domain name or address literal")
    if _DIGITS.fullmatch(labels[-1]):  # an all-numeric last label can only be an IPv4 literal
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError as exc:
            raise RemoteProtocolError(501, "HOST: invalid IPv4 literal") from exc
    if not all(_valid_a_label(label) for label in labels if label[2:4] == "--"):
        # Labels with "--" in positions 3-4 are reserved for A-labels (RFC 5890 §2.3.1).
        raise RemoteProtocolError(501, "HOST: invalid IDNA A-label")
    return text.lower()


# --- FEAT reply (2389 §3.2) ------------------------------------------------------------------------


def parse_feat_reply(lines: Sequence[str]) -> dict[str, str]:
    """Upper-cased feature label -> parameter text from a multi-line 211 reply (2389 §3.2).

    The first and last lines are the 211 frame and are ignored.  Feature lines start with one space
    (2389 §3.2); we also accept more, and skip lines with none.  Both ``AUTH TLS`` and the MS-FTPS
    ``AUTH TLS;SSL;`` style come back verbatim as parameters (MS-FTPS §4.2); a label listed on
    several lines (``AUTH TLS`` then ``AUTH SSL``) gets its parameters joined with ``;``.  Unknown
    features are returned too: ignoring them is the caller's job (2389 §3).
    """
    features: dict[str, str] = {}
    for raw in lines[1:-1]:
        line = raw.rstrip("\r\n")
        if not line.startswith(" ") or not line.strip():
            continue
        label, _, params = line.strip(" \t").partition(" ")
        label, params = label.upper(), params.strip(" \t")
        previous = features.get(label)
        if previous and params:
            params = previous.rstrip(";") + ";" + params
        features[label] = params or previous or ""
    return features


def canonical_host(host: str) -> str:
    """An address as text with IPv4-mapped IPv6 (``::ffff:a.b.c.d``) and zone ids seen through.

    Dual-stack listeners report IPv4 peers in the mapped form; comparisons of control, data and
    PORT addresses (RFC 2577) must treat both forms as one host. Non-addresses come back unchanged.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


def same_host(a: str, b: str) -> bool:
    """Whether two addresses name the same host (see :func:`canonical_host`)."""
    return canonical_host(a) == canonical_host(b)
