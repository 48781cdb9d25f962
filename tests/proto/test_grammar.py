"""Examples from the RFC texts and property tests for pyftps.proto.grammar (RFC 959, 1123, 2228, 2389, 2428,
3659, 4217, 7151)."""

from __future__ import annotations

import calendar
import datetime as dt
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyftps.proto.errors import LocalProtocolError, RemoteProtocolError
from pyftps.proto.grammar import (
    TransferType,
    format_eprt_arg,
    format_epsv_reply_text,
    format_pasv_reply_text,
    format_port_arg,
    format_time_val,
    parse_chmod_mode,
    parse_eprt_arg,
    parse_epsv_arg,
    parse_epsv_reply,
    parse_feat_reply,
    parse_host_arg,
    parse_mfmt_arg,
    parse_mode_arg,
    parse_pasv_reply,
    parse_pbsz_arg,
    parse_port_arg,
    parse_prot_arg,
    parse_rest_arg,
    parse_stru_arg,
    parse_time_val,
    parse_type_arg,
)

MIN_TS = calendar.timegm((1000, 1, 1, 0, 0, 0))
MAX_TS = calendar.timegm((9999, 12, 31, 23, 59, 59))


def code_of(func: Callable[..., Any], *args: Any) -> int:
    with pytest.raises(RemoteProtocolError) as info:
        func(*args)
    return info.value.code


# --- PORT / PASV (959 §4.1.2, §5.3.2; 1123 §4.1.2.6) -----------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("10,0,0,1,4,1", ("10.0.0.1", 1025)),
        ("132,235,1,2,24,131", ("132.235.1.2", 6275)),
        (" 10 , 0,0 ,1, 4,1 ", ("10.0.0.1", 1025)),  # blanks around numbers tolerated
        ("0,0,0,0,0,1", ("0.0.0.0", 1)),  # 0 bytes accepted (digest §7 item 22)
        ("255,255,255,255,255,255", ("255.255.255.255", 65535)),
        ("010,000,000,001,004,001", ("10.0.0.1", 1025)),
    ],
)
def test_port_arg_examples(arg: str, expected: tuple[str, int]) -> None:
    assert parse_port_arg(arg) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "",
        "10,0,0,1,4",
        "10,0,0,1,4,1,1",
        "256,0,0,1,4,1",
        "10,0,0,1,4,256",
        "10,0,0,1,0,0",  # port 0 cannot be connected to
        "10.0.0.1,4,1",
        "a,b,c,d,e,f",
        "10,0,0,1,4,1\n",
        "\uff110,0,0,1,4,1",  # FULLWIDTH DIGIT ONE is not a digit here
        "0010,0,0,1,4,1",
        "-1,0,0,1,4,1",
    ],
)
def test_port_arg_rejects_garbage_with_501(arg: str) -> None:
    assert code_of(parse_port_arg, arg) == 501


def test_format_port_arg() -> None:
    assert format_port_arg("10.0.0.1", 1025) == "10,0,0,1,4,1"
    assert format_port_arg("::ffff:10.0.0.1", 1025) == "10,0,0,1,4,1"  # dual-stack socket address
    for host, port in (("::1", 21), ("not-an-ip", 21), ("10.0.0.1", 0), ("10.0.0.1", 65536)):
        with pytest.raises(LocalProtocolError):
            format_port_arg(host, port)


def test_pasv_reply_text() -> None:
    assert format_pasv_reply_text("192.0.2.7", 50000) == "Entering Passive Mode (192,0,2,7,195,80)."


@pytest.mark.parametrize(
    "text",
    [
        "227 Entering Passive Mode (10,0,0,1,4,1).",
        "Entering Passive Mode (10,0,0,1,4,1)",
        "227 Entering Passive Mode 10,0,0,1,4,1",  # no parentheses: conformance check 111
        "227 =10,0,0,1,4,1",
        "227 Entering Passive Mode (10, 0, 0, 1, 4, 1)",
        "227 Passive 10,0,0,1,4,1 ok",
    ],
)
def test_pasv_reply_is_scanned_for_six_numbers(text: str) -> None:
    # 1123 §4.1.2.6: the client must scan for the numbers, not rely on parentheses.
    assert parse_pasv_reply(text) == ("10.0.0.1", 1025)


@pytest.mark.parametrize("text", ["227 Entering Passive Mode", "227 (10,0,0,1,4)", "227 (300,0,0,1,4,1)", ""])
def test_pasv_reply_without_numbers_is_501(text: str) -> None:
    assert code_of(parse_pasv_reply, text) == 501


@settings(max_examples=50)
@given(st.ip_addresses(v=4), st.integers(1, 65535))
def test_port_and_pasv_round_trip(host: ipaddress.IPv4Address, port: int) -> None:
    assert parse_port_arg(format_port_arg(str(host), port)) == (str(host), port)
    assert parse_pasv_reply("227 " + format_pasv_reply_text(str(host), port)) == (str(host), port)


# --- EPRT / EPSV (2428 §2, §3) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("|1|132.235.1.2|6275|", (1, "132.235.1.2", 6275)),  # 2428 §2 examples
        ("|2|1080::8:800:200C:417A|5282|", (2, "1080::8:800:200c:417a", 5282)),
        ("!1!10.0.0.1!21!", (1, "10.0.0.1", 21)),  # any delimiter 33-126
        ("~2~::1~65535~", (2, "::1", 65535)),
        ("|2|::ffff:10.0.0.1|1|", (2, "::ffff:a00:1", 1)),
    ],
)
def test_eprt_examples(arg: str, expected: tuple[int, str, int]) -> None:
    assert parse_eprt_arg(arg) == expected


@pytest.mark.parametrize("arg", ["|3|x|5|", "|0|1.2.3.4|5|", "|17|1.2.3.4|5|", "!3!!!"])
def test_eprt_unsupported_family_is_522_with_list(arg: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_eprt_arg(arg)
    assert info.value.code == 522
    assert info.value.text == "Network protocol not supported, use (1,2)"
    assert "(" not in info.value.text.split("(1,2)")[0]  # 2428 §2: no parentheses before the list


@pytest.mark.parametrize(
    "arg",
    [
        "",
        "|",
        "|1|132.235.1.2|6275",
        "1|132.235.1.2|6275|",
        " |1|132.235.1.2|6275|",  # a blank is not a delimiter (33-126 only)
        "|1|132.235.1.2|6275| ",
        "|x|132.235.1.2|6275|",
        "|1|::1|6275|",  # af 1 needs a dotted quad
        "|2|132.235.1.2|6275|",
        "|1|132.235.1.02|6275|",
        "|1|132.235.1.2|0|",
        "|1|132.235.1.2|65536|",
        "|1|132.235.1.2|62a5|",
        "|1|132.235.1.2||",
        "|2|fe80::1%eth0|21|",
        "|1|132.235.1.2|6275|1|",
    ],
)
def test_eprt_syntax_errors_are_501(arg: str) -> None:
    assert code_of(parse_eprt_arg, arg) == 501


def test_format_eprt_arg() -> None:
    assert format_eprt_arg("132.235.1.2", 6275) == "|1|132.235.1.2|6275|"
    assert format_eprt_arg("1080:0:0:0:8:800:200C:417A", 5282) == "|2|1080::8:800:200c:417a|5282|"
    assert format_eprt_arg("::ffff:10.0.0.1", 21) == "|1|10.0.0.1|21|"
    assert format_eprt_arg("fe80::1%eth0", 21) == "|2|fe80::1|21|"
    with pytest.raises(LocalProtocolError):
        format_eprt_arg("10.0.0.1", 0)


@settings(max_examples=50)
@given(st.ip_addresses(), st.integers(1, 65535))
def test_eprt_round_trip(host: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        expected = (1, str(host.ipv4_mapped), port)
    else:
        expected = (1 if host.version == 4 else 2, host.compressed, port)
    assert parse_eprt_arg(format_eprt_arg(str(host), port)) == expected
    assert parse_eprt_arg(format_eprt_arg(host.exploded, port)) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (None, None),
        ("", None),
        ("ALL", "ALL"),
        ("all", "ALL"),
        ("All", "ALL"),
        ("1", 1),
        ("2", 2),
        (" 2 ", 2),
    ],
)
def test_epsv_arg(arg: str | None, expected: object) -> None:
    assert parse_epsv_arg(arg) == expected


@pytest.mark.parametrize("arg", ["3", "0", "99999999999999999999999"])
def test_epsv_other_family_is_522(arg: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_epsv_arg(arg)
    assert (info.value.code, info.value.text) == (522, "Network protocol not supported, use (1,2)")


@pytest.mark.parametrize("arg", ["x", "ALL 1", "1 2", "-1", "A LL", "²"])
def test_epsv_junk_is_501(arg: str) -> None:
    assert code_of(parse_epsv_arg, arg) == 501


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("229 Entering Extended Passive Mode (|||6446|)", 6446),  # 2428 §3 example
        ("Entering Extended Passive Mode (|||6446|)", 6446),
        ("229 ok (!!!1!)", 1),
        ("229 (###65535#)", 65535),
        ("229 (1111231)", 123),  # even a digit delimiter is unambiguous
    ],
)
def test_epsv_reply(text: str, port: int) -> None:
    assert parse_epsv_reply(text) == port


@pytest.mark.parametrize(
    "text",
    ["229 |||6446|", "229 (|!|6446|)", "229 (||6446|)", "229 (|||0|)", "229 (|||70000|)", "229 (| ||1|)"],
)
def test_epsv_reply_errors(text: str) -> None:
    assert code_of(parse_epsv_reply, text) == 501


@given(st.integers(1, 65535))
def test_epsv_round_trip(port: int) -> None:
    assert format_epsv_reply_text(port) == f"Entering Extended Passive Mode (|||{port}|)"
    assert parse_epsv_reply(format_epsv_reply_text(port)) == port


# --- time-val, MDTM, MFMT (3659 §2.3, §3) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("19700101000000", 0.0),
        ("19981107085215", 910428735.0),  # 3659 §7.7.3 example
        ("19990929003355", 938565235.0),
        ("20240101000000.123", 1704067200.123),  # MDTM fraction, 3659 §2.3
        ("19990929003355.5", 938565235.5),
        ("19990929003355.000001", 938565235.000001),
        ("20161231235960", 1483228800.0),  # leap second 60 allowed
        ("20240229120000", 1709208000.0),
        ("10000101000000", float(MIN_TS)),
        ("99991231235959", float(MAX_TS)),
        ("19691231235959", -1.0),
    ],
)
def test_parse_time_val(text: str, expected: float) -> None:
    assert parse_time_val(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024010100000",  # 13 digits
        "202401010000000",
        "20240230000000",  # 30 February
        "20230229000000",  # not a leap year
        "20241301000000",
        "20240001000000",
        "20240100000000",
        "20240101240000",
        "20240101006000",
        "20240101000061",
        "09990101000000",  # year below 1000
        "20240101000000.",  # "." only when a digit follows
        "20240101000000.1a",
        "20240101000000,5",
        " 20240101000000",
        "20240101000000 ",
        "\uff12\uff10\uff12\uff140101000000",  # fullwidth digits
        "20240101T000000",
        "20240101000000Z",
    ],
)
def test_parse_time_val_rejects_with_501(text: str) -> None:
    assert code_of(parse_time_val, text) == 501


def test_format_time_val() -> None:
    assert format_time_val(0) == "19700101000000"
    assert format_time_val(910428735.9) == "19981107085215"  # truncated, never rounded up
    assert format_time_val(1704067200.123, fraction_digits=3) == "20240101000000.123"
    assert format_time_val(1704067200.9999, fraction_digits=3) == "20240101000000.999"
    assert format_time_val(-0.5, fraction_digits=1) == "19691231235959.5"
    assert format_time_val(1704067200, fraction_digits=2) == "20240101000000.00"
    # Outside what four year digits can express: clamped, never an exception in a listing.
    assert format_time_val(-1e20) == "10000101000000"
    assert format_time_val(1e20, fraction_digits=3) == "99991231235959.999"
    assert format_time_val(float("inf")) == "99991231235959"
    for bad in ((float("nan"), 0), (0.0, -1), (0.0, 10)):
        with pytest.raises(LocalProtocolError):
            format_time_val(*bad)


@given(st.integers(MIN_TS, MAX_TS))
def test_time_val_round_trip_whole_seconds(ts: int) -> None:
    text = format_time_val(ts)
    assert text == dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d%H%M%S")
    assert parse_time_val(text) == ts


@given(st.floats(MIN_TS, MAX_TS + 0.999), st.integers(0, 3))
def test_time_val_round_trip_fractions(ts: float, digits: int) -> None:
    text = format_time_val(ts, digits)
    parsed = parse_time_val(text)
    assert format_time_val(parsed, digits) == text
    assert len(text) == 14 + (digits + 1 if digits else 0)
    assert parsed <= ts + 1e-4  # truncation: never later than the real time (float slack)
    assert ts - parsed < 10**-digits + 1e-4


def test_mfmt_arg() -> None:
    assert parse_mfmt_arg("20240101000000 my file.txt") == (1704067200.0, "my file.txt")
    assert parse_mfmt_arg("20240101000000.5 /a/b") == (1704067200.5, "/a/b")
    assert parse_mfmt_arg("20240101000000  lead") == (1704067200.0, " lead")  # 2640 §3.1
    for bad in ("20240101000000", "20240101000000 ", "2024 file", "", "file 20240101000000"):
        assert code_of(parse_mfmt_arg, bad) == 501


# --- TYPE MODE STRU REST PBSZ PROT (959 §5.3.2; 1123 §4.1.2.13; 2228 §3; 3659 §5.3; 4217 §9) -------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("A", TransferType.ASCII),
        ("a", TransferType.ASCII),
        ("A N", TransferType.ASCII),
        ("a n", TransferType.ASCII),
        ("I", TransferType.IMAGE),
        ("i", TransferType.IMAGE),
        ("L 8", TransferType.IMAGE),
        ("l 8", TransferType.IMAGE),
        ("L 08", TransferType.IMAGE),
    ],
)
def test_type_accepted(arg: str, expected: TransferType) -> None:
    assert parse_type_arg(arg) is expected


@pytest.mark.parametrize(
    ("arg", "code"),
    [
        ("A T", 504),
        ("A C", 504),
        ("E", 504),
        ("E N", 504),
        ("e t", 504),
        ("L 7", 504),
        ("L 36", 504),
        (None, 501),
        ("", 501),
        ("X", 504),  # unknown type code: CONFORMANCE check 70
        ("A X", 501),
        ("I N", 501),
        ("L", 501),
        ("L x", 501),
        ("A N N", 501),
        ("AN", 501),
        ("L \uff18", 501),
    ],
)
def test_type_refused(arg: str | None, code: int) -> None:
    assert code_of(parse_type_arg, arg) == code


def test_mode_and_stru() -> None:
    assert parse_mode_arg("S") == "S"
    assert parse_mode_arg("s") == "S"
    assert parse_stru_arg("F") == "F"
    assert parse_stru_arg("f") == "F"
    for arg, code in (("B", 504), ("c", 504), ("X", 501), ("", 501), (None, 501), ("SS", 501)):
        assert code_of(parse_mode_arg, arg) == code
    for arg, code in (("R", 504), ("p", 504), ("X", 501), ("", 501), (None, 501), ("F F", 501)):
        assert code_of(parse_stru_arg, arg) == code


def test_rest_arg() -> None:
    assert parse_rest_arg("0") == 0
    assert parse_rest_arg("100") == 100
    assert parse_rest_arg("9" * 20) == 10**20 - 1
    for bad in ("9" * 21, "-1", "abc", "", None, "1e3", "1 2", "٣", "+5"):
        assert code_of(parse_rest_arg, bad) == 501


def test_pbsz_arg() -> None:
    assert parse_pbsz_arg("0") == 0  # 4217 §9
    assert parse_pbsz_arg("4294967295") == 2**32 - 1
    for bad in ("4294967296", "-1", "", None, "x", "1.0", "9" * 30):
        assert code_of(parse_pbsz_arg, bad) == 501


def test_prot_arg() -> None:
    for level in ("C", "S", "E", "P", "c", "p", " P "):
        assert parse_prot_arg(level) == level.strip().upper()
    for letter in ("X", "a", "z"):
        assert code_of(parse_prot_arg, letter) == 504
    for bad in ("", None, "PP", "1", "P C", "é"):
        assert code_of(parse_prot_arg, bad) == 501


def test_chmod_mode() -> None:
    assert parse_chmod_mode("755") == 0o755
    assert parse_chmod_mode("0644") == 0o644
    assert parse_chmod_mode("7") == 0o7
    for bad in ("4755", "1777", "8", "", "07777", "12345", "rwx", "-1", "0o755"):
        assert code_of(parse_chmod_mode, bad) == 501


# --- HOST (7151 §3.1) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("ftp.example.com", "ftp.example.com"),
        ("FTP.Example.COM", "ftp.example.com"),
        ("localhost", "localhost"),
        ("a-b.example", "a-b.example"),
        ("123.example", "123.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),  # IDNA A-label
        ("XN--BCHER-KVA.example", "xn--bcher-kva.example"),
        ("192.0.2.1", "192.0.2.1"),
        ("[2001:DB8::1]", "[2001:db8::1]"),
        ("[::1]", "[::1]"),
        ("[2001:db8:0:0:0:0:0:1]", "[2001:db8::1]"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_host_accepted(arg: str, expected: str) -> None:
    assert parse_host_arg(arg) == expected


@pytest.mark.parametrize(
    "arg",
    [
        "192.0.2.1:21",  # 7151 §3.1 MUST: a port suffix is a syntax error
        "ftp.example.com:21",
        "[::1]:21",
        "[::1]21",
        "::1",  # IPv6 needs brackets
        "[::1",
        "[192.0.2.1]",
        "[fe80::1%eth0]",
        "",
        None,
        "-bad.example",
        "bad-.example",
        "a..b",
        "trailing.dot.",
        ".leading",
        "under_score.example",
        "sp ace.example",
        "bücher.example",  # U-labels must be sent as A-labels
        "xn--zz-.example",
        "xn--.example",
        "ab--cd.example",  # reserved R-LDH label that is not a valid A-label
        "1.2.3.256",
        "1.2.3",
        "01.2.3.4",
        "a" * 64 + ".example",
        ("a" * 60 + ".") * 5 + "example",  # longer than 253
    ],
)
def test_host_refused_with_501(arg: str | None) -> None:
    assert code_of(parse_host_arg, arg) == 501


# --- FEAT (2389 §3.2; 4217 §6; MS-FTPS §4.2) --------------------------------------------------------


def test_feat_rfc4217_example() -> None:
    lines = ["211-Extensions supported", " AUTH TLS", " PBSZ", " PROT", "211 END"]
    assert parse_feat_reply(lines) == {"AUTH": "TLS", "PBSZ": "", "PROT": ""}


def test_feat_ms_ftps_example() -> None:
    lines = [
        "211-Extended features supported:",
        " LANG EN*",
        " UTF8",
        " AUTH TLS;SSL;",
        " PBSZ",
        " PROT C;P;",
        " CCC",
        " HOST",
        " SIZE",
        " MDTM",
        " REST STREAM",
        "211 END",
    ]
    feats = parse_feat_reply(lines)
    assert feats["AUTH"] == "TLS;SSL;"
    assert feats["PROT"] == "C;P;"
    assert feats["REST"] == "STREAM"
    assert feats["LANG"] == "EN*"
    assert set(feats) == {"LANG", "UTF8", "AUTH", "PBSZ", "PROT", "CCC", "HOST", "SIZE", "MDTM", "REST"}


def test_feat_tolerances() -> None:
    lines = [
        "211-Features:\r\n",
        " mlst type*;size*;modify*;\r\n",  # labels are case-independent
        "   SIZE",  # more than one leading space is tolerated
        "NOSPACE",  # not a feature line
        " ",
        " AUTH TLS",
        " AUTH SSL",  # the same label twice: parameters are merged
        "211 End",
    ]
    assert parse_feat_reply(lines) == {"MLST": "type*;size*;modify*;", "SIZE": "", "AUTH": "TLS;SSL"}
    assert parse_feat_reply(["211 No features"]) == {}
    assert parse_feat_reply([]) == {}


# --- robustness: parsers raise RemoteProtocolError and nothing else --------------------------------

PARSERS: list[Callable[[str], object]] = [
    parse_port_arg,
    parse_pasv_reply,
    parse_eprt_arg,
    parse_epsv_arg,
    parse_epsv_reply,
    parse_time_val,
    parse_mfmt_arg,
    parse_type_arg,
    parse_mode_arg,
    parse_stru_arg,
    parse_rest_arg,
    parse_pbsz_arg,
    parse_prot_arg,
    parse_chmod_mode,
    parse_host_arg,
]
_PROTOCOL_CHARS = "0123456789,.|!:;[]() -xnXNALIE%aefz\t"


@pytest.mark.parametrize("parser", PARSERS, ids=lambda parser: parser.__name__)
@settings(max_examples=40)
@given(text=st.one_of(st.text(), st.text(alphabet=_PROTOCOL_CHARS)))
def test_parsers_raise_only_remote_protocol_error(parser: Callable[[str], object], text: str) -> None:
    try:
        parser(text)
    except RemoteProtocolError as exc:
        assert exc.code in (501, 504, 522)


@settings(max_examples=50)
@given(st.from_regex(r"xn--[a-z0-9-]{0,20}(\.[a-z]{1,5})?", fullmatch=True))
def test_host_a_label_checks_never_crash(text: str) -> None:
    try:
        assert parse_host_arg(text) == text
    except RemoteProtocolError as exc:
        assert exc.code == 501


@settings(max_examples=50)
@given(st.lists(st.text()))
def test_feat_parser_never_raises(lines: list[str]) -> None:
    for label, params in parse_feat_reply(lines).items():
        assert label == label.upper()
        assert isinstance(params, str)
